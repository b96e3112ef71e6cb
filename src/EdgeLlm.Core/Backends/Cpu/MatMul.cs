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
/// Rows are shared out in two parts so the threads finish together without an atomic per row: the first
/// <see cref="StaticShare"/> of the rows split evenly (one contiguous range per thread, no coordination),
/// the rest in small chunks that threads claim from a shared counter once their own range is done, which
/// absorbs a late wake-up, a preempted core or an unfair share of memory bandwidth. A row is computed by
/// exactly one thread with the same kernel whatever the split, so results do not depend on it.
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
    private readonly byte* _panel;
    private readonly long _panelCapacity;
    private bool _usePanel;
    private long _panelBytes;

    /// <summary>Rows dotted against each four-token group before moving on, so the row tile stays in L1/L2 (bytes).</summary>
    private const int RowTileBytes = 32 * 1024;

    /// <summary>Fraction of the rows (eighths) split statically; the remainder is claimed in chunks.</summary>
    private const int StaticShare = 7;

    /// <summary>Bytes of weights a claimed chunk aims for (at least 4 rows, at most 16 chunks per thread).</summary>
    private const long ChunkBytes = 32 * 1024;

    private long _staticRows;
    private long _chunkRows;
    private PaddedCounter _next;

    /// <param name="scratch">one row buffer per thread, at least as long as the longest weight row.</param>
    /// <param name="xq">room for a batch of quantized activations (<paramref name="xqCapacity"/> bytes).</param>
    /// <param name="panel">room for a batch of <see cref="Q8_0Panel"/> activations (<paramref name="panelCapacity"/> bytes).</param>
    public MatMul(float*[] scratch, byte* xq, long xqCapacity, byte* panel, long panelCapacity)
    {
        _scratch = scratch;
        _xq = xq;
        _xqCapacity = xqCapacity;
        _panel = panel;
        _panelCapacity = panelCapacity;
    }

    /// <summary>Bytes of <see cref="Q8_0Panel"/> activations a batch of <paramref name="maxBatch"/> rows of up to <paramref name="maxRow"/> values needs.</summary>
    public static long PanelBytes(int maxBatch, long maxRow) => maxBatch * ((maxRow + 31) / 32 * Q8_0Panel.BytesPerBlock);

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
            _usePanel = w.Type == GgmlType.Q4_0 && DotQ4_0.PanelAccelerated;
            _panelBytes = Q8_0Panel.BytesFor((int)w.Ne0);
            if (_xqRowBytes * nTokens > _xqCapacity || (_usePanel && _panelBytes * nTokens > _panelCapacity))
                throw new ArgumentException($"{w.Name}: {nTokens} quantized activation rows exceed the prepared buffer");
            if (nTokens == 1)
            {
                QuantizeToken(0);
            }
            else
            {
                _quantizePhase = true;
                pool.Run(this);
                _quantizePhase = false;
            }
        }
        Split(w, pool.ThreadCount);
        pool.Run(this);
    }

    /// <summary>Sets the static share and the chunk size of the dynamic remainder for this call.</summary>
    private void Split(CpuWeight w, int threads)
    {
        long rows = w.Rows;
        if (threads == 1 || rows < 8L * threads)
        {
            _staticRows = rows;
            _chunkRows = rows;
        }
        else
        {
            _staticRows = rows * StaticShare / 8 / threads * threads;
            long rest = rows - _staticRows;
            long rowBytes = Math.Max(1, w.RowBytes * (long)_nTokens);
            long chunks = Math.Clamp(rest * rowBytes / ChunkBytes, 2L * threads, 16L * threads);
            _chunkRows = Math.Max(4, (rest + chunks - 1) / chunks);
        }
        _next.Value = _staticRows;
    }

    private void QuantizeToken(long t)
    {
        int n = (int)_w.Ne0;
        ActivationQuant.QuantizeFor(_w.Type, _x + t * n, _xq + t * _xqRowBytes, n);
        if (_usePanel) Q8_0Panel.FromBlocks(_xq + t * _xqRowBytes, _panel + t * _panelBytes, n);
    }

    private static bool IsQuantized(GgmlType t) => t is GgmlType.Q4_0 or GgmlType.Q8_0 or GgmlType.Q4_K or GgmlType.Q6_K;

    public override void Execute(int thread, int threadCount)
    {
        if (_quantizePhase)
        {
            var (t0, t1) = WorkerPool.Range(_nTokens, thread, threadCount);
            int n = (int)_w.Ne0;
            for (long t = t0; t < t1; t++) QuantizeToken(t);
            return;
        }
        var (r0, r1) = WorkerPool.Range(_staticRows, thread, threadCount);
        Rows(r0, r1, thread);
        long rows = _w.Rows, chunk = _chunkRows;
        while (Volatile.Read(ref _next.Value) < rows)
        {
            long start = Interlocked.Add(ref _next.Value, chunk) - chunk;
            if (start >= rows) break;
            Rows(start, Math.Min(rows, start + chunk), thread);
        }
    }

    private void Rows(long r0, long r1, int thread)
    {
        if (r0 >= r1) return;
        switch (_w.Type)
        {
            case GgmlType.F32: RowsF32(r0, r1); break;
            case GgmlType.F16: RowsF16(r0, r1); break;
            case GgmlType.BF16: RowsBF16(r0, r1, _scratch[thread]); break;
            case GgmlType.Q4_0 when _usePanel: RowsQ4_0Panel(r0, r1); break;
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

    /// <summary>
    /// Q4_0 against panel activations. One token: each row once, in order. A batch: <see cref="Tiles{TK}"/> with
    /// <see cref="DotQ4_0.DotPanel4"/>.
    /// </summary>
    private void RowsQ4_0Panel(long r0, long r1)
    {
        if (_nTokens == 1)
        {
            int n = (int)_w.Ne0;
            for (long r = r0; r < r1; r++) _dst[r] = DotQ4_0.DotPanel(_w.Row(r), _panel, n);
            return;
        }
        Tiles<Q4_0PanelRows>(r0, r1, _panel, _panelBytes);
    }

    /// <summary>
    /// A batch in tiles of rows small enough to stay in cache, each dotted with four tokens at a time by the type's
    /// four-token kernel (which unpacks a weight block once for all four), the last nTokens mod 4 tokens one by one.
    /// <paramref name="x"/> holds the tokens' activations <paramref name="xStride"/> bytes apart.
    /// </summary>
    private void Tiles<TK>(long r0, long r1, byte* x, long xStride) where TK : struct, IFourTokenRows
    {
        int n = (int)_w.Ne0;
        long rows = _w.Rows;
        long tile = Math.Max(4, RowTileBytes / _w.RowBytes);
        int full = _nTokens & ~3;
        for (long ra = r0; ra < r1; ra += tile)
        {
            long rb = Math.Min(r1, ra + tile);
            for (int t = 0; t < full; t += 4)
            {
                byte* xt = x + t * xStride;
                float* d = _dst + t * rows;
                for (long r = ra; r < rb; r++) TK.Dot4(_w.Row(r), xt, xStride, n, d + r, rows);
            }
            for (int t = full; t < _nTokens; t++)
            {
                byte* xt = x + t * xStride;
                for (long r = ra; r < rb; r++) _dst[t * rows + r] = TK.Dot(_w.Row(r), xt, n);
            }
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

    /// <summary>Q4_K rows; a batch goes through <see cref="Tiles{TK}"/> where the rung has <see cref="DotQ4_K.Dot4"/>.</summary>
    private void RowsQ4_K(long r0, long r1)
    {
        if (_nTokens >= 4 && DotQ4_K.Dot4Accelerated)
        {
            Tiles<Q4_KRows>(r0, r1, _xq, _xqRowBytes);
            return;
        }
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

/// <summary>A counter alone on its cache line (and the next), so claiming a chunk does not evict the matmul's other fields.</summary>
[System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Explicit, Size = 256)]
internal struct PaddedCounter
{
    [System.Runtime.InteropServices.FieldOffset(128)] public long Value;
}

/// <summary>A weight type's one-token and four-token row kernels, for <see cref="MatMul"/>'s tiled batch loop (static: no dispatch per row).</summary>
internal unsafe interface IFourTokenRows
{
    static abstract float Dot(byte* row, byte* x, int n);
    static abstract void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride);
}

/// <summary>Q4_0 against <see cref="Q8_0Panel"/> activations.</summary>
internal unsafe struct Q4_0PanelRows : IFourTokenRows
{
    public static float Dot(byte* row, byte* x, int n) => DotQ4_0.DotPanel(row, x, n);
    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) => DotQ4_0.DotPanel4(row, x, xStride, n, dst, dstStride);
}

/// <summary>Q4_K against Q8_K activations.</summary>
internal unsafe struct Q4_KRows : IFourTokenRows
{
    public static float Dot(byte* row, byte* x, int n) => DotQ4_K.Dot(row, x, n);
    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) => DotQ4_K.Dot4(row, x, xStride, n, dst, dstStride);
}
