using System.Text.Json.Nodes;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Convert.ConvertTestKit;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// Hugging Face checkpoints of every family edgellm-convert reads (random weights in the real config.json and
/// tensor-name layout, <see cref="HfFamilyCheckpoint"/>), converted to F32 GGUF: each GGUF tensor must be the
/// HF tensor transformed as llama.cpp's convert_hf_to_gguf.py does (llama's q/k rows from rotate-half to
/// interleaved order, Gemma's norms + 1, Phi-3's fused tensors as they are, Gemma 3's embedding cut to the
/// vocabulary, tied heads dropped), the generated rope tensors as llama.cpp computes them, and the
/// <c>{arch}.*</c> metadata exactly the key set and values llama.cpp's converter writes for that config.
/// </summary>
public class HfFamilyConvertTests
{
    public static TheoryData<string> Families => new(HfFamilyCheckpoint.Families);

    internal static string ConvertFamily(HfFamilyCheckpoint ck, string type = "f32", string dtype = "BF16")
    {
        string dir = ck.Write(Path.Combine(Path.GetDirectoryName(TestPaths.TempFile("x"))!, ck.Family), dtype);
        return ConvertWithCli(dir, type);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void EveryTensorIsTheHfTensorTransformedAsLlamaCppDoes(string family)
    {
        var ck = HfFamilyCheckpoint.Create(family);
        using var f = GgufFile.Open(ConvertFamily(ck));
        var expected = ExpectedTensors(ck);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), f.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (var info in f.Tensors)
        {
            var (shape, want, tol) = expected[info.Name];
            Assert.Equal(GgmlType.F32, info.Type);
            Assert.Equal(shape.Reverse(), info.Dims);
            var got = new float[want.Length];
            Buffer.BlockCopy(TensorBytes(f, info.Name), 0, got, 0, got.Length * 4);
            for (int i = 0; i < want.Length; i++)
                Assert.True(Math.Abs(got[i] - want[i]) <= tol * Math.Max(1, Math.Abs(want[i])), $"{family} {info.Name}[{i}]: {got[i]} != {want[i]}");
        }
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void MetadataIsTheKeySetLlamaCppWrites(string family)
    {
        var ck = HfFamilyCheckpoint.Create(family);
        using var f = GgufFile.Open(ConvertFamily(ck));
        Assert.Equal(ck.GgufArch, f.GetString("general.architecture"));
        var want = ExpectedMetadata(ck);
        string prefix = ck.GgufArch + ".";
        Assert.Equal(want.Keys.Select(k => prefix + k).Order(StringComparer.Ordinal),
            f.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal));
        foreach (var (key, value) in want)
        {
            object? got = f.Get(prefix + key)!.Value;
            switch (value)
            {
                case uint u: Assert.True(got is uint gu && gu == u, $"{prefix}{key}: {got} ({got?.GetType().Name}) != {u} (u32)"); break;
                case float x: Assert.True(got is float gx && gx == x, $"{prefix}{key}: {got} ({got?.GetType().Name}) != {x} (f32)"); break;
                case string s: Assert.Equal(s, got); break;
                default: throw new InvalidOperationException(key);
            }
        }
        Assert.Equal(0u, f.Get("general.file_type")!.Value); // LLAMA_FTYPE_ALL_F32
        // The vocabulary: the tokenizer's 300 entries, padded to the embedding rows (gemma3: cut to the tokenizer).
        int rows = ck.GgufArch == "gemma3" ? ck.TokenizerTokens : ck.Vocab;
        Assert.Equal(rows, f.GetArray<string>("tokenizer.ggml.tokens")!.Length);
    }

    /// <summary>The {arch}.* keys (without the prefix) and values llama.cpp's converter writes for each test config.</summary>
    internal static Dictionary<string, object> ExpectedMetadata(HfFamilyCheckpoint ck)
    {
        var c = ck.Config;
        uint U(string k) => (uint)(int)c[k]!;
        float F(string k) => (float)(double)c[k]!;
        var m = new Dictionary<string, object>
        {
            ["block_count"] = U("num_hidden_layers"),
            ["context_length"] = U("max_position_embeddings"),
            ["embedding_length"] = U("hidden_size"),
            ["feed_forward_length"] = U("intermediate_size"),
            ["attention.head_count"] = U("num_attention_heads"),
            ["attention.head_count_kv"] = U("num_key_value_heads"),
            ["attention.layer_norm_rms_epsilon"] = F("rms_norm_eps"),
        };
        switch (ck.GgufArch)
        {
            case "llama":
                m["rope.freq_base"] = F("rope_theta");
                m["vocab_size"] = U("vocab_size");
                m["rope.dimension_count"] = (uint)ck.HeadDim;
                if (c.ContainsKey("head_dim")) { m["attention.key_length"] = U("head_dim"); m["attention.value_length"] = U("head_dim"); }
                break;
            case "qwen2":
                m["rope.freq_base"] = F("rope_theta");
                break;
            case "qwen3":
                m["rope.freq_base"] = F("rope_theta");
                m["attention.key_length"] = U("head_dim"); m["attention.value_length"] = U("head_dim");
                break;
            case "phi3":
                m["rope.freq_base"] = F("rope_theta");
                m["rope.dimension_count"] = 8u;                          // int(0.5 * 64) // 4
                m["rope.scaling.original_context_length"] = U("original_max_position_embeddings");
                m["attention.sliding_window"] = U("sliding_window");
                m["rope.scaling.attn_factor"] = (float)Math.Sqrt(1 + Math.Log(256.0 / 64) / Math.Log(64)); // LongRoPE, scale 4
                break;
            case "gemma":
            case "gemma2":
                m["attention.key_length"] = U("head_dim"); m["attention.value_length"] = U("head_dim");
                if (ck.GgufArch == "gemma2")
                {
                    m["attn_logit_softcapping"] = F("attn_logit_softcapping");
                    m["final_logit_softcapping"] = F("final_logit_softcapping");
                    m["attention.sliding_window"] = U("sliding_window");
                }
                break;
            case "gemma3":
                m["attention.key_length"] = U("head_dim"); m["attention.value_length"] = U("head_dim");
                m["rope.freq_base"] = F("rope_theta");
                m["rope.freq_base_swa"] = F("rope_local_base_freq");
                m["attention.sliding_window"] = U("sliding_window");
                break;
        }
        return m;
    }

    /// <summary>GGUF name -> (PyTorch-order shape, values, relative tolerance): the HF tensors renamed and transformed.</summary>
    internal static Dictionary<string, (long[] Shape, float[] Data, double Tol)> ExpectedTensors(HfFamilyCheckpoint ck)
    {
        var r = new Dictionary<string, (long[], float[], double)>(StringComparer.Ordinal);
        bool sandwich = ck.GgufArch is "gemma2" or "gemma3";
        foreach (var (hf, (shape, data)) in ck.Tensors)
        {
            string name = hf switch
            {
                "model.embed_tokens.weight" => "token_embd.weight",
                "model.norm.weight" => "output_norm.weight",
                "lm_head.weight" => "output.weight",
                _ => BlockName(hf, sandwich),
            };
            var d = (float[])data.Clone();
            var s = (long[])shape.Clone();
            if (ck.GgufArch == "llama" && (hf.EndsWith("q_proj.weight", StringComparison.Ordinal) || hf.EndsWith("k_proj.weight", StringComparison.Ordinal)))
                d = Interleave(d, s, hf.Contains("q_proj", StringComparison.Ordinal) ? ck.Heads : ck.KvHeads);
            if (ck.IsGemma && hf.EndsWith("norm.weight", StringComparison.Ordinal))
                for (int i = 0; i < d.Length; i++) d[i] += 1f;
            if (ck.GgufArch == "gemma3" && name == "token_embd.weight")
            {
                s[0] = ck.TokenizerTokens;
                d = d[..(int)(s[0] * s[1])];
            }
            r[name] = (s, d, 0);
        }
        if (ck.Family == "llama3") r["rope_freqs.weight"] = ([ck.HeadDim / 2], Llama3RopeFactors(ck), 1e-6);
        if (ck.GgufArch == "phi3")
        {
            var rs = ck.Config["rope_scaling"]!;
            r["rope_factors_long.weight"] = ([4], rs["long_factor"]!.AsArray().Select(v => (float)(double)v!).ToArray(), 0);
            r["rope_factors_short.weight"] = ([4], rs["short_factor"]!.AsArray().Select(v => (float)(double)v!).ToArray(), 0);
        }
        return r;
    }

    private static string BlockName(string hf, bool sandwich)
    {
        var parts = hf.Split('.');
        Assert.Equal("layers", parts[1]);
        string rest = string.Join('.', parts[3..]);
        string tail = rest switch
        {
            "input_layernorm.weight" => "attn_norm.weight",
            "self_attn.q_proj.weight" => "attn_q.weight",
            "self_attn.k_proj.weight" => "attn_k.weight",
            "self_attn.v_proj.weight" => "attn_v.weight",
            "self_attn.q_proj.bias" => "attn_q.bias",
            "self_attn.k_proj.bias" => "attn_k.bias",
            "self_attn.v_proj.bias" => "attn_v.bias",
            "self_attn.qkv_proj.weight" => "attn_qkv.weight",
            "self_attn.o_proj.weight" => "attn_output.weight",
            "self_attn.q_norm.weight" => "attn_q_norm.weight",
            "self_attn.k_norm.weight" => "attn_k_norm.weight",
            "post_attention_layernorm.weight" => sandwich ? "post_attention_norm.weight" : "ffn_norm.weight",
            "pre_feedforward_layernorm.weight" => "ffn_norm.weight",
            "post_feedforward_layernorm.weight" => "post_ffw_norm.weight",
            "mlp.gate_proj.weight" => "ffn_gate.weight",
            "mlp.up_proj.weight" or "mlp.gate_up_proj.weight" => "ffn_up.weight",
            "mlp.down_proj.weight" => "ffn_down.weight",
            _ => throw new InvalidOperationException(hf),
        };
        return $"blk.{parts[2]}.{tail}";
    }

    /// <summary>
    /// HF keeps each head's rows as [first halves of the rotated pairs; second halves]; llama.cpp's llama wants the
    /// pairs adjacent: GGUF row 2i + j of a head is HF row j * (head_dim / 2) + i.
    /// </summary>
    private static float[] Interleave(float[] w, long[] shape, int heads)
    {
        long rows = shape[0], cols = shape[1], hd = rows / heads;
        var o = new float[w.Length];
        for (long h = 0; h < heads; h++)
            for (long i = 0; i < hd / 2; i++)
                for (long j = 0; j < 2; j++)
                    Array.Copy(w, (h * hd + j * (hd / 2) + i) * cols, o, (h * hd + 2 * i + j) * cols, cols);
        return o;
    }

    /// <summary>llama.cpp's rope_freqs for rope_type llama3: 1 / (the factor transformers divides each inverse frequency by).</summary>
    internal static float[] Llama3RopeFactors(HfFamilyCheckpoint ck)
    {
        var rs = ck.Config["rope_scaling"]!;
        double theta = (double)ck.Config["rope_theta"]!, factor = (double)rs["factor"]!, lo = (double)rs["low_freq_factor"]!, hi = (double)rs["high_freq_factor"]!;
        double old = (int)rs["original_max_position_embeddings"]!;
        int hd = ck.HeadDim;
        var f = new float[hd / 2];
        for (int i = 0; i < f.Length; i++)
        {
            double invFreq = Math.Pow(theta, -2.0 * i / hd);
            double wavelen = 2 * Math.PI / invFreq;
            double scaled;
            if (wavelen < old / hi) scaled = invFreq;
            else if (wavelen > old / lo) scaled = invFreq / factor;
            else
            {
                double smooth = (old / wavelen - lo) / (hi - lo);
                scaled = (1 - smooth) * invFreq / factor + smooth * invFreq;
            }
            f[i] = (float)(invFreq / scaled);
        }
        return f;
    }

    // ------------------------------------------------------------------ bad input

    private static (Run Run, string Output) ConvertBad(HfFamilyCheckpoint ck, Func<string, bool>? skip = null, Func<string, long[], long[]>? reshape = null, JsonObject? config = null)
    {
        string dir = ck.Write(Path.Combine(Path.GetDirectoryName(TestPaths.TempFile("x"))!, ck.Family), "BF16", skip, reshape, config);
        string output = Path.Combine(dir, "out.gguf");
        var r = ConvertCliRun(dir, "-o", output, "--type", "f16", "-t", "2");
        return (r, output);
    }

    private static void AssertOneLineFailure(Run r, string output, params string[] mentions)
    {
        Assert.Equal(1, r.ExitCode);
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string error = Assert.Single(lines, l => l.StartsWith("edgellm-convert: error:", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains("internal error", StringComparison.Ordinal));
        foreach (string m in mentions) Assert.Contains(m, error, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
        Assert.False(File.Exists(output + ".partial"));
    }

    [Theory]
    [InlineData("qwen2", "model.layers.1.self_attn.k_proj.bias", "blk.1.attn_k.bias")]
    [InlineData("qwen3", "model.layers.0.self_attn.q_norm.weight", "blk.0.attn_q_norm.weight")]
    [InlineData("phi3", "model.layers.1.self_attn.qkv_proj.weight", "blk.1.attn_qkv.weight")]
    [InlineData("gemma2", "model.layers.0.post_feedforward_layernorm.weight", "blk.0.post_ffw_norm.weight")]
    [InlineData("gemma3", "model.layers.1.self_attn.k_norm.weight", "blk.1.attn_k_norm.weight")]
    public void AMissingTensorIsNamedInOneLine(string family, string drop, string gguf)
    {
        var (r, output) = ConvertBad(HfFamilyCheckpoint.Create(family), skip: n => n == drop);
        AssertOneLineFailure(r, output, $"'{gguf}'", "missing");
    }

    [Theory]
    [InlineData("phi3", "model.layers.0.mlp.gate_up_proj.weight", "blk.0.ffn_up.weight")]
    [InlineData("qwen3", "model.layers.1.self_attn.q_proj.weight", "blk.1.attn_q.weight")]
    [InlineData("gemma", "model.layers.0.self_attn.o_proj.weight", "blk.0.attn_output.weight")]
    public void AWrongShapeIsNamedInOneLine(string family, string bad, string gguf)
    {
        var (r, output) = ConvertBad(HfFamilyCheckpoint.Create(family), reshape: (n, s) => n == bad ? [s[0] / 2, s[1]] : s);
        AssertOneLineFailure(r, output, $"'{gguf}'", "shape");
    }

    [Fact]
    public void AnUnknownArchitectureIsRefusedInOneLine()
    {
        var ck = HfFamilyCheckpoint.Create("llama3");
        var config = (JsonObject)JsonNode.Parse(ck.Config.ToJsonString())!;
        config["architectures"] = new JsonArray("FalconForCausalLM");
        var (r, output) = ConvertBad(ck, config: config);
        AssertOneLineFailure(r, output, "'architectures'", "FalconForCausalLM", "not supported");
    }

    [Fact]
    public void AnExtraTensorOfAnotherFamilyIsRefused()
    {
        // A q_norm in a qwen2 checkpoint is not part of llama.cpp's qwen2: refused, not silently dropped.
        var ck = HfFamilyCheckpoint.Create("qwen2");
        ck.Tensors["model.layers.0.self_attn.q_norm.weight"] = ([16], new float[16]);
        var (r, output) = ConvertBad(ck);
        AssertOneLineFailure(r, output, "'blk.0.attn_q_norm.weight'");
    }

    [Theory]
    [InlineData("sliding_window_pattern", "4")]
    [InlineData("layer_types", "[\"sliding_attention\",\"full_attention\",\"sliding_attention\",\"sliding_attention\",\"sliding_attention\",\"full_attention\"]")]
    public void Gemma3LayoutsOtherThanFiveLocalOneGlobalAreRefused(string key, string json)
    {
        var ck = HfFamilyCheckpoint.Create("gemma3");
        var config = (JsonObject)JsonNode.Parse(ck.Config.ToJsonString())!;
        config[key] = JsonNode.Parse(json);
        var (r, output) = ConvertBad(ck, config: config);
        AssertOneLineFailure(r, output, $"'{key}'");
    }

    [Fact]
    public void Gemma3LayerTypesInTheFiveToOneLayoutAreAccepted()
    {
        var ck = HfFamilyCheckpoint.Create("gemma3");
        var config = (JsonObject)JsonNode.Parse(ck.Config.ToJsonString())!;
        config.Remove("sliding_window_pattern");
        config["layer_types"] = new JsonArray("sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "full_attention");
        var (r, output) = ConvertBad(ck, config: config);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var f = GgufFile.Open(output);
        Assert.Equal(4u, f.Get("gemma3.attention.sliding_window")!.Value);
    }

    [Fact]
    public void Gemma2QueryScalingThatLlamaCppCannotExpressIsRefused()
    {
        var ck = HfFamilyCheckpoint.Create("gemma2");
        var config = (JsonObject)JsonNode.Parse(ck.Config.ToJsonString())!;
        config["query_pre_attn_scalar"] = 100;
        var (r, output) = ConvertBad(ck, config: config);
        AssertOneLineFailure(r, output, "'query_pre_attn_scalar'");
    }
}
