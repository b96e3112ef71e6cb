namespace EdgeLlm.Backends.Cpu;

/// <summary>gate[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x). Threads split the elements; each element's math is fixed.</summary>
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
        pool.Run(this);
    }

    public override void Execute(int thread, int threadCount)
    {
        var (i0, i1) = WorkerPool.Range(_count, thread, threadCount);
        for (long i = i0; i < i1; i++)
        {
            float g = _gate[i];
            _gate[i] = g / (1f + MathF.Exp(-g)) * _up[i];
        }
    }
}
