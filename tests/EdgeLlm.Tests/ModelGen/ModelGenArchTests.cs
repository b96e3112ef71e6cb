using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.ModelGen;

namespace EdgeLlm.Tests.ModelGen;

/// <summary>
/// The generator's families (--arch) and the edge presets: each family at a tiny shape is a file the engine loads
/// and runs, and each preset has the real model's parameter count, metadata and tensor layout (planned only: the
/// presets are gigabytes).
/// </summary>
public class ModelGenArchTests
{
    public static TheoryData<string> Archs() => new(LlamaConfig.SupportedArchitectures);

    [Theory]
    [MemberData(nameof(Archs))]
    public void EveryArchAtTheTinyShapeLoadsAndRunsOneToken(string arch)
    {
        var shape = ModelShape.Preset("tiny")! with { Arch = arch };
        string path = TestPaths.TempFile($"gen-arch-{arch}.gguf");
        ModelGenerator.Write(new ModelGenOptions { Shape = shape, Format = WeightFormat.Q4_K_M, Seed = 3 }, path);

        using (var f = GgufFile.Open(path))
        {
            var spec = ArchSpec.Find(arch)!;
            Assert.Equal(arch, f.GetString("general.architecture"));
            Assert.Equal(spec.FusedQkv, f.FindTensor("blk.1.attn_qkv.weight") is not null);
            Assert.Equal(!spec.FusedQkv, f.FindTensor("blk.1.attn_q.weight") is not null);
            Assert.Equal(!spec.FusedGateUp, f.FindTensor("blk.1.ffn_gate.weight") is not null);
            Assert.Equal(spec.RequiresQkvBias, f.FindTensor("blk.1.attn_k.bias") is not null);
            Assert.Equal(spec.QkNorm, f.FindTensor("blk.1.attn_q_norm.weight") is not null);
            Assert.Equal(spec.PostNorms, f.FindTensor("blk.1.post_ffw_norm.weight") is not null);
            Assert.Equal(!arch.StartsWith("gemma", StringComparison.Ordinal), f.FindTensor("output.weight") is not null);
            if (spec.FusedGateUp) Assert.Equal([256L, 1024], f.FindTensor("blk.0.ffn_up.weight")!.Dims);
            if (spec.FusedQkv)
            {
                Assert.Equal([256L, 256 + 2 * 128], f.FindTensor("blk.0.attn_qkv.weight")!.Dims);
                Assert.Equal(GgmlType.Q5_K, f.FindTensor("blk.0.attn_qkv.weight")!.Type); // llama.cpp's Q4_K_M rule
            }
        }

        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 1, ContextSize = 8 });
        Assert.Equal(arch, model.Config.Architecture);
        Assert.Equal(64, model.Config.HeadDim);
        var family = ArchSpec.Find(arch)!;
        Assert.Equal(family.UsualRmsEps, model.Config.RmsEps);
        Assert.Equal(family.FinalSoftcapDefault, model.Config.FinalSoftcap);
        Assert.Equal(family.SwaPattern > 0 ? family.UsualWindow : 0, model.Config.SlidingWindow);

        var logits = new float[model.VocabSize];
        model.Forward(7, 0, logits);
        double sum = 0, sum2 = 0;
        foreach (float x in logits)
        {
            Assert.True(float.IsFinite(x), $"{arch}: non-finite logit {x}");
            sum += x;
            sum2 += (double)x * x;
        }
        double mean = sum / logits.Length, std = Math.Sqrt(sum2 / logits.Length - mean * mean);
        Assert.InRange(std, 0.1, 30.0);
    }

    /// <summary>Parameter counts the model cards publish (tied embeddings counted once).</summary>
    [Theory]
    [InlineData("llama3.2-1b", 1_235_814_400L)]
    [InlineData("qwen2.5-1.5b", 1_543_714_304L)]
    [InlineData("qwen3-1.7b", 1_720_574_976L)]
    [InlineData("phi3-mini", 3_821_079_552L)]
    [InlineData("gemma2-2b", 2_614_341_888L)]
    [InlineData("gemma3-1b", 999_885_952L)]
    public void EdgePresetsHaveTheRealParameterCounts(string preset, long parameters)
    {
        var shape = ModelShape.Preset(preset)!;
        Assert.Null(shape.Problem());
        Assert.Equal(parameters, shape.ParameterCount);
        long elements = 0;
        foreach (var t in ModelGenerator.Plan(new ModelGenOptions { Shape = shape, Format = WeightFormat.Q4_0 }))
            if (t.Role != TensorRole.RopeFreqs) elements += t.Dims[0] * (t.Dims.Length > 1 ? t.Dims[1] : 1);
        Assert.Equal(parameters, elements);
    }

    private static Dictionary<string, GgufValue> Meta(string preset) =>
        ModelGenerator.Metadata(new ModelGenOptions { Shape = ModelShape.Preset(preset)!, Format = WeightFormat.Q4_K_M })
            .ToDictionary(kv => kv.Key, kv => kv.Value);

    private static long I(Dictionary<string, GgufValue> m, string key)
    {
        Assert.True(m.TryGetValue(key, out var v), $"missing {key}");
        Assert.True(v.TryGetInt64(out long x), key);
        return x;
    }

    private static double D(Dictionary<string, GgufValue> m, string key)
    {
        Assert.True(m.TryGetValue(key, out var v), $"missing {key}");
        Assert.True(v.TryGetDouble(out double x), key);
        return x;
    }

    // arch, dim, layers, heads, kv heads, head dim (null: no key_length), ffn, vocab, eps, rope base, window (0: none), softcaps
    [Theory]
    [InlineData("llama3.2-1b", "llama", 2048, 16, 32, 8, 0, 8192, 128256, 1e-5, 500000.0, 0, 0.0, 0.0)]
    [InlineData("qwen2.5-1.5b", "qwen2", 1536, 28, 12, 2, 0, 8960, 151936, 1e-6, 1e6, 0, 0.0, 0.0)]
    [InlineData("qwen3-1.7b", "qwen3", 2048, 28, 16, 8, 128, 6144, 151936, 1e-6, 1e6, 0, 0.0, 0.0)]
    [InlineData("phi3-mini", "phi3", 3072, 32, 32, 32, 0, 8192, 32064, 1e-5, 10000.0, 0, 0.0, 0.0)]
    [InlineData("gemma2-2b", "gemma2", 2304, 26, 8, 4, 256, 9216, 256000, 1e-6, 10000.0, 4096, 50.0, 30.0)]
    [InlineData("gemma3-1b", "gemma3", 1152, 26, 4, 1, 256, 6912, 262144, 1e-6, 1e6, 512, 0.0, 0.0)]
    public void EdgePresetsWriteTheFamilysMetadata(string preset, string arch, int dim, int layers, int heads, int kvHeads,
        int headDim, int ffn, int vocab, double eps, double ropeBase, int window, double attnCap, double finalCap)
    {
        var m = Meta(preset);
        string a = arch + ".";
        Assert.Equal(arch, (string)m["general.architecture"].Value);
        Assert.Equal(dim, I(m, a + "embedding_length"));
        Assert.Equal(layers, I(m, a + "block_count"));
        Assert.Equal(heads, I(m, a + "attention.head_count"));
        Assert.Equal(kvHeads, I(m, a + "attention.head_count_kv"));
        Assert.Equal(ffn, I(m, a + "feed_forward_length"));
        Assert.Equal(vocab, I(m, a + "vocab_size"));
        if (headDim == 0) Assert.False(m.ContainsKey(a + "attention.key_length"));
        else
        {
            Assert.Equal(headDim, I(m, a + "attention.key_length"));
            Assert.Equal(headDim, I(m, a + "attention.value_length"));
        }
        Assert.Equal(headDim == 0 ? dim / heads : headDim, I(m, a + "rope.dimension_count"));
        Assert.Equal(eps, D(m, a + "attention.layer_norm_rms_epsilon"), 1e-9);
        Assert.Equal(ropeBase, D(m, a + "rope.freq_base"));
        if (window == 0) Assert.False(m.ContainsKey(a + "attention.sliding_window"));
        else Assert.Equal(window, I(m, a + "attention.sliding_window"));
        if (attnCap == 0) Assert.False(m.ContainsKey(a + "attn_logit_softcapping"));
        else Assert.Equal(attnCap, D(m, a + "attn_logit_softcapping"));
        if (finalCap == 0) Assert.False(m.ContainsKey(a + "final_logit_softcapping"));
        else Assert.Equal(finalCap, D(m, a + "final_logit_softcapping"));
        Assert.Equal(15, I(m, "general.file_type")); // MOSTLY_Q4_K_M
        foreach (string key in m.Keys)
            Assert.True(key.StartsWith("general.", StringComparison.Ordinal) || key.StartsWith(a, StringComparison.Ordinal)
                || key.StartsWith("edgellm.", StringComparison.Ordinal), $"{preset}: key {key} outside the {arch} prefix");
    }

    [Fact]
    public void EdgePresetsHaveTheFamilysTensorsAndLlamaCppTypes()
    {
        static Dictionary<string, PlannedTensor> Plan(string preset, WeightFormat f) =>
            ModelGenerator.Plan(new ModelGenOptions { Shape = ModelShape.Preset(preset)!, Format = f }).ToDictionary(t => t.Name);

        // Llama 3.2 1B: tied (token_embd is the output, so Q6_K), rope_freqs of head/2 floats, GQA 32/8 x 64.
        var llama = Plan("llama3.2-1b", WeightFormat.Q4_K_M);
        Assert.False(llama.ContainsKey("output.weight"));
        Assert.Equal(GgmlType.Q6_K, llama["token_embd.weight"].Type);
        Assert.Equal([32L], llama["rope_freqs.weight"].Dims);
        Assert.Equal([2048L, 512], llama["blk.5.attn_k.weight"].Dims);
        Assert.Equal(3 + 16 * 9, llama.Count); // token_embd, rope_freqs, 16 blocks of 9, output_norm

        // Qwen 2.5: biases of q (1536) and k/v (2 x 128).
        var qwen2 = Plan("qwen2.5-1.5b", WeightFormat.Q4_0);
        Assert.Equal([1536L], qwen2["blk.27.attn_q.bias"].Dims);
        Assert.Equal([256L], qwen2["blk.27.attn_v.bias"].Dims);
        Assert.Equal(GgmlType.F32, qwen2["blk.27.attn_v.bias"].Type);
        Assert.Equal(GgmlType.Q6_K, qwen2["token_embd.weight"].Type);

        // Qwen 3: q is 16 x 128, q/k norms of one head.
        var qwen3 = Plan("qwen3-1.7b", WeightFormat.Q4_0);
        Assert.Equal([2048L, 2048], qwen3["blk.0.attn_q.weight"].Dims);
        Assert.Equal([2048L, 1024], qwen3["blk.0.attn_v.weight"].Dims);
        Assert.Equal([128L], qwen3["blk.0.attn_k_norm.weight"].Dims);

        // Phi-3 mini: fused qkv (3 x 3072 rows) and gate|up (2 x 8192), untied output.
        var phi3 = Plan("phi3-mini", WeightFormat.Q4_0);
        Assert.Equal([3072L, 9216], phi3["blk.31.attn_qkv.weight"].Dims);
        Assert.Equal([3072L, 16384], phi3["blk.31.ffn_up.weight"].Dims);
        Assert.False(phi3.ContainsKey("blk.0.ffn_gate.weight"));
        Assert.Equal([3072L, 32064], phi3["output.weight"].Dims);

        // Gemma 2 2B: q is 8 x 256 = 2048 wide (not dim 2304), post norms, tied 256000-row embeddings.
        var gemma2 = Plan("gemma2-2b", WeightFormat.Q4_K_M);
        Assert.Equal([2304L, 2048], gemma2["blk.0.attn_q.weight"].Dims);
        Assert.Equal([2048L, 2304], gemma2["blk.0.attn_output.weight"].Dims);
        Assert.Equal([2304L], gemma2["blk.25.post_attention_norm.weight"].Dims);
        Assert.Equal([2304L, 256000], gemma2["token_embd.weight"].Dims);
        Assert.Equal(GgmlType.Q6_K, gemma2["token_embd.weight"].Type);

        // Gemma 3 1B: rows of 1152 are not whole K-quant blocks, so llama.cpp's fallbacks apply: Q4_K -> Q5_0,
        // Q6_K -> Q8_0; ffn_down's rows of 6912 keep Q4_K / Q6_K.
        var gemma3 = Plan("gemma3-1b", WeightFormat.Q4_K_M);
        Assert.Equal(GgmlType.Q5_0, gemma3["blk.1.attn_q.weight"].Type);
        Assert.Equal(GgmlType.Q8_0, gemma3["blk.0.attn_v.weight"].Type); // use_more_bits layer: Q6_K -> Q8_0
        Assert.Equal(GgmlType.Q8_0, gemma3["token_embd.weight"].Type);
        Assert.Equal(GgmlType.Q4_K, gemma3["blk.4.ffn_down.weight"].Type);
        Assert.Equal(GgmlType.Q6_K, gemma3["blk.0.ffn_down.weight"].Type);
        Assert.Equal([256L], gemma3["blk.0.attn_q_norm.weight"].Dims);
    }

    [Fact]
    public void Q5_K_MIsLlamaCppsMix()
    {
        // llama_ftype: MOSTLY_Q4_K_M = 15, MOSTLY_Q5_K_M = 17; a fused attn_qkv goes one step up (Q5_K, Q6_K).
        Assert.True(WeightFormats.TryParse("Q5_K_M", out var f));
        Assert.Equal(WeightFormat.Q5_K_M, f);
        Assert.Equal("q5_k_m", WeightFormats.Name(f));
        Assert.Equal(17u, WeightFormats.FileType(f));
        Assert.Equal(15u, WeightFormats.FileType(WeightFormat.Q4_K_M));
        var plan = ModelGenerator.Plan(new ModelGenOptions { Shape = ModelShape.Preset("phi3-mini")!, Format = f }).ToDictionary(t => t.Name);
        Assert.Equal(GgmlType.Q6_K, plan["blk.10.attn_qkv.weight"].Type);
        Assert.Equal(GgmlType.Q5_K, plan["blk.10.ffn_up.weight"].Type);
        Assert.Equal(GgmlType.Q6_K, plan["blk.0.ffn_down.weight"].Type);
        Assert.Equal(GgmlType.Q5_K, plan["blk.4.ffn_down.weight"].Type);
        Assert.Equal(GgmlType.Q6_K, plan["output.weight"].Type);
    }

    [Fact]
    public void Llama3RopeFreqsFollowTheLlama3Scaling()
    {
        // base 500000, head 64: pair i has wavelength 2*pi*500000^(i/32). Under 2048 (8192 / 4) the factor is 1,
        // over 8192 it is 32, between it blends 1 / ((1 - s) / 32 + s) with s = (8192 / wavelength - 1) / 3.
        float[] f = ModelGenerator.Llama3RopeFreqs(64, 500000f);
        Assert.Equal(32, f.Length);
        for (int i = 0; i < 32; i++)
        {
            double wavelength = 2 * Math.PI * Math.Pow(500000, i / 32.0);
            double s = (8192 / wavelength - 1) / 3;
            double expected = wavelength < 2048 ? 1 : wavelength > 8192 ? 32 : 1 / ((1 - s) / 32 + s);
            Assert.Equal(expected, f[i], 1e-5);
            if (i > 0) Assert.True(f[i] >= f[i - 1]);
        }
        Assert.Equal(1f, f[0]);
        Assert.Equal(32f, f[31]);

        // The engine reads them back from a generated file.
        string path = TestPaths.TempFile("gen-rope-freqs.gguf");
        var shape = ModelShape.Preset("tiny")! with { RopeFreqs = true, RopeBase = 500000f, Tied = true };
        ModelGenerator.Write(new ModelGenOptions { Shape = shape, Format = WeightFormat.Q8_0 }, path);
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 1, ContextSize = 8 });
        using var file = GgufFile.Open(path);
        Assert.Equal(ModelGenerator.Llama3RopeFreqs(64, 500000f), new LlamaWeights(file, model.Config).RopeFreqFactors(model.Config, 8));
        Assert.True(new LlamaWeights(file, model.Config).TiedOutput);
    }

    [Fact]
    public void CommandLineTakesArchAndPreset()
    {
        string path = TestPaths.TempFile("gen-cli-arch.gguf");
        var o = new StringWriter();
        var e = new StringWriter();
        Assert.Equal(0, ModelGenCli.Execute(["--shape", "tiny", "--arch", "qwen3", "--head-dim", "32", "-q", "-o", path], o, e));
        Assert.Equal("", e.ToString());
        Assert.StartsWith($"wrote {path}: qwen3: dim 256, layers 2, heads 4, kv heads 2, head 32", o.ToString());
        using var f = GgufFile.Open(path);
        Assert.Equal(32, f.GetInt("qwen3.attention.key_length"));
        Assert.Equal("random-qwen3-tiny-q4_0", f.GetString("general.name"));
        Assert.Equal([256L, 128], f.FindTensor("blk.0.attn_q.weight")!.Dims);

        e = new StringWriter();
        Assert.Equal(2, ModelGenCli.Execute(["--arch", "falcon", "-o", path], o, e));
        Assert.Contains("unknown architecture 'falcon' (expected llama, mistral, qwen2", e.ToString());
    }
}
