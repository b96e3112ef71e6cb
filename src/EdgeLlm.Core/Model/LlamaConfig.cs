using EdgeLlm.Gguf;

namespace EdgeLlm.Model;

/// <summary>
/// Hyperparameters of a transformer in one of the families <see cref="ArchSpec"/> describes, read from GGUF
/// metadata under the <c>general.architecture</c> prefix (<c>qwen2.embedding_length</c>, ...) with llama.cpp's
/// defaults, and validated so the forward pass can trust every number.
/// </summary>
public sealed class LlamaConfig
{
    /// <summary>Architectures EdgeLlm runs.</summary>
    public static readonly string[] SupportedArchitectures = Array.ConvertAll(ArchSpec.All, a => a.Name);

    // Upper bounds far above any real model (405B: dim 16384, 126 layers, 128 heads, ffn 53248, vocab 128256).
    public const int MaxDim = 1 << 16;
    public const int MaxLayers = 1024;
    public const int MaxHeads = 1024;
    public const int MaxHeadDim = 1024;
    public const int MaxFfn = 1 << 20;
    public const int MaxVocab = 1 << 24;
    public const int MaxContext = 1 << 24;

    /// <summary>
    /// The model's shape as read from the file, every number resolved (epsilon, RoPE dims and base, window, whether
    /// the output is tied, whether rope_freqs is present); the hyperparameters below read it.
    /// </summary>
    public required ModelShape Shape { get; init; }

    public string Architecture => Shape.Arch;

    /// <summary>The family's structure (norms, biases, activation, rope layout, window pattern).</summary>
    public required ArchSpec Arch { get; init; }

    /// <summary>Trained context length (<c>{arch}.context_length</c>).</summary>
    public int ContextLength => Shape.Context;

    /// <summary>Model width (<c>{arch}.embedding_length</c>).</summary>
    public int Dim => Shape.Dim;
    public int LayerCount => Shape.Layers;
    public int FfnDim => Shape.Ffn;
    public int HeadCount => Shape.Heads;
    public int KvHeadCount => Shape.KvHeads;

    /// <summary>Width of one attention head: <c>{arch}.attention.key_length</c>, else embedding_length / head_count.</summary>
    public int HeadDim => Shape.HeadDim;
    public float RmsEps => Shape.Eps;

    /// <summary>Leading elements of each head that RoPE rotates (even, at most <see cref="HeadDim"/>).</summary>
    public int RopeDims => Shape.RotatedDims;
    public float RopeFreqBase => Shape.FreqBase;

    /// <summary>Linear RoPE scaling factor: positions are divided by it (1 = no scaling).</summary>
    public required float RopeScale { get; init; }

    /// <summary>cos/sin multiplier (<c>{arch}.rope.scaling.attn_factor</c>, Phi-3 LongRoPE; 1 = none).</summary>
    public float RopeAttnFactor { get; init; } = 1f;

    /// <summary>Context the model was pre-trained at (<c>{arch}.rope.scaling.original_context_length</c>): LongRoPE uses its long factors past it.</summary>
    public int RopeOriginalContext { get; init; }

    /// <summary>RoPE base of the sliding-window layers (Gemma 3's local layers: 10000, unscaled); equals RopeFreqBase otherwise.</summary>
    public float RopeFreqBaseSwa { get; init; }

    /// <summary>Sliding window of the layers <see cref="ArchSpec.IsSlidingLayer"/> selects (0 = none).</summary>
    public int SlidingWindow { get; init; }

    /// <summary>Attention scores are Scale · (q · k): 1/sqrt(head_dim), or llama.cpp's per-family choice.</summary>
    public required float AttentionScale { get; init; }

    /// <summary>Attention logit softcap (0 = none).</summary>
    public float AttnSoftcap { get; init; }

    /// <summary>Final logit softcap (0 = none).</summary>
    public float FinalSoftcap { get; init; }
    public int VocabSize => Shape.Vocab;

    public int QDim => Shape.QDim;
    public int KvDim => Shape.KvDim;

    /// <summary>Query heads that share one key/value head (grouped-query attention).</summary>
    public int GroupSize => HeadCount / KvHeadCount;

    /// <summary>Embeddings are multiplied by this after the lookup (sqrt(dim) for Gemma, else 1).</summary>
    public float EmbeddingScale => Arch.ScaleEmbeddings ? MathF.Sqrt(Dim) : 1f;

    /// <summary>The sliding window of layer <paramref name="layer"/> (0 = it sees every earlier position).</summary>
    public int LayerWindow(int layer) => Arch.IsSlidingLayer(layer) ? SlidingWindow : 0;

    /// <summary>Reads and validates the hyperparameters of an open GGUF file.</summary>
    public static LlamaConfig FromGguf(GgufFile file)
    {
        var r = new Reader(file);
        string arch = file.GetString(ModelKeys.Architecture)
            ?? throw r.Error(ModelKeys.Architecture, "required string key is missing");
        var spec = ArchSpec.Find(arch)
            ?? throw r.Error(ModelKeys.Architecture, $"architecture '{arch}' is not supported (EdgeLlm runs {string.Join(", ", SupportedArchitectures)})");
        string p = arch + ".";

        int dim = r.Int(p + ModelKeys.EmbeddingLength, null, 1, MaxDim);
        int layers = r.Int(p + ModelKeys.BlockCount, null, 1, MaxLayers);
        int heads = r.Int(p + ModelKeys.HeadCount, null, 1, MaxHeads);
        int headDim;
        if (file.ContainsKey(p + ModelKeys.KeyLength)) headDim = r.Int(p + ModelKeys.KeyLength, null, 2, MaxHeadDim);
        else if (dim % heads != 0) throw r.Error(p + ModelKeys.HeadCount, $"{heads} heads do not divide embedding_length {dim}");
        else headDim = dim / heads;
        if (headDim > MaxHeadDim) throw r.Error(p + ModelKeys.HeadCount, $"head size {headDim} exceeds {MaxHeadDim}");
        int valueDim = r.Int(p + ModelKeys.ValueLength, headDim, 1, MaxHeadDim);
        if (valueDim != headDim) throw r.Error(p + ModelKeys.ValueLength, $"{valueDim} differs from the key length {headDim} (EdgeLlm needs equal K and V head sizes)");
        int kvHeads = r.Int(p + ModelKeys.HeadCountKv, heads, 1, heads);
        if (heads % kvHeads != 0) throw r.Error(p + ModelKeys.HeadCountKv, $"{kvHeads} kv heads do not divide head_count {heads}");
        int ropeDims = r.Int(p + ModelKeys.RopeDimensionCount, headDim, 2, headDim);
        if (ropeDims % 2 != 0) throw r.Error(p + ModelKeys.RopeDimensionCount, $"{ropeDims} is odd (RoPE rotates pairs)");
        int context = r.Int(p + ModelKeys.ContextLength, null, 1, MaxContext);

        double eps = r.Double(p + ModelKeys.RmsEps, null);
        if (!(eps > 0 && eps < 1)) throw r.Error(p + ModelKeys.RmsEps, $"{eps} is not in (0, 1)");
        double freqBase = r.Double(p + ModelKeys.RopeFreqBase, 10000.0);
        if (!(freqBase > 1 && freqBase < 1e12)) throw r.Error(p + ModelKeys.RopeFreqBase, $"{freqBase} is not in (1, 1e12)");

        // llama.cpp: scaling type defaults to linear; factor 0 or absent means none; legacy key rope.scale_linear.
        // A YaRN (or other) type with a factor other than 1 changes the rotation and is refused.
        string scalingType = file.GetString(p + ModelKeys.RopeScalingType) ?? "linear";
        double scale = r.Double(p + ModelKeys.RopeScalingFactor, 0.0);
        if (scale == 0.0) scale = r.Double(p + ModelKeys.RopeScaleLinear, 0.0);
        if (scalingType == "none") scale = 0.0;
        else if (scalingType != "linear" && !(spec.LongRope && scalingType == "longrope") && scale != 0.0 && scale != 1.0)
            throw r.Error(p + ModelKeys.RopeScalingType, $"RoPE scaling '{scalingType}' is not supported (EdgeLlm does linear and none)");
        if (scale == 0.0) scale = 1.0;
        if (!(scale >= 1e-3 && scale <= 1e6)) throw r.Error(p + ModelKeys.RopeScalingFactor, $"{scale} is not in [0.001, 1e6]");
        double attnFactor = r.Double(p + ModelKeys.RopeAttnFactor, 1.0);
        if (!(attnFactor > 0 && attnFactor <= 100)) throw r.Error(p + ModelKeys.RopeAttnFactor, $"{attnFactor} is not in (0, 100]");
        int origContext = r.Int(p + ModelKeys.RopeOriginalContext, context, 1, MaxContext);

        int window = 0;
        if (spec.SwaPattern > 0)
            window = r.Int(p + ModelKeys.SlidingWindow, spec.SwaDefaultWindow == 0 ? null : spec.SwaDefaultWindow, 1, MaxContext);
        float attnSoftcap = spec.AttnSoftcapDefault > 0 ? r.Positive(p + ModelKeys.AttnSoftcap, spec.AttnSoftcapDefault) : 0f;
        float finalSoftcap = spec.FinalSoftcapDefault > 0 ? r.Positive(p + ModelKeys.FinalSoftcap, spec.FinalSoftcapDefault) : 0f;
        float attnScale = spec.ScaleByDimLayerCount == layers ? 1f / MathF.Sqrt(dim / heads) : 1f / MathF.Sqrt(headDim);

        int vocab = ReadVocabSize(file, p, r);
        var shape = new ModelShape
        {
            Arch = arch,
            Context = context,
            Dim = dim,
            Layers = layers,
            Ffn = r.Int(p + ModelKeys.FeedForwardLength, null, 1, MaxFfn),
            Heads = heads,
            KvHeads = kvHeads,
            KeyLength = file.ContainsKey(p + ModelKeys.KeyLength) ? headDim : null,
            Vocab = vocab,
            RopeDims = ropeDims,
            RmsEps = (float)eps,
            RopeBase = (float)freqBase,
            Window = spec.SwaPattern > 0 ? window : null,
            Tied = file.FindTensor(TensorNames.Output) is null,
            RopeFreqs = file.FindTensor(TensorNames.RopeFreqs) is not null,
        };
        return new LlamaConfig
        {
            Shape = shape,
            Arch = spec,
            RopeScale = (float)scale,
            RopeAttnFactor = (float)attnFactor,
            RopeOriginalContext = origContext,
            RopeFreqBaseSwa = spec.SwaRopeBase > 0 ? spec.SwaRopeBase : (float)freqBase,
            SlidingWindow = window,
            AttentionScale = attnScale,
            AttnSoftcap = attnSoftcap,
            FinalSoftcap = finalSoftcap,
        };
    }

    /// <summary><c>{arch}.vocab_size</c>, else the tokenizer's token count, else token_embd's row count.</summary>
    private static int ReadVocabSize(GgufFile file, string p, Reader r)
    {
        if (file.ContainsKey(p + ModelKeys.VocabSize)) return r.Int(p + ModelKeys.VocabSize, null, 1, MaxVocab);
        if (file.Get("tokenizer.ggml.tokens") is { Type: GgufValueType.Array } tokens)
        {
            if (tokens.Count < 1 || tokens.Count > MaxVocab)
                throw r.Error("tokenizer.ggml.tokens", $"{tokens.Count} tokens is not in [1, {MaxVocab}]");
            return (int)tokens.Count;
        }
        var embd = file.FindTensor(TensorNames.TokenEmbd)
            ?? throw r.Error(p + ModelKeys.VocabSize, $"missing, and there is neither tokenizer.ggml.tokens nor {TensorNames.TokenEmbd} to infer it from");
        long rows = embd.Dims.Length >= 2 ? embd.Dims[1] : 0;
        if (rows < 1 || rows > MaxVocab) throw r.Error(TensorNames.TokenEmbd, $"{rows} rows is not a usable vocabulary size");
        return (int)rows;
    }

    public override string ToString() =>
        $"{Architecture}: dim {Dim}, layers {LayerCount}, heads {HeadCount}/{KvHeadCount} kv, head_dim {HeadDim}, ffn {FfnDim}, " +
        $"vocab {VocabSize}, ctx {ContextLength}, rope dims {RopeDims} base {RopeFreqBase} scale {RopeScale}, eps {RmsEps}" +
        (SlidingWindow > 0 ? $", window {SlidingWindow}" : "") + (AttnSoftcap > 0 ? $", attn softcap {AttnSoftcap}" : "") +
        (FinalSoftcap > 0 ? $", final softcap {FinalSoftcap}" : "");

    /// <summary>Typed metadata reads that fail with one line naming the key.</summary>
    private readonly struct Reader(GgufFile file)
    {
        public ModelFormatException Error(string key, string problem) => new(file.Path, $"metadata '{key}'", problem);

        public int Int(string key, int? fallback, int min, int max)
        {
            var v = file.Get(key);
            if (v is null) return fallback ?? throw Error(key, "required integer key is missing");
            if (!v.TryGetInt64(out long x)) throw Error(key, $"expected an integer, found {v.Type}");
            if (x < min || x > max) throw Error(key, $"{x} is not in [{min}, {max}]");
            return (int)x;
        }

        public float Positive(string key, float fallback)
        {
            double x = Double(key, fallback);
            if (!(x > 0 && x < 1e6)) throw Error(key, $"{x} is not in (0, 1e6)");
            return (float)x;
        }

        public double Double(string key, double? fallback)
        {
            var v = file.Get(key);
            if (v is null) return fallback ?? throw Error(key, "required number key is missing");
            if (!v.TryGetDouble(out double x)) throw Error(key, $"expected a number, found {v.Type}");
            if (!double.IsFinite(x)) throw Error(key, $"{x} is not finite");
            return x;
        }
    }
}
