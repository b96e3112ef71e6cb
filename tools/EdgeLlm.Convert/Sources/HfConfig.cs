using System.Text.Json;
using EdgeLlm.Model;
using EdgeLlm.Gguf;

namespace EdgeLlm.Convert.Sources;

/// <summary>The Hugging Face model classes edgellm-convert reads, and the llama.cpp architecture each becomes.</summary>
internal enum HfFamily { Llama, Qwen2, Qwen3, Phi3, Gemma, Gemma2, Gemma3 }

/// <summary>
/// A Hugging Face <c>config.json</c>: which model class it describes (<c>architectures</c>), the
/// hyperparameters, and the <c>{arch}.*</c> GGUF keys llama.cpp's convert_hf_to_gguf.py writes for that class,
/// with the values it derives (rope dimension count from partial_rotary_factor, LongRoPE attention factor,
/// Llama-3.1 rope_freqs factors, Phi-3 rope_factors_long/short, Gemma's head_dim and softcaps). Settings the
/// converter cannot express the way llama.cpp reads them are refused with one line naming the key.
/// </summary>
internal sealed record HfConfig
{
    public required LlamaParams Params { get; init; }
    public required HfFamily Family { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }

    /// <summary>q_proj/k_proj rows are turned from rotate-half to interleaved order (llama.cpp's llama rope); NEOX-rope families keep them.</summary>
    public bool PermuteQk => Family == HfFamily.Llama;

    /// <summary>Gemma's RMSNorm multiplies by (1 + w); llama.cpp's converter stores 1 + w.</summary>
    public float NormShift => Family is HfFamily.Gemma or HfFamily.Gemma2 or HfFamily.Gemma3 ? 1f : 0f;

    public bool IsGemma => NormShift != 0;

    private static readonly (string Class, HfFamily Family)[] Classes =
    [
        ("LlamaForCausalLM", HfFamily.Llama), ("MistralForCausalLM", HfFamily.Llama),
        ("Qwen2ForCausalLM", HfFamily.Qwen2), ("Qwen3ForCausalLM", HfFamily.Qwen3),
        ("Phi3ForCausalLM", HfFamily.Phi3),
        ("GemmaForCausalLM", HfFamily.Gemma), ("Gemma2ForCausalLM", HfFamily.Gemma2), ("Gemma3ForCausalLM", HfFamily.Gemma3),
    ];

    public static string ArchitectureName(HfFamily f) => f switch
    {
        HfFamily.Llama => "llama",
        HfFamily.Qwen2 => "qwen2",
        HfFamily.Qwen3 => "qwen3",
        HfFamily.Phi3 => "phi3",
        HfFamily.Gemma => "gemma",
        HfFamily.Gemma2 => "gemma2",
        _ => "gemma3",
    };

    public static HfConfig Load(string path, string defaultName)
    {
        using var j = JsonFile.Open(path);
        var family = DetectFamily(j);
        string arch = ArchitectureName(family);
        bool gemma = family is HfFamily.Gemma or HfFamily.Gemma2 or HfFamily.Gemma3;

        int dim = j.Int("hidden_size");
        int heads = family == HfFamily.Gemma3 ? j.OptInt("num_attention_heads") ?? 8 : j.Int("num_attention_heads");
        int kvHeads = j.OptInt("num_key_value_heads") ?? (family == HfFamily.Gemma3 ? 4 : heads);
        int layers = j.Int("num_hidden_layers");
        int ffn = j.Int("intermediate_size");
        int vocab = j.Int("vocab_size");
        if (dim <= 0 || heads <= 0 || kvHeads <= 0 || layers <= 0) throw j.Error("hidden_size", "and the head and layer counts must be positive");
        if (ffn <= 0) throw j.Error("intermediate_size", $"{ffn} must be positive");
        if (vocab <= 0) throw j.Error("vocab_size", $"{vocab} must be positive");
        if (heads % kvHeads != 0) throw j.Error("num_key_value_heads", $"{kvHeads} does not divide num_attention_heads {heads}");

        int? configHeadDim = j.OptInt("head_dim");
        int headDim = family switch
        {
            HfFamily.Gemma or HfFamily.Gemma2 => configHeadDim ?? throw j.Error("head_dim", "is missing (gemma needs it)"),
            HfFamily.Gemma3 => configHeadDim ?? 256,
            HfFamily.Qwen3 => configHeadDim ?? 128, // transformers' Qwen3Config default
            _ => configHeadDim ?? (dim % heads == 0 ? dim / heads : throw j.Error("num_attention_heads", $"{heads} does not divide hidden_size {dim}")),
        };
        if (headDim <= 0 || headDim % 2 != 0) throw j.Error("head_dim", $"{headDim} must be positive and even");
        if (family == HfFamily.Phi3 && headDim != dim / heads)
            throw j.Error("head_dim", $"{headDim} differs from hidden_size / num_attention_heads (phi3 has no separate head size)");

        string act = j.OptString("hidden_activation") ?? j.OptString("hidden_act") ?? (gemma ? "gelu_pytorch_tanh" : "silu");
        if (gemma ? act is not ("gelu" or "gelu_pytorch_tanh") : act != "silu")
            throw j.Error(j.Has("hidden_activation") ? "hidden_activation" : "hidden_act", $"'{act}' is not supported ({arch} uses {(gemma ? "GELU (tanh)" : "silu")})");
        if (j.OptBool("mlp_bias") == true) throw j.Error("mlp_bias", $"is true: MLP biases are not part of the {arch} architecture");
        if (j.OptBool("attention_bias") == true && family != HfFamily.Qwen2)
            throw j.Error("attention_bias", $"is true: attention biases are not part of the {arch} architecture");

        double theta = j.OptDouble("rope_theta") ?? family switch { HfFamily.Gemma3 => 1_000_000.0, _ => 10000.0 };
        double eps = j.OptDouble("rms_norm_eps") ?? 1e-6;
        int ctx = j.OptInt("max_position_embeddings") ?? (family == HfFamily.Gemma3 ? 131072 : family is HfFamily.Gemma or HfFamily.Gemma2 or HfFamily.Phi3 ? throw j.Error("max_position_embeddings", "is missing") : 2048);
        if (ctx <= 0) throw j.Error("max_position_embeddings", $"{ctx} must be positive");
        JsonElement? rs = j.Root.TryGetProperty("rope_scaling", out var rse) && rse.ValueKind == JsonValueKind.Object ? rse : null;
        string? ropeType = rs is { } r0 ? RopeType(j, r0) : null;
        if (ropeType == "default") ropeType = null;

        var kv = new List<KeyValuePair<string, GgufValue>>();
        void U(string key, long v)
        {
            if (v < 0 || v > uint.MaxValue) throw j.Error(key, $"{v} is out of range");
            kv.Add(new(key, GgufValue.Of((uint)v)));
        }
        void F(string key, double v) => kv.Add(new(key, GgufValue.Of((float)v)));
        void S(string key, string v) => kv.Add(new(key, GgufValue.Of(v)));

        float[]? ropeFreqs = null;
        var generated = new List<KeyValuePair<string, float[]>>();
        int ropeDims = headDim;
        switch (family)
        {
            case HfFamily.Llama:
                U(ModelKeys.BlockCount, layers); U(ModelKeys.ContextLength, ctx); U(ModelKeys.EmbeddingLength, dim); U(ModelKeys.FeedForwardLength, ffn);
                U(ModelKeys.HeadCount, heads); U(ModelKeys.HeadCountKv, kvHeads);
                F(ModelKeys.RopeFreqBase, theta); F(ModelKeys.RmsEps, eps);
                if (configHeadDim is not null) { U(ModelKeys.KeyLength, headDim); U(ModelKeys.ValueLength, headDim); }
                U(ModelKeys.VocabSize, vocab); U(ModelKeys.RopeDimensionCount, headDim);
                if (ropeType == "llama3") ropeFreqs = Llama3Factors(j, rs!.Value, theta, headDim);
                else if (ropeType == "linear") { S(ModelKeys.RopeScalingType, "linear"); F(ModelKeys.RopeScalingFactor, Factor(j, rs!.Value)); }
                else if (ropeType is not null) throw j.Error("rope_scaling", $"type '{ropeType}' is not supported for llama (llama3, linear)");
                break;

            case HfFamily.Qwen2 or HfFamily.Qwen3:
                U(ModelKeys.BlockCount, layers); U(ModelKeys.ContextLength, ctx); U(ModelKeys.EmbeddingLength, dim); U(ModelKeys.FeedForwardLength, ffn);
                U(ModelKeys.HeadCount, heads); U(ModelKeys.HeadCountKv, kvHeads);
                if (ropeType == "yarn")
                {
                    S(ModelKeys.RopeScalingType, "yarn"); F(ModelKeys.RopeScalingFactor, Factor(j, rs!.Value));
                    U(ModelKeys.RopeOriginalContext, (long)(j.OptDouble(rs.Value, "original_max_position_embeddings") ?? throw j.Error("rope_scaling", "has no original_max_position_embeddings")));
                }
                else if (ropeType is not null) throw j.Error("rope_scaling", $"type '{ropeType}' is not supported for {arch} (yarn)");
                F(ModelKeys.RopeFreqBase, theta); F(ModelKeys.RmsEps, eps);
                if (family == HfFamily.Qwen3 || configHeadDim is not null) { U(ModelKeys.KeyLength, headDim); U(ModelKeys.ValueLength, headDim); }
                break;

            case HfFamily.Phi3:
            {
                double partial = j.OptDouble("partial_rotary_factor") ?? (rs is { } pr ? j.OptDouble(pr, "partial_rotary_factor") : null) ?? 1.0;
                if (partial <= 0 || partial > 1) throw j.Error("partial_rotary_factor", $"{partial} must be in (0, 1]");
                ropeDims = (int)(partial * dim) / heads;
                if (ropeDims <= 0 || ropeDims % 2 != 0) throw j.Error("partial_rotary_factor", $"gives {ropeDims} rotated dimensions per head (must be positive and even)");
                int origCtx = j.OptInt("original_max_position_embeddings")
                    ?? (rs is { } ro && j.OptDouble(ro, "original_max_position_embeddings") is double od ? (int)od : throw j.Error("original_max_position_embeddings", "is missing (phi3 needs it)"));
                if (origCtx <= 0) throw j.Error("original_max_position_embeddings", $"{origCtx} must be positive");
                U(ModelKeys.ContextLength, ctx); U(ModelKeys.RopeOriginalContext, origCtx);
                U(ModelKeys.EmbeddingLength, dim); U(ModelKeys.FeedForwardLength, ffn); U(ModelKeys.BlockCount, layers);
                U(ModelKeys.HeadCount, heads); U(ModelKeys.HeadCountKv, kvHeads);
                F(ModelKeys.RmsEps, eps); U(ModelKeys.RopeDimensionCount, ropeDims); F(ModelKeys.RopeFreqBase, theta);
                U(ModelKeys.SlidingWindow, j.OptInt("sliding_window") ?? 0);
                if (rs is { } r && r.TryGetProperty("long_factor", out var lf) && lf.ValueKind == JsonValueKind.Array && lf.GetArrayLength() > 0)
                {
                    if (ropeType is not ("longrope" or "su"))
                        throw j.Error("rope_scaling", $"type '{ropeType}' with long_factor is not supported for phi3 (longrope, su)");
                    double scale = (double)ctx / origCtx;
                    double attnFactor = scale > 1.0 ? Math.Sqrt(1 + Math.Log(scale) / Math.Log(origCtx)) : 1.0;
                    F(ModelKeys.RopeAttnFactor, attnFactor);
                    var longF = Floats(j, r, "long_factor");
                    var shortF = r.TryGetProperty("short_factor", out _) ? Floats(j, r, "short_factor") : throw j.Error("rope_scaling", "has long_factor but no short_factor");
                    if (longF.Length != ropeDims / 2 || shortF.Length != ropeDims / 2)
                        throw j.Error("rope_scaling", $"long_factor has {longF.Length} and short_factor {shortF.Length} entries, rope dimensions / 2 = {ropeDims / 2} expected");
                    generated.Add(new(TensorNames.RopeFactorsLong, longF));
                    generated.Add(new(TensorNames.RopeFactorsShort, shortF));
                }
                else if (ropeType is not null) throw j.Error("rope_scaling", $"type '{ropeType}' without long_factor is not supported for phi3");
                break;
            }

            case HfFamily.Gemma or HfFamily.Gemma2:
                if (ropeType is not null) throw j.Error("rope_scaling", $"type '{ropeType}' is not supported for {arch}");
                if (theta != 10000.0) throw j.Error("rope_theta", $"{theta}: llama.cpp's {arch} always uses 10000 (no rope.freq_base key is written)");
                U(ModelKeys.ContextLength, ctx); U(ModelKeys.EmbeddingLength, dim); U(ModelKeys.BlockCount, layers); U(ModelKeys.FeedForwardLength, ffn);
                U(ModelKeys.HeadCount, heads); U(ModelKeys.HeadCountKv, kvHeads);
                F(ModelKeys.RmsEps, eps);
                U(ModelKeys.KeyLength, headDim); U(ModelKeys.ValueLength, headDim);
                if (family == HfFamily.Gemma2)
                {
                    F(ModelKeys.AttnSoftcap, j.OptDouble("attn_logit_softcapping") ?? throw j.Error("attn_logit_softcapping", "is missing (gemma2 needs it)"));
                    F(ModelKeys.FinalSoftcap, j.OptDouble("final_logit_softcapping") ?? throw j.Error("final_logit_softcapping", "is missing (gemma2 needs it)"));
                    U(ModelKeys.SlidingWindow, j.OptInt("sliding_window") ?? throw j.Error("sliding_window", "is missing (gemma2 needs it)"));
                    CheckQueryScale(j, layers == 46, dim, heads, headDim);
                }
                break;

            default: // Gemma3
                U(ModelKeys.BlockCount, layers); U(ModelKeys.ContextLength, ctx); U(ModelKeys.EmbeddingLength, dim); U(ModelKeys.FeedForwardLength, ffn);
                U(ModelKeys.HeadCount, heads); U(ModelKeys.HeadCountKv, kvHeads);
                if (ropeType == "linear") { S(ModelKeys.RopeScalingType, "linear"); F(ModelKeys.RopeScalingFactor, Factor(j, rs!.Value)); }
                else if (ropeType is not null) throw j.Error("rope_scaling", $"type '{ropeType}' is not supported for gemma3 (linear)");
                F(ModelKeys.RopeFreqBase, theta);
                if (j.OptDouble("rope_local_base_freq") is double local) F(ModelKeys.RopeFreqBaseSwa, local);
                F(ModelKeys.RmsEps, eps);
                U(ModelKeys.KeyLength, headDim); U(ModelKeys.ValueLength, headDim);
                if (j.Has("attn_logit_softcapping")) throw j.Error("attn_logit_softcapping", "is set, but gemma3 has no attention softcapping");
                if (j.OptDouble("final_logit_softcapping") is double fc && fc != 0) F(ModelKeys.FinalSoftcap, fc);
                if (j.OptInt("sliding_window_pattern") != 1)
                {
                    U(ModelKeys.SlidingWindow, j.OptInt("sliding_window") ?? throw j.Error("sliding_window", "is missing (gemma3 needs it)"));
                    CheckGemma3Pattern(j, layers);
                }
                CheckQueryScale(j, layers == 62, dim, heads, headDim);
                break;
        }

        var p = new LlamaParams
        {
            Shape = new ModelShape
            {
                Arch = arch, Dim = dim, Layers = layers, Heads = heads, KvHeads = kvHeads, Ffn = ffn, Vocab = vocab,
                RmsEps = (float)eps, RopeBase = (float)theta, Context = ctx, KeyLength = headDim, RopeDims = ropeDims,
            },
            RopeFreqFactors = ropeFreqs,
            Name = defaultName,
            ArchMetadata = kv,
            GeneratedTensors = generated.Count > 0 ? generated : null,
        };
        return new HfConfig
        {
            Params = p,
            Family = family,
            TieWordEmbeddings = j.OptBool("tie_word_embeddings") ?? gemma,
            BosTokenId = TokenId(j, "bos_token_id"),
            EosTokenId = TokenId(j, "eos_token_id"),
        };
    }

    /// <summary>The first class in <c>architectures</c> this converter knows; absent means a llama checkpoint (old exports).</summary>
    private static HfFamily DetectFamily(JsonFile j)
    {
        if (!j.Root.TryGetProperty("architectures", out var arch) || arch.ValueKind == JsonValueKind.Null) return HfFamily.Llama;
        if (arch.ValueKind != JsonValueKind.Array) throw j.Error("architectures", $"must be a list of class names, found {arch}");
        foreach (var a in arch.EnumerateArray())
        {
            if (a.ValueKind != JsonValueKind.String) continue;
            foreach (var (cls, fam) in Classes)
                if (a.GetString() == cls) return fam;
        }
        throw j.Error("architectures", $"{arch.GetRawText()} is not supported (edgellm-convert reads {string.Join(", ", Classes.Select(c => c.Class))})");
    }

    private static string? RopeType(JsonFile j, JsonElement rs)
    {
        foreach (string key in (ReadOnlySpan<string>)["rope_type", "type"])
        {
            if (!rs.TryGetProperty(key, out var t) || t.ValueKind == JsonValueKind.Null) continue;
            if (t.ValueKind != JsonValueKind.String) throw j.Error("rope_scaling", $"'{key}' must be a string, found {t}");
            return t.GetString()!.ToLowerInvariant();
        }
        return null;
    }

    private static double Factor(JsonFile j, JsonElement rs)
    {
        double f = j.OptDouble(rs, "factor") ?? throw j.Error("rope_scaling", "has no factor");
        return f > 0 ? f : throw j.Error("rope_scaling", $"factor {f} must be positive");
    }

    private static float[] Floats(JsonFile j, JsonElement obj, string key)
    {
        var a = obj.GetProperty(key);
        if (a.ValueKind != JsonValueKind.Array) throw j.Error($"rope_scaling.{key}", $"must be a list of numbers, found {a}");
        var f = new float[a.GetArrayLength()];
        int i = 0;
        foreach (var v in a.EnumerateArray())
        {
            if (v.ValueKind != JsonValueKind.Number) throw j.Error($"rope_scaling.{key}", $"entry {i} is {v}, not a number");
            f[i++] = (float)v.GetDouble();
        }
        return f;
    }

    /// <summary>
    /// llama.cpp does not read query_pre_attn_scalar: gemma2/gemma3 scale queries by 1/sqrt(head_dim), or by
    /// 1/sqrt(hidden/heads) for the 27B shapes. A config asking for anything else cannot be converted faithfully.
    /// </summary>
    private static void CheckQueryScale(JsonFile j, bool is27B, int dim, int heads, int headDim)
    {
        if (j.OptDouble("query_pre_attn_scalar") is not double q) return;
        double implied = is27B ? dim / heads : headDim;
        if (q != implied)
            throw j.Error("query_pre_attn_scalar", $"{q}: llama.cpp derives {implied} from this shape (head_dim, or hidden_size / heads for the 27B layer counts) and reads no such key");
    }

    /// <summary>
    /// llama.cpp's gemma3 has no key for the local/global layout: every sixth layer is global, the others use the
    /// sliding window (and rope base 10000). A config laid out otherwise (sliding_window_pattern, or the
    /// layer_types list newer transformers write) cannot be converted faithfully.
    /// </summary>
    private static void CheckGemma3Pattern(JsonFile j, int layers)
    {
        if (j.OptInt("sliding_window_pattern") is int pattern && pattern != 6)
            throw j.Error("sliding_window_pattern", $"{pattern}: llama.cpp's gemma3 always makes every sixth layer global (6)");
        if (!j.Root.TryGetProperty("layer_types", out var lt) || lt.ValueKind == JsonValueKind.Null) return;
        if (lt.ValueKind != JsonValueKind.Array || lt.GetArrayLength() != layers)
            throw j.Error("layer_types", $"must list the {layers} layers' attention types");
        int i = 0;
        foreach (var t in lt.EnumerateArray())
        {
            string want = (i + 1) % 6 == 0 ? "full_attention" : "sliding_attention";
            if (t.ValueKind != JsonValueKind.String || t.GetString() != want)
                throw j.Error("layer_types", $"entry {i} is {t}, but llama.cpp's gemma3 makes layer {i} {want} (every sixth layer global)");
            i++;
        }
    }

    /// <summary>bos/eos ids may be a number or (Llama 3.x instruct) a list: the first entry is taken.</summary>
    private static int? TokenId(JsonFile j, string key)
    {
        if (!j.Root.TryGetProperty(key, out var v)) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
        if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0 && v[0].TryGetInt32(out int f)) return f;
        return null;
    }

    /// <summary>
    /// Llama-3.1 "llama3" rope scaling as factors per frequency (what llama.cpp's converter writes as
    /// rope_freqs.weight): 1 for short wavelengths, <c>factor</c> for long ones, a smooth blend between.
    /// </summary>
    private static float[] Llama3Factors(JsonFile j, JsonElement rs, double theta, int headDim)
    {
        double factor = j.OptDouble(rs, "factor") ?? 8.0;
        double low = j.OptDouble(rs, "low_freq_factor") ?? 1.0;
        double high = j.OptDouble(rs, "high_freq_factor") ?? 4.0;
        double oldCtx = j.OptDouble(rs, "original_max_position_embeddings") ?? 8192;
        if (low == high) throw j.Error("rope_scaling", "low_freq_factor equals high_freq_factor");
        return Llama3Rope.Factors(headDim, theta, factor, low, high, oldCtx);
    }
}
