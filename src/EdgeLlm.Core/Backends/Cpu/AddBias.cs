using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu;

/// <summary>x[t · w + i] += bias[i] for each of the nTokens rows (Qwen 2's q/k/v biases). Exact per element.</summary>
internal sealed unsafe class AddBias : ParallelWork
{
    private float* _x;
    private float* _bias;
    private int _width;
    private int _nTokens;

    public void Run(WorkerPool pool, float* x, float* bias, int width, int nTokens)
    {
        _x = x;
        _bias = bias;
        _width = width;
        _nTokens = nTokens;
        pool.Run(this, (long)width * nTokens);
    }

    public override void Execute(int thread, int threadCount)
    {
        var (t0, t1) = WorkerPool.Range(_nTokens, thread, threadCount);
        int w = _width;
        for (long t = t0; t < t1; t++)
        {
            float* row = _x + t * w;
            int i = 0;
            if (Vector256.IsHardwareAccelerated)
                for (; i <= w - 8; i += 8) (Vector256.Load(row + i) + Vector256.Load(_bias + i)).Store(row + i);
            else if (Vector128.IsHardwareAccelerated)
                for (; i <= w - 4; i += 4) (Vector128.Load(row + i) + Vector128.Load(_bias + i)).Store(row + i);
            for (; i < w; i++) row[i] += _bias[i];
        }
    }
}
