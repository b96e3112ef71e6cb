using EdgeLlm.Backends.Cuda.Native;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cuda;

// The IBackend operations: each checks its operands on the host and records a CudaOp; nothing is launched here
// (see CudaBackend.Graphs.cs for the flush and CudaBackend.Launch.cs for the kernels).
public sealed unsafe partial class CudaBackend
{
    private CudaOp[] _ops = new CudaOp[256];
    private int _opCount;
    private int _stepIds;

    public void GetRows(BackendWeight table, ReadOnlySpan<int> ids, BackendBuffer dst)
    {
        Ready();
        var w = Wt(table);
        var d = Buf(dst, "get_rows dst");
        if (ids.Length == 0) return;
        if (ids.Length > _limits.MaxBatch) throw new ArgumentException($"get_rows: {ids.Length} ids exceed the prepared batch of {_limits.MaxBatch}");
        Need(d, (long)ids.Length * w.Ne0, "get_rows dst");
        foreach (int id in ids)
            if ((uint)id >= (ulong)w.Rows) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside {w.Name} (0..{w.Rows - 1})");
        if (_opCount > 0) Flush(); // a new batch: launch the previous one, its ids are in the staging buffer
        WaitStepUpload();
        for (int i = 0; i < ids.Length; i++) _hostStep[1 + i] = ids[i];
        // The token the device sampler just wrote into the step buffer's id slot: only the position is uploaded.
        _stepIds = _fedToken.Take(ids, _scratchGeneration) ? 0 : ids.Length;
        Record(new CudaOp { Kind = CudaOpKind.GetRows, Weight = w, Dst = d, Tokens = ids.Length });
    }

    public void RmsNorm(BackendBuffer x, BackendWeight weight, BackendBuffer dst, int nTokens, int dim, float eps)
    {
        Ready();
        var w = Wt(weight);
        if (w.Ne0 != dim || w.Type != GgmlType.F32) throw new ArgumentException($"rms_norm weight {w.Name} is not F32 [{dim}]");
        var a = Buf(x, "rms_norm x");
        var d = Buf(dst, "rms_norm dst");
        Need(a, (long)nTokens * dim, "rms_norm x");
        Need(d, (long)nTokens * dim, "rms_norm dst");
        Record(new CudaOp { Kind = CudaOpKind.RmsNorm, X = a, Weight = w, Dst = d, Tokens = nTokens, Dim = dim, Eps = eps });
    }

    public void MatMul(BackendWeight weight, BackendBuffer x, BackendBuffer dst, int nTokens)
    {
        Ready();
        var w = Wt(weight);
        var a = Buf(x, "matmul x");
        var d = Buf(dst, "matmul dst");
        if (nTokens < 1 || nTokens > _limits.MaxBatch) throw new ArgumentOutOfRangeException(nameof(nTokens), $"matmul of {nTokens} tokens is outside the prepared batch of {_limits.MaxBatch}");
        if (w.Ne0 > _limits.MaxRowLength) throw new ArgumentException($"{w.Name} rows of {w.Ne0} exceed the prepared row of {_limits.MaxRowLength}");
        if (w.Rows > int.MaxValue || w.Ne0 > int.MaxValue) throw new ArgumentException($"{w.Name} is too large for the CUDA kernels");
        Need(a, nTokens * w.Ne0, "matmul x");
        Need(d, nTokens * w.Rows, "matmul dst");
        Record(new CudaOp { Kind = CudaOpKind.MatMul, Weight = w, X = a, Dst = d, Tokens = nTokens });
    }

    public void Rope(BackendBuffer x, int nTokens, int nHeads, int startPos, RopeSpec rope)
    {
        Ready();
        var a = Buf(x, "rope x");
        Need(a, (long)nTokens * nHeads * rope.HeadDim, "rope x");
        Record(new CudaOp { Kind = CudaOpKind.Rope, X = a, Rope = rope, RopeTable = RopeTable(rope), Tokens = nTokens, Heads = nHeads, StartPos = startPos });
    }

    public void StoreKv(KvCache cache, int layer, int startPos, int nTokens, BackendBuffer k, BackendBuffer v)
    {
        Ready();
        if (startPos < 0 || startPos + nTokens > cache.Size) throw new ArgumentOutOfRangeException(nameof(startPos), $"positions {startPos}..{startPos + nTokens - 1} are outside the kv cache of {cache.Size}");
        var kb = Buf(k, "store_kv k");
        var vb = Buf(v, "store_kv v");
        var kc = CacheBuf(cache.Keys(layer));
        var vc = CacheBuf(cache.Values(layer));
        Need(kb, (long)nTokens * cache.KvDim, "store_kv k");
        Need(vb, (long)nTokens * cache.KvDim, "store_kv v");
        Record(new CudaOp { Kind = CudaOpKind.StoreKv, X = kb, Y = vb, KCache = kc, VCache = vc, Tokens = nTokens, KvDim = cache.KvDim, StartPos = startPos });
    }

    public void Attention(BackendBuffer q, KvCache cache, int layer, int startPos, int nTokens, int nHeads, int headDim, BackendBuffer dst, AttentionOptions options)
    {
        Ready();
        if (!float.IsFinite(options.Scale)) throw new ArgumentOutOfRangeException(nameof(options), $"attention scale {options.Scale} is not finite");
        if (!(options.Softcap >= 0) || !float.IsFinite(options.Softcap)) throw new ArgumentOutOfRangeException(nameof(options), $"attention softcap {options.Softcap} must be 0 (none) or positive");
        if (options.Window < 0) throw new ArgumentOutOfRangeException(nameof(options), $"attention window {options.Window} is negative");
        if (startPos + nTokens > _limits.ContextSize) throw new ArgumentOutOfRangeException(nameof(startPos), $"attention up to position {startPos + nTokens} exceeds the prepared context of {_limits.ContextSize}");
        if (headDim > MaxHeadDim) throw new ArgumentException($"head dimension {headDim} exceeds {MaxHeadDim}");
        int kvHeads = cache.KvDim / headDim;
        if (kvHeads < 1 || nHeads % kvHeads != 0) throw new ArgumentException($"{nHeads} query heads do not group over {kvHeads} kv heads");
        CudaLaunchLimits.CheckAttentionGrid(nHeads, nTokens);
        var qb = Buf(q, "attention q");
        var d = Buf(dst, "attention dst");
        Need(qb, (long)nTokens * nHeads * headDim, "attention q");
        Need(d, (long)nTokens * nHeads * headDim, "attention dst");
        bool split = Settings.SplitAttention && CudaLaunchLimits.CanSplitAttention(nTokens, nHeads, headDim, cache.KvDim, _limits.ContextSize);
        int chunks = split ? CudaLaunchLimits.SplitChunks(_limits.ContextSize) : 0;
        Record(new CudaOp
        {
            Kind = split ? CudaOpKind.AttentionSplit : CudaOpKind.Attention, Partials = split ? SplitPartials((long)nHeads * chunks * (headDim + 2), kvHeads) : 0,
            Counters = split ? _splitCounters : 0,
            Chunks = chunks, X = qb, KCache = CacheBuf(cache.Keys(layer)), VCache = CacheBuf(cache.Values(layer)), Dst = d,
            Tokens = nTokens, Heads = nHeads, HeadDim = headDim, KvDim = cache.KvDim, Window = options.Window,
            Scale = options.Scale, Softcap = options.Softcap, StartPos = startPos,
        });
    }

    public void Glu(BackendBuffer gate, BackendBuffer up, long count, GluKind kind)
    {
        Ready();
        var op = kind switch
        {
            GluKind.Silu => CudaOpKind.SwiGlu,
            GluKind.GeluTanh => CudaOpKind.GeGlu,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), $"unknown gate activation {kind}"),
        };
        var g = Buf(gate, "glu gate");
        var u = Buf(up, "glu up");
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count));
        Need(g, count, "glu gate");
        Need(u, count, "glu up");
        Record(new CudaOp { Kind = op, X = g, Y = u, Count = count });
    }

    public void AddBias(BackendBuffer x, BackendWeight bias, int nTokens)
    {
        Ready();
        var w = Wt(bias);
        if (w.Type != GgmlType.F32 || w.Rows != 1 || w.Ne0 < 1 || w.Ne0 > int.MaxValue) throw new ArgumentException($"add_bias: {w.Name} is not an F32 vector");
        if (nTokens < 0) throw new ArgumentOutOfRangeException(nameof(nTokens));
        var a = Buf(x, "add_bias x");
        Need(a, nTokens * w.Ne0, "add_bias x");
        Record(new CudaOp { Kind = CudaOpKind.AddBias, X = a, Weight = w, Count = nTokens * w.Ne0 });
    }

    public void Scale(BackendBuffer x, long count, float factor)
    {
        Ready();
        var a = Buf(x, "scale x");
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count));
        Need(a, count, "scale x");
        Record(new CudaOp { Kind = CudaOpKind.Scale, X = a, Count = count, Scale = factor });
    }

    public void Softcap(BackendBuffer x, long count, float cap)
    {
        Ready();
        if (!(cap > 0) || !float.IsFinite(cap)) throw new ArgumentOutOfRangeException(nameof(cap), $"softcap {cap} must be positive");
        var a = Buf(x, "softcap x");
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count));
        Need(a, count, "softcap x");
        Record(new CudaOp { Kind = CudaOpKind.Softcap, X = a, Count = count, Softcap = cap });
    }

    public void Add(BackendBuffer x, BackendBuffer y, long count)
    {
        Ready();
        var a = Buf(x, "add x");
        var b = Buf(y, "add y");
        Need(a, count, "add x");
        Need(b, count, "add y");
        Record(new CudaOp { Kind = CudaOpKind.Add, X = a, Y = b, Count = count });
    }

    public void Copy(BackendBuffer src, long srcOffset, BackendBuffer dst, long dstOffset, long count)
    {
        Ready();
        var s = Buf(src, "copy src");
        var d = Buf(dst, "copy dst");
        if (srcOffset < 0 || dstOffset < 0 || count < 0) throw new ArgumentOutOfRangeException(nameof(count), "copy offsets and count must not be negative");
        Need(s, srcOffset + count, "copy src");
        Need(d, dstOffset + count, "copy dst");
        Record(new CudaOp { Kind = CudaOpKind.Copy, X = s, Dst = d, SrcOffset = srcOffset, DstOffset = dstOffset, Count = count });
    }

    /// <summary>
    /// The device buffer of split attention's partial results, grown (once per model shape) to <paramref name="floats"/>,
    /// followed by attention_flash_f16's <paramref name="counters"/> ints (<see cref="_splitCounters"/>), zeroed here:
    /// each launch leaves them zero again.
    /// </summary>
    private ulong SplitPartials(long floats, int counters)
    {
        if (floats > _splitPartialFloats || counters > _splitCounterSlots)
        {
            EnsureContext();
            floats = Math.Max(floats, _splitPartialFloats);
            counters = Math.Max(counters, _splitCounterSlots);
            _splitPartials = Scratch(floats * sizeof(float) + counters * sizeof(int)); // freed with the rest of the scratch at the next Prepare
            _splitPartialFloats = floats;
            _splitCounterSlots = counters;
            _splitCounters = _splitPartials + (ulong)(floats * sizeof(float));
            CudaDriver.Check(CudaDriver.cuMemsetD8Async(_splitCounters, 0, (nuint)(counters * sizeof(int)), _stream), "cuMemsetD8Async");
        }
        return _splitPartials;
    }

    private void Record(in CudaOp op)
    {
        if (_opCount == _ops.Length) Array.Resize(ref _ops, _ops.Length * 2);
        _ops[_opCount++] = op;
    }

    private static CudaBuffer Buf(BackendBuffer b, string what)
    {
        var c = b as CudaBuffer ?? throw new ArgumentException($"{what}: not a CUDA buffer");
        if (c.IsHalf) throw new ArgumentException($"{what}: a KV-cache buffer (fp16) cannot be used as an activation");
        return c;
    }

    private static CudaBuffer CacheBuf(BackendBuffer b) =>
        b as CudaBuffer is { IsHalf: true } c ? c : throw new ArgumentException("kv cache buffers must come from CudaBackend.AllocateCache");

    private static CudaWeight Wt(BackendWeight w) => w as CudaWeight ?? throw new ArgumentException($"{w.Name}: not a CUDA weight");

    private static void Need(CudaBuffer b, long elements, string what)
    {
        if (elements > b.Length) throw new ArgumentException($"{what}: {elements} elements needed, buffer holds {b.Length}");
    }
}
