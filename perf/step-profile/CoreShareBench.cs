using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// How much vector throughput more threads add on this machine (issue 15: a server step of four sequences is bound
/// by the Q4_0 four-token loop's vector work, a one-token step by memory). Each workload runs on one thread, then on
/// THREADS threads at once (at least 2; each its own data), and prints the time or the weight bytes per second per thread and in all:
/// <list type="bullet">
/// <item>a scalar chain of dependent multiplies: latency-bound, it uses almost nothing of a core, so two threads on
/// two cores and two threads on one core's two hyperthreads both take the one-thread time;</item>
/// <item>twelve independent 512-bit vpaddw chains: throughput-bound on the vector ALUs, so two cores take the
/// one-thread time and two hyperthreads of one core about twice it;</item>
/// <item><see cref="DotQ4_0.PackedDot1Avx512"/> and <see cref="DotQ4_0.PackedDot4Avx512"/> (the AVX-512 decode and
/// four-token loops) over 16-row groups of a 2048-wide matrix: 8 groups per thread (144 KiB, in cache) and 3000 groups
/// per thread (54 MiB, from DRAM), the weights on 2 MiB pages as <c>PackedArena</c> allocates them.</item>
/// </list>
/// Each figure is the best of REPS runs. Needs AVX-512 (the x86-64-v4 kernels).
/// </summary>
static unsafe class CoreShareBench
{
    private const int K = 2048, Blocks = K / 32;
    private const long GroupBytes = Blocks * 288L, PanelBytes = Blocks * 40L;

    [DllImport("libc", EntryPoint = "madvise")]
    private static extern int Madvise(void* addr, nuint length, int advice);

    public static void Run(int threads, int reps, string label)
    {
        int n2 = Math.Max(2, threads);
        if (!Vector512.IsHardwareAccelerated)
        {
            Console.WriteLine("cores: needs AVX-512");
            return;
        }
        reps = Math.Max(1, reps);
        Console.WriteLine($"{label} one thread vs {n2} threads at once (best of {reps}); per-thread figures, then the sum");
        Time("scalar dependent multiply chain", reps, n2, _ => Chain(3));
        Time("vector vpaddw zmm x12 chains", reps, n2, _ => Adds(Vector512.Create((short)3)));
        var rnd = new Random(1);
        var panels = new byte*[n2];
        for (int t = 0; t < n2; t++) panels[t] = Panel(rnd);
        float* dst = (float*)NativeMemory.AlignedAlloc((nuint)n2 * 4096, 64);
        foreach (long groups in new long[] { 8, 3000 })
        {
            var w = new byte*[n2];
            for (int t = 0; t < n2; t++) w[t] = Weights(groups, rnd);
            Console.WriteLine($"{label}   ({HugePages()} of the process on transparent huge pages)");
            foreach (int tokens in new[] { 1, 4 })
            {
                long passes = Math.Max(1, 1_500_000_000L / (groups * GroupBytes) / tokens);
                double bytes = passes * groups * (double)GroupBytes;
                double one = Best(1, reps, t => Loop(w[t], groups, panels[t], dst + 1024 * t, tokens, passes));
                double all = Best(n2, reps, t => Loop(w[t], groups, panels[t], dst + 1024 * t, tokens, passes));
                string where = groups * GroupBytes < (1 << 20) ? $"{groups * GroupBytes >> 10} KiB per thread, in cache" : $"{groups * GroupBytes >> 20} MiB per thread, DRAM";
                Console.WriteLine($"{label} Q4_0 AVX-512 {tokens}-token loop, {where}: 1 thread {bytes / one / 1e9,5:F1} GB/s | {n2} threads {bytes / all / 1e9,5:F1} GB/s each, {n2 * bytes / all / 1e9,5:F1} in all (x{n2 * one / all:F2} of one)");
            }
            for (int t = 0; t < n2; t++) NativeMemory.AlignedFree(w[t]);
        }
        for (int t = 0; t < n2; t++) NativeMemory.AlignedFree(panels[t]);
        NativeMemory.AlignedFree(dst);
    }

    private static void Time(string name, int reps, int n, Action<int> work)
    {
        double one = Best(1, reps, work), all = Best(n, reps, work);
        Console.WriteLine($"  {name}: 1 thread {one * 1000:F0} ms | {n} threads {all * 1000:F0} ms each (x{n * one / all:F2} of one thread's throughput)");
    }

    /// <summary>The best wall time of <paramref name="reps"/> runs of <paramref name="work"/> on <paramref name="n"/> threads started together.</summary>
    private static double Best(int n, int reps, Action<int> work)
    {
        double best = double.MaxValue;
        for (int r = 0; r < reps; r++)
        {
            using var start = new Barrier(n + 1);
            var th = new Thread[n];
            for (int t = 0; t < n; t++)
            {
                int id = t;
                th[t] = new Thread(() => { start.SignalAndWait(); work(id); });
                th[t].Start();
            }
            start.SignalAndWait();
            long t0 = Stopwatch.GetTimestamp();
            foreach (var x in th) x.Join();
            best = Math.Min(best, Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
        return best;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static long Chain(long x)
    {
        for (int i = 0; i < 150_000_000; i++) x = x * x + 7;
        return x;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Vector512<short> Adds(Vector512<short> w)
    {
        Vector512<short> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default;
        Vector512<short> s6 = default, s7 = default, s8 = default, s9 = default, s10 = default, s11 = default;
        for (int i = 0; i < 200_000_000; i++)
        {
            s0 += w; s1 += w; s2 += w; s3 += w; s4 += w; s5 += w;
            s6 += w; s7 += w; s8 += w; s9 += w; s10 += w; s11 += w;
        }
        return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9 + s10 + s11;
    }

    private static void Loop(byte* w, long groups, byte* panel, float* dst, int tokens, long passes)
    {
        for (long p = 0; p < passes; p++)
            for (long g = 0; g < groups; g++)
            {
                if (tokens == 4) DotQ4_0.PackedDot4Avx512(w + g * GroupBytes, panel, PanelBytes, K, dst, 16);
                else DotQ4_0.PackedDot1Avx512(w + g * GroupBytes, panel, K, dst);
            }
    }

    /// <summary>AnonHugePages of this process (/proc/self/smaps_rollup), or "unknown".</summary>
    private static string HugePages()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/smaps_rollup"))
                if (line.StartsWith("AnonHugePages:", StringComparison.Ordinal)) return line["AnonHugePages:".Length..].Trim();
        }
        catch (IOException) { }
        return "unknown";
    }

    private static byte* Alloc(long bytes)
    {
        long size = (bytes + (2 << 20) - 1) & ~((2L << 20) - 1);
        byte* p = (byte*)NativeMemory.AlignedAlloc((nuint)size, 2 << 20);
        Madvise(p, (nuint)size, 14); // MADV_HUGEPAGE
        return p;
    }

    /// <summary>Random quants with every fp16 block scale 2^-7 (finite products), in the AVX-512 repacked layout's byte positions.</summary>
    private static byte* Weights(long groups, Random rnd)
    {
        long bytes = groups * GroupBytes;
        byte* w = Alloc(bytes);
        rnd.NextBytes(new Span<byte>(w, checked((int)bytes)));
        for (long g = 0; g < groups; g++)
            for (int b = 0; b < Blocks; b += 2)
            {
                ushort* scales = (ushort*)(w + g * GroupBytes + b * 288L);
                for (int j = 0; j < 32; j++) scales[j] = 0x2000;
            }
        return w;
    }

    /// <summary>Four tokens' Q8_0 panels (quants, then the block scales d_x and offsets c as floats), random quants.</summary>
    private static byte* Panel(Random rnd)
    {
        byte* p = Alloc(4 * PanelBytes);
        rnd.NextBytes(new Span<byte>(p, (int)(4 * PanelBytes)));
        for (int t = 0; t < 4; t++)
        {
            float* f = (float*)(p + t * PanelBytes + Blocks * 32);
            for (int j = 0; j < 2 * Blocks; j++) f[j] = 0.01f;
        }
        return p;
    }
}
