using System.Runtime.Intrinsics;
using EdgeLlm.Backends.Cpu.Kernels;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// gate[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x). Threads split the elements; each element's math is
/// fixed (the widest vector the machine has, then the same formula in scalar for the tail), so results do not depend
/// on the thread count.
/// </summary>
internal sealed unsafe class SwiGlu : ParallelWork
{
    private float* _gate;
    private float* _up;
    private long _count;

    public void Run(WorkerPool pool, float* gate, float* up, long count)
    {
        _gate = gate;
        _up = up;
        _count = count;
        pool.Run(this, count);
    }

    public override void Execute(int thread, int threadCount)
    {
        // Split on multiples of 16 so every element outside the final tail goes through the same vector width.
        var (c0, c1) = WorkerPool.Range((_count + 15) / 16, thread, threadCount);
        long i0 = c0 * 16, i1 = Math.Min(_count, c1 * 16);
        Apply(_gate, _up, i0, i1);
    }

    /// <summary>Elements [i0, i1): at the widest vector width the machine has, then scalar for the last partial group.</summary>
    internal static void Apply(float* gate, float* up, long i0, long i1)
    {
        if (Vector512.IsHardwareAccelerated) i0 = Run<SimdF512, Vector512<float>>(gate, up, i0, i1);
        else if (Vector256.IsHardwareAccelerated) i0 = Run<SimdF256, Vector256<float>>(gate, up, i0, i1);
        else if (Vector128.IsHardwareAccelerated) i0 = Run<SimdF128, Vector128<float>>(gate, up, i0, i1);
        Run<SimdF1, float>(gate, up, i0, i1);
    }

    /// <summary>Whole groups of TS.Count elements from i0; returns where it stopped.</summary>
    private static long Run<TS, TV>(float* gate, float* up, long i, long i1) where TS : struct, ISimdFloat<TV> where TV : struct
    {
        TV one = TS.Broadcast(1f);
        for (; i <= i1 - TS.Count; i += TS.Count)
        {
            TV g = TS.Load(gate + i);
            TS.Store(TS.Mul(TS.Div(g, TS.Add(one, TS.Exp(TS.Sub(TS.Zero, g)))), TS.Load(up + i)), gate + i);
        }
        return i;
    }
}
