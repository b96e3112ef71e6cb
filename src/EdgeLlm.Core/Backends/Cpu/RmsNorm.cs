namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// RMS normalisation, one token row per work item: dst = x / sqrt(mean(x^2) + eps) * weight. The sum of
/// squares is accumulated in double, in index order (as ggml does with ggml_float), so it is exact enough
/// and identical on every thread count.
/// </summary>
internal sealed unsafe class RmsNorm : ParallelWork
{
    private float* _x;
    private float* _w;
    private float* _dst;
    private int _nTokens;
    private int _dim;
    private float _eps;

    public void Run(WorkerPool pool, float* x, float* weight, float* dst, int nTokens, int dim, float eps)
    {
        _x = x;
        _w = weight;
        _dst = dst;
        _nTokens = nTokens;
        _dim = dim;
        _eps = eps;
        pool.Run(this, (long)nTokens * dim);
    }

    public override void Execute(int thread, int threadCount)
    {
        var (t0, t1) = WorkerPool.Range(_nTokens, thread, threadCount);
        for (long t = t0; t < t1; t++) Row(_x + t * _dim, _w, _dst + t * _dim, _dim, _eps);
    }

    public static void Row(float* x, float* w, float* dst, int n, float eps)
    {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
        float scale = (float)(1.0 / Math.Sqrt(ss / n + eps));
        for (int i = 0; i < n; i++) dst[i] = x[i] * scale * w[i];
    }
}
