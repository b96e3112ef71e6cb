using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Split;

/// <summary>
/// Two backends as one (layer offload): the token embeddings and layers [0, <see cref="Split"/>) run on
/// <see cref="First"/>, layers [Split, LayerCount), the output norm and the output projection on <see cref="Second"/>
/// (llama.cpp's -ngl puts the last layers on the GPU: First is the CPU, Second the GPU). The forward pass is unchanged:
/// each weight lives on the side its tensor name says (<c>blk.N.*</c> by layer, <c>token_embd</c> on First, the rest
/// on Second), an operation with a weight runs where the weight is, the KV cache of layer N is allocated on layer N's
/// side, and an operation without a weight runs where its input is. Every activation buffer exists on both sides with
/// a note of which copies are current; an operation that reads a buffer current only on the other side copies it over
/// first (out to host memory, in to the other backend). In a forward step that is the residual stream, once, where the
/// layers cross from First to Second. A tied output projection (the embedding table) is loaded on both sides.
/// </summary>
public sealed class SplitBackend : IBackend
{
    private const byte OnFirst = 1, OnSecond = 2, OnBoth = 3;

    public IBackend First { get; }
    public IBackend Second { get; }

    /// <summary>Layers [0, Split) run on <see cref="First"/>, the rest on <see cref="Second"/>.</summary>
    public int Split { get; }
    public int LayerCount { get; }

    /// <summary>Buffers copied from one side to the other so far (for logs and tests).</summary>
    public long Transfers { get; private set; }

    /// <summary>Floats copied between the sides so far.</summary>
    public long TransferredFloats { get; private set; }

    private readonly List<SplitBuffer> _buffers = new();
    private float[] _host = [];
    private int _cacheAllocations;
    private byte _current = OnFirst;
    private bool _disposed;

    private sealed class SplitBuffer(long length, BackendBuffer first, BackendBuffer second) : BackendBuffer(length)
    {
        public readonly BackendBuffer OnFirst = first, OnSecond = second;
        public byte Valid = SplitBackend.OnBoth; // both start zeroed
    }

    private sealed class SplitWeight(BackendWeight inner, byte side, BackendWeight? outputCopy = null) : BackendWeight(inner.Name, inner.Type, inner.Ne0, inner.Rows)
    {
        public readonly BackendWeight Inner = inner;
        public readonly byte Side = side;

        /// <summary>The tied output projection's copy of the embedding table on the second side (null otherwise).</summary>
        public readonly BackendWeight? OutputCopy = outputCopy;
    }

    /// <summary>
    /// True when the token embedding table is also loaded on <see cref="Second"/> because the output projection is
    /// tied to it: the lookup runs on First, the output matmul on Second with the rest of the output layer.
    /// </summary>
    public bool TiedOutput { get; }

    /// <summary>The split takes ownership of both backends and disposes them.</summary>
    /// <param name="tiedOutput">the model's output projection is its embedding table (no output.weight): load it on both sides.</param>
    public SplitBackend(IBackend first, IBackend second, int split, int layerCount, bool tiedOutput = false)
    {
        TiedOutput = tiedOutput;
        if (layerCount < 1) throw new ArgumentOutOfRangeException(nameof(layerCount), $"layer count {layerCount} must be positive");
        if (split < 0 || split > layerCount) throw new ArgumentOutOfRangeException(nameof(split), $"split {split} is not in [0, {layerCount}]");
        First = first;
        Second = second;
        Split = split;
        LayerCount = layerCount;
    }

    public string Name => Split == 0
        ? $"split: embeddings on {First.Name}; layers 0-{LayerCount - 1} and output on {Second.Name}"
        : $"split: embeddings and layers 0-{Split - 1} on {First.Name}; " +
          (Split < LayerCount ? $"layers {Split}-{LayerCount - 1} and output on {Second.Name}" : $"output on {Second.Name}");

    /// <summary>The side (1 = First, 2 = Second) that owns layer <paramref name="layer"/>.</summary>
    public IBackend LayerBackend(int layer) => LayerSide(layer) == OnFirst ? First : Second;

    private byte LayerSide(int layer) => layer < Split ? OnFirst : OnSecond;

    /// <summary>Where a tensor lives: its layer's side for blk.N.*, First for the token embeddings, Second for the rest.</summary>
    public byte SideOf(string tensorName)
    {
        if (TensorNames.BlockLayer(tensorName) is int layer and >= 0) return LayerSide(layer);
        return tensorName.StartsWith("token_embd", StringComparison.Ordinal) ? OnFirst : OnSecond;
    }

    private IBackend Side(byte side) => side == OnFirst ? First : Second;

    public void Prepare(BackendLimits limits)
    {
        First.Prepare(limits);
        Second.Prepare(limits);
    }

    public BackendBuffer Allocate(long length)
    {
        var b = new SplitBuffer(length, First.Allocate(length), Second.Allocate(length));
        _buffers.Add(b);
        if (length > _host.Length)
        {
            if (length > Array.MaxLength) throw new ArgumentOutOfRangeException(nameof(length), $"split activation buffer of {length} floats is too large");
            _host = new float[length];
        }
        return b;
    }

    /// <summary>
    /// The cache buffers go to their layer's side unwrapped (the side backend reads them directly). <see cref="KvCache"/>
    /// allocates K then V of layer 0, then of layer 1, ...: call n belongs to layer n / 2.
    /// </summary>
    public BackendBuffer AllocateCache(long length)
    {
        int layer = _cacheAllocations++ / 2;
        return Side(LayerSide(Math.Min(layer, LayerCount - 1))).AllocateCache(length);
    }

    /// <summary>The second side's (the GPU's, in an offload): a type both sides must store (CUDA: f16, which the CPU also stores).</summary>
    public KvCacheType DefaultCacheType => Second.DefaultCacheType;

    /// <summary>As <see cref="AllocateCache(long)"/>, in <paramref name="type"/> (the layer's side refuses a type it cannot store).</summary>
    public BackendBuffer AllocateCache(long length, KvCacheType type)
    {
        int layer = _cacheAllocations++ / 2;
        return Side(LayerSide(Math.Min(layer, LayerCount - 1))).AllocateCache(length, type);
    }

    /// <summary>Context shift of a layer runs on the side that holds its cache.</summary>
    public void ShiftKv(KvCache cache, int layer, int keep, int drop, RopeSpec rope) => LayerBackend(layer).ShiftKv(cache, layer, keep, drop, rope);

    /// <summary>Prompt-cache rows of a layer are read or written on the side that holds its cache.</summary>
    public void CacheRows(KvCache cache, int layer, bool values, int pos, int count, Span<byte> dst, bool write)
        => LayerBackend(layer).CacheRows(cache, layer, values, pos, count, dst, write);

    public BackendWeight LoadWeight(TensorView tensor)
    {
        byte side = SideOf(tensor.Name);
        bool table = TiedOutput && tensor.Name.StartsWith("token_embd", StringComparison.Ordinal);
        return new SplitWeight(Side(side).LoadWeight(tensor), side, table ? Second.LoadWeight(tensor) : null);
    }

    // ---- operations -------------------------------------------------------------------------------------------

    public void GetRows(BackendWeight table, ReadOnlySpan<int> ids, BackendBuffer dst)
    {
        var w = W(table);
        _current = w.Side;
        Side(w.Side).GetRows(w.Inner, ids, Write(dst));
    }

    public void RmsNorm(BackendBuffer x, BackendWeight weight, BackendBuffer dst, int nTokens, int dim, float eps)
    {
        var w = W(weight);
        _current = w.Side;
        var xs = Read(x);
        Side(w.Side).RmsNorm(xs, w.Inner, Write(dst), nTokens, dim, eps); // x may be dst: read first, then marked written
    }

    public void MatMul(BackendWeight weight, BackendBuffer x, BackendBuffer dst, int nTokens)
    {
        var w = W(weight);
        if (w.OutputCopy is { } tied) // the tied output projection runs with the output norm
        {
            _current = OnSecond;
            Second.MatMul(tied, Read(x), Write(dst), nTokens);
            return;
        }
        _current = w.Side;
        Side(w.Side).MatMul(w.Inner, Read(x), Write(dst), nTokens);
    }

    public void Rope(BackendBuffer x, int nTokens, int nHeads, int startPos, RopeSpec rope)
    {
        FollowInput(x);
        Side(_current).Rope(ReadWrite(x), nTokens, nHeads, startPos, rope);
    }

    public void StoreKv(KvCache cache, int layer, int startPos, int nTokens, BackendBuffer k, BackendBuffer v)
    {
        _current = LayerSide(layer);
        Side(_current).StoreKv(cache, layer, startPos, nTokens, Read(k), Read(v));
    }

    public void Attention(BackendBuffer q, KvCache cache, int layer, int startPos, int nTokens, int nHeads, int headDim, BackendBuffer dst, AttentionOptions options)
    {
        _current = LayerSide(layer);
        Side(_current).Attention(Read(q), cache, layer, startPos, nTokens, nHeads, headDim, Write(dst), options);
    }

    public void Glu(BackendBuffer gate, BackendBuffer up, long count, GluKind kind)
    {
        FollowInput(gate);
        var u = Read(up);
        Side(_current).Glu(ReadWrite(gate), u, count, kind);
    }

    public void AddBias(BackendBuffer x, BackendWeight bias, int nTokens)
    {
        var w = W(bias);
        _current = w.Side;
        Side(w.Side).AddBias(ReadWrite(x), w.Inner, nTokens);
    }

    public void Scale(BackendBuffer x, long count, float factor)
    {
        FollowInput(x);
        Side(_current).Scale(ReadWrite(x), count, factor);
    }

    public void Softcap(BackendBuffer x, long count, float cap)
    {
        FollowInput(x);
        Side(_current).Softcap(ReadWrite(x), count, cap);
    }

    public void Add(BackendBuffer x, BackendBuffer y, long count)
    {
        FollowInput(x);
        var ys = Read(y);
        Side(_current).Add(ReadWrite(x), ys, count);
    }

    public void Copy(BackendBuffer src, long srcOffset, BackendBuffer dst, long dstOffset, long count)
    {
        FollowInput(src);
        var s = Read(src);
        Side(_current).Copy(s, srcOffset, ReadWrite(dst), dstOffset, count); // a partial write: the rest of dst must be current too
    }

    public void CopyOut(BackendBuffer src, long srcOffset, Span<float> dst)
    {
        FollowInput(src);
        Side(_current).CopyOut(Read(src), srcOffset, dst);
    }

    public void CopyIn(ReadOnlySpan<float> src, BackendBuffer dst, long dstOffset)
    {
        // A partial write from the host: keep the rest of the buffer current on the side that receives it.
        FollowInput(dst);
        Side(_current).CopyIn(src, ReadWrite(dst), dstOffset);
    }

    // ---- where the current copy of a buffer is ----------------------------------------------------------------

    private static SplitWeight W(BackendWeight w) => w as SplitWeight ?? throw new ArgumentException($"weight {w.Name} was not loaded by this split backend");

    private static SplitBuffer B(BackendBuffer b) => b as SplitBuffer ?? throw new ArgumentException("buffer was not allocated by this split backend");

    /// <summary>A weightless operation runs where its main input is current (staying on the current side when both are).</summary>
    private void FollowInput(BackendBuffer x)
    {
        var b = B(x);
        if ((b.Valid & _current) == 0) _current = b.Valid;
    }

    /// <summary>The current side's copy of an input, copied over from the other side first if needed.</summary>
    private BackendBuffer Read(BackendBuffer buffer)
    {
        var b = B(buffer);
        if ((b.Valid & _current) == 0)
        {
            var from = Side(b.Valid);
            var to = Side(_current);
            var host = _host.AsSpan(0, checked((int)b.Length));
            from.CopyOut(b.Valid == OnFirst ? b.OnFirst : b.OnSecond, 0, host);
            to.CopyIn(host, _current == OnFirst ? b.OnFirst : b.OnSecond, 0);
            b.Valid = OnBoth;
            Transfers++;
            TransferredFloats += b.Length;
        }
        return _current == OnFirst ? b.OnFirst : b.OnSecond;
    }

    /// <summary>The current side's copy of an output that is written whole: the other side's copy goes stale.</summary>
    private BackendBuffer Write(BackendBuffer buffer)
    {
        var b = B(buffer);
        b.Valid = _current;
        return _current == OnFirst ? b.OnFirst : b.OnSecond;
    }

    /// <summary>An input that is also (partly) overwritten: made current here, then only here.</summary>
    private BackendBuffer ReadWrite(BackendBuffer buffer)
    {
        var inner = Read(buffer);
        B(buffer).Valid = _current;
        return inner;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        First.Dispose();
        Second.Dispose();
    }
}
