using EdgeLlm.Gguf;

namespace EdgeLlm.Model;

/// <summary>
/// Hyperparameters of a Llama-layout model, read from GGUF metadata under the
/// <c>general.architecture</c> prefix (<c>llama.embedding_length</c>, ...) with llama.cpp's defaults, and
/// validated so the forward pass can trust every number.
/// </summary>
public sealed class LlamaConfig
{
    /// <summary>Architectures whose files use the llama tensor layout and llama keys.</summary>
    public static readonly string[] SupportedArchitectures = ["llama", "mistral"];

    // Upper bounds far above any real Llama (405B: dim 16384, 126 layers, 128 heads, ffn 53248, vocab 128256).
    public const int MaxDim = 1 << 16;
    public const int MaxLayers = 1024;
    public const int MaxHeads = 1024;
    public const int MaxFfn = 1 << 20;
    public const int MaxVocab = 1 << 24;
    public const int MaxContext = 1 << 24;

    public required string Architecture { get; init; }

    /// <summary>Trained context length (<c>{arch}.context_length</c>).</summary>
    public required int ContextLength { get; init; }

    /// <summary>Model width (<c>{arch}.embedding_length</c>).</summary>
    public required int Dim { get; init; }
    public required int LayerCount { get; init; }
    public required int FfnDim { get; init; }
    public required int HeadCount { get; init; }
    public required int KvHeadCount { get; init; }
    public required float RmsEps { get; init; }

    /// <summary>Leading elements of each head that RoPE rotates (even, at most <see cref="HeadDim"/>).</summary>
    public required int RopeDims { get; init; }
    public required float RopeFreqBase { get; init; }

    /// <summary>Linear RoPE scaling factor: positions are divided by it (1 = no scaling).</summary>
    public required float RopeScale { get; init; }
    public required int VocabSize { get; init; }

    public int HeadDim => Dim / HeadCount;
    public int QDim => HeadCount * HeadDim;
    public int KvDim => KvHeadCount * HeadDim;

    /// <summary>Query heads that share one key/value head (grouped-query attention).</summary>
    public int GroupSize => HeadCount / KvHeadCount;

    /// <summary>Reads and validates the hyperparameters of an open GGUF file.</summary>
    public static LlamaConfig FromGguf(GgufFile file)
    {
        var r = new Reader(file);
        string arch = file.GetString("general.architecture")
            ?? throw r.Error("general.architecture", "required string key is missing");
        if (Array.IndexOf(SupportedArchitectures, arch) < 0)
            throw r.Error("general.architecture", $"architecture '{arch}' is not supported (EdgeLlm runs {string.Join(", ", SupportedArchitectures)})");
        string p = arch + ".";

        int dim = r.Int(p + "embedding_length", null, 1, MaxDim);
        int heads = r.Int(p + "attention.head_count", null, 1, MaxHeads);
        if (dim % heads != 0) throw r.Error(p + "attention.head_count", $"{heads} heads do not divide embedding_length {dim}");
        int headDim = dim / heads;
        int kvHeads = r.Int(p + "attention.head_count_kv", heads, 1, heads);
        if (heads % kvHeads != 0) throw r.Error(p + "attention.head_count_kv", $"{kvHeads} kv heads do not divide head_count {heads}");
        int ropeDims = r.Int(p + "rope.dimension_count", headDim, 2, headDim);
        if (ropeDims % 2 != 0) throw r.Error(p + "rope.dimension_count", $"{ropeDims} is odd (RoPE rotates pairs)");

        double eps = r.Double(p + "attention.layer_norm_rms_epsilon", null);
        if (!(eps > 0 && eps < 1)) throw r.Error(p + "attention.layer_norm_rms_epsilon", $"{eps} is not in (0, 1)");
        double freqBase = r.Double(p + "rope.freq_base", 10000.0);
        if (!(freqBase > 1 && freqBase < 1e12)) throw r.Error(p + "rope.freq_base", $"{freqBase} is not in (1, 1e12)");

        // llama.cpp: scaling type defaults to linear; factor 0 or absent means none; legacy key rope.scale_linear.
        string scalingType = file.GetString(p + "rope.scaling.type") ?? "linear";
        double scale = r.Double(p + "rope.scaling.factor", 0.0);
        if (scale == 0.0) scale = r.Double(p + "rope.scale_linear", 0.0);
        if (scalingType == "none") scale = 0.0;
        else if (scalingType != "linear" && scale != 0.0 && scale != 1.0)
            throw r.Error(p + "rope.scaling.type", $"RoPE scaling '{scalingType}' is not supported (EdgeLlm does linear)");
        if (scale == 0.0) scale = 1.0;
        if (!(scale >= 1e-3 && scale <= 1e6)) throw r.Error(p + "rope.scaling.factor", $"{scale} is not in [0.001, 1e6]");

        int vocab = ReadVocabSize(file, p, r);
        return new LlamaConfig
        {
            Architecture = arch,
            ContextLength = r.Int(p + "context_length", null, 1, MaxContext),
            Dim = dim,
            LayerCount = r.Int(p + "block_count", null, 1, MaxLayers),
            FfnDim = r.Int(p + "feed_forward_length", null, 1, MaxFfn),
            HeadCount = heads,
            KvHeadCount = kvHeads,
            RmsEps = (float)eps,
            RopeDims = ropeDims,
            RopeFreqBase = (float)freqBase,
            RopeScale = (float)scale,
            VocabSize = vocab,
        };
    }

    /// <summary><c>{arch}.vocab_size</c>, else the tokenizer's token count, else token_embd's row count.</summary>
    private static int ReadVocabSize(GgufFile file, string p, Reader r)
    {
        if (file.ContainsKey(p + "vocab_size")) return r.Int(p + "vocab_size", null, 1, MaxVocab);
        if (file.Get("tokenizer.ggml.tokens") is { Type: GgufValueType.Array } tokens)
        {
            if (tokens.Count < 1 || tokens.Count > MaxVocab)
                throw r.Error("tokenizer.ggml.tokens", $"{tokens.Count} tokens is not in [1, {MaxVocab}]");
            return (int)tokens.Count;
        }
        var embd = file.FindTensor(LlamaWeights.TokenEmbdName)
            ?? throw r.Error(p + "vocab_size", $"missing, and there is neither tokenizer.ggml.tokens nor {LlamaWeights.TokenEmbdName} to infer it from");
        long rows = embd.Dims.Length >= 2 ? embd.Dims[1] : 0;
        if (rows < 1 || rows > MaxVocab) throw r.Error(LlamaWeights.TokenEmbdName, $"{rows} rows is not a usable vocabulary size");
        return (int)rows;
    }

    public override string ToString() =>
        $"{Architecture}: dim {Dim}, layers {LayerCount}, heads {HeadCount}/{KvHeadCount} kv, head_dim {HeadDim}, ffn {FfnDim}, " +
        $"vocab {VocabSize}, ctx {ContextLength}, rope dims {RopeDims} base {RopeFreqBase} scale {RopeScale}, eps {RmsEps}";

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
