using System.Text.Json;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// A Hugging Face <c>config.json</c> of a Llama-architecture model (LlamaForCausalLM, MistralForCausalLM without
/// sliding window): the hyperparameters, whether embeddings are tied, the special token ids, and Llama-3.1
/// rope scaling turned into llama.cpp's <c>rope_freqs</c> factors.
/// </summary>
internal sealed record HfConfig
{
    public required LlamaParams Params { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }

    private static readonly string[] SupportedArchitectures = ["LlamaForCausalLM", "MistralForCausalLM"];

    public static HfConfig Load(string path, string defaultName)
    {
        using var j = JsonFile.Open(path);
        if (j.Root.TryGetProperty("architectures", out var arch) && arch.ValueKind == JsonValueKind.Array)
        {
            bool ok = false;
            foreach (var a in arch.EnumerateArray()) ok |= a.ValueKind == JsonValueKind.String && Array.IndexOf(SupportedArchitectures, a.GetString()) >= 0;
            if (!ok) throw j.Error("architectures", $"{arch} is not supported (edgellm-convert reads {string.Join(", ", SupportedArchitectures)})");
        }
        int dim = j.Int("hidden_size");
        int heads = j.Int("num_attention_heads");
        int kvHeads = j.OptInt("num_key_value_heads") ?? heads;
        int layers = j.Int("num_hidden_layers");
        if (dim <= 0 || heads <= 0 || kvHeads <= 0 || layers <= 0) throw j.Error("hidden_size", "and the head and layer counts must be positive");
        if (dim % heads != 0) throw j.Error("num_attention_heads", $"{heads} does not divide hidden_size {dim}");
        if (heads % kvHeads != 0) throw j.Error("num_key_value_heads", $"{kvHeads} does not divide num_attention_heads {heads}");
        if (j.OptInt("head_dim") is int hd && hd != dim / heads)
            throw j.Error("head_dim", $"{hd} differs from hidden_size / num_attention_heads = {dim / heads} (not supported)");
        if (j.OptInt("sliding_window") is int sw && sw > 0 && sw < (j.OptInt("max_position_embeddings") ?? int.MaxValue))
            throw j.Error("sliding_window", $"{sw}: sliding-window attention is not supported");
        if (j.OptBool("attention_bias") == true || j.OptBool("mlp_bias") == true)
            throw j.Error("attention_bias", "biases are not supported by the llama architecture");
        string act = j.OptString("hidden_act") ?? "silu";
        if (act != "silu") throw j.Error("hidden_act", $"'{act}' is not supported (llama uses silu)");
        float theta = (float)(j.OptDouble("rope_theta") ?? 10000.0);
        float[]? freqFactors = null;
        if (j.Root.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind == JsonValueKind.Object)
            freqFactors = RopeScaling(j, rs, theta, dim / heads);
        var p = new LlamaParams
        {
            Dim = dim,
            Layers = layers,
            Heads = heads,
            KvHeads = kvHeads,
            FfnDim = j.Int("intermediate_size"),
            VocabSize = j.Int("vocab_size"),
            NormEps = (float)(j.OptDouble("rms_norm_eps") ?? 1e-6),
            RopeTheta = theta,
            ContextLength = j.OptInt("max_position_embeddings") ?? 2048,
            RopeFreqFactors = freqFactors,
            Name = defaultName,
        };
        return new HfConfig
        {
            Params = p,
            TieWordEmbeddings = j.OptBool("tie_word_embeddings") ?? false,
            BosTokenId = TokenId(j, "bos_token_id"),
            EosTokenId = TokenId(j, "eos_token_id"),
        };
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
    /// Linear and other scalings are rejected rather than silently ignored.
    /// </summary>
    private static float[]? RopeScaling(JsonFile j, JsonElement rs, float theta, int headDim)
    {
        string? type = rs.TryGetProperty("rope_type", out var t) ? t.GetString() : rs.TryGetProperty("type", out var t2) ? t2.GetString() : null;
        if (type is null or "default") return null;
        if (type != "llama3") throw j.Error("rope_scaling", $"type '{type}' is not supported (only llama3)");
        double factor = j.OptDouble(rs, "factor") ?? 8.0;
        double low = j.OptDouble(rs, "low_freq_factor") ?? 1.0;
        double high = j.OptDouble(rs, "high_freq_factor") ?? 4.0;
        double oldCtx = j.OptDouble(rs, "original_max_position_embeddings") ?? 8192;
        double lowWavelen = oldCtx / low, highWavelen = oldCtx / high;
        var f = new float[headDim / 2];
        for (int i = 0; i < f.Length; i++)
        {
            double freq = 1.0 / Math.Pow(theta, 2.0 * i / headDim);
            double wavelen = 2 * Math.PI / freq;
            if (wavelen < highWavelen) f[i] = 1f;
            else if (wavelen > lowWavelen) f[i] = (float)factor;
            else
            {
                double smooth = (oldCtx / wavelen - low) / (high - low);
                f[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
            }
        }
        return f;
    }
}
