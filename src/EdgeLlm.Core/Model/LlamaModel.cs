using EdgeLlm.Compute;
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
    private readonly IStackedMatMul? _stacker; // the backend, when it multiplies stacked weights (Layer.Wqkv, Layer.GateUp)
    private readonly ISequenceAttention? _seqAttention; // the backend, when it attends all sequences of a batch in one call

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
        public required BackendWeight AttnNorm, Wo, FfnNorm, Down;
        public BackendWeight? Wq, Wk, Wv, Gate, Up;  // null when stacked:
        public BackendWeight? Wqkv, GateUp;           // Q/K/V and gate/up as one product each (IStackedMatMul backends)
        public BackendWeight? Bq, Bk, Bv, Bo, QNorm, KNorm, PostAttnNorm, PostFfnNorm;
        public required RopeSpec Rope;
        public required AttentionOptions Attention;
    }

    /// <summary>Which backend the loader (<c>Backends.ModelLoader</c>) chose and why, one line for the log ("" when constructed directly).</summary>
    public string BackendDescription { get; internal set; } = "";

    /// <summary>True when <see cref="BackendDescription"/> is worth a warning (a GPU is present but was not used).</summary>
    public bool BackendWarning { get; internal set; }

    /// <summary>Binds an open file to a backend. The model disposes the backend, and the file if <paramref name="ownsFile"/>.</summary>
    public LlamaModel(GgufFile file, IBackend backend, BackendOptions options, bool ownsFile)
        : this(file, backend, ResolvedOptions.Resolve(file, options), ownsFile)
    {
    }

    /// <summary>
    /// Binds an open file to a backend with options already resolved for that file. The model disposes the backend, and
    /// the file if <paramref name="ownsFile"/>.
    /// </summary>
    public LlamaModel(GgufFile file, IBackend backend, ResolvedOptions resolved, bool ownsFile)
    {
        if (!ReferenceEquals(resolved.File, file)) throw new ArgumentException("the options were resolved for another file", nameof(resolved));
        var options = resolved.Options;
        File = file;
        Backend = backend;
        _ownsFile = ownsFile;
        Config = resolved.Config;
        Weights = new LlamaWeights(file, Config);
        var c = Config;

        int ctx = resolved.ContextSize;
        MaxBatch = resolved.MaxBatch;
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
        _stacker = backend as IStackedMatMul; // checked once here; the forward only tests the layer's stacked weights for null
        _seqAttention = backend as ISequenceAttention;
        BackendWeight? Stacked(string name, params TensorView[] parts) => _stacker?.LoadStacked(name, parts);
        BackendWeight? Unless(BackendWeight? stacked, TensorView t) => stacked is null ? backend.LoadWeight(t) : null;
        for (int i = 0; i < _layers.Length; i++)
        {
            var l = Weights.Layers[i];
            bool sliding = c.Arch.IsSlidingLayer(i);
            var qkv = Stacked($"blk.{i}.attn_qkv(stacked)", l.Wq, l.Wk, l.Wv);
            var gateUp = Stacked($"blk.{i}.ffn_gate_up(stacked)", l.Gate, l.Up);
            _layers[i] = new Layer
            {
                AttnNorm = backend.LoadWeight(l.AttnNorm),
                Wqkv = qkv,
                Wq = Unless(qkv, l.Wq),
                Wk = Unless(qkv, l.Wk),
                Wv = Unless(qkv, l.Wv),
                Bq = Optional(l.Bq),
                Bk = Optional(l.Bk),
                Bv = Optional(l.Bv),
                QNorm = Optional(l.QNorm),
                KNorm = Optional(l.KNorm),
                Wo = backend.LoadWeight(l.Wo),
                Bo = Optional(l.Bo),
                PostAttnNorm = Optional(l.PostAttnNorm),
                FfnNorm = backend.LoadWeight(l.FfnNorm),
                GateUp = gateUp,
                Gate = Unless(gateUp, l.Gate),
                Up = Unless(gateUp, l.Up),
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
        Cache = backend.CreateCache(c.LayerCount, ctx, c.KvDim, kType, vType);
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

    /// <summary>
    /// The transformer over one batch: embeddings, then every layer, leaving the residual stream in _x. A layer's
    /// feed-forward output is added to x by the next layer's attention norm (<see cref="IBackend.AddRmsNorm"/>), the last
    /// one's by a plain add.
    /// </summary>
    private void ForwardBatch(ReadOnlySpan<int> tokens, int pos, ReadOnlySpan<SequenceBatch> seqs = default)
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
            // (the previous layer's feed-forward output, in _xb, is added to x by the norm that reads x: one op)
            if (w.Wqkv is not null)
            {
                if (l == 0) b.RmsNorm(_x, w.AttnNorm, _xb, n, c.Dim, c.RmsEps);
                else b.AddRmsNorm(_x, _xb, w.AttnNorm, _xb, n, c.Dim, c.RmsEps);
                _stacker!.MatMulStacked(w.Wqkv, _xb, n, _q, _k, _v);
            }
            else // the norm and one product where the backend can (spans on the stack)
                b.NormMatMulGroup(_x, l == 0 ? null : _xb, w.AttnNorm, _xb, c.Dim, c.RmsEps, [w.Wq!, w.Wk!, w.Wv!], [_q, _k, _v], n);
            if (w.Bq is not null) b.AddBias(_q, w.Bq, n);
            if (w.Bk is not null) b.AddBias(_k, w.Bk, n);
            if (w.Bv is not null) b.AddBias(_v, w.Bv, n);
            if (w.QNorm is not null) b.RmsNorm(_q, w.QNorm, _q, n * c.HeadCount, c.HeadDim, c.RmsEps);
            if (w.KNorm is not null) b.RmsNorm(_k, w.KNorm, _k, n * c.KvHeadCount, c.HeadDim, c.RmsEps);
            if (seqs.IsEmpty)
            {
                b.RopeAttention(_q, _k, _v, Cache, l, pos, n, c.HeadCount, c.KvHeadCount, w.Rope, _att, w.Attention);
                b.MatMul(w.Wo, _att, _xb, n);
            }
            else if (_seqAttention is not null) // all sequences' attention and Wo in one call (the CPU: in one dispatch for a decode step)
                _seqAttention.AttendSequencesMatMul(_q, _k, _v, _att, seqs, l, c.HeadCount, c.KvHeadCount, w.Rope, w.Attention, w.Wo, _xb);
            else
            {
                AttendSequences(l, w, seqs);
                b.MatMul(w.Wo, _att, _xb, n);
            }
            if (w.Bo is not null) b.AddBias(_xb, w.Bo, n);
            if (w.PostAttnNorm is not null) b.RmsNorm(_xb, w.PostAttnNorm, _xb, n, c.Dim, c.RmsEps);

            // feed-forward: x += [post-norm] Wdown . (act(Wgate . norm(x)) * (Wup . norm(x))), act = silu or gelu(tanh)
            if (w.GateUp is not null)
            {
                b.AddRmsNorm(_x, _xb, w.FfnNorm, _xb, n, c.Dim, c.RmsEps); // x += the attention output, then its norm
                _stacker!.MatMulStacked(w.GateUp, _xb, n, _gate, _up, null);
            }
            else b.NormMatMulGroup(_x, _xb, w.FfnNorm, _xb, c.Dim, c.RmsEps, [w.Gate!, w.Up!], [_gate, _up], n);
            b.GluMatMul(w.Down, _gate, _up, c.Arch.Activation, _xb, n); // act(gate) * up, then Wdown . that
            if (w.PostFfnNorm is not null) b.RmsNorm(_xb, w.PostFfnNorm, _xb, n, c.Dim, c.RmsEps);
        }
        if (_layers.Length > 0) b.Add(_x, _xb, nDim); // the last layer's feed-forward output
        if (seqs.IsEmpty) Cache.Filled = pos + n;
        else foreach (var sq in seqs) sq.Cache.Filled = sq.StartPos + sq.Count;
    }

    /// <summary>True when the backend picks greedy tokens itself (<see cref="ForwardGreedy"/> needs no logits copy).</summary>
    public bool HasDeviceArgMax => Backend is IDeviceArgMax;

    /// <summary>
    /// One decode step of <paramref name="token"/> at <paramref name="pos"/> that returns the greedy next token as the
    /// backend picks it (<see cref="IDeviceArgMax"/>), without copying the logits to the host: the same id as
    /// <see cref="Forward(int, int, Span{float})"/> followed by an argmax (ties: the lowest id).
    /// <paramref name="logitsFinite"/> is false when a logit was NaN or infinite (the id is then meaningless).
    /// </summary>
    public int ForwardGreedy(int token, int pos, out bool logitsFinite)
    {
        var picker = Backend as IDeviceArgMax ?? throw new InvalidOperationException($"{Backend.Name} does not pick tokens on the device");
        int vocab = Config.VocabSize;
        if (pos < 0 || pos > Cache.Filled)
            throw new ArgumentOutOfRangeException(nameof(pos), $"start position {pos} is not in [0, {Cache.Filled}] (the positions already in the kv cache)");
        if ((long)pos + 1 > ContextSize) throw new ContextOverflowException(pos, 1, ContextSize);
        if ((uint)token >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(token), $"token {token} is not in the vocabulary [0, {vocab})");
        ForwardBatch(new ReadOnlySpan<int>(in token), pos);
        ProjectLogits(1, lastOnly: true);
        return picker.ArgMax(_logits, 0, vocab, out logitsFinite);
    }

    /// <summary>True when the backend runs the whole sampler chain itself (<see cref="ForwardSampled"/> needs no logits copy).</summary>
    public bool HasDeviceSampler => Backend is IDeviceSampler;

    /// <summary>
    /// One decode step of <paramref name="token"/> at <paramref name="pos"/> that returns the next token as the backend
    /// samples it (<see cref="IDeviceSampler"/>: the same id as <see cref="Forward(int, int, Span{float})"/> followed by
    /// <c>Sampler.Sample</c> with the given <paramref name="penalties"/> window and <paramref name="uniform"/>), without
    /// copying the logits to the host. The backend also keeps the id for the next step's embedding lookup.
    /// <paramref name="logitsFinite"/> is false when a logit was NaN or infinite (the id is then meaningless).
    /// </summary>
    public int ForwardSampled(int token, int pos, in DeviceSamplerSettings settings, ReadOnlySpan<int> penalties, double uniform, out bool logitsFinite)
    {
        var sampler = Backend as IDeviceSampler ?? throw new InvalidOperationException($"{Backend.Name} does not sample on the device");
        int vocab = Config.VocabSize;
        if (pos < 0 || pos > Cache.Filled)
            throw new ArgumentOutOfRangeException(nameof(pos), $"start position {pos} is not in [0, {Cache.Filled}] (the positions already in the kv cache)");
        if ((long)pos + 1 > ContextSize) throw new ContextOverflowException(pos, 1, ContextSize);
        if ((uint)token >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(token), $"token {token} is not in the vocabulary [0, {vocab})");
        ForwardBatch(new ReadOnlySpan<int>(in token), pos);
        ProjectLogits(1, lastOnly: true);
        return sampler.Sample(_logits, 0, vocab, settings, penalties, uniform, out logitsFinite);
    }

    /// <summary>True when the backend can run a decode step ahead of the host's read of the last token (<see cref="IDevicePickQueue"/>).</summary>
    public bool HasDevicePickQueue => Backend is IDevicePickQueue;

    // Positions of the decode steps enqueued and not yet taken, oldest first (a ring of the queue's depth).
    private int[] _pickPositions = [];
    private int _pickHead, _pickCount;

    /// <summary>Decode steps enqueued whose tokens have not been taken.</summary>
    public int PendingPicks => _pickCount;

    /// <summary>
    /// Enqueues one decode step at <paramref name="pos"/> with its pick on the device (<see cref="IDevicePickQueue"/>):
    /// of <paramref name="token"/>, or, when <paramref name="token"/> is negative, of the token the previous enqueued
    /// step picks (read on the device: the host need not know it yet). The pick is the argmax when
    /// <paramref name="settings"/> is null, else the sampler chain (penalties off) with <paramref name="uniform"/>.
    /// Returns without waiting; <see cref="TakePick"/> gives the token.
    /// </summary>
    public void EnqueueDecode(int token, int pos, DeviceSamplerSettings? settings, double uniform)
    {
        var queue = Backend as IDevicePickQueue ?? throw new InvalidOperationException($"{Backend.Name} cannot run decode steps ahead");
        int vocab = Config.VocabSize;
        if (pos < 0 || pos > Cache.Filled)
            throw new ArgumentOutOfRangeException(nameof(pos), $"start position {pos} is not in [0, {Cache.Filled}] (the positions already in the kv cache)");
        if ((long)pos + 1 > ContextSize) throw new ContextOverflowException(pos, 1, ContextSize);
        if (token >= vocab) throw new ArgumentOutOfRangeException(nameof(token), $"token {token} is not in the vocabulary [0, {vocab})");
        if (token < 0 && _pickCount == 0) throw new InvalidOperationException("a decode step fed with the previous pick needs a pick in flight");
        if (_pickPositions.Length != queue.PickDepth) _pickPositions = new int[queue.PickDepth];
        if (_pickCount == _pickPositions.Length || queue.PendingPicks != _pickCount)
            throw new InvalidOperationException($"{_pickCount} picks in flight ({queue.PendingPicks} in the backend) of at most {_pickPositions.Length}");
        if (token < 0)
        {
            queue.FeedLastPick();
            token = 0; // a placeholder: the lookup reads the id the previous pick wrote on the device
        }
        ForwardBatch(new ReadOnlySpan<int>(in token), pos);
        ProjectLogits(1, lastOnly: true);
        queue.EnqueuePick(_logits, 0, vocab, settings, uniform);
        _pickPositions[(_pickHead + _pickCount++) % _pickPositions.Length] = pos;
    }

    /// <summary>Waits for the oldest enqueued decode step and returns the token it picked (see <see cref="ForwardGreedy"/> for <paramref name="logitsFinite"/>).</summary>
    public int TakePick(out bool logitsFinite)
    {
        if (_pickCount == 0) throw new InvalidOperationException("no decode step is in flight");
        var queue = (IDevicePickQueue)Backend;
        int id = queue.TakePick(out logitsFinite);
        _pickHead = (_pickHead + 1) % _pickPositions.Length;
        _pickCount--;
        return id;
    }

    /// <summary>
    /// Waits for the enqueued decode steps whose tokens are not wanted and forgets them: the cache ends where the
    /// first of them started (its keys and values are stale and will be overwritten).
    /// </summary>
    public void DiscardPicks()
    {
        if (_pickCount == 0) return;
        int first = _pickPositions[_pickHead];
        while (_pickCount > 0) TakePick(out _);
        Cache.Filled = first;
    }

    /// <summary>Final norm and output projection of the batch's last token (or of all n), copied to <paramref name="dst"/>.</summary>
    private void Logits(int n, Span<float> dst, bool lastOnly)
    {
        int rows = ProjectLogits(n, lastOnly);
        Backend.CopyOut(_logits, 0, dst[..(rows * Config.VocabSize)]);
    }

    /// <summary>Final norm and output projection into the backend's logits buffer; returns the rows written.</summary>
    private int ProjectLogits(int n, bool lastOnly)
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
        return rows;
    }

    /// <summary>
    /// A KV cache of <see cref="ContextSize"/> positions for another sequence on this model (a server slot, an
    /// embedding pass), used with <see cref="ForwardSequences"/>. Freed with the backend.
    /// </summary>
    public KvCache CreateCache() => Backend.CreateCache(Config.LayerCount, ContextSize, Config.KvDim, Cache.KeyType, Cache.ValueType);

    // Row-0 scratch for the sequences of a multi-sequence batch that do not start at row 0 (allocated on first use).
    private BackendBuffer? _qs, _ks, _vs, _atts;

    /// <summary>
    /// Several sequences in one batch: <paramref name="tokens"/> is the concatenation of each sequence's tokens in
    /// the order of <paramref name="seqs"/> (each with its own cache and start position; a cache may appear once).
    /// The matrix products run once over the whole batch (the weights are read once per call), attention runs per
    /// sequence against its own cache. Writes each sequence's last-token logits, sequence-major, into
    /// <paramref name="logits"/> (seqs.Length * VocabSize floats). Each row is computed exactly as
    /// <see cref="Forward(ReadOnlySpan{int}, int, Span{float}, bool)"/> computes it for that sequence alone when the backend
    /// was made with <see cref="BackendOptions.BatchInvariant"/> (otherwise to float rounding: batches of four tokens or
    /// more may run other kernels than a lone token).
    /// At most <see cref="MaxBatch"/> tokens in all.
    /// </summary>
    public void ForwardSequences(ReadOnlySpan<int> tokens, ReadOnlySpan<SequenceBatch> seqs, Span<float> logits)
    {
        int vocab = Config.VocabSize;
        CheckSequences(tokens, seqs);
        if (logits.Length < (long)seqs.Length * vocab)
            throw new ArgumentException($"logits span holds {logits.Length} floats, {(long)seqs.Length * vocab} needed", nameof(logits));
        ForwardBatch(tokens, 0, seqs);
        var c = Config;
        var b = Backend;
        int row = 0;
        for (int s = 0; s < seqs.Length; s++)
        {
            row += seqs[s].Count;
            b.Copy(_x, (long)(row - 1) * c.Dim, _xb, (long)s * c.Dim, c.Dim);
        }
        int rows = seqs.Length;
        b.NormMatMulGroup(_xb, null, _outputNorm, _xb, c.Dim, c.RmsEps, [_output], [_logits], rows); // the final norm in place, then the output layer
        if (c.FinalSoftcap > 0) b.Softcap(_logits, (long)rows * vocab, c.FinalSoftcap);
        b.CopyOut(_logits, 0, logits[..(rows * vocab)]);
    }

    /// <summary>
    /// The last hidden state after the final norm of every token of <paramref name="tokens"/>, run as one sequence
    /// from position 0 in <paramref name="cache"/> (its previous contents are overwritten): tokens.Length * Dim
    /// floats, token-major, into <paramref name="hidden"/>. What embedding pooling reads.
    /// </summary>
    public void HiddenStates(KvCache cache, ReadOnlySpan<int> tokens, Span<float> hidden)
    {
        int n = tokens.Length, dim = Config.Dim;
        if (n == 0) throw new ArgumentException("no tokens to run", nameof(tokens));
        if (n > cache.Size) throw new ContextOverflowException(0, n, cache.Size);
        if (hidden.Length < (long)n * dim) throw new ArgumentException($"hidden span holds {hidden.Length} floats, {(long)n * dim} needed", nameof(hidden));
        var one = new SequenceBatch[1];
        for (int done = 0; done < n; done += MaxBatch)
        {
            int nb = Math.Min(MaxBatch, n - done);
            one[0] = new SequenceBatch(cache, done, nb);
            CheckSequences(tokens.Slice(done, nb), one);
            ForwardBatch(tokens.Slice(done, nb), 0, one);
            Backend.RmsNorm(_x, _outputNorm, _xb, nb, dim, Config.RmsEps);
            Backend.CopyOut(_xb, 0, hidden.Slice(done * dim, nb * dim));
        }
    }

    private void CheckSequences(ReadOnlySpan<int> tokens, ReadOnlySpan<SequenceBatch> seqs)
    {
        int vocab = Config.VocabSize;
        if (seqs.IsEmpty) throw new ArgumentException("no sequences to run", nameof(seqs));
        if (tokens.Length > MaxBatch) throw new ArgumentException($"{tokens.Length} tokens exceed the batch size {MaxBatch}", nameof(tokens));
        long total = 0;
        for (int s = 0; s < seqs.Length; s++)
        {
            var q = seqs[s];
            if (q.Cache is null) throw new ArgumentNullException(nameof(seqs), $"sequence {s} has no kv cache");
            if (q.Cache.LayerCount != Config.LayerCount || q.Cache.KvDim != Config.KvDim || q.Cache.Size > ContextSize)
                throw new ArgumentException($"sequence {s}: its kv cache was not made for this model (use CreateCache)", nameof(seqs));
            if (q.Count < 1) throw new ArgumentException($"sequence {s} has {q.Count} tokens", nameof(seqs));
            for (int t = 0; t < s; t++)
                if (ReferenceEquals(seqs[t].Cache, q.Cache)) throw new ArgumentException($"sequences {t} and {s} share a kv cache", nameof(seqs));
            if (q.StartPos < 0 || q.StartPos > q.Cache.Filled)
                throw new ArgumentOutOfRangeException(nameof(seqs), $"sequence {s}: start position {q.StartPos} is not in [0, {q.Cache.Filled}] (the positions already in its kv cache)");
            if ((long)q.StartPos + q.Count > q.Cache.Size) throw new ContextOverflowException(q.StartPos, q.Count, q.Cache.Size);
            total += q.Count;
        }
        if (total != tokens.Length) throw new ArgumentException($"the sequences hold {total} tokens but the batch has {tokens.Length}", nameof(tokens));
        for (int i = 0; i < tokens.Length; i++)
            if ((uint)tokens[i] >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(tokens), $"token {tokens[i]} at index {i} is not in the vocabulary [0, {vocab})");
    }

    /// <summary>
    /// RoPE, cache store and attention of one layer for each sequence of the batch, each at its own positions in
    /// its own cache, on a backend that does not do them all in one call (<see cref="ISequenceAttention"/>, the CPU, does).
    /// The first sequence works on rows 0.. of the batch buffers directly; the others are copied to
    /// row 0 of scratch buffers and their attention output copied back (the backend ops address whole buffers).
    /// </summary>
    private void AttendSequences(int l, Layer w, ReadOnlySpan<SequenceBatch> seqs)
    {
        var c = Config;
        var b = Backend;
        int row = 0;
        foreach (var sq in seqs)
        {
            int n = sq.Count;
            if (row == 0)
            {
                b.Rope(_q, n, c.HeadCount, sq.StartPos, w.Rope);
                b.Rope(_k, n, c.KvHeadCount, sq.StartPos, w.Rope);
                b.StoreKv(sq.Cache, l, sq.StartPos, n, _k, _v);
                b.Attention(_q, sq.Cache, l, sq.StartPos, n, c.HeadCount, c.HeadDim, _att, w.Attention);
            }
            else
            {
                _qs ??= b.Allocate((long)MaxBatch * c.QDim);
                _ks ??= b.Allocate((long)MaxBatch * c.KvDim);
                _vs ??= b.Allocate((long)MaxBatch * c.KvDim);
                _atts ??= b.Allocate((long)MaxBatch * c.QDim);
                b.Copy(_q, (long)row * c.QDim, _qs, 0, (long)n * c.QDim);
                b.Copy(_k, (long)row * c.KvDim, _ks, 0, (long)n * c.KvDim);
                b.Copy(_v, (long)row * c.KvDim, _vs, 0, (long)n * c.KvDim);
                b.Rope(_qs, n, c.HeadCount, sq.StartPos, w.Rope);
                b.Rope(_ks, n, c.KvHeadCount, sq.StartPos, w.Rope);
                b.StoreKv(sq.Cache, l, sq.StartPos, n, _ks, _vs);
                b.Attention(_qs, sq.Cache, l, sq.StartPos, n, c.HeadCount, c.HeadDim, _atts, w.Attention);
                b.Copy(_atts, 0, _att, (long)row * c.QDim, (long)n * c.QDim);
            }
            row += n;
        }
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
