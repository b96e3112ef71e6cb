using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu;

/// <summary>x[i] *= factor (Gemma's embedding scale). Exact per element, so any split gives the same bits.</summary>
internal sealed unsafe class Scale : ParallelWork
{
    private float* _x;
    private long _count;
    private float _factor;

    public void Run(WorkerPool pool, float* x, long count, float factor)
    {
        _x = x;
        _count = count;
        _factor = factor;
        pool.Run(this, count);
    }

    public override void Execute(int thread, int threadCount)
    {
        var (i0, i1) = WorkerPool.Range(_count, thread, threadCount);
        long i = i0;
        float f = _factor;
        if (Vector256.IsHardwareAccelerated)
        {
            var vf = Vector256.Create(f);
            for (; i <= i1 - 8; i += 8) (Vector256.Load(_x + i) * vf).Store(_x + i);
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var vf = Vector128.Create(f);
            for (; i <= i1 - 4; i += 4) (Vector128.Load(_x + i) * vf).Store(_x + i);
        }
        for (; i < i1; i++) _x[i] *= f;
    }
}
