using System.Runtime.Intrinsics;

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

    /// <summary>Elements [i0, i1): 16 at a time with Vector512 (or two Vector256, or four Vector128), scalar for the last partial group.</summary>
    internal static void Apply(float* gate, float* up, long i0, long i1)
    {
        long i = i0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= i1 - 16; i += 16)
            {
                var g = Vector512.Load(gate + i);
                (g / (Vector512<float>.One + Vector512.Exp(-g)) * Vector512.Load(up + i)).Store(gate + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= i1 - 8; i += 8)
            {
                var g = Vector256.Load(gate + i);
                (g / (Vector256<float>.One + Vector256.Exp(-g)) * Vector256.Load(up + i)).Store(gate + i);
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= i1 - 4; i += 4)
            {
                var g = Vector128.Load(gate + i);
                (g / (Vector128<float>.One + Vector128.Exp(-g)) * Vector128.Load(up + i)).Store(gate + i);
            }
        }
        for (; i < i1; i++)
        {
            float g = gate[i];
            gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
    }
}
