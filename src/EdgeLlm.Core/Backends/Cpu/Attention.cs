using EdgeLlm.Backends.Cpu.Kernels;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// Causal grouped-query attention over the KV cache. One work item is one (token, head): token t sits at
/// position startPos + t and sees cache positions 0..startPos + t (so causality inside a prefill batch is
/// just the loop bound, because the batch's own K/V were stored first). Query head h reads KV head
/// h / group. scores = q.k / sqrt(headDim), softmax, out = sum p_j v_j. Each item is computed by one
/// thread with a fixed order, so results do not depend on the thread count.
/// </summary>
internal sealed unsafe class Attention : ParallelWork
{
    private readonly float*[] _scores; // per thread, context-size long

    private float* _q;
    private float* _k;
    private float* _v;
    private float* _dst;
    private int _startPos;
    private int _nTokens;
    private int _nHeads;
    private int _headDim;
    private int _group;
    private int _kvDim;

    public Attention(float*[] scores) => _scores = scores;

    public void Run(WorkerPool pool, float* q, float* k, float* v, float* dst, int startPos, int nTokens, int nHeads, int headDim, int kvDim)
    {
        _q = q;
        _k = k;
        _v = v;
        _dst = dst;
        _startPos = startPos;
        _nTokens = nTokens;
        _nHeads = nHeads;
        _headDim = headDim;
        _kvDim = kvDim;
        _group = nHeads / (kvDim / headDim);
        pool.Run(this);
    }

    public override void Execute(int thread, int threadCount)
    {
        var (i0, i1) = WorkerPool.Range((long)_nTokens * _nHeads, thread, threadCount);
        float* scores = _scores[thread];
        float scale = 1f / MathF.Sqrt(_headDim);
        int qDim = _nHeads * _headDim;
        for (long item = i0; item < i1; item++)
        {
            int t = (int)(item / _nHeads), h = (int)(item % _nHeads);
            int last = _startPos + t;
            long kvOff = (long)(h / _group) * _headDim;
            float* q = _q + (long)t * qDim + (long)h * _headDim;
            for (int j = 0; j <= last; j++) scores[j] = DotF32.Dot(q, _k + (long)j * _kvDim + kvOff, _headDim) * scale;
            Softmax.Row(scores, last + 1);
            float* o = _dst + (long)t * qDim + (long)h * _headDim;
            new Span<float>(o, _headDim).Clear();
            for (int j = 0; j <= last; j++) Axpy(o, scores[j], _v + (long)j * _kvDim + kvOff, _headDim);
        }
    }

    /// <summary>o += a * v (per element the same mul and add in every path, so width does not change results).</summary>
    private static void Axpy(float* o, float a, float* v, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(a);
            for (; i <= n - 8; i += 8) (Vector256.Load(o + i) + va * Vector256.Load(v + i)).Store(o + i);
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var va = Vector128.Create(a);
            for (; i <= n - 4; i += 4) (Vector128.Load(o + i) + va * Vector128.Load(v + i)).Store(o + i);
        }
        for (; i < n; i++) o[i] += a * v[i];
    }
}
