using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// RMS normalisation, one token row per work item: dst = x / sqrt(mean(x^2) + eps) * weight. The squares are exact in
/// double and summed in double over eight interleaved lanes (element i into lane i mod 8, the lanes added pairwise at
/// the end), a fixed order that does not depend on the thread count; the scaling is (x * scale) * w per element, in
/// float vectors (the same two roundings as the scalar form). With a delta (<see cref="RunAdd"/>), each row first takes the
/// residual add x += delta (<see cref="Add"/>'s per-element sum) in the same pass, so the add and the norm that reads it are
/// one dispatch (or one serial pass) instead of two, with the bits of the two ops.
/// </summary>
internal sealed unsafe class RmsNorm : ParallelWork
{
    private float* _x;
    private float* _delta;
    private float* _w;
    private float* _dst;
    private int _nTokens;
    private int _dim;
    private float _eps;

    public void Run(WorkerPool pool, float* x, float* weight, float* dst, int nTokens, int dim, float eps)
    {
        _x = x;
        _delta = null;
        _w = weight;
        _dst = dst;
        _nTokens = nTokens;
        _dim = dim;
        _eps = eps;
        pool.Run(this, (long)nTokens * dim);
    }

    /// <summary>x[t] += delta[t], then dst[t] = norm(x[t]), row by row (dst may be delta: a row's delta is read before its dst is written).</summary>
    public void RunAdd(WorkerPool pool, float* x, float* delta, float* weight, float* dst, int nTokens, int dim, float eps)
    {
        _x = x;
        _delta = delta;
        _w = weight;
        _dst = dst;
        _nTokens = nTokens;
        _dim = dim;
        _eps = eps;
        try { pool.Run(this, (long)nTokens * dim); }
        finally { _delta = null; }
    }

    public override void Execute(int thread, int threadCount)
    {
        var (t0, t1) = WorkerPool.Range(_nTokens, thread, threadCount);
        for (long t = t0; t < t1; t++)
        {
            float* x = _x + t * _dim;
            if (_delta != null) AddRow(x, _delta + t * _dim, _dim);
            Row(x, _w, _dst + t * _dim, _dim, _eps);
        }
    }

    /// <summary>x[i] += y[i] for i &lt; n (each sum rounded once, as <see cref="Add"/> does).</summary>
    public static void AddRow(float* x, float* y, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 8; i += 8) (Vector256.Load(x + i) + Vector256.Load(y + i)).Store(x + i);
        }
        for (; i < n; i++) x[i] += y[i];
    }

    public static void Row(float* x, float* w, float* dst, int n, float eps)
    {
        float scale = Scale(x, n, eps);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vs = Vector256.Create(scale);
            for (; i <= n - 8; i += 8) (Vector256.Load(x + i) * vs * Vector256.Load(w + i)).Store(dst + i);
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var vs = Vector128.Create(scale);
            for (; i <= n - 4; i += 4) (Vector128.Load(x + i) * vs * Vector128.Load(w + i)).Store(dst + i);
        }
        for (; i < n; i++) dst[i] = x[i] * scale * w[i];
    }

    /// <summary>1 / sqrt(Σ x² / n + eps) rounded to float: the sum as <see cref="SumSquares"/>.</summary>
    public static float Scale(float* x, int n, float eps) => (float)(1.0 / Math.Sqrt(SumSquares(x, n) / n + eps));

    /// <summary>
    /// Σ x[i]² in double: element i goes to lane i mod 8 (each square exact, each lane summed in index order), the tail
    /// past the last whole group of 8 into its lane too, then ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
    /// </summary>
    public static double SumSquares(float* x, int n)
    {
        // Lanes 0-1, 2-3, 4-5, 6-7 in four 2-double vectors (independent add chains).
        var a0 = Vector128<double>.Zero;
        var a1 = Vector128<double>.Zero;
        var a2 = Vector128<double>.Zero;
        var a3 = Vector128<double>.Zero;
        int i = 0;
        for (; i <= n - 8; i += 8)
        {
            var lo = Vector128.Load(x + i);
            var hi = Vector128.Load(x + i + 4);
            var d0 = Vector128.WidenLower(lo);
            var d1 = Vector128.WidenUpper(lo);
            var d2 = Vector128.WidenLower(hi);
            var d3 = Vector128.WidenUpper(hi);
            a0 += d0 * d0;
            a1 += d1 * d1;
            a2 += d2 * d2;
            a3 += d3 * d3;
        }
        Span<double> lane = stackalloc double[8];
        lane[0] = a0[0]; lane[1] = a0[1]; lane[2] = a1[0]; lane[3] = a1[1];
        lane[4] = a2[0]; lane[5] = a2[1]; lane[6] = a3[0]; lane[7] = a3[1];
        for (int j = 0; i < n; i++, j++) lane[j] += (double)x[i] * x[i];
        return ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
    }
}
