using EdgeLlm.Gguf;

namespace EdgeLlm.Model;

/// <summary>
/// A loaded model of any family <see cref="ArchSpec"/> describes (Llama, Mistral, Qwen 2/3, Phi-3, Gemma 1/2/3):
/// config, weights (views of the file's memory map), a backend, a KV cache and the activation buffers, all
/// allocated once here. <see cref="ForwardBatch"/> is the whole transformer in one readable method (in the spirit
/// of llama2.c's run.c), written against <see cref="IBackend"/>; the families differ only in data (which optional
/// weights a layer has, the activation, the per-layer rope and attention options). One sequence, one caller at a
/// time: the model is not thread-safe (its parallelism is inside the backend).
/// </summary>
public sealed class LlamaModel : IDisposable
{
    public GgufFile File { get; }
    public LlamaConfig Config { get; }
    public LlamaWeights Weights { get; }
    public IBackend Backend { get; }
    public KvCache Cache { get; }

    /// <summary>The rotation of the global (non-sliding-window) layers.</summary>
    public RopeSpec Rope { get; }

    /// <summary>The rotation of the sliding-window layers (the same object as <see cref="Rope"/> unless the family gives them their own base).</summary>
    public RopeSpec RopeSwa { get; }

    /// <summary>Positions the KV cache holds: the most tokens one sequence may have.</summary>
    public int ContextSize => Cache.Size;
    public int MaxBatch { get; }
    public int VocabSize => Config.VocabSize;

    private readonly bool _ownsFile;
    private readonly BackendWeight _tokenEmbd, _outputNorm, _output;
    private readonly Layer[] _layers;
    private readonly float _embeddingScale;

    // Activations for one batch of up to MaxBatch tokens, row-major [tokens, width].
    private readonly BackendBuffer _x;      // residual stream [B, dim]
    private readonly BackendBuffer _xb;     // normed input / branch output [B, dim]
    private readonly BackendBuffer _q;      // [B, qDim]
    private readonly BackendBuffer _k;      // [B, kvDim]
    private readonly BackendBuffer _v;      // [B, kvDim]
    private readonly BackendBuffer _att;    // attention output [B, qDim]
    private readonly BackendBuffer _gate;   // [B, ffn]
    private readonly BackendBuffer _up;     // [B, ffn]
    private readonly BackendBuffer _logits; // [B, vocab]

    /// <summary>One block's weights (optional ones null when the family or file has none) and its rope and attention options.</summary>
    private sealed class Layer
    {
        public required BackendWeight AttnNorm, Wq, Wk, Wv, Wo, FfnNorm, Gate, Up, Down;
        public BackendWeight? Bq, Bk, Bv, Bo, QNorm, KNorm, PostAttnNorm, PostFfnNorm;
        public required RopeSpec Rope;
        public required AttentionOptions Attention;
    }

    /// <summary>Which backend <see cref="Load"/> chose and why, one line for the log ("" when constructed directly).</summary>
    public string BackendDescription { get; private set; } = "";

    /// <summary>True when <see cref="BackendDescription"/> is worth a warning (a GPU is present but was not used).</summary>
    public bool BackendWarning { get; private set; }

    /// <summary>
    /// Opens a GGUF file and loads it on the backend <see cref="BackendOptions.Device"/> selects (the CPU by
    /// default). With "auto", a CUDA failure while loading the weights falls back to the CPU. The model owns
    /// (and disposes) the file.
    /// </summary>
    public static LlamaModel Load(string path, BackendOptions? options = null)
    {
        options ??= new BackendOptions();
        var spec = Backends.DeviceSpec.Parse(options.Device);
        var file = GgufFile.Open(path, options.Load);
        IBackend? backend = null;
        try
        {
            var selection = Backends.BackendSelector.Select(options, file);
            backend = selection.Backend;
            try
            {
                var model = new LlamaModel(file, backend, options, ownsFile: true);
                model.BackendDescription = selection.Description;
                model.BackendWarning = selection.Warn;
                return model;
            }
            catch (Backends.Cuda.Native.CudaException e) when (selection.IsCuda && spec.Kind == Backends.DeviceKind.Auto)
            {
                backend.Dispose();
                backend = null;
                var cpu = Backends.BackendSelector.Cpu(options, $"device cpu: CUDA failed while loading the model: {e.Message}", warn: true);
                backend = cpu.Backend;
                var model = new LlamaModel(file, backend, options, ownsFile: true);
                model.BackendDescription = cpu.Description;
                model.BackendWarning = true;
                return model;
            }
        }
        catch
        {
            backend?.Dispose();
            file.Dispose();
            throw;
        }
    }

    /// <summary>Binds an open file to a backend. The model disposes the backend, and the file if <paramref name="ownsFile"/>.</summary>
    public LlamaModel(GgufFile file, IBackend backend, BackendOptions options, bool ownsFile)
    {
        File = file;
        Backend = backend;
        _ownsFile = ownsFile;
        Config = LlamaConfig.FromGguf(file);
        Weights = new LlamaWeights(file, Config);
        var c = Config;

        int ctx = options.ContextSize == 0 ? Math.Min(c.ContextLength, BackendOptions.DefaultContextCap) : options.ContextSize;
        if (ctx < 1 || ctx > LlamaConfig.MaxContext)
            throw new ArgumentOutOfRangeException(nameof(options), $"context size {options.ContextSize} is not in [1, {LlamaConfig.MaxContext}]");
        if (options.MaxBatch < 1) throw new ArgumentOutOfRangeException(nameof(options), $"batch size {options.MaxBatch} must be at least 1");
        MaxBatch = Math.Min(options.MaxBatch, ctx);
        bool neox = c.Arch.NeoxRope;
        Rope = new RopeSpec(c.HeadDim, c.RopeDims, c.RopeFreqBase, c.RopeScale, Weights.RopeFreqFactors(c, ctx), neox, c.RopeAttnFactor);
        RopeSwa = c.RopeFreqBaseSwa == c.RopeFreqBase ? Rope
            : new RopeSpec(c.HeadDim, c.RopeDims, c.RopeFreqBaseSwa, 1f, null, neox, c.RopeAttnFactor);
        _embeddingScale = c.EmbeddingScale;
        int maxRow = Math.Max(Math.Max(c.Dim, c.QDim), c.FfnDim);
        backend.Prepare(new BackendLimits(MaxBatch, maxRow, ctx, c.HeadDim, c.RopeDims));

        _tokenEmbd = backend.LoadWeight(Weights.TokenEmbd);
        _outputNorm = backend.LoadWeight(Weights.OutputNorm);
        _output = Weights.TiedOutput ? _tokenEmbd : backend.LoadWeight(Weights.Output);
        _layers = new Layer[c.LayerCount];
        BackendWeight? Optional(TensorView? t) => t is { } v ? backend.LoadWeight(v) : null;
        for (int i = 0; i < _layers.Length; i++)
        {
            var l = Weights.Layers[i];
            bool sliding = c.Arch.IsSlidingLayer(i);
            _layers[i] = new Layer
            {
                AttnNorm = backend.LoadWeight(l.AttnNorm),
                Wq = backend.LoadWeight(l.Wq),
                Wk = backend.LoadWeight(l.Wk),
                Wv = backend.LoadWeight(l.Wv),
                Bq = Optional(l.Bq),
                Bk = Optional(l.Bk),
                Bv = Optional(l.Bv),
                QNorm = Optional(l.QNorm),
                KNorm = Optional(l.KNorm),
                Wo = backend.LoadWeight(l.Wo),
                Bo = Optional(l.Bo),
                PostAttnNorm = Optional(l.PostAttnNorm),
                FfnNorm = backend.LoadWeight(l.FfnNorm),
                Gate = backend.LoadWeight(l.Gate),
                Up = backend.LoadWeight(l.Up),
                Down = backend.LoadWeight(l.Down),
                PostFfnNorm = Optional(l.PostFfnNorm),
                Rope = sliding ? RopeSwa : Rope,
                Attention = new AttentionOptions(c.AttentionScale, c.AttnSoftcap, c.LayerWindow(i)),
            };
        }

        var kType = options.CacheTypeK ?? backend.DefaultCacheType;
        var vType = options.CacheTypeV ?? backend.DefaultCacheType;
        KvCacheTypes.Check(kType, c.KvDim, c.HeadDim, "K");
        KvCacheTypes.Check(vType, c.KvDim, c.HeadDim, "V");
        Cache = new KvCache(backend, c.LayerCount, ctx, c.KvDim, kType, vType);
        long b = MaxBatch;
        _x = backend.Allocate(b * c.Dim);
        _xb = backend.Allocate(b * c.Dim);
        _q = backend.Allocate(b * c.QDim);
        _k = backend.Allocate(b * c.KvDim);
        _v = backend.Allocate(b * c.KvDim);
        _att = backend.Allocate(b * c.QDim);
        _gate = backend.Allocate(b * c.FfnDim);
        _up = backend.Allocate(b * c.FfnDim);
        _logits = backend.Allocate(b * c.VocabSize);
    }

    /// <summary>One token at position <paramref name="pos"/>; writes its <see cref="VocabSize"/> logits.</summary>
    public void Forward(int token, int pos, Span<float> logits) => Forward(new ReadOnlySpan<int>(in token), pos, logits);

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions startPos, startPos+1, ... (a prefill batch, or one token
    /// when decoding), appending their keys and values to the cache. Writes the last token's logits into
    /// <paramref name="logits"/> (VocabSize floats), or with <paramref name="allLogits"/> every token's
    /// (tokens.Length * VocabSize floats, token-major). startPos may rewind into the cache (later entries
    /// are overwritten) but may not skip past <see cref="KvCache.Filled"/>.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, int startPos, Span<float> logits, bool allLogits = false)
    {
        int n = tokens.Length;
        int vocab = Config.VocabSize;
        if (n == 0) throw new ArgumentException("no tokens to run", nameof(tokens));
        if (startPos < 0 || startPos > Cache.Filled)
            throw new ArgumentOutOfRangeException(nameof(startPos), $"start position {startPos} is not in [0, {Cache.Filled}] (the positions already in the kv cache)");
        if ((long)startPos + n > ContextSize)
            throw new ContextOverflowException(startPos, n, ContextSize);
        long need = allLogits ? (long)n * vocab : vocab;
        if (logits.Length < need) throw new ArgumentException($"logits span holds {logits.Length} floats, {need} needed", nameof(logits));
        for (int i = 0; i < n; i++)
            if ((uint)tokens[i] >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(tokens), $"token {tokens[i]} at index {i} is not in the vocabulary [0, {vocab})");

        for (int done = 0; done < n; done += MaxBatch)
        {
            int nb = Math.Min(MaxBatch, n - done);
            bool last = done + nb == n;
            ForwardBatch(tokens.Slice(done, nb), startPos + done);
            if (allLogits) Logits(nb, logits.Slice(done * vocab, nb * vocab), lastOnly: false);
            else if (last) Logits(nb, logits[..vocab], lastOnly: true);
        }
    }

    /// <summary>The transformer over one batch: embeddings, then every layer, leaving the residual stream in _x.</summary>
    private void ForwardBatch(ReadOnlySpan<int> tokens, int pos)
    {
        var c = Config;
        var b = Backend;
        int n = tokens.Length;
        long nDim = (long)n * c.Dim;

        b.GetRows(_tokenEmbd, tokens, _x);
        if (_embeddingScale != 1f) b.Scale(_x, nDim, _embeddingScale); // Gemma: sqrt(dim)
        for (int l = 0; l < _layers.Length; l++)
        {
            var w = _layers[l];

            // attention: x += [post-norm] Wo . attention(rope([q-norm] Wq . norm(x) [+ bq]), cache + rope([k-norm] Wk . norm(x) [+ bk]), Wv . norm(x) [+ bv])
            b.RmsNorm(_x, w.AttnNorm, _xb, n, c.Dim, c.RmsEps);
            b.MatMul(w.Wq, _xb, _q, n);
            b.MatMul(w.Wk, _xb, _k, n);
            b.MatMul(w.Wv, _xb, _v, n);
            if (w.Bq is not null) b.AddBias(_q, w.Bq, n);
            if (w.Bk is not null) b.AddBias(_k, w.Bk, n);
            if (w.Bv is not null) b.AddBias(_v, w.Bv, n);
            if (w.QNorm is not null) b.RmsNorm(_q, w.QNorm, _q, n * c.HeadCount, c.HeadDim, c.RmsEps);
            if (w.KNorm is not null) b.RmsNorm(_k, w.KNorm, _k, n * c.KvHeadCount, c.HeadDim, c.RmsEps);
            b.Rope(_q, n, c.HeadCount, pos, w.Rope);
            b.Rope(_k, n, c.KvHeadCount, pos, w.Rope);
            b.StoreKv(Cache, l, pos, n, _k, _v);
            b.Attention(_q, Cache, l, pos, n, c.HeadCount, c.HeadDim, _att, w.Attention);
            b.MatMul(w.Wo, _att, _xb, n);
            if (w.Bo is not null) b.AddBias(_xb, w.Bo, n);
            if (w.PostAttnNorm is not null) b.RmsNorm(_xb, w.PostAttnNorm, _xb, n, c.Dim, c.RmsEps);
            b.Add(_x, _xb, nDim);

            // feed-forward: x += [post-norm] Wdown . (act(Wgate . norm(x)) * (Wup . norm(x))), act = silu or gelu(tanh)
            b.RmsNorm(_x, w.FfnNorm, _xb, n, c.Dim, c.RmsEps);
            b.MatMul(w.Gate, _xb, _gate, n);
            b.MatMul(w.Up, _xb, _up, n);
            b.Glu(_gate, _up, (long)n * c.FfnDim, c.Arch.Activation);
            b.MatMul(w.Down, _gate, _xb, n);
            if (w.PostFfnNorm is not null) b.RmsNorm(_xb, w.PostFfnNorm, _xb, n, c.Dim, c.RmsEps);
            b.Add(_x, _xb, nDim);
        }
        Cache.Filled = pos + n;
    }

    /// <summary>Final norm and output projection of the batch's last token (or of all n), copied to <paramref name="dst"/>.</summary>
    private void Logits(int n, Span<float> dst, bool lastOnly)
    {
        var c = Config;
        var b = Backend;
        int rows = n;
        var src = _x;
        if (lastOnly)
        {
            b.Copy(_x, (long)(n - 1) * c.Dim, _xb, 0, c.Dim);
            src = _xb;
            rows = 1;
        }
        b.RmsNorm(src, _outputNorm, _xb, rows, c.Dim, c.RmsEps);
        b.MatMul(_output, _xb, _logits, rows);
        if (c.FinalSoftcap > 0) b.Softcap(_logits, (long)rows * c.VocabSize, c.FinalSoftcap); // Gemma 2
        b.CopyOut(_logits, 0, dst[..(rows * c.VocabSize)]);
    }

    /// <summary>
    /// Context shift: forgets the cached positions [keep, keep + drop) and moves the later ones down by drop,
    /// re-rotating their keys with each layer's RoPE for the new positions; <see cref="KvCache.Filled"/> shrinks by drop.
    /// </summary>
    public void ShiftContext(int keep, int drop)
    {
        int filled = Cache.Filled;
        if (keep < 0 || drop < 1 || (long)keep + drop > filled)
            throw new ArgumentOutOfRangeException(nameof(drop), $"context shift keeping {keep} and dropping {drop} of {filled} cached positions is not possible");
        for (int l = 0; l < _layers.Length; l++) Backend.ShiftKv(Cache, l, keep, drop, _layers[l].Rope);
        Cache.Filled = filled - drop;
    }

    public void Dispose()
    {
        Backend.Dispose();
        if (_ownsFile) File.Dispose();
    }
}

/// <summary>A forward pass that would run past the end of the KV cache.</summary>
public sealed class ContextOverflowException(int startPos, int count, int contextSize)
    : EdgeLlmException($"context overflow: positions {startPos}..{(long)startPos + count - 1} do not fit in the context of {contextSize} tokens")
{
    public int ContextSize { get; } = contextSize;
}
