using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// dst[t, r] = dot(W row r, x[t]) for a batch of tokens. For the block-quantized types the activations are
/// first quantized once per call (Q8_0 blocks for Q4_0/Q8_0 weights, Q8_K for Q4_K/Q6_K, as llama.cpp does),
/// split over the threads by token; then threads split the weight rows, each reading each of its rows once
/// and dotting it with every token in integers while the row is in cache, so a batch costs one pass over the
/// weights. The weight type is switched on once per call; the kernels' SIMD rung was chosen once per process
/// (<see cref="KernelRung.Selected"/>). F32 and F16 rows are dotted in place; BF16 rows are widened first.
/// </summary>
internal sealed unsafe class MatMul : ParallelWork
{
    private CpuWeight _w = null!;
    private float* _x;
    private float* _dst;
    private int _nTokens;
    private bool _quantizePhase;
    private long _xqRowBytes;
    private readonly float*[] _scratch;
    private readonly byte* _xq;
    private readonly long _xqCapacity;

    /// <param name="scratch">one row buffer per thread, at least as long as the longest weight row.</param>
    /// <param name="xq">room for a batch of quantized activations (<paramref name="xqCapacity"/> bytes).</param>
    public MatMul(float*[] scratch, byte* xq, long xqCapacity)
    {
        _scratch = scratch;
        _xq = xq;
        _xqCapacity = xqCapacity;
    }

    /// <summary>Bytes of quantized activations a batch of <paramref name="maxBatch"/> rows of up to <paramref name="maxRow"/> values needs, in the larger of the two formats.</summary>
    public static long ActivationBytes(int maxBatch, long maxRow) =>
        maxBatch * Math.Max((maxRow + 31) / 32 * ActivationQuant.Q8_0BlockBytes, (maxRow + 255) / 256 * ActivationQuant.Q8_KBlockBytes);

    public void Run(WorkerPool pool, CpuWeight w, float* x, float* dst, int nTokens)
    {
        _w = w;
        _x = x;
        _dst = dst;
        _nTokens = nTokens;
        if (IsQuantized(w.Type))
        {
            _xqRowBytes = ActivationQuant.BytesFor(w.Type, (int)w.Ne0);
            if (_xqRowBytes * nTokens > _xqCapacity)
                throw new ArgumentException($"{w.Name}: {nTokens} quantized activation rows exceed the prepared buffer");
            if (nTokens == 1)
            {
                ActivationQuant.QuantizeFor(w.Type, x, _xq, (int)w.Ne0);
            }
            else
            {
                _quantizePhase = true;
                pool.Run(this);
                _quantizePhase = false;
            }
        }
        pool.Run(this);
    }

    private static bool IsQuantized(GgmlType t) => t is GgmlType.Q4_0 or GgmlType.Q8_0 or GgmlType.Q4_K or GgmlType.Q6_K;

    public override void Execute(int thread, int threadCount)
    {
        if (_quantizePhase)
        {
            var (t0, t1) = WorkerPool.Range(_nTokens, thread, threadCount);
            int n = (int)_w.Ne0;
            for (long t = t0; t < t1; t++) ActivationQuant.QuantizeFor(_w.Type, _x + t * n, _xq + t * _xqRowBytes, n);
            return;
        }
        var (r0, r1) = WorkerPool.Range(_w.Rows, thread, threadCount);
        switch (_w.Type)
        {
            case GgmlType.F32: RowsF32(r0, r1); break;
            case GgmlType.F16: RowsF16(r0, r1); break;
            case GgmlType.BF16: RowsBF16(r0, r1, _scratch[thread]); break;
            case GgmlType.Q4_0: RowsQ4_0(r0, r1); break;
            case GgmlType.Q8_0: RowsQ8_0(r0, r1); break;
            case GgmlType.Q4_K: RowsQ4_K(r0, r1); break;
            case GgmlType.Q6_K: RowsQ6_K(r0, r1); break;
            default: throw new NotSupportedException($"matmul with {GgmlTypes.Name(_w.Type)} weights ({_w.Name})");
        }
    }

    private void RowsF32(long r0, long r1)
    {
        int n = (int)_w.Ne0;
        long rows = _w.Rows;
        for (long r = r0; r < r1; r++)
        {
            float* row = (float*)_w.Row(r);
            for (int t = 0; t < _nTokens; t++) _dst[t * rows + r] = DotF32.Dot(row, _x + (long)t * n, n);
        }
    }

    private void RowsF16(long r0, long r1)
    {
        int n = (int)_w.Ne0;
        long rows = _w.Rows;
        for (long r = r0; r < r1; r++)
        {
            Half* row = (Half*)_w.Row(r);
            for (int t = 0; t < _nTokens; t++) _dst[t * rows + r] = DotF16.Dot(row, _x + (long)t * n, n);
        }
    }

    private void RowsBF16(long r0, long r1, float* scratch)
    {
        int n = (int)_w.Ne0;
        long rows = _w.Rows;
        for (long r = r0; r < r1; r++)
        {
            HalfConvert.BF16ToF32((ushort*)_w.Row(r), scratch, n);
            for (int t = 0; t < _nTokens; t++) _dst[t * rows + r] = DotF32.Dot(scratch, _x + (long)t * n, n);
        }
    }

    // One loop per quantized type so each calls its kernel directly (no dispatch per row).
    private void RowsQ4_0(long r0, long r1)
    {
        int n = (int)_w.Ne0;
        long rows = _w.Rows;
        for (long r = r0; r < r1; r++)
        {
            byte* row = _w.Row(r);
            for (int t = 0; t < _nTokens; t++) _dst[t * rows + r] = DotQ4_0.Dot(row, _xq + t * _xqRowBytes, n);
        }
    }

    private void RowsQ8_0(long r0, long r1)
    {
        int n = (int)_w.Ne0;
        long rows = _w.Rows;
        for (long r = r0; r < r1; r++)
        {
            byte* row = _w.Row(r);
            for (int t = 0; t < _nTokens; t++) _dst[t * rows + r] = DotQ8_0.Dot(row, _xq + t * _xqRowBytes, n);
        }
    }

    private void RowsQ4_K(long r0, long r1)
    {
        int n = (int)_w.Ne0;
        long rows = _w.Rows;
        for (long r = r0; r < r1; r++)
        {
            byte* row = _w.Row(r);
            for (int t = 0; t < _nTokens; t++) _dst[t * rows + r] = DotQ4_K.Dot(row, _xq + t * _xqRowBytes, n);
        }
    }

    private void RowsQ6_K(long r0, long r1)
    {
        int n = (int)_w.Ne0;
        long rows = _w.Rows;
        for (long r = r0; r < r1; r++)
        {
            byte* row = _w.Row(r);
            for (int t = 0; t < _nTokens; t++) _dst[t * rows + r] = DotQ6_K.Dot(row, _xq + t * _xqRowBytes, n);
        }
    }
}
