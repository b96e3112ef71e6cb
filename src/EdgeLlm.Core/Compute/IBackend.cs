using EdgeLlm.Gguf;

namespace EdgeLlm.Compute;

/// <summary>
/// The operations the Llama forward pass needs, one call per operation over a whole batch (never per
/// row), on opaque buffers the backend owns. Activations are float32 and row-major: a batch of
/// <c>nTokens</c> vectors of width <c>w</c> is <c>nTokens * w</c> contiguous floats. The CPU backend runs
/// them on its worker threads; a GPU backend would enqueue kernels and sync only in <see cref="CopyOut"/>.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>Short description for logs ("cpu, 8 threads, avx512").</summary>
    string Name { get; }

    /// <summary>Allocates the backend's working memory for these limits (once, at load).</summary>
    void Prepare(BackendLimits limits);

    /// <summary>A zeroed float32 buffer of <paramref name="length"/> elements, freed with the backend.</summary>
    BackendBuffer Allocate(long length);

    /// <summary>
    /// A KV-cache buffer of <paramref name="length"/> elements, only ever written by <see cref="StoreKv"/> and read
    /// by <see cref="Attention"/>, so a backend may store it in a narrower type (the CUDA backend uses fp16).
    /// </summary>
    BackendBuffer AllocateCache(long length) => Allocate(length);

    /// <summary>The cache type a <see cref="KvCache"/> gets when none is asked for (the CPU: f32, CUDA: f16).</summary>
    KvCacheType DefaultCacheType => KvCacheType.F32;

    /// <summary>
    /// A KV-cache buffer of <paramref name="length"/> values stored as <paramref name="type"/>; a backend that cannot
    /// store that type throws <see cref="EdgeLlmException"/> saying which it can.
    /// </summary>
    BackendBuffer AllocateCache(long length, KvCacheType type) => type == DefaultCacheType ? AllocateCache(length)
        : throw new EdgeLlmException($"{Name}: kv cache type {KvCacheTypes.Name(type)} is not supported on this backend (it stores {KvCacheTypes.Name(DefaultCacheType)})");

    /// <summary>
    /// A KV cache of <paramref name="size"/> positions for <paramref name="layerCount"/> layers, rows of <paramref name="kvDim"/>
    /// values stored as <paramref name="keyType"/> / <paramref name="valueType"/> in buffers this backend allocates
    /// (<see cref="AllocateCache(long, KvCacheType)"/>). The caller only hands it back to <see cref="StoreKv"/>,
    /// <see cref="Attention"/>, <see cref="ShiftKv"/> and <see cref="CacheRows"/> and keeps its <see cref="KvCache.Filled"/> count.
    /// </summary>
    KvCache CreateCache(int layerCount, int size, int kvDim, KvCacheType keyType, KvCacheType valueType)
        => new(this, layerCount, size, kvDim, keyType, valueType);

    /// <summary>
    /// Context shift of one layer: moves the cached rows of positions [keep + drop, Filled) down to keep.. and rotates
    /// the moved keys by −drop positions of <paramref name="rope"/> (RoPE is a rotation by position, so the keys end up
    /// as if computed at their new positions). The caller updates <see cref="KvCache.Filled"/>.
    /// </summary>
    void ShiftKv(KvCache cache, int layer, int keep, int drop, RopeSpec rope)
        => throw new EdgeLlmException($"{Name}: context shift is not supported on this backend");

    /// <summary>
    /// Copies the stored bytes of <paramref name="count"/> cached rows from position <paramref name="pos"/> of one
    /// layer's K (or V when <paramref name="values"/>) into <paramref name="dst"/> (count · row bytes), or with
    /// <paramref name="write"/> from <paramref name="dst"/> into the cache (the prompt cache file).
    /// </summary>
    void CacheRows(KvCache cache, int layer, bool values, int pos, int count, Span<byte> dst, bool write)
        => throw new EdgeLlmException($"{Name}: reading or writing kv cache rows is not supported on this backend");

    /// <summary>Makes a weight tensor usable by this backend (the CPU keeps the mmap view; a GPU uploads).</summary>
    BackendWeight LoadWeight(TensorView tensor);

    /// <summary>Embedding lookup: <c>dst[t] = dequantize(table row ids[t])</c>. Ids must already be in range.</summary>
    void GetRows(BackendWeight table, ReadOnlySpan<int> ids, BackendBuffer dst);

    /// <summary>
    /// <c>dst[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight</c> for each of the nTokens rows of width dim. x and dst
    /// may be the same buffer. Per-head q/k norms are this over nTokens · nHeads rows of width headDim.
    /// </summary>
    void RmsNorm(BackendBuffer x, BackendWeight weight, BackendBuffer dst, int nTokens, int dim, float eps);

    /// <summary>
    /// The residual add and the norm that reads it, as one op: <c>x[t] += delta[t]</c>, then <c>dst[t] = RmsNorm(x[t])</c> as
    /// <see cref="RmsNorm"/> writes it, for each of the nTokens rows of width dim (the same bits as <see cref="Add"/> then
    /// <see cref="RmsNorm"/>). dst may be delta (each row's delta is read before its dst is written), not x. This default
    /// runs the two ops; the CPU does each row in one pass and one dispatch.
    /// </summary>
    void AddRmsNorm(BackendBuffer x, BackendBuffer delta, BackendWeight weight, BackendBuffer dst, int nTokens, int dim, float eps)
    {
        Add(x, delta, (long)nTokens * dim);
        RmsNorm(x, weight, dst, nTokens, dim, eps);
    }

    /// <summary>
    /// <c>dst[t, r] = dot(weight row r, x[t])</c> for t &lt; nTokens: x rows are weight.Ne0 wide, dst rows
    /// weight.Rows wide. Each output element is computed the same way whatever nTokens is.
    /// </summary>
    void MatMul(BackendWeight weight, BackendBuffer x, BackendBuffer dst, int nTokens);

    /// <summary>
    /// Products of one input with several weights of one row length (a layer's Q/K/V, its gate/up): for each i,
    /// <c>dsts[i][t, r] = dot(weights[i] row r, x[t])</c>, the same values <see cref="MatMul"/> of that weight alone writes.
    /// A backend may run them as one product (the CPU quantizes x once and splits the rows of all weights over its
    /// threads in one dispatch); this default runs them one after another.
    /// </summary>
    void MatMulGroup(ReadOnlySpan<BackendWeight> weights, BackendBuffer x, ReadOnlySpan<BackendBuffer> dsts, int nTokens)
    {
        if (weights.Length != dsts.Length) throw new ArgumentException($"{weights.Length} weights and {dsts.Length} outputs", nameof(dsts));
        for (int i = 0; i < weights.Length; i++) MatMul(weights[i], x, dsts[i], nTokens);
    }

    /// <summary>
    /// The norm that feeds a product, and the product: with a <paramref name="delta"/>, <see cref="AddRmsNorm"/>(x, delta,
    /// <paramref name="norm"/>, <paramref name="normed"/>), else <see cref="RmsNorm"/>(x, norm, normed), then
    /// <see cref="MatMulGroup"/>(weights, normed, dsts): the same bits as those ops (x keeps the residual sum, normed the
    /// normed rows; without a delta, normed may be x: the norm in place). This default runs them; the CPU norms each token
    /// where it quantizes it for the product, so the norm of a server step's few rows needs no dispatch of its own.
    /// </summary>
    void NormMatMulGroup(BackendBuffer x, BackendBuffer? delta, BackendWeight norm, BackendBuffer normed, int dim, float eps,
        ReadOnlySpan<BackendWeight> weights, ReadOnlySpan<BackendBuffer> dsts, int nTokens)
    {
        if (delta is null) RmsNorm(x, norm, normed, nTokens, dim, eps);
        else AddRmsNorm(x, delta, norm, normed, nTokens, dim, eps);
        MatMulGroup(weights, normed, dsts, nTokens);
    }

    /// <summary>
    /// The gated feed-forward's down product with its activation as one op: <c>gate[i] = act(gate[i]) · up[i]</c> over the
    /// nTokens rows of weight.Ne0 (as <see cref="Glu"/>; gate keeps the result), then <c>dst = weight · gate</c> (as
    /// <see cref="MatMul"/>): the same bits as the two ops. This default runs the two ops; the CPU applies the activation
    /// to each token where it quantizes it for the product, without a dispatch of its own.
    /// </summary>
    void GluMatMul(BackendWeight weight, BackendBuffer gate, BackendBuffer up, GluKind kind, BackendBuffer dst, int nTokens)
    {
        Glu(gate, up, (long)nTokens * weight.Ne0, kind);
        MatMul(weight, gate, dst, nTokens);
    }

    /// <summary>Rotates, in place, the nHeads heads of each token t at position startPos + t.</summary>
    void Rope(BackendBuffer x, int nTokens, int nHeads, int startPos, RopeSpec rope);

    /// <summary>Writes the nTokens rows of k and v into the cache for <paramref name="layer"/> at positions startPos...</summary>
    void StoreKv(KvCache cache, int layer, int startPos, int nTokens, BackendBuffer k, BackendBuffer v);

    /// <summary>
    /// Causal grouped-query attention: for token t (position i = startPos + t) and head h,
    /// <c>dst[t, h] = softmax_j(s_j) . V[j, h / group]</c> with <c>s_j = Scale · (q[t, h] . K[j, h / group])</c>,
    /// then <c>s_j = Softcap · tanh(s_j / Softcap)</c> when Softcap &gt; 0, over the visible keys j: j ≤ i and
    /// (Window == 0 or i − j &lt; Window) (llama.cpp's sliding-window mask).
    /// </summary>
    void Attention(BackendBuffer q, KvCache cache, int layer, int startPos, int nTokens, int nHeads, int headDim, BackendBuffer dst, AttentionOptions options);

    /// <summary>
    /// The attention of one layer from its fresh q, k, v as one op: <see cref="Rope"/> of q (nHeads heads) and k (nKvHeads
    /// heads) at positions startPos.., <see cref="StoreKv"/> of k and v, then <see cref="Attention"/> of q into dst: the same
    /// bits as those four ops. Afterwards k holds its rotation; q may hold its rotation or still the unrotated values (the
    /// CPU rotates each query row inside the attention dispatch and leaves q as it was). This default runs the four ops.
    /// </summary>
    void RopeAttention(BackendBuffer q, BackendBuffer k, BackendBuffer v, KvCache cache, int layer, int startPos, int nTokens, int nHeads, int nKvHeads,
        RopeSpec rope, BackendBuffer dst, AttentionOptions options)
    {
        Rope(q, nTokens, nHeads, startPos, rope);
        Rope(k, nTokens, nKvHeads, startPos, rope);
        StoreKv(cache, layer, startPos, nTokens, k, v);
        Attention(q, cache, layer, startPos, nTokens, nHeads, rope.HeadDim, dst, options);
    }

    /// <summary><c>gate[i] = act(gate[i]) * up[i]</c> for i &lt; count, act chosen by <paramref name="kind"/>.</summary>
    void Glu(BackendBuffer gate, BackendBuffer up, long count, GluKind kind);

    /// <summary><c>x[t · w + i] += bias[i]</c> for t &lt; nTokens, i &lt; w = bias.Ne0 (an F32 vector).</summary>
    void AddBias(BackendBuffer x, BackendWeight bias, int nTokens);

    /// <summary><c>x[i] *= factor</c> for i &lt; count.</summary>
    void Scale(BackendBuffer x, long count, float factor);

    /// <summary><c>x[i] = cap · tanh(x[i] / cap)</c> for i &lt; count (Gemma 2's logit softcapping).</summary>
    void Softcap(BackendBuffer x, long count, float cap);

    /// <summary><c>x[i] += y[i]</c> for i &lt; count (the residual connection).</summary>
    void Add(BackendBuffer x, BackendBuffer y, long count);

    /// <summary>Copies count floats from src[srcOffset] to dst[dstOffset] on the backend.</summary>
    void Copy(BackendBuffer src, long srcOffset, BackendBuffer dst, long dstOffset, long count);

    /// <summary>Copies <c>dst.Length</c> floats from src[srcOffset] into host memory (waits for pending work).</summary>
    void CopyOut(BackendBuffer src, long srcOffset, Span<float> dst);

    /// <summary>Copies host floats into dst[dstOffset...] (after pending work). The split backend moves activations with it.</summary>
    void CopyIn(ReadOnlySpan<float> src, BackendBuffer dst, long dstOffset)
        => throw new NotSupportedException($"{Name}: copying host memory into a buffer is not supported on this backend");
}

/// <summary>
/// How <see cref="IBackend.Attention"/> scores keys: <c>Scale · (q . k)</c>, softcapped to ±Softcap when Softcap &gt; 0,
/// and only the last <c>Window</c> positions visible when Window &gt; 0 (0 = plain causal).
/// </summary>
public readonly record struct AttentionOptions(float Scale, float Softcap, int Window);

/// <summary>The gate activation of a gated feed-forward: SiLU (Llama, Qwen, Phi) or tanh-approximated GELU (Gemma).</summary>
public enum GluKind
{
    /// <summary>silu(x) = x / (1 + e^-x).</summary>
    Silu,

    /// <summary>gelu(x) ≈ 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³))).</summary>
    GeluTanh,
}

/// <summary>
/// What a backend sizes its scratch memory for: tokens per batch, the longest weight row, the KV cache
/// length, and the attention head geometry.
/// </summary>
public readonly record struct BackendLimits(int MaxBatch, int MaxRowLength, int ContextSize, int HeadDim, int RopeDims);

/// <summary>An activation buffer owned by a backend: <see cref="Length"/> float32 elements.</summary>
public abstract class BackendBuffer
{
    public long Length { get; }

    protected BackendBuffer(long length) => Length = length;
}

/// <summary>A weight matrix or vector as a backend holds it: Rows rows of Ne0 elements of Type.</summary>
public abstract class BackendWeight
{
    public string Name { get; }
    public GgmlType Type { get; }
    public long Ne0 { get; }
    public long Rows { get; }

    protected BackendWeight(string name, GgmlType type, long ne0, long rows)
    {
        Name = name;
        Type = type;
        Ne0 = ne0;
        Rows = rows;
    }
}

/// <summary>
/// RoPE: pair i (i &lt; Dims/2) of each head rotates by <c>theta_i = (pos / Scale) * Base^(-2i/Dims) / FreqFactors[i]</c>
/// (factors for Llama-3.1 style rope_freqs and Phi-3 LongRoPE). The pair is (x[2i], x[2i+1]) in llama.cpp's
/// "normal" layout and (x[i], x[i + Dims/2]) when <see cref="Neox"/>; cos and sin are multiplied by
/// <see cref="AttnFactor"/> (LongRoPE's attention factor, 1 = none). Elements past Dims pass through. One instance
/// per distinct layer kind of a model (Gemma 3 has a local and a global one), so a backend may cache tables keyed on it.
/// </summary>
public sealed class RopeSpec
{
    public int HeadDim { get; }
    public int Dims { get; }
    public float Base { get; }
    public float Scale { get; }
    public float[]? FreqFactors { get; }

    /// <summary>NEOX layout: pair i is (x[i], x[i + Dims/2]) instead of (x[2i], x[2i+1]).</summary>
    public bool Neox { get; }

    /// <summary>Multiplier of cos and sin (1 = none).</summary>
    public float AttnFactor { get; }

    /// <summary>Per pair i: <c>Base^(-2i/Dims) / FreqFactors[i]</c>, in double so every backend starts from the same numbers.</summary>
    public double[] InverseFrequencies { get; }

    public RopeSpec(int headDim, int dims, float @base, float scale, float[]? freqFactors, bool neox = false, float attnFactor = 1f)
    {
        if (!(attnFactor > 0 && float.IsFinite(attnFactor))) throw new ArgumentException($"rope attention factor {attnFactor} must be positive");
        if (dims % 2 != 0 || dims > headDim || dims < 2) throw new ArgumentException($"rope dims {dims} must be even and in [2, {headDim}]");
        if (freqFactors is not null && freqFactors.Length != dims / 2)
            throw new ArgumentException($"rope_freqs has {freqFactors.Length} factors, {dims / 2} expected");
        HeadDim = headDim;
        Dims = dims;
        Base = @base;
        Scale = scale;
        FreqFactors = freqFactors;
        Neox = neox;
        AttnFactor = attnFactor;
        InverseFrequencies = new double[dims / 2];
        for (int i = 0; i < dims / 2; i++)
        {
            double f = Math.Pow(@base, -2.0 * i / dims);
            if (freqFactors is not null) f /= freqFactors[i];
            InverseFrequencies[i] = f;
        }
    }

    /// <summary>The rotation angle of pair i at position pos.</summary>
    public double Theta(long pos, int i) => pos / (double)Scale * InverseFrequencies[i];
}
