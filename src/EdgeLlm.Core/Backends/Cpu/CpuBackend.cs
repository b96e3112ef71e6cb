using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// The CPU implementation of <see cref="IBackend"/>: native float32 buffers, weights read in place from
/// the memory map, and each operation split over a fixed <see cref="WorkerPool"/> by output rows. Every
/// output element is computed by exactly one thread in a fixed order, so results are bit-identical for
/// any thread count. Scratch memory is allocated once in <see cref="Prepare"/>; the per-token path
/// allocates nothing.
/// </summary>
public sealed unsafe class CpuBackend : IBackend, ISequenceAttention
{
    private readonly WorkerPool _pool;
    private readonly List<CpuBuffer> _buffers = new();
    private readonly List<nint> _scratch = new();
    private MatMul? _matMul;
    private Attention? _attention;
    private Rope? _rope;
    private readonly RmsNorm _rmsNorm = new();
    private readonly Glu _glu = new();
    private readonly Add _add = new();
    private readonly AddBias _addBias = new();
    private readonly Scale _scale = new();
    private readonly Softcap _softcap = new();
    private BackendLimits _limits;
    private bool _disposed;

    /// <param name="threads">worker threads including the caller; 0 = one per logical processor.</param>
    /// <param name="threads">worker threads including the caller; 0 = one per logical processor.</param>
    /// <param name="batchInvariant">one-token matmuls of repacked weights run the packed GEMM too, so a token's result does
    /// not depend on the batch it is in (<see cref="BackendOptions.BatchInvariant"/>).</param>
    public CpuBackend(int threads = 0, bool batchInvariant = false) : this(threads, batchInvariant, Kernels.KernelTable.Selected)
    {
    }

    /// <summary>
    /// A backend whose matmuls run the kernels of <paramref name="rung"/> with <paramref name="flags"/> instead of the
    /// selected ones (tests: a whole model on each kernel variant the CPU has, in one process).
    /// </summary>
    internal CpuBackend(int threads, bool batchInvariant, Kernels.Rung rung, Kernels.KernelFlags flags)
        : this(threads, batchInvariant, KernelsOf(rung, flags))
    {
    }

    private CpuBackend(int threads, bool batchInvariant, Kernels.CpuKernelRow?[] kernels)
    {
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), $"thread count {threads} is negative");
        _pool = new WorkerPool(threads == 0 ? Environment.ProcessorCount : threads);
        _batchInvariant = batchInvariant;
        _kernels = kernels;
        if (OpProfile.Enabled)
        {
            _prof = new OpProfile(_pool.ThreadCount);
            _pool.Profile = _prof;
        }
    }

    /// <summary>Per-op times (<c>EDGELLM_OP_PROFILE=1</c>), printed to stderr at <see cref="Dispose"/>; null otherwise.</summary>
    private readonly OpProfile? _prof;

    /// <summary>The profile row of a product of <paramref name="w"/> (by its GGUF name; only called when profiling).</summary>
    private static ProfiledOp MatKind(CpuWeight w)
    {
        string n = w.Name;
        if (n.Contains("attn_q", StringComparison.Ordinal)) return ProfiledOp.MatQkv;
        if (n.Contains("attn_output", StringComparison.Ordinal)) return ProfiledOp.MatWo;
        if (n.Contains("ffn_gate", StringComparison.Ordinal) || n.Contains("ffn_up", StringComparison.Ordinal)) return ProfiledOp.MatGateUp;
        if (n.Contains("ffn_down", StringComparison.Ordinal)) return ProfiledOp.MatDown;
        if (n is "output.weight" or "token_embd.weight") return ProfiledOp.MatOutput;
        return ProfiledOp.MatOther;
    }

    private static Kernels.CpuKernelRow?[] KernelsOf(Kernels.Rung rung, Kernels.KernelFlags flags)
    {
        if (!Kernels.KernelRung.IsSupported(rung)) Kernels.KernelRung.ThrowUnsupported(nameof(CpuBackend), rung);
        return Kernels.KernelTable.Build(rung, flags);
    }

    private readonly bool _batchInvariant;
    /// <summary>The kernel table the matmuls run (<see cref="Kernels.KernelTable.Selected"/> unless a test asked for a variant).</summary>
    private readonly Kernels.CpuKernelRow?[] _kernels;

    public int ThreadCount => _pool.ThreadCount;

    /// <summary>Worker-pool dispatches so far (each a publish and a barrier; tests count what a product costs).</summary>
    internal long Dispatches => _pool.Dispatches;

    public string Name => $"cpu, {ThreadCount} thread{(ThreadCount == 1 ? "" : "s")}{(_pool.PinnedWorkers > 0 ? $" ({_pool.PinnedWorkers} pinned)" : "")}, {SimdName}, int8 kernels: {Kernels.KernelRung.Selected}";

    /// <summary>The widest vector the kernels use on this machine.</summary>
    public static string SimdName =>
        Vector512.IsHardwareAccelerated ? "512-bit SIMD" :
        Vector256.IsHardwareAccelerated ? "256-bit SIMD" :
        Vector128.IsHardwareAccelerated ? "128-bit SIMD" : "scalar";

    public void Prepare(BackendLimits limits)
    {
        if (limits.MaxBatch < 1 || limits.MaxRowLength < 1 || limits.ContextSize < 1 || limits.HeadDim < 2 || limits.RopeDims < 2)
            throw new ArgumentOutOfRangeException(nameof(limits), $"invalid backend limits {limits}");
        FreeScratch();
        _limits = limits;
        int threads = ThreadCount;
        var rows = new float*[threads];
        var attention = new float*[threads];
        for (int i = 0; i < threads; i++)
        {
            rows[i] = AllocScratch(limits.MaxRowLength);
            attention[i] = AllocScratch(Cpu.Attention.ScratchFloats(limits.ContextSize, limits.HeadDim));
        }
        int ropeCapacity = limits.MaxBatch * (limits.RopeDims / 2);
        long xqBytes = Cpu.MatMul.ActivationBytes(limits.MaxBatch, limits.MaxRowLength);
        long panelBytes = Cpu.MatMul.PanelBytes(limits.MaxBatch, limits.MaxRowLength);
        _matMul = new MatMul(rows, (byte*)AllocScratch((xqBytes + 3) / 4), xqBytes, (byte*)AllocScratch((panelBytes + 3) / 4), panelBytes, _kernels) { Profile = _prof };
        _attention = new Attention(attention, limits.ContextSize, limits.HeadDim);
        _rope = new Rope([AllocScratch(ropeCapacity), AllocScratch(ropeCapacity)], [AllocScratch(ropeCapacity), AllocScratch(ropeCapacity)], ropeCapacity);
    }

    public BackendBuffer Allocate(long length)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length));
        var b = new CpuBuffer(length);
        _buffers.Add(b);
        return b;
    }

    /// <summary>A cache buffer of length values stored as <paramref name="type"/> (f32, f16 or q8_0 rows).</summary>
    public BackendBuffer AllocateCache(long length, KvCacheType type)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length));
        long bytes = type switch
        {
            KvCacheType.F32 => 4 * length,
            KvCacheType.F16 => 2 * length,
            KvCacheType.Q8_0 => length / KvCacheTypes.Q8Block * KvCacheTypes.Q8BlockBytes,
            _ => throw new EdgeLlmException($"kv cache type {(int)type} is not one of f32, f16, q8_0"),
        };
        return Allocate((bytes + 3) / 4);
    }

    public BackendWeight LoadWeight(TensorView tensor)
    {
        _mappedBytes += tensor.ByteLength;
        return new CpuWeight(tensor);
    }

    private long _mappedBytes, _packedBytes;
    private readonly PackedArena _packed = new();
    private readonly RepackWork _repack = new();

    /// <summary>
    /// At a weight's first matmul, a repacked copy for the GEMM where its kernel row takes one (Q4_0 on AVX-512, AVX2 and NEON;
    /// Q8_0 on AVX-512 with AVX-VNNI, on AVX2 and on NEON; Q4_K on AVX-512 and AVX2; Q5_K and Q6_K on AVX-512 with GFNI; every batch size then runs the packed kernels, so a row is computed the same way
    /// whether its token decodes alone or beside other sequences' tokens): only while the weights loaded so far (the mapped model) take at most half the RAM and all copies
    /// together at most a quarter of it, and not with <c>EDGELLM_KERNEL_REPACK=0</c>.
    /// </summary>
    private void MaybePack(CpuWeight w)
    {
        w.PackDecided = true;
        if (!Kernels.KernelRung.UseRepack || Kernels.KernelTable.For(_kernels, w.Type) is not { Packs: true } row) return;
        long need = row.PackedBytes(w.Rows, checked((int)w.Ne0));
        if (need == 0) return;
        long ram = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (_mappedBytes > ram / 2 || _packedBytes + need > ram / 4) return;
        byte* p = _packed.Allocate(need);
        _packedBytes += need;
        _repack.Run(_pool, row, w, p);
        w.Packed = p;
    }

    public void GetRows(BackendWeight table, ReadOnlySpan<int> ids, BackendBuffer dst)
    {
        var w = W(table);
        Need(dst, (long)ids.Length * w.Ne0, "get_rows dst");
        foreach (int id in ids)
            if ((uint)id >= (ulong)w.Rows) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside {w.Name} (0..{w.Rows - 1})");
        long t = _prof?.Begin(ProfiledOp.GetRows) ?? 0;
        Cpu.GetRows.Run(w, ids, P(dst));
        _prof?.End(ProfiledOp.GetRows, t);
    }

    public void RmsNorm(BackendBuffer x, BackendWeight weight, BackendBuffer dst, int nTokens, int dim, float eps)
    {
        var w = W(weight);
        if (w.Ne0 != dim || w.Type != GgmlType.F32) throw new ArgumentException($"rms_norm weight {w.Name} is not F32 [{dim}]");
        Need(x, (long)nTokens * dim, "rms_norm x");
        Need(dst, (long)nTokens * dim, "rms_norm dst");
        long t = _prof?.Begin(ProfiledOp.RmsNorm) ?? 0;
        _rmsNorm.Run(_pool, P(x), (float*)w.Data, P(dst), nTokens, dim, eps);
        _prof?.End(ProfiledOp.RmsNorm, t);
    }

    public void AddRmsNorm(BackendBuffer x, BackendBuffer delta, BackendWeight weight, BackendBuffer dst, int nTokens, int dim, float eps)
    {
        var w = W(weight);
        if (w.Ne0 != dim || w.Type != GgmlType.F32) throw new ArgumentException($"rms_norm weight {w.Name} is not F32 [{dim}]");
        Need(x, (long)nTokens * dim, "add_rms_norm x");
        Need(delta, (long)nTokens * dim, "add_rms_norm delta");
        Need(dst, (long)nTokens * dim, "add_rms_norm dst");
        if (ReferenceEquals(x, dst)) throw new ArgumentException("add_rms_norm: dst may not be x (the residual stream keeps the sum)");
        long t = _prof?.Begin(ProfiledOp.AddRmsNorm) ?? 0;
        _rmsNorm.RunAdd(_pool, P(x), P(delta), (float*)w.Data, P(dst), nTokens, dim, eps);
        _prof?.End(ProfiledOp.AddRmsNorm, t);
    }

    public void MatMul(BackendWeight weight, BackendBuffer x, BackendBuffer dst, int nTokens)
    {
        var w = W(weight);
        bool packed = PrepareMatMul(w, x, dst, nTokens);
        var kind = _prof is not null ? MatKind(w) : default;
        long t = _prof?.Begin(kind) ?? 0;
        _matMul!.Run(_pool, w, P(x), P(dst), nTokens, packed);
        _prof?.End(kind, t);
    }

    /// <summary>
    /// The GLU and the down product in one dispatch where the weight's kernels quantize their input (the activation applied
    /// to each token by the thread that quantizes it: the caller for a lone token); else the two ops.
    /// </summary>
    public void GluMatMul(BackendWeight weight, BackendBuffer gate, BackendBuffer up, GluKind kind, BackendBuffer dst, int nTokens)
    {
        var w = W(weight);
        Ready();
        if (kind is not (GluKind.Silu or GluKind.GeluTanh)) throw new ArgumentOutOfRangeException(nameof(kind), $"unknown gate activation {kind}");
        if (!FuseGlu || w.Ne0 % 16 != 0 || !_matMul!.QuantizesInput(w))
        {
            Glu(gate, up, nTokens * w.Ne0, kind);
            MatMul(weight, gate, dst, nTokens);
            return;
        }
        Need(up, nTokens * w.Ne0, "glu up");
        bool packed = PrepareMatMul(w, gate, dst, nTokens);
        var prof = _prof is not null ? MatKind(w) : default;
        long t = _prof?.Begin(prof) ?? 0;
        _matMul.Clear();
        _matMul.Add(w, P(dst), packed);
        _matMul.SetGlu(P(up), kind);
        _matMul.Run(_pool, P(gate), nTokens);
        _prof?.End(prof, t);
    }

    /// <summary>False runs <see cref="GluMatMul"/> as the two ops (tests: the fused op against the ops it replaces).</summary>
    internal bool FuseGlu { get; init; } = true;

    /// <summary>Checks one product's buffers and returns whether it runs the packed GEMM (repacking the weight at its first such product).</summary>
    private bool PrepareMatMul(CpuWeight w, BackendBuffer x, BackendBuffer dst, int nTokens)
    {
        Ready();
        if (w.Ne0 > _limits.MaxRowLength)
            throw new ArgumentException($"{w.Name} rows of {w.Ne0} exceed the prepared scratch row of {_limits.MaxRowLength}");
        Need(x, nTokens * w.Ne0, "matmul x");
        Need(dst, nTokens * w.Rows, "matmul dst");
        // The packed GEMM for batches of four tokens or more; for fewer too when batch invariance is asked for (its
        // one-token kernel is slower than the one-row loops over the stored rows, which a lone decode uses otherwise),
        // or where the row says its one-token packed kernel is the faster one (Q4_0 on NEON, AVX2 and AVX-512, Q8_0 on NEON and AVX2).
        var row = Kernels.KernelTable.For(_kernels, w.Type);
        bool packed = row is { PackedDecodeOnly: true }
            // Q4_K's copy (x64: AVX-512 and AVX2), Q5_K's and Q6_K's (AVX-512 with GFNI): every batch, under batch invariance too
            // (their one-, two- and four-token loops give a token its one-token bits).
            ? row.PackedDecodeTokens == int.MaxValue || (nTokens <= row.PackedDecodeTokens && !_batchInvariant)
            : nTokens >= 4 || _batchInvariant || row is { PackedOneToken: true };
        if (packed && !w.PackDecided) MaybePack(w);
        return packed;
    }

    /// <summary>
    /// False runs <see cref="MatMulGroup"/> as separate products (tests: the grouped product against the products it replaces).
    /// </summary>
    internal bool GroupMatMuls { get; init; } = true;

    /// <summary>
    /// The weights as one product (<see cref="Cpu.MatMul.Add"/>): x quantized once, one dispatch over the rows of all of
    /// them. Weights whose kernels take different activation formats, or rows of different lengths, run one after another.
    /// </summary>
    public void MatMulGroup(ReadOnlySpan<BackendWeight> weights, BackendBuffer x, ReadOnlySpan<BackendBuffer> dsts, int nTokens)
    {
        if (weights.Length != dsts.Length) throw new ArgumentException($"{weights.Length} weights and {dsts.Length} outputs", nameof(dsts));
        Ready();
        if (!GroupMatMuls || !Groupable(weights))
        {
            for (int i = 0; i < weights.Length; i++) MatMul(weights[i], x, dsts[i], nTokens);
            return;
        }
        Span<bool> packed = stackalloc bool[weights.Length];
        for (int i = 0; i < weights.Length; i++) packed[i] = PrepareMatMul(W(weights[i]), x, dsts[i], nTokens);
        _matMul!.Clear();
        for (int i = 0; i < weights.Length; i++) _matMul.Add(W(weights[i]), P(dsts[i]), packed[i]);
        var kind = _prof is not null ? MatKind(W(weights[0])) : default;
        long t = _prof?.Begin(kind) ?? 0;
        _matMul.Run(_pool, P(x), nTokens);
        _prof?.End(kind, t);
    }

    /// <summary>
    /// The norm (with the residual add when <paramref name="delta"/> is given) and the product of its output as one op where
    /// every weight's kernels quantize their input: the thread that quantizes a token for the product first adds and norms
    /// its row (<see cref="Cpu.RmsNorm.AddRow"/>, <see cref="Cpu.RmsNorm.Row"/>: the bits of <see cref="AddRmsNorm"/> and
    /// <see cref="RmsNorm"/>), so a server step's four rows, whose norm was a dispatch of its own, and a prompt batch's rows
    /// are normed inside the product's dispatch; a lone token is normed on the caller as before. Else the two ops.
    /// </summary>
    public void NormMatMulGroup(BackendBuffer x, BackendBuffer? delta, BackendWeight norm, BackendBuffer normed, int dim, float eps,
        ReadOnlySpan<BackendWeight> weights, ReadOnlySpan<BackendBuffer> dsts, int nTokens)
    {
        if (weights.Length != dsts.Length) throw new ArgumentException($"{weights.Length} weights and {dsts.Length} outputs", nameof(dsts));
        Ready();
        bool fuse = FuseNorm && weights.Length >= 1 && (weights.Length == 1 || (GroupMatMuls && Groupable(weights)));
        for (int i = 0; fuse && i < weights.Length; i++) fuse = weights[i].Ne0 == dim && _matMul!.QuantizesInput(W(weights[i]));
        if (!fuse)
        {
            if (delta is null) RmsNorm(x, norm, normed, nTokens, dim, eps);
            else AddRmsNorm(x, delta, norm, normed, nTokens, dim, eps);
            MatMulGroup(weights, normed, dsts, nTokens);
            return;
        }
        var nw = W(norm);
        if (nw.Ne0 != dim || nw.Type != GgmlType.F32) throw new ArgumentException($"rms_norm weight {nw.Name} is not F32 [{dim}]");
        Need(x, (long)nTokens * dim, "rms_norm x");
        if (delta is not null) Need(delta, (long)nTokens * dim, "add_rms_norm delta");
        Need(normed, (long)nTokens * dim, "rms_norm dst");
        if (delta is not null && ReferenceEquals(x, normed)) throw new ArgumentException("add and norm before a product: the normed rows may not be x (the residual stream keeps the sum)");
        Span<bool> packed = stackalloc bool[weights.Length];
        for (int i = 0; i < weights.Length; i++) packed[i] = PrepareMatMul(W(weights[i]), normed, dsts[i], nTokens);
        _matMul!.Clear();
        for (int i = 0; i < weights.Length; i++) _matMul.Add(W(weights[i]), P(dsts[i]), packed[i]);
        _matMul.SetNorm(P(x), delta is null ? null : P(delta), (float*)nw.Data, eps);
        var kind = _prof is not null ? MatKind(W(weights[0])) : default;
        long t = _prof?.Begin(kind) ?? 0;
        _matMul.Run(_pool, P(normed), nTokens);
        _prof?.End(kind, t);
    }

    /// <summary>False runs <see cref="NormMatMulGroup"/> as the norm and the product (tests: the fused op against the ops it replaces).</summary>
    internal bool FuseNorm { get; init; } = true;

    /// <summary>True when the weights can be one product: 2 to <see cref="Cpu.MatMul.MaxMembers"/> of one row length whose kernels read x the same way.</summary>
    private bool Groupable(ReadOnlySpan<BackendWeight> weights)
    {
        if (weights.Length is < 2 or > Cpu.MatMul.MaxMembers) return false;
        for (int i = 0; i < weights.Length; i++)
        {
            if (weights[i].Ne0 != weights[0].Ne0 || Kernels.KernelTable.For(_kernels, weights[i].Type) is not { } row) return false;
            for (int j = 0; j < i; j++)
                if (!Cpu.MatMul.ShareActivations(Kernels.KernelTable.For(_kernels, weights[j].Type)!, row)) return false;
        }
        return true;
    }

    public void Rope(BackendBuffer x, int nTokens, int nHeads, int startPos, RopeSpec rope)
    {
        Ready();
        Need(x, (long)nTokens * nHeads * rope.HeadDim, "rope x");
        long t = _prof?.Begin(ProfiledOp.Rope) ?? 0;
        _rope!.Run(_pool, P(x), nTokens, nHeads, startPos, rope);
        _prof?.End(ProfiledOp.Rope, t);
    }

    public void StoreKv(KvCache cache, int layer, int startPos, int nTokens, BackendBuffer k, BackendBuffer v)
    {
        long count = (long)nTokens * cache.KvDim;
        if (startPos < 0 || startPos + nTokens > cache.Size) throw new ArgumentOutOfRangeException(nameof(startPos), $"positions {startPos}..{startPos + nTokens - 1} are outside the kv cache of {cache.Size}");
        Need(k, count, "store_kv k");
        Need(v, count, "store_kv v");
        long t = _prof?.Begin(ProfiledOp.StoreKv) ?? 0;
        StoreRows(cache, layer, startPos, nTokens, P(k), P(v));
        _prof?.End(ProfiledOp.StoreKv, t);
    }

    public void Attention(BackendBuffer q, KvCache cache, int layer, int startPos, int nTokens, int nHeads, int headDim, BackendBuffer dst, AttentionOptions options)
    {
        Ready();
        if (startPos + nTokens > _limits.ContextSize) throw new ArgumentOutOfRangeException(nameof(startPos), $"attention up to position {startPos + nTokens} exceeds the prepared context of {_limits.ContextSize}");
        Need(q, (long)nTokens * nHeads * headDim, "attention q");
        Need(dst, (long)nTokens * nHeads * headDim, "attention dst");
        long t = _prof?.Begin(ProfiledOp.Attention) ?? 0;
        _attention!.Run(_pool, P(q), (byte*)P(cache.Keys(layer)), cache.KeyType, cache.KeyRowBytes, (byte*)P(cache.Values(layer)), cache.ValueType, cache.ValueRowBytes,
            P(dst), startPos, nTokens, nHeads, headDim, cache.KvDim, options.Scale, options.Softcap, options.Window);
        _prof?.End(ProfiledOp.Attention, t);
    }

    /// <summary>
    /// k rotated in place (a serial pass for a decode step's few rows) and stored with v, then one attention dispatch that
    /// rotates each query row as it transposes it (q is left unrotated): no separate rotation of q.
    /// </summary>
    public void RopeAttention(BackendBuffer q, BackendBuffer k, BackendBuffer v, KvCache cache, int layer, int startPos, int nTokens, int nHeads, int nKvHeads,
        RopeSpec rope, BackendBuffer dst, AttentionOptions options)
    {
        Ready();
        if (!FuseRope)
        {
            Rope(q, nTokens, nHeads, startPos, rope);
            Rope(k, nTokens, nKvHeads, startPos, rope);
            StoreKv(cache, layer, startPos, nTokens, k, v);
            Attention(q, cache, layer, startPos, nTokens, nHeads, rope.HeadDim, dst, options);
            return;
        }
        int headDim = rope.HeadDim, kvDim = nKvHeads * headDim;
        if (cache.KvDim != kvDim) throw new ArgumentException($"a kv cache of rows of {cache.KvDim} for {nKvHeads} heads of {headDim}", nameof(cache));
        if (startPos < 0 || startPos + nTokens > cache.Size || startPos + nTokens > _limits.ContextSize)
            throw new ArgumentOutOfRangeException(nameof(startPos), $"positions {startPos}..{startPos + nTokens - 1} are outside the kv cache of {Math.Min(cache.Size, _limits.ContextSize)}");
        Need(q, (long)nTokens * nHeads * headDim, "attention q");
        Need(k, (long)nTokens * kvDim, "store_kv k");
        Need(v, (long)nTokens * kvDim, "store_kv v");
        Need(dst, (long)nTokens * nHeads * headDim, "attention dst");
        long t = _prof?.Begin(ProfiledOp.Attention) ?? 0;
        int slot = _rope!.Table(nTokens, startPos, rope);
        _rope.Apply(_pool, slot, P(k), nTokens, nKvHeads, rope);
        StoreRows(cache, layer, startPos, nTokens, P(k), P(v));
        ref var sg = ref _attention!.Segments(1)[0];
        sg.Q = P(q);
        sg.Dst = P(dst);
        BindCache(ref sg, cache, layer);
        sg.StartPos = startPos;
        sg.NTokens = nTokens;
        sg.Cos = _rope.Cos(slot);
        sg.Sin = _rope.Sin(slot);
        _attention.RunSegments(_pool, 1, nHeads, headDim, kvDim, options.Scale, options.Softcap, options.Window, rope.Dims, rope.Neox);
        _prof?.End(ProfiledOp.Attention, t);
    }

    /// <summary>Rows k and v of nTokens tokens into layer <paramref name="layer"/> of <paramref name="cache"/> from position startPos, in its types.</summary>
    private void StoreRows(KvCache cache, int layer, int startPos, int nTokens, float* k, float* v)
    {
        Kernels.KvRows.Store(cache.KeyType, k, (byte*)P(cache.Keys(layer)) + startPos * cache.KeyRowBytes, nTokens, cache.KvDim);
        Kernels.KvRows.Store(cache.ValueType, v, (byte*)P(cache.Values(layer)) + startPos * cache.ValueRowBytes, nTokens, cache.KvDim);
    }

    /// <summary>The cache half of an attention segment: layer <paramref name="layer"/>'s K/V rows of <paramref name="cache"/>, their types and strides.</summary>
    private void BindCache(ref Attention.Segment sg, KvCache cache, int layer)
    {
        sg.K = (byte*)P(cache.Keys(layer));
        sg.V = (byte*)P(cache.Values(layer));
        sg.KType = cache.KeyType;
        sg.VType = cache.ValueType;
        sg.KRow = cache.KeyRowBytes;
        sg.VRow = cache.ValueRowBytes;
    }

    /// <summary>False runs <see cref="RopeAttention"/> (and <see cref="AttendSequences"/>) with q rotated by its own op first (tests: the fused op against the ops it replaces).</summary>
    internal bool FuseRope { get; init; } = true;

    private int[] _positions = [];

    /// <summary>
    /// The attention part of one layer for every sequence of a multi-sequence batch: one rotation of all the k rows (each at
    /// its sequence's position; the cos/sin table made once per step and kept for the other layers), the K/V rows stored
    /// into each sequence's cache, and one attention dispatch whose work units are all the sequences' (tile, KV head)
    /// pairs, reading the batch rows in place and rotating each query row as they transpose it (q is left unrotated).
    /// </summary>
    public void AttendSequences(BackendBuffer q, BackendBuffer k, BackendBuffer v, BackendBuffer dst, ReadOnlySpan<SequenceBatch> seqs,
        int layer, int nHeads, int nKvHeads, RopeSpec rope, AttentionOptions options)
    {
        Ready();
        long t0 = _prof?.Begin(ProfiledOp.Attention) ?? 0;
        PrepareSequences(q, k, v, dst, seqs, layer, nHeads, nKvHeads, rope);
        _attention!.RunSegments(_pool, seqs.Length, nHeads, rope.HeadDim, nKvHeads * rope.HeadDim, options.Scale, options.Softcap, options.Window, rope.Dims, rope.Neox);
        _prof?.End(ProfiledOp.Attention, t0);
    }

    /// <summary>
    /// <see cref="AttendSequences"/> and then <c>product = weight · dst</c> (<see cref="MatMul"/>), where a decode step of
    /// two to <see cref="Cpu.MatMul.InlineQuantizeTokens"/> sequences (one token each) on several threads runs each
    /// sequence's attention inside the product's dispatch, on the thread that then quantizes its token: one dispatch
    /// fewer per layer, the same bits (a unit's output does not depend on the thread that runs it). Else the two ops.
    /// </summary>
    public void AttendSequencesMatMul(BackendBuffer q, BackendBuffer k, BackendBuffer v, BackendBuffer dst, ReadOnlySpan<SequenceBatch> seqs,
        int layer, int nHeads, int nKvHeads, RopeSpec rope, AttentionOptions options, BackendWeight weight, BackendBuffer product)
    {
        Ready();
        var w = W(weight);
        bool fuse = FuseAttention && ThreadCount > 1 && seqs.Length >= 2 && seqs.Length <= Cpu.MatMul.InlineQuantizeTokens
            && w.Ne0 == (long)nHeads * rope.HeadDim && _matMul!.QuantizesInput(w);
        foreach (var sq in seqs) fuse &= sq.Count == 1;
        if (!fuse)
        {
            int rows = 0;
            foreach (var sq in seqs) rows += sq.Count;
            AttendSequences(q, k, v, dst, seqs, layer, nHeads, nKvHeads, rope, options);
            MatMul(weight, dst, product, rows);
            return;
        }
        var kind = _prof is not null ? MatKind(w) : default;
        long t0 = _prof?.Begin(kind) ?? 0;
        PrepareSequences(q, k, v, dst, seqs, layer, nHeads, nKvHeads, rope);
        _attention!.Bind(seqs.Length, nHeads, rope.HeadDim, nKvHeads * rope.HeadDim, options.Scale, options.Softcap, options.Window, rope.Dims, rope.Neox);
        bool packed = PrepareMatMul(w, dst, product, seqs.Length);
        _matMul!.Clear();
        _matMul.Add(w, P(product), packed);
        _matMul.SetStep(_attention);
        _matMul.Run(_pool, P(dst), seqs.Length);
        _prof?.End(kind, t0);
    }

    /// <summary>False runs <see cref="AttendSequencesMatMul"/> as the two ops (tests: the fused op against the ops it replaces).</summary>
    internal bool FuseAttention { get; init; } = true;

    /// <summary>
    /// What <see cref="AttendSequences"/> does before its units: the checks, one rotation of all the k rows (each at its
    /// sequence's position; the cos/sin table made once per step and kept for the other layers), the K/V rows stored into
    /// each sequence's cache, and the attention segments (reading the batch rows in place, rotating each query row as they
    /// transpose it: q is left unrotated).
    /// </summary>
    private void PrepareSequences(BackendBuffer q, BackendBuffer k, BackendBuffer v, BackendBuffer dst, ReadOnlySpan<SequenceBatch> seqs,
        int layer, int nHeads, int nKvHeads, RopeSpec rope)
    {
        int headDim = rope.HeadDim, qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
        int total = 0;
        foreach (var sq in seqs)
        {
            if (sq.Count < 1 || sq.StartPos < 0 || sq.StartPos + sq.Count > sq.Cache.Size || sq.StartPos + sq.Count > _limits.ContextSize)
                throw new ArgumentOutOfRangeException(nameof(seqs), $"positions {sq.StartPos}..{sq.StartPos + sq.Count - 1} are outside the kv cache of {Math.Min(sq.Cache.Size, _limits.ContextSize)}");
            if (sq.Cache.KvDim != kvDim) throw new ArgumentException($"a kv cache of rows of {sq.Cache.KvDim} for {nKvHeads} heads of {headDim}", nameof(seqs));
            total += sq.Count;
        }
        Need(q, (long)total * qDim, "attention q");
        Need(k, (long)total * kvDim, "store_kv k");
        Need(v, (long)total * kvDim, "store_kv v");
        Need(dst, (long)total * qDim, "attention dst");
        if (_positions.Length < total) _positions = new int[Math.Max(total, _limits.MaxBatch)];
        int row = 0;
        foreach (var sq in seqs)
            for (int t = 0; t < sq.Count; t++) _positions[row++] = sq.StartPos + t;
        var positions = new ReadOnlySpan<int>(_positions, 0, total);
        int slot = _rope!.TablePositions(total, positions, rope);
        if (!FuseRope) _rope.Apply(_pool, slot, P(q), total, nHeads, rope);
        _rope.Apply(_pool, slot, P(k), total, nKvHeads, rope);
        int half = rope.Dims / 2;

        var segs = _attention!.Segments(seqs.Length);
        row = 0;
        for (int s = 0; s < seqs.Length; s++)
        {
            var sq = seqs[s];
            var cache = sq.Cache;
            StoreRows(cache, layer, sq.StartPos, sq.Count, P(k) + (long)row * kvDim, P(v) + (long)row * kvDim);
            ref var sg = ref segs[s];
            sg.Q = P(q) + (long)row * qDim;
            sg.Dst = P(dst) + (long)row * qDim;
            BindCache(ref sg, cache, layer);
            sg.StartPos = sq.StartPos;
            sg.NTokens = sq.Count;
            sg.Cos = FuseRope ? _rope.Cos(slot) + (long)row * half : null;
            sg.Sin = FuseRope ? _rope.Sin(slot) + (long)row * half : null;
            row += sq.Count;
        }
    }

    public void ShiftKv(KvCache cache, int layer, int keep, int drop, RopeSpec rope)
    {
        int filled = cache.Filled;
        if (keep < 0 || drop < 1 || (long)keep + drop > filled) throw new ArgumentOutOfRangeException(nameof(drop), $"context shift keeping {keep} and dropping {drop} of {filled} positions");
        if (cache.KvDim % rope.HeadDim != 0) throw new ArgumentException($"kv rows of {cache.KvDim} are not whole heads of {rope.HeadDim}");
        int half = rope.Dims / 2, headDim = rope.HeadDim, heads = cache.KvDim / headDim;
        // A pure rotation by -drop positions (no attention factor: the stored keys already carry it).
        var cos = new double[half];
        var sin = new double[half];
        for (int i = 0; i < half; i++)
        {
            double theta = rope.Theta(-drop, i);
            cos[i] = Math.Cos(theta);
            sin[i] = Math.Sin(theta);
        }
        var row = new float[cache.KvDim];
        byte* kBase = (byte*)P(cache.Keys(layer));
        long kRow = cache.KeyRowBytes;
        fixed (float* x = row)
        {
            for (int p = keep + drop; p < filled; p++)
            {
                Kernels.KvRows.Read(cache.KeyType, kBase + p * kRow, kRow, 0, cache.KvDim, 1, x);
                for (int h = 0; h < heads; h++)
                {
                    float* v = x + h * headDim;
                    for (int i = 0; i < half; i++)
                    {
                        int a = rope.Neox ? i : 2 * i, b = rope.Neox ? i + half : 2 * i + 1;
                        double x0 = v[a], x1 = v[b];
                        v[a] = (float)(x0 * cos[i] - x1 * sin[i]);
                        v[b] = (float)(x0 * sin[i] + x1 * cos[i]);
                    }
                }
                Kernels.KvRows.Store(cache.KeyType, x, kBase + (p - drop) * kRow, 1, cache.KvDim);
            }
        }
        long vRow = cache.ValueRowBytes, moved = (filled - keep - drop) * vRow;
        byte* vBase = (byte*)P(cache.Values(layer));
        Buffer.MemoryCopy(vBase + (keep + drop) * vRow, vBase + keep * vRow, moved, moved);
    }

    public void CacheRows(KvCache cache, int layer, bool values, int pos, int count, Span<byte> dst, bool write)
    {
        long rowBytes = values ? cache.ValueRowBytes : cache.KeyRowBytes;
        if (pos < 0 || count < 0 || (long)pos + count > cache.Size) throw new ArgumentOutOfRangeException(nameof(pos), $"rows {pos}..{(long)pos + count - 1} are outside the kv cache of {cache.Size}");
        if (dst.Length != count * rowBytes) throw new ArgumentException($"{count} cache rows are {count * rowBytes} bytes, the span holds {dst.Length}");
        var rows = new Span<byte>((byte*)P(values ? cache.Values(layer) : cache.Keys(layer)) + pos * rowBytes, dst.Length);
        if (write) dst.CopyTo(rows);
        else rows.CopyTo(dst);
    }

    public void Glu(BackendBuffer gate, BackendBuffer up, long count, GluKind kind)
    {
        Need(gate, count, "glu gate");
        Need(up, count, "glu up");
        if (kind is not (GluKind.Silu or GluKind.GeluTanh)) throw new ArgumentOutOfRangeException(nameof(kind), $"unknown gate activation {kind}");
        long t = _prof?.Begin(ProfiledOp.Glu) ?? 0;
        _glu.Run(_pool, P(gate), P(up), count, kind);
        _prof?.End(ProfiledOp.Glu, t);
    }

    public void AddBias(BackendBuffer x, BackendWeight bias, int nTokens)
    {
        var w = W(bias);
        if (w.Type != GgmlType.F32 || w.Rows != 1 || w.Ne0 > int.MaxValue) throw new ArgumentException($"bias {w.Name} is not an F32 vector");
        Need(x, nTokens * w.Ne0, "add_bias x");
        long t = _prof?.Begin(ProfiledOp.AddBias) ?? 0;
        _addBias.Run(_pool, P(x), (float*)w.Data, (int)w.Ne0, nTokens);
        _prof?.End(ProfiledOp.AddBias, t);
    }

    public void Scale(BackendBuffer x, long count, float factor)
    {
        Need(x, count, "scale x");
        long t = _prof?.Begin(ProfiledOp.Scale) ?? 0;
        _scale.Run(_pool, P(x), count, factor);
        _prof?.End(ProfiledOp.Scale, t);
    }

    public void Softcap(BackendBuffer x, long count, float cap)
    {
        if (!(cap > 0) || !float.IsFinite(cap)) throw new ArgumentOutOfRangeException(nameof(cap), $"softcap {cap} must be positive");
        Need(x, count, "softcap x");
        long t = _prof?.Begin(ProfiledOp.Softcap) ?? 0;
        _softcap.Run(_pool, P(x), count, cap);
        _prof?.End(ProfiledOp.Softcap, t);
    }

    public void Add(BackendBuffer x, BackendBuffer y, long count)
    {
        Need(x, count, "add x");
        Need(y, count, "add y");
        long t = _prof?.Begin(ProfiledOp.Add) ?? 0;
        _add.Run(_pool, P(x), P(y), count);
        _prof?.End(ProfiledOp.Add, t);
    }

    public void Copy(BackendBuffer src, long srcOffset, BackendBuffer dst, long dstOffset, long count)
    {
        Need(src, srcOffset + count, "copy src");
        Need(dst, dstOffset + count, "copy dst");
        long t = _prof?.Begin(ProfiledOp.Copy) ?? 0;
        Buffer.MemoryCopy(P(src) + srcOffset, P(dst) + dstOffset, count * sizeof(float), count * sizeof(float));
        _prof?.End(ProfiledOp.Copy, t);
    }

    public void CopyOut(BackendBuffer src, long srcOffset, Span<float> dst)
    {
        Need(src, srcOffset + dst.Length, "copy_out src");
        long t = _prof?.Begin(ProfiledOp.Copy) ?? 0;
        new ReadOnlySpan<float>(P(src) + srcOffset, dst.Length).CopyTo(dst);
        _prof?.End(ProfiledOp.Copy, t, endsStep: true);
    }

    public void CopyIn(ReadOnlySpan<float> src, BackendBuffer dst, long dstOffset)
    {
        Need(dst, dstOffset + src.Length, "copy_in dst");
        src.CopyTo(new Span<float>(P(dst) + dstOffset, src.Length));
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _pool.Dispose();
        if (_prof is not null) EdgeLlm.IO.StandardStreams.TryWriteError(_prof.Report().TrimEnd('\n'));
        foreach (var b in _buffers) b.Free();
        _buffers.Clear();
        _packed.Dispose();
        FreeScratch();
    }

    private static float* P(BackendBuffer b) => ((CpuBuffer)b).Data;

    private static CpuWeight W(BackendWeight w) => (CpuWeight)w;

    private static void Need(BackendBuffer b, long floats, string what)
    {
        if (floats > b.Length) throw new ArgumentException($"{what}: {floats} floats needed, buffer holds {b.Length}");
    }

    private void Ready()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_matMul is null) throw new InvalidOperationException("CpuBackend.Prepare must be called before running operations");
    }

    private float* AllocScratch(long floats)
    {
        nuint bytes = checked((nuint)Math.Max(1, floats) * sizeof(float));
        void* p = NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear(p, bytes);
        _scratch.Add((nint)p);
        return (float*)p;
    }

    private void FreeScratch()
    {
        foreach (nint p in _scratch) NativeMemory.AlignedFree((void*)p);
        _scratch.Clear();
    }
}
