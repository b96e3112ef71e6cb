using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu;

/// <summary>x[i] += y[i] (the residual add). Element-wise and exact per element, so any split gives the same bits.</summary>
internal sealed unsafe class Add : ParallelWork
{
    private float* _x;
    private float* _y;
    private long _count;

    public void Run(WorkerPool pool, float* x, float* y, long count)
    {
        _x = x;
        _y = y;
        _count = count;
        pool.Run(this, count);
    }

    public override void Execute(int thread, int threadCount)
    {
        var (i0, i1) = WorkerPool.Range(_count, thread, threadCount);
        long i = i0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= i1 - 8; i += 8) (Vector256.Load(_x + i) + Vector256.Load(_y + i)).Store(_x + i);
        }
        for (; i < i1; i++) _x[i] += _y[i];
    }
}
