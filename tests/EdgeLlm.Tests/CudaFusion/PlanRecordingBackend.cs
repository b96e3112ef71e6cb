using EdgeLlm.Backends.Cuda;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.CudaFusion;

/// <summary>
/// An <see cref="IBackend"/> that computes nothing and records each call as the <see cref="CudaOp"/> CudaBackend
/// records for it (the same kinds and operand fields, CudaBackend.Ops.cs and CudaBackend.Fusion.cs), split into steps
/// where CudaBackend flushes (the GetRows that starts a batch). Buffers and weights are CUDA objects with made-up
/// addresses. With <c>stacking</c> it offers <see cref="IStackedMatMul"/> as CudaBackend does on a discrete GPU; with
/// <c>packing</c> the weights of the types <see cref="CudaRepack"/> handles are marked packed, as CudaBackend uploads
/// them on a discrete GPU (false: read in place from the mapped file, as on an integrated GPU).
/// What the planner makes of a recorded step is then the launch list a GPU would run, without a GPU.
/// </summary>
internal sealed class PlanRecordingBackend(bool stacking, bool packing = true) : IBackend, IStackedMatMul
{
    private readonly List<CudaOp> _ops = new();
    private readonly Dictionary<CudaWeight, (int, int, int)> _stacks = new(ReferenceEqualityComparer.Instance);
    private readonly CudaBuffer _stackOut = new(1, 0xE000_0000, 4);
    private ulong _next = 0x1000;
    private BackendLimits _limits;

    /// <summary>Every flushed step's ops, in order.</summary>
    public List<CudaOp[]> Steps { get; } = new();

    /// <summary>The weight names, by object (to find a layer's ops).</summary>
    public Dictionary<BackendWeight, string> Names { get; } = new(ReferenceEqualityComparer.Instance);

    public string Name => "plan recorder";
    public KvCacheType DefaultCacheType => KvCacheType.F16;

    public void Prepare(BackendLimits limits) => _limits = limits;

    public BackendBuffer Allocate(long length) => new CudaBuffer(length, _next += 0x10000, 4);
    public BackendBuffer AllocateCache(long length) => new CudaBuffer(length, _next += 0x10000, 2);

    public BackendWeight LoadWeight(TensorView t)
    {
        var w = new CudaWeight(t.Name, t.Type, t.Ne0, t.Rows, _next += 0x10000, t.RowBytes, owned: true, packed: packing && CudaRepack.Packs(t.Type));
        Names[w] = t.Name;
        return w;
    }

    public BackendWeight? LoadStacked(string name, ReadOnlySpan<TensorView> parts)
    {
        if (!stacking) return null;
        long rows = 0;
        foreach (var p in parts)
        {
            if (p.Type != parts[0].Type || p.Ne0 != parts[0].Ne0) return null;
            rows += p.Rows;
        }
        var w = new CudaWeight(name, parts[0].Type, parts[0].Ne0, rows, _next += 0x10000, parts[0].RowBytes, owned: true, packed: packing && CudaRepack.Packs(parts[0].Type));
        Names[w] = name;
        _stacks[w] = ((int)parts[0].Rows, (int)parts[1].Rows, parts.Length == 3 ? (int)parts[2].Rows : 0);
        return w;
    }

    public void MatMulStacked(BackendWeight stacked, BackendBuffer x, int nTokens, BackendBuffer dst0, BackendBuffer dst1, BackendBuffer? dst2)
    {
        var w = (CudaWeight)stacked;
        var (p0, p1, p2) = _stacks[w];
        _ops.Add(new CudaOp
        {
            Kind = CudaOpKind.MatMulStacked, Weight = w, X = B(x), Dst = B(dst0), Dst1 = B(dst1), Dst2 = dst2 is null ? null : B(dst2),
            Part0 = p0, Part1 = p1, Part2 = p2, Tokens = nTokens, StackOut = _stackOut,
        });
    }

    private static CudaBuffer B(BackendBuffer b) => (CudaBuffer)b;

    private void Flush()
    {
        if (_ops.Count == 0) return;
        Steps.Add(_ops.ToArray());
        _ops.Clear();
    }

    public void GetRows(BackendWeight table, ReadOnlySpan<int> ids, BackendBuffer dst)
    {
        Flush();
        _ops.Add(new CudaOp { Kind = CudaOpKind.GetRows, Weight = (CudaWeight)table, Dst = B(dst), Tokens = ids.Length });
    }

    public void RmsNorm(BackendBuffer x, BackendWeight weight, BackendBuffer dst, int nTokens, int dim, float eps) =>
        _ops.Add(new CudaOp { Kind = CudaOpKind.RmsNorm, X = B(x), Weight = (CudaWeight)weight, Dst = B(dst), Tokens = nTokens, Dim = dim, Eps = eps });

    public void MatMul(BackendWeight weight, BackendBuffer x, BackendBuffer dst, int nTokens) =>
        _ops.Add(new CudaOp { Kind = CudaOpKind.MatMul, Weight = (CudaWeight)weight, X = B(x), Dst = B(dst), Tokens = nTokens });

    public void Rope(BackendBuffer x, int nTokens, int nHeads, int startPos, RopeSpec rope) =>
        _ops.Add(new CudaOp { Kind = CudaOpKind.Rope, X = B(x), Rope = rope, Tokens = nTokens, Heads = nHeads, StartPos = startPos });

    public void StoreKv(KvCache cache, int layer, int startPos, int nTokens, BackendBuffer k, BackendBuffer v) =>
        _ops.Add(new CudaOp
        {
            Kind = CudaOpKind.StoreKv, X = B(k), Y = B(v), KCache = B(cache.Keys(layer)), VCache = B(cache.Values(layer)),
            Tokens = nTokens, KvDim = cache.KvDim, StartPos = startPos,
        });

    public void Attention(BackendBuffer q, KvCache cache, int layer, int startPos, int nTokens, int nHeads, int headDim, BackendBuffer dst, AttentionOptions options)
    {
        bool split = CudaLaunchLimits.CanSplitAttention(nTokens, nHeads, headDim, cache.KvDim, _limits.ContextSize);
        _ops.Add(new CudaOp
        {
            Kind = split ? CudaOpKind.AttentionSplit : CudaOpKind.Attention, X = B(q), KCache = B(cache.Keys(layer)), VCache = B(cache.Values(layer)),
            Dst = B(dst), Tokens = nTokens, Heads = nHeads, HeadDim = headDim, KvDim = cache.KvDim, StartPos = startPos,
            Chunks = split ? CudaLaunchLimits.SplitChunks(_limits.ContextSize) : 0,
        });
    }

    public void Glu(BackendBuffer gate, BackendBuffer up, long count, GluKind kind) =>
        _ops.Add(new CudaOp { Kind = kind == GluKind.Silu ? CudaOpKind.SwiGlu : CudaOpKind.GeGlu, X = B(gate), Y = B(up), Count = count });

    public void AddBias(BackendBuffer x, BackendWeight bias, int nTokens) =>
        _ops.Add(new CudaOp { Kind = CudaOpKind.AddBias, X = B(x), Weight = (CudaWeight)bias, Count = nTokens * bias.Ne0 });

    public void Scale(BackendBuffer x, long count, float factor) => _ops.Add(new CudaOp { Kind = CudaOpKind.Scale, X = B(x), Count = count, Scale = factor });

    public void Softcap(BackendBuffer x, long count, float cap) => _ops.Add(new CudaOp { Kind = CudaOpKind.Softcap, X = B(x), Count = count, Softcap = cap });

    public void Add(BackendBuffer x, BackendBuffer y, long count) => _ops.Add(new CudaOp { Kind = CudaOpKind.Add, X = B(x), Y = B(y), Count = count });

    public void Copy(BackendBuffer src, long srcOffset, BackendBuffer dst, long dstOffset, long count) =>
        _ops.Add(new CudaOp { Kind = CudaOpKind.Copy, X = B(src), Dst = B(dst), SrcOffset = srcOffset, DstOffset = dstOffset, Count = count });

    public void CopyOut(BackendBuffer src, long srcOffset, Span<float> dst)
    {
        Flush();
        dst.Clear();
    }

    public void Dispose() { }
}
