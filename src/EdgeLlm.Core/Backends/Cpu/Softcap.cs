using System.Runtime.Intrinsics;
using EdgeLlm.Backends.Cpu.Kernels;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// x[i] = cap · tanh(x[i] / cap) (Gemma 2's final logit softcapping over a whole vocabulary row). Element-wise with a
/// fixed formula per element (widest vector, scalar tail on 16-element boundaries), so any split gives the same bits.
/// </summary>
internal sealed unsafe class Softcap : ParallelWork
{
    private float* _x;
    private long _count;
    private float _cap;

    public void Run(WorkerPool pool, float* x, long count, float cap)
    {
        _x = x;
        _count = count;
        _cap = cap;
        pool.Run(this, count);
    }

    public override void Execute(int thread, int threadCount)
    {
        var (c0, c1) = WorkerPool.Range((_count + 15) / 16, thread, threadCount);
        long i0 = c0 * 16, i1 = Math.Min(_count, c1 * 16);
        Apply(_x, i0, i1, _cap);
    }

    internal static void Apply(float* x, long i0, long i1, float cap)
    {
        if (Vector512.IsHardwareAccelerated) i0 = Run<SimdF512, Vector512<float>>(x, i0, i1, cap);
        else if (Vector256.IsHardwareAccelerated) i0 = Run<SimdF256, Vector256<float>>(x, i0, i1, cap);
        else if (Vector128.IsHardwareAccelerated) i0 = Run<SimdF128, Vector128<float>>(x, i0, i1, cap);
        Run<SimdF1, float>(x, i0, i1, cap);
    }

    private static long Run<TS, TV>(float* x, long i, long i1, float cap) where TS : struct, ISimdFloat<TV> where TV : struct
    {
        TV c = TS.Broadcast(cap), ic = TS.Broadcast(1f / cap);
        for (; i <= i1 - TS.Count; i += TS.Count)
            TS.Store(SimdTanh.Softcap<TS, TV>(TS.Load(x + i), c, ic), x + i);
        return i;
    }
}
