namespace EdgeLlm.Compute;

/// <summary>
/// Keys and values of every layer for positions 0..<see cref="Size"/>-1, in backend buffers: per layer
/// one [Size, KvDim] buffer for K and one for V (K rows are stored after RoPE), each row stored as
/// <see cref="KeyType"/> / <see cref="ValueType"/> (<see cref="KvCacheTypes.RowBytes"/> bytes a row).
/// <see cref="Filled"/> is how many leading positions hold valid entries. A handle the backend makes
/// (<see cref="IBackend.CreateCache"/>) and alone reads: its buffers are not public.
/// </summary>
public sealed class KvCache
{
    public int Size { get; }
    public int KvDim { get; }
    public int LayerCount { get; }

    /// <summary>Positions 0..Filled-1 are valid. A forward pass may start at any position up to Filled.</summary>
    public int Filled { get; internal set; }

    private readonly BackendBuffer[] _k;
    private readonly BackendBuffer[] _v;

    /// <summary>How K rows are stored.</summary>
    public KvCacheType KeyType { get; }

    /// <summary>How V rows are stored.</summary>
    public KvCacheType ValueType { get; }

    /// <summary>Bytes of one stored K row (KvDim values).</summary>
    public long KeyRowBytes => KvCacheTypes.RowBytes(KeyType, KvDim);

    /// <summary>Bytes of one stored V row (KvDim values).</summary>
    public long ValueRowBytes => KvCacheTypes.RowBytes(ValueType, KvDim);

    /// <summary>A cache in the backend's default type (<see cref="IBackend.DefaultCacheType"/>).</summary>
    internal KvCache(IBackend backend, int layerCount, int size, int kvDim)
        : this(backend, layerCount, size, kvDim, backend.DefaultCacheType, backend.DefaultCacheType)
    {
    }

    internal KvCache(IBackend backend, int layerCount, int size, int kvDim, KvCacheType keyType, KvCacheType valueType)
    {
        if (layerCount < 1 || size < 1 || kvDim < 1) throw new ArgumentOutOfRangeException(nameof(size), "kv cache dimensions must be positive");
        Size = size;
        KvDim = kvDim;
        LayerCount = layerCount;
        KeyType = keyType;
        ValueType = valueType;
        _k = new BackendBuffer[layerCount];
        _v = new BackendBuffer[layerCount];
        for (int l = 0; l < layerCount; l++)
        {
            _k[l] = backend.AllocateCache((long)size * kvDim, keyType);
            _v[l] = backend.AllocateCache((long)size * kvDim, valueType);
        }
    }

    internal BackendBuffer Keys(int layer) => _k[layer];
    internal BackendBuffer Values(int layer) => _v[layer];

    /// <summary>Bytes of cache memory.</summary>
    public long ByteSize => LayerCount * (long)Size * (KeyRowBytes + ValueRowBytes);

    /// <summary>Bytes of cache memory per position (all layers, K and V).</summary>
    public long BytesPerToken => LayerCount * (KeyRowBytes + ValueRowBytes);

    /// <summary>Forgets every position (the buffers are reused, not cleared).</summary>
    public void Clear() => Filled = 0;
}
