using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Software prefetch of the weight stream for the x64 loops. Decode reads every weight once per token straight from
/// DRAM; the hardware prefetcher alone leaves the loops waiting on memory (1.1B Q4_0 decode at 2 threads went from
/// 49 to 55 tok/s when the Q4_0 loop asked for the lines 4.5 KiB ahead instead of 1.1 KiB; 9 and 18 KiB were no
/// better). A loop calls one of these once per step with the step's first weight byte; k prefetches 64 bytes apart
/// leave no line of a contiguous stream untouched as long as a step is at most 64·k bytes. Prefetching past the end
/// of a tensor is harmless (a prefetch never faults).
/// </summary>
internal static unsafe class WeightPrefetch
{
    /// <summary>Bytes ahead of the current step: about 150 ns of one core's share of DRAM bandwidth.</summary>
    public const int Distance = 4608;

    /// <summary>Steps of up to 192 bytes: a Q4_K block (144 bytes), eight Q4_0 blocks of the panel loops (144 bytes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Lines3(byte* p)
    {
        Sse.Prefetch0(p + Distance);
        Sse.Prefetch0(p + Distance + 64);
        Sse.Prefetch0(p + Distance + 128);
    }

    /// <summary>Steps of up to 320 bytes: eight Q8_0 blocks (272 bytes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Lines5(byte* p)
    {
        Sse.Prefetch0(p + Distance);
        Sse.Prefetch0(p + Distance + 64);
        Sse.Prefetch0(p + Distance + 128);
        Sse.Prefetch0(p + Distance + 192);
        Sse.Prefetch0(p + Distance + 256);
    }
}
