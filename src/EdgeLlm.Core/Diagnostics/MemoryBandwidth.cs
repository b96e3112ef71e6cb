using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Diagnostics;

/// <summary>One memory-bandwidth measurement: best and median GB/s (10^9 bytes per second) over the passes.</summary>
public readonly record struct BandwidthResult(double BestGBps, double MedianGBps, long Bytes, int Threads, int Passes, string Vector);

/// <summary>
/// Measures the machine's streaming read bandwidth, the ceiling for memory-bound decode: a buffer much larger
/// than the last-level cache (1 GiB by default) is filled once (so every page is real, not the shared zero
/// page), then read end to end by <c>threads</c> threads, each its own contiguous slice, with the widest
/// accelerated vector loads (Vector512, else Vector256, else Vector128) summed into four accumulators so the
/// reads cannot be optimized away. The buffer is advised for transparent huge pages. Each pass is timed from a barrier release to the last thread's finish; the
/// best pass is the figure (as STREAM reports), the median is kept for the spread.
/// </summary>
public static unsafe class MemoryBandwidth
{
    public const long DefaultBytes = 1L << 30;
    public const int DefaultPasses = 5;
    public const long MinBytes = 1L << 20;

    private static ulong s_sink;

    /// <summary>Runs the probe; allocates and frees <paramref name="bytes"/> of native memory.</summary>
    public static BandwidthResult Measure(int threads, long bytes = DefaultBytes, int passes = DefaultPasses)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), $"threads must be at least 1, got {threads}");
        if (passes < 1) throw new ArgumentOutOfRangeException(nameof(passes), $"passes must be at least 1, got {passes}");
        if (bytes < MinBytes) throw new ArgumentOutOfRangeException(nameof(bytes), $"buffer must be at least {MinBytes} bytes, got {bytes}");
        long slice = bytes / threads / 256 * 256;
        if (slice == 0) throw new ArgumentOutOfRangeException(nameof(threads), $"{threads} threads is too many for {bytes} bytes");
        bytes = slice * threads;

        // On 2 MiB pages, as the weights it is compared with lie (a model read into memory, the repacked copies): on
        // 4 KiB pages a core takes a page walk every 4 KiB and the hardware prefetcher stops at each page boundary, and
        // the probe read 20-26% less than the same loop over huge pages (1 thread, Zen 5 VM).
        const long hugePage = 2L << 20;
        long allocated = (bytes + hugePage - 1) / hugePage * hugePage;
        byte* buffer = (byte*)NativeMemory.AlignedAlloc((nuint)allocated, (nuint)hugePage);
        Gguf.MemoryLock.AdviseHugePages(buffer, (nuint)allocated);
        var seconds = new double[passes];
        try
        {
            using var barrier = new Barrier(threads);
            var workers = new Thread[threads - 1];
            nint baseAddr = (nint)buffer;
            for (int t = 1; t < threads; t++)
            {
                int id = t;
                workers[t - 1] = new Thread(() => Worker((byte*)baseAddr + id * slice, slice, passes, barrier))
                {
                    IsBackground = true,
                    Name = $"membw-{id}",
                };
                workers[t - 1].Start();
            }
            // Pass -1 fills (first touch by the thread that will read the slice), then the timed passes.
            for (int pass = -1; pass < passes; pass++)
            {
                barrier.SignalAndWait();
                long start = Stopwatch.GetTimestamp();
                Step(buffer, slice, pass);
                barrier.SignalAndWait();
                if (pass >= 0) seconds[pass] = Stopwatch.GetElapsedTime(start).TotalSeconds;
            }
            foreach (var w in workers) w.Join();
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
        Array.Sort(seconds);
        double best = bytes / seconds[0] / 1e9;
        double median = bytes / seconds[passes / 2] / 1e9;
        return new BandwidthResult(best, median, bytes, threads, passes, VectorName);
    }

    /// <summary>The vector width the reads use on this machine.</summary>
    public static string VectorName =>
        Vector512.IsHardwareAccelerated ? "Vector512" : Vector256.IsHardwareAccelerated ? "Vector256" : "Vector128";

    private static void Worker(byte* slice, long bytes, int passes, Barrier barrier)
    {
        for (int pass = -1; pass < passes; pass++)
        {
            barrier.SignalAndWait();
            Step(slice, bytes, pass);
            barrier.SignalAndWait();
        }
    }

    private static void Step(byte* p, long bytes, int pass)
    {
        if (pass < 0) NativeMemory.Fill(p, (nuint)bytes, 0x5A);
        else Interlocked.Add(ref s_sink, Sum(p, bytes));
    }

    /// <summary>Sums a slice (a multiple of 256 bytes) as 64-bit lanes with four independent accumulators.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static ulong Sum(byte* p, long bytes)
    {
        byte* end = p + bytes;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<ulong> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; p < end; p += 256)
            {
                a0 += Vector512.Load((ulong*)p);
                a1 += Vector512.Load((ulong*)(p + 64));
                a2 += Vector512.Load((ulong*)(p + 128));
                a3 += Vector512.Load((ulong*)(p + 192));
            }
            return Vector512.Sum(a0 + a1 + a2 + a3);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<ulong> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; p < end; p += 128)
            {
                a0 += Vector256.Load((ulong*)p);
                a1 += Vector256.Load((ulong*)(p + 32));
                a2 += Vector256.Load((ulong*)(p + 64));
                a3 += Vector256.Load((ulong*)(p + 96));
            }
            return Vector256.Sum(a0 + a1 + a2 + a3);
        }
        Vector128<ulong> b0 = default, b1 = default, b2 = default, b3 = default;
        for (; p < end; p += 64)
        {
            b0 += Vector128.Load((ulong*)p);
            b1 += Vector128.Load((ulong*)(p + 16));
            b2 += Vector128.Load((ulong*)(p + 32));
            b3 += Vector128.Load((ulong*)(p + 48));
        }
        return Vector128.Sum(b0 + b1 + b2 + b3);
    }
}
