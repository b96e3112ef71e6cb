using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Compute;
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
/// A product may have several members (<see cref="Clear"/>, <see cref="Add"/>, <see cref="Run(WorkerPool, float*, int)"/>):
/// weights of one row length that read the same input (a layer's Q/K/V, its gate/up), each writing its own output. Their
/// activations are quantized once (the members' kernels take one activation format; the panel is built when any member
/// reads it) and one dispatch runs them all: each thread takes its static share of every member in turn, then claims
/// chunks of all members' remainders from one counter, so the threads share the rows of all members by their cost, and
/// each row is computed by the same range driver over the same activation bytes as in a product of its own.
/// </summary>
internal sealed unsafe class MatMul : ParallelWork
{
    /// <summary>The most weights one product runs together (a layer's Q/K/V is three).</summary>
    public const int MaxMembers = 4;

    /// <summary>One weight of a product: its kernel row, its job (its own output) and its share of the rows.</summary>
    private struct Member
    {
        public CpuWeight W;
        public CpuKernelRow Row;
        public float* Dst;
        public RowJob Job;
        public bool UsePacked;
        public long StaticRows;
        public long ChunkRows;
        /// <summary>Rows per unit of the split: the repacked group (<see cref="Kernels.CpuKernelRow.PackRows"/>) when the weight has a repacked copy, so no group is cut between threads and computed twice; else 1.</summary>
        public long Unit;
        /// <summary>The member's claimable chunks are [ChunkStart, ChunkEnd) of the product's chunk counter.</summary>
        public long ChunkStart, ChunkEnd;
    }

    private readonly Member[] _members = new Member[MaxMembers];
    private int _count;
    private int _n;
    private int _nTokens;
    private float* _x;
    /// <summary>The activation quantizer every quantized member's kernel takes (null when no member is quantized).</summary>
    private delegate*<float*, byte*, int, void> _quantize;
    /// <summary>Where every member reads only the <see cref="Q8_0Panel"/>: the quantizer that writes it directly (else null).</summary>
    private delegate*<float*, byte*, int, void> _quantizePanel;
    private bool _quantizePhase;
    private bool _fusedQuantize;
    /// <summary>
    /// The gated feed-forward's activation as the product's input step (<see cref="SetGlu"/>): before a token's activations
    /// are quantized, the thread that quantizes it writes x[t] = act(x[t]) · up[t] (<see cref="Glu"/>'s per-element math),
    /// so the GLU needs no dispatch of its own. Null: the input is used as it is.
    /// </summary>
    private float* _gluUp;
    private GluKind _gluKind;

    /// <summary>
    /// The norm as the product's input step (<see cref="SetNorm"/>): before a token's activations are quantized, the thread
    /// that quantizes it adds delta[t] to the residual row (when <see cref="_normDelta"/> is set) and writes the row's norm
    /// into x[t] (<see cref="RmsNorm"/>'s per-row math). Null <see cref="_normW"/>: no norm step.
    /// </summary>
    private float* _normX, _normDelta, _normW;
    private float _normEps;

    /// <summary>Work that makes token t's input row before the input step and the quantize (<see cref="SetStep"/>), or null.</summary>
    private ITokenStep? _step;

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

    /// <summary>Where the serial activation quantize of a lone token is timed (<see cref="OpProfile"/>; null when off).</summary>
    internal OpProfile? Profile { get; init; }

    /// <summary>Fraction of the rows (eighths) split statically; the remainder is claimed in chunks.</summary>
    private const int StaticShare = 7;

    /// <summary>Bytes of weights a claimed chunk aims for (at least 4 rows, at most 16 chunks per thread).</summary>
    private const long ChunkBytes = 32 * 1024;

    /// <summary>Chunks of all members' remainders, claimed in order from <see cref="_next"/>.</summary>
    private long _chunks;
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

    /// <summary>Batches up to this many tokens quantize their activations inside the product's own dispatch (server decode steps); more take a dispatch of their own.</summary>
    internal const int InlineQuantizeTokens = 8;

    /// <summary>The kernel row of <paramref name="w"/> in this product's table, or throws for a type without kernels.</summary>
    public CpuKernelRow RowOf(CpuWeight w) =>
        KernelTable.For(_kernels, w.Type) ?? throw new NotSupportedException($"matmul with {GgmlTypes.Name(w.Type)} weights ({w.Name})");

    /// <summary>
    /// True when <paramref name="a"/> and <paramref name="b"/> can be members of one product: each either reads the
    /// input as floats, or both quantize it into the same activation format.
    /// </summary>
    public static bool ShareActivations(CpuKernelRow a, CpuKernelRow b) =>
        !a.Traits.IsQuantized || !b.Traits.IsQuantized || a.Traits.Activation == b.Traits.Activation;

    /// <summary>One weight, one output: <c>dst[t, r] = dot(W row r, x[t])</c> for t &lt; nTokens.</summary>
    public void Run(WorkerPool pool, CpuWeight w, float* x, float* dst, int nTokens, bool usePacked = true)
    {
        Clear();
        Add(w, dst, usePacked);
        Run(pool, x, nTokens);
    }

    /// <summary>Starts a product with no members.</summary>
    public void Clear() => _count = 0;

    /// <summary>
    /// Adds <paramref name="w"/> to the product, writing <c>dst[t, r]</c> (rows of w.Rows); all members have one row
    /// length, and their quantized kernels one activation format (<see cref="ShareActivations"/>).
    /// </summary>
    public void Add(CpuWeight w, float* dst, bool usePacked)
    {
        if (_count == MaxMembers) throw new ArgumentException($"{w.Name}: a product has at most {MaxMembers} weights");
        var row = RowOf(w);
        if (_count > 0)
        {
            ref var first = ref _members[0];
            if (first.W.Ne0 != w.Ne0) throw new ArgumentException($"{w.Name}: rows of {w.Ne0} in a product with {first.W.Name}'s rows of {first.W.Ne0}");
            for (int i = 0; i < _count; i++)
                if (!ShareActivations(_members[i].Row, row))
                    throw new ArgumentException($"{w.Name} ({GgmlTypes.Name(w.Type)}) and {_members[i].W.Name} ({GgmlTypes.Name(_members[i].W.Type)}) take different activation formats");
        }
        ref var m = ref _members[_count++];
        m.W = w;
        m.Row = row;
        m.Dst = dst;
        m.UsePacked = usePacked;
    }

    /// <summary>
    /// Makes the next <see cref="Run(WorkerPool, float*, int)"/> first turn its input x (the gate) into act(x) · up, token by token,
    /// on the threads that quantize the tokens (x keeps the result). Only for products whose members all quantize their
    /// input (<see cref="QuantizesInput"/>) and rows whose length is a multiple of 16 (each row then runs the vector widths
    /// <see cref="Glu"/> runs over the whole batch). Cleared by the run.
    /// </summary>
    public void SetGlu(float* up, GluKind kind)
    {
        _gluUp = up;
        _gluKind = kind;
    }

    /// <summary>
    /// Makes the next <see cref="Run(WorkerPool, float*, int)"/> first norm its input, token by token, on the threads that
    /// quantize the tokens: residual[t] += delta[t] (when <paramref name="delta"/> is not null), then x[t] = norm(residual[t])
    /// with <paramref name="weight"/>, as <see cref="RmsNorm.Run"/> / <see cref="RmsNorm.RunAdd"/> do per row (x may be delta;
    /// without a delta it may be the residual: the norm in place). Only for products whose members all quantize their input.
    /// Cleared by the run.
    /// </summary>
    public void SetNorm(float* residual, float* delta, float* weight, float eps)
    {
        _normX = residual;
        _normDelta = delta;
        _normW = weight;
        _normEps = eps;
    }

    /// <summary>
    /// Makes the next <see cref="Run(WorkerPool, float*, int)"/> first have <paramref name="step"/> write token t's input row
    /// (<see cref="ITokenStep.Prepare"/>, on the thread that then quantizes it: the caller for a lone token): a server step's
    /// attention of each sequence inside the Wo product's dispatch. Only for products whose members all quantize their
    /// input. Cleared by the run.
    /// </summary>
    public void SetStep(ITokenStep step) => _step = step;

    /// <summary>True when <paramref name="w"/>'s kernels read quantized activations (a product with a GLU input step needs that).</summary>
    public bool QuantizesInput(CpuWeight w) => RowOf(w).Traits.IsQuantized;

    /// <summary>Runs the members added since <see cref="Clear"/> over the <paramref name="nTokens"/> rows of <paramref name="x"/>.</summary>
    public void Run(WorkerPool pool, float* x, int nTokens)
    {
        try { RunProduct(pool, x, nTokens); }
        finally
        {
            _gluUp = null;
            _normW = null;
            _step = null;
        }
    }

    private void RunProduct(WorkerPool pool, float* x, int nTokens)
    {
        if (_count == 0) throw new InvalidOperationException("a matmul with no weights");
        int n = (int)_members[0].W.Ne0;
        _x = x;
        _n = n;
        _nTokens = nTokens;
        _quantize = null;
        _quantizePanel = null;
        _xqRowBytes = 0;
        bool panel = false, blocks = false;
        for (int i = 0; i < _count; i++)
        {
            ref var m = ref _members[i];
            var w = m.W;
            var row = m.Row;
            m.Job = new RowJob { W = w.Data, RowBytes = w.RowBytes, Rows = w.Rows, N = n, Dst = m.Dst, NTokens = nTokens, Packed = row.Packs && m.UsePacked ? w.Packed : null };
            if (row.Traits.IsQuantized)
            {
                _quantize = row.QuantizeActivations;
                _xqRowBytes = row.ActivationBytes(n);
                panel |= row.Panel || (row.PackedPanel && m.Job.Packed != null);
                blocks |= !row.Panel;
                if (row.Panel) _quantizePanel = row.QuantizePanel;
            }
        }
        _panelBytes = panel ? Q8_0Panel.BytesFor(n) : 0;
        // Every kernel reads the panel alone (x64's Q4_0): each token is quantized straight into it, without the blocks.
        if (blocks || !panel) _quantizePanel = null;
        if (_xqRowBytes * nTokens > _xqCapacity || _panelBytes * nTokens > _panelCapacity)
            throw new ArgumentException($"{_members[0].W.Name}: {nTokens} quantized activation rows exceed the prepared buffer");
        for (int i = 0; i < _count; i++) Bind(ref _members[i]);
        if (_gluUp != null && (_quantize == null || n % 16 != 0))
            throw new InvalidOperationException($"{_members[0].W.Name}: a GLU input step needs quantized activations and rows of a multiple of 16");
        if (_normW != null && (_quantize == null || _gluUp != null))
            throw new InvalidOperationException($"{_members[0].W.Name}: a norm input step needs quantized activations (and no GLU step)");
        if (_step != null && _quantize == null)
            throw new InvalidOperationException($"{_members[0].W.Name}: a token step needs quantized activations");
        if (_quantize != null)
        {
            if (nTokens == 1 || (pool.ThreadCount == 1 && nTokens <= InlineQuantizeTokens))
            {
                // A lone decode token on one thread (or a step on one thread) on the calling thread: a worker-pool dispatch (and its
                // barrier) per product costs more than quantizing it (each row is quantized the same way either way).
                long q0 = Profile is not null ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                if (_step != null)
                {
                    for (int t = 0; t < nTokens; t++) _step.Prepare(0, t);
                    if (Profile is not null)
                    {
                        long g = System.Diagnostics.Stopwatch.GetTimestamp();
                        Profile.Split(ProfiledOp.Attention, g - q0);
                        q0 = g;
                    }
                }
                if (_normW != null)
                {
                    for (int t = 0; t < nTokens; t++) NormToken(t);
                    if (Profile is not null)
                    {
                        long g = System.Diagnostics.Stopwatch.GetTimestamp();
                        Profile.Split(ProfiledOp.AddRmsNorm, g - q0);
                        q0 = g;
                    }
                }
                if (_gluUp != null)
                {
                    for (int t = 0; t < nTokens; t++) GluToken(t);
                    if (Profile is not null)
                    {
                        long g = System.Diagnostics.Stopwatch.GetTimestamp();
                        Profile.Split(ProfiledOp.Glu, g - q0);
                        q0 = g;
                    }
                }
                for (int t = 0; t < nTokens; t++) QuantizeToken(t);
                Profile?.Split(ProfiledOp.Quantize, System.Diagnostics.Stopwatch.GetTimestamp() - q0);
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
                try { pool.Run(this); }
                finally { _quantizePhase = false; }
            }
        }
        Split(pool.ThreadCount);
        try { pool.Run(this); }
        finally { _fusedQuantize = false; }
    }

    /// <summary>Points a member's job at the input its kernel reads: the floats, the quantized rows or their panel.</summary>
    private void Bind(ref Member m)
    {
        var row = m.Row;
        if (row.Traits.IsQuantized)
        {
            m.Job.X = row.Panel ? _panel : _xq;
            m.Job.XStride = row.Panel ? _panelBytes : _xqRowBytes;
            if (row.PackedPanel && m.Job.Packed != null)
            {
                m.Job.PackedX = _panel;
                m.Job.PackedXStride = _panelBytes;
            }
        }
        else
        {
            m.Job.X = (byte*)_x;
            m.Job.XStride = (long)_n * sizeof(float);
        }
    }

    /// <summary>Sets each member's static share and the chunk size of its dynamic remainder for this call, and numbers the chunks.</summary>
    private void Split(int threads)
    {
        long chunks = 0;
        for (int i = 0; i < _count; i++)
        {
            ref var m = ref _members[i];
            long rows = m.W.Rows;
            m.Unit = m.Job.Packed != null ? m.Row.PackRows : 1;
            if (threads == 1 || rows < 8L * threads)
            {
                m.StaticRows = rows;
                m.ChunkRows = rows;
            }
            else
            {
                m.StaticRows = rows * StaticShare / 8 / (threads * m.Unit) * (threads * m.Unit);
                long rest = rows - m.StaticRows;
                long rowBytes = Math.Max(1, m.W.RowBytes * (long)_nTokens);
                long count = Math.Clamp(rest * rowBytes / ChunkBytes, 2L * threads, 16L * threads);
                m.ChunkRows = (Math.Max(4, (rest + count - 1) / count) + m.Unit - 1) / m.Unit * m.Unit;
            }
            m.ChunkStart = chunks;
            if (m.ChunkRows > 0) chunks += (rows - m.StaticRows + m.ChunkRows - 1) / m.ChunkRows;
            m.ChunkEnd = chunks;
        }
        _chunks = chunks;
        _next.Value = 0;
    }

    /// <summary>x[t] = act(x[t]) · up[t] (the GLU input step).</summary>
    private void GluToken(long t)
    {
        float* g = _x + t * _n, u = _gluUp + t * _n;
        if (_gluKind == GluKind.GeluTanh) Glu.Apply<GeluTanhGate>(g, u, 0, _n);
        else Glu.Apply<SiluGate>(g, u, 0, _n);
    }

    /// <summary>residual[t] += delta[t] (with a delta), then x[t] = norm(residual[t]) (the norm input step).</summary>
    private void NormToken(long t)
    {
        float* r = _normX + t * _n;
        if (_normDelta != null) RmsNorm.AddRow(r, _normDelta + t * _n, _n);
        RmsNorm.Row(r, _normW, _x + t * _n, _n, _normEps);
    }

    /// <summary>The token step and input step (if any) and the quantize of token t, on the thread that owns it.</summary>
    private void PrepareToken(int thread, long t)
    {
        _step?.Prepare(thread, t);
        if (_normW != null) NormToken(t);
        else if (_gluUp != null) GluToken(t);
        QuantizeToken(t);
    }

    private void QuantizeToken(long t)
    {
        int n = _n;
        if (_quantizePanel != null)
        {
            _quantizePanel(_x + t * n, _panel + t * _panelBytes, n);
            return;
        }
        _quantize(_x + t * n, _xq + t * _xqRowBytes, n);
        if (_panelBytes != 0) Q8_0Panel.FromBlocks(_xq + t * _xqRowBytes, _panel + t * _panelBytes, n);
    }

    public override void Execute(int thread, int threadCount)
    {
        if (_quantizePhase)
        {
            var (t0, t1) = WorkerPool.Range(_nTokens, thread, threadCount);
            for (long t = t0; t < t1; t++) PrepareToken(thread, t);
            return;
        }
        if (_fusedQuantize)
        {
            var (t0, t1) = WorkerPool.Range(_nTokens, thread, threadCount);
            for (long t = t0; t < t1; t++) PrepareToken(thread, t);
            Interlocked.Decrement(ref _arrivals.Value);
            // Every thread runs every dispatch, so all of them arrive; the rows read every token's activations.
            for (int spins = 0; Volatile.Read(ref _arrivals.Value) != 0; spins++) WorkerPool.Spin(spins);
        }
        float* scratch = _scratch[thread];
        int count = _count;
        for (int i = 0; i < count; i++)
        {
            ref var m = ref _members[i];
            var (r0, r1) = WorkerPool.Range(m.StaticRows / m.Unit, thread, threadCount);
            long a = r0 * m.Unit, b = thread == threadCount - 1 ? m.StaticRows : r1 * m.Unit;
            if (a < b) m.Row.Rows(in m.Job, a, b, scratch);
        }
        long chunks = _chunks;
        int at = 0;
        while (Volatile.Read(ref _next.Value) < chunks)
        {
            long k = Interlocked.Increment(ref _next.Value) - 1;
            if (k >= chunks) break;
            while (k >= _members[at].ChunkEnd) at++; // claims only grow, so the member index only moves forward
            ref var m = ref _members[at];
            long start = m.StaticRows + (k - m.ChunkStart) * m.ChunkRows;
            m.Row.Rows(in m.Job, start, Math.Min(m.W.Rows, start + m.ChunkRows), scratch);
        }
    }
}

/// <summary>Work that writes token t's input row of a product on the thread that quantizes the token (<see cref="MatMul.SetStep"/>).</summary>
internal interface ITokenStep
{
    /// <summary>Writes token <paramref name="t"/>'s input row, on <paramref name="thread"/> (its scratch).</summary>
    void Prepare(int thread, long t);
}

/// <summary>A counter alone on its cache line (and the next), so claiming a chunk does not evict the matmul's other fields.</summary>
[System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Explicit, Size = 256)]
internal struct PaddedCounter
{
    [System.Runtime.InteropServices.FieldOffset(128)] public long Value;
}
