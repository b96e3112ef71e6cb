using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// dst[t, r] = dot(W row r, x[t]) for a batch of tokens. The weight type's <see cref="CpuKernelRow"/> (the
/// <see cref="KernelTable"/> of the SIMD rung chosen once per process) is looked up once per call. For the
/// block-quantized types the activations are first quantized once per call into the row's activation format
/// (Q8_0 blocks for Q4_0/Q8_0 weights, Q8_K for Q4_K/Q6_K, as llama.cpp does; repacked as a <see cref="Q8_0Panel"/>
/// where the row asks), split over the threads by token; then threads split the weight rows and each runs the row's
/// range driver (<see cref="RowDrivers"/>, instantiated for the type's kernel), which reads each of its rows once and
/// dots it with every token while the row is in cache, so a batch costs one pass over the weights. F32 and F16 rows
/// are dotted in place; BF16 rows are widened first (into the thread's scratch row).
/// Rows are shared out in two parts so the threads finish together without an atomic per row: the first
/// <see cref="StaticShare"/> of the rows split evenly (one contiguous range per thread, no coordination),
/// the rest in small chunks that threads claim from a shared counter once their own range is done, which
/// absorbs a late wake-up, a preempted core or an unfair share of memory bandwidth. A row is computed by
/// exactly one thread with the same kernel whatever the split, so results do not depend on it.
/// </summary>
internal sealed unsafe class MatMul : ParallelWork
{
    private CpuWeight _w = null!;
    private CpuKernelRow _row = null!;
    private RowJob _job;
    private float* _x;
    private bool _quantizePhase;
    private bool _fusedQuantize;
    /// <summary>Threads that have not yet quantized their tokens of a fused-quantize product.</summary>
    private PaddedCounter _arrivals;
    private long _xqRowBytes;
    private readonly float*[] _scratch;
    private readonly byte* _xq;
    private readonly long _xqCapacity;
    private readonly byte* _panel;
    private readonly long _panelCapacity;
    private long _panelBytes;
    private readonly CpuKernelRow?[] _kernels;

    /// <summary>Fraction of the rows (eighths) split statically; the remainder is claimed in chunks.</summary>
    private const int StaticShare = 7;

    /// <summary>Bytes of weights a claimed chunk aims for (at least 4 rows, at most 16 chunks per thread).</summary>
    private const long ChunkBytes = 32 * 1024;

    private long _staticRows;
    private long _chunkRows;
    /// <summary>Rows per unit of the split: the repacked group (8) when the weight has a repacked copy, so no group is cut between threads and computed twice; else 1.</summary>
    private long _unit;
    private PaddedCounter _next;

    /// <param name="scratch">one row buffer per thread, at least as long as the longest weight row.</param>
    /// <param name="xq">room for a batch of quantized activations (<paramref name="xqCapacity"/> bytes).</param>
    /// <param name="panel">room for a batch of <see cref="Q8_0Panel"/> activations (<paramref name="panelCapacity"/> bytes).</param>
    /// <param name="kernels">the kernel table to run (<see cref="KernelTable.Build"/>); null: the selected rung's.</param>
    public MatMul(float*[] scratch, byte* xq, long xqCapacity, byte* panel, long panelCapacity, CpuKernelRow?[]? kernels = null)
    {
        _kernels = kernels ?? KernelTable.Selected;
        _scratch = scratch;
        _xq = xq;
        _xqCapacity = xqCapacity;
        _panel = panel;
        _panelCapacity = panelCapacity;
    }

    /// <summary>Bytes of <see cref="Q8_0Panel"/> activations a batch of <paramref name="maxBatch"/> rows of up to <paramref name="maxRow"/> values needs.</summary>
    public static long PanelBytes(int maxBatch, long maxRow) => maxBatch * ((maxRow + 31) / 32 * Q8_0Panel.BytesPerBlock);

    /// <summary>Bytes of quantized activations a batch of <paramref name="maxBatch"/> rows of up to <paramref name="maxRow"/> values needs, in the largest activation format of any type.</summary>
    public static long ActivationBytes(int maxBatch, long maxRow)
    {
        long most = 0;
        foreach (var t in Quant.TypeTraits.All)
        {
            if (!t.IsQuantized) continue;
            var (bs, bb) = ActivationQuant.FormatGeometry(t.Activation);
            most = Math.Max(most, (maxRow + bs - 1) / bs * bb);
        }
        return maxBatch * most;
    }

    /// <summary>Batches up to this many tokens quantize their activations inside the product's dispatch (server decode steps); more take a dispatch of their own.</summary>
    internal const int InlineQuantizeTokens = 8;

    public void Run(WorkerPool pool, CpuWeight w, float* x, float* dst, int nTokens, bool usePacked = true)
    {
        _row = KernelTable.For(_kernels, w.Type) ?? throw new NotSupportedException($"matmul with {GgmlTypes.Name(w.Type)} weights ({w.Name})");
        _w = w;
        _x = x;
        int n = (int)w.Ne0;
        _job = new RowJob { W = w.Data, RowBytes = w.RowBytes, Rows = w.Rows, N = n, Dst = dst, NTokens = nTokens, Packed = _row.Packs && usePacked ? w.Packed : null };
        if (_row.Traits.IsQuantized)
        {
            _xqRowBytes = _row.ActivationBytes(n);
            bool packedPanel = _row.PackedPanel && _job.Packed != null;
            _panelBytes = _row.Panel || packedPanel ? Q8_0Panel.BytesFor(n) : 0;
            if (_xqRowBytes * nTokens > _xqCapacity || _panelBytes * nTokens > _panelCapacity)
                throw new ArgumentException($"{w.Name}: {nTokens} quantized activation rows exceed the prepared buffer");
            _job.X = _row.Panel ? _panel : _xq;
            _job.XStride = _row.Panel ? _panelBytes : _xqRowBytes;
            if (packedPanel)
            {
                _job.PackedX = _panel;
                _job.PackedXStride = _panelBytes;
            }
            if (nTokens == 1 || (pool.ThreadCount == 1 && nTokens <= InlineQuantizeTokens))
            {
                // A lone decode token (or a step on one thread) on the calling thread: a worker-pool dispatch (and its
                // barrier) per product costs more than quantizing it (each row is quantized the same way either way).
                for (int t = 0; t < nTokens; t++) QuantizeToken(t);
            }
            else if (nTokens <= InlineQuantizeTokens)
            {
                // A server step's few rows (one per slot): quantized inside the product's own dispatch, the
                // threads splitting them by token and meeting at a spin barrier before the rows (no second
                // dispatch, and the workers do not idle while the caller quantizes them all).
                _fusedQuantize = true;
                _arrivals.Value = pool.ThreadCount;
            }
            else
            {
                _quantizePhase = true;
                pool.Run(this);
                _quantizePhase = false;
            }
        }
        else
        {
            _job.X = (byte*)x;
            _job.XStride = (long)n * sizeof(float);
        }
        Split(w, pool.ThreadCount);
        try { pool.Run(this); }
        finally { _fusedQuantize = false; }
    }

    /// <summary>Sets the static share and the chunk size of the dynamic remainder for this call.</summary>
    private void Split(CpuWeight w, int threads)
    {
        long rows = w.Rows;
        _unit = _job.Packed != null ? 8 : 1;
        if (threads == 1 || rows < 8L * threads)
        {
            _staticRows = rows;
            _chunkRows = rows;
        }
        else
        {
            _staticRows = rows * StaticShare / 8 / (threads * _unit) * (threads * _unit);
            long rest = rows - _staticRows;
            long rowBytes = Math.Max(1, w.RowBytes * (long)_job.NTokens);
            long chunks = Math.Clamp(rest * rowBytes / ChunkBytes, 2L * threads, 16L * threads);
            _chunkRows = (Math.Max(4, (rest + chunks - 1) / chunks) + _unit - 1) / _unit * _unit;
        }
        _next.Value = _staticRows;
    }

    private void QuantizeToken(long t)
    {
        int n = _job.N;
        _row.QuantizeActivations(_x + t * n, _xq + t * _xqRowBytes, n);
        if (_panelBytes != 0) Q8_0Panel.FromBlocks(_xq + t * _xqRowBytes, _panel + t * _panelBytes, n);
    }

    public override void Execute(int thread, int threadCount)
    {
        if (_quantizePhase)
        {
            var (t0, t1) = WorkerPool.Range(_job.NTokens, thread, threadCount);
            for (long t = t0; t < t1; t++) QuantizeToken(t);
            return;
        }
        if (_fusedQuantize)
        {
            var (t0, t1) = WorkerPool.Range(_job.NTokens, thread, threadCount);
            for (long t = t0; t < t1; t++) QuantizeToken(t);
            Interlocked.Decrement(ref _arrivals.Value);
            // Every thread runs every dispatch, so all of them arrive; the rows read every token's activations.
            for (int spins = 0; Volatile.Read(ref _arrivals.Value) != 0; spins++) WorkerPool.Spin(spins);
        }
        var rowsOf = _row.Rows;
        float* scratch = _scratch[thread];
        var (r0, r1) = WorkerPool.Range(_staticRows / _unit, thread, threadCount);
        long a = r0 * _unit, b = thread == threadCount - 1 ? _staticRows : r1 * _unit;
        if (a < b) rowsOf(in _job, a, b, scratch);
        long rows = _w.Rows, chunk = _chunkRows;
        while (Volatile.Read(ref _next.Value) < rows)
        {
            long start = Interlocked.Add(ref _next.Value, chunk) - chunk;
            if (start >= rows) break;
            rowsOf(in _job, start, Math.Min(rows, start + chunk), scratch);
        }
    }
}

/// <summary>A counter alone on its cache line (and the next), so claiming a chunk does not evict the matmul's other fields.</summary>
[System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Explicit, Size = 256)]
internal struct PaddedCounter
{
    [System.Runtime.InteropServices.FieldOffset(128)] public long Value;
}
