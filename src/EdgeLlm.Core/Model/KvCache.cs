namespace EdgeLlm.Model;

/// <summary>
/// Keys and values of every layer for positions 0..<see cref="Size"/>-1, in backend buffers: per layer
/// one [Size, KvDim] float32 buffer for K and one for V (K and V rows are stored after RoPE).
/// <see cref="Filled"/> is how many leading positions hold valid entries.
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

    public KvCache(IBackend backend, int layerCount, int size, int kvDim)
    {
        if (layerCount < 1 || size < 1 || kvDim < 1) throw new ArgumentOutOfRangeException(nameof(size), "kv cache dimensions must be positive");
        Size = size;
        KvDim = kvDim;
        LayerCount = layerCount;
        _k = new BackendBuffer[layerCount];
        _v = new BackendBuffer[layerCount];
        for (int l = 0; l < layerCount; l++)
        {
            _k[l] = backend.AllocateCache((long)size * kvDim);
            _v[l] = backend.AllocateCache((long)size * kvDim);
        }
    }

    public BackendBuffer Keys(int layer) => _k[layer];
    public BackendBuffer Values(int layer) => _v[layer];

    /// <summary>Bytes of cache memory.</summary>
    public long ByteSize => 2L * LayerCount * Size * KvDim * sizeof(float);

    /// <summary>Forgets every position (the buffers are reused, not cleared).</summary>
    public void Clear() => Filled = 0;
}
