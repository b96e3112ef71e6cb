using System.Reflection;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.ModelDescription;

/// <summary>
/// The one model description (<see cref="ModelShape"/>, <see cref="TensorNames"/>, <see cref="ModelKeys"/>,
/// <see cref="ArchSpec.BlockTensors"/>) checked against files llama.cpp loads: the random-weight models of
/// tests/data/models-visible (llama.cpp c392e50 computed their logits, so it accepted every tensor name and shape)
/// and ollama's llama-2-tiny-random.gguf.
/// </summary>
public class ModelDescriptionTests
{
    public static TheoryData<string> Files() =>
        new("models-visible/llama.gguf", "models-visible/qwen2.gguf", "models-visible/phi3.gguf", "models-visible/gemma.gguf",
            "models-visible/gemma2.gguf", "llama-2-tiny-random.gguf");

    [Theory]
    [MemberData(nameof(Files))]
    public void EveryTensorOfTheFileHasTheNameAndDimsTheDescriptionGives(string file)
    {
        using var f = GgufFile.Open(TestPaths.Data(file));
        var shape = LlamaConfig.FromGguf(f).Shape;
        var expected = new List<string> { TensorNames.TokenEmbd, TensorNames.OutputNorm };
        if (!shape.IsTied) expected.Add(TensorNames.Output);
        if (shape.RopeFreqs) expected.Add(TensorNames.RopeFreqs);
        for (int l = 0; l < shape.Layers; l++)
            foreach (string t in shape.Family.BlockTensors) expected.Add(TensorNames.Block(l, t));

        var actual = f.Tensors.Select(t => t.Name).ToList();
        Assert.Equal(expected.Order(StringComparer.Ordinal), actual.Order(StringComparer.Ordinal));
        foreach (var t in f.Tensors)
            Assert.True(t.Dims.SequenceEqual(shape.Dims(t.Name)!), $"{file}: {t.Name} is [{string.Join(", ", t.Dims)}], the description says [{string.Join(", ", shape.Dims(t.Name)!)}]");
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void EveryHyperparameterKeyOfTheFileIsInTheKeyTable(string file)
    {
        using var f = GgufFile.Open(TestPaths.Data(file));
        string arch = f.GetString(ModelKeys.Architecture)!;
        var known = typeof(ModelKeys).GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(x => x.IsLiteral).Select(x => (string)x.GetRawConstantValue()!).ToHashSet();
        foreach (string key in f.Keys)
            if (key.StartsWith(arch + ".", StringComparison.Ordinal))
                Assert.Contains(key[(arch.Length + 1)..], known);
    }

    [Fact]
    public void TheShapeReadFromAFileHoldsItsNumbers()
    {
        // gemma2.gguf (README of models-visible): 128d, 26 layers, 2 heads / 1 KV, head 64, ffn 256, window 12, tied.
        using var f = GgufFile.Open(TestPaths.Data("models-visible/gemma2.gguf"));
        var s = LlamaConfig.FromGguf(f).Shape;
        Assert.Equal(("gemma2", 128, 26, 2, 1, 64, 256, 12), (s.Arch, s.Dim, s.Layers, s.Heads, s.KvHeads, s.HeadDim, s.Ffn, s.SlidingWindow));
        Assert.True(s.IsTied);
        Assert.Equal(2 * 64, s.QDim);
        Assert.Equal(64, s.KvDim);
    }

    [Fact]
    public void BlockTensorsDerivedFromTheFlagsAreTheConvertersPerFamilyLists()
    {
        // The lists the converter carried by hand (llama.cpp's writing order) before they were derived from ArchSpec's flags.
        Assert.Equal(new[] { "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "attn_norm.weight",
            "ffn_gate.weight", "ffn_down.weight", "ffn_up.weight", "ffn_norm.weight" }, ArchSpec.Llama.BlockTensors);
        Assert.Equal(new[] { "attn_q.weight", "attn_q.bias", "attn_k.weight", "attn_k.bias", "attn_v.weight", "attn_v.bias",
            "attn_output.weight", "attn_norm.weight", "ffn_gate.weight", "ffn_down.weight", "ffn_up.weight", "ffn_norm.weight" }, ArchSpec.Qwen2.BlockTensors);
        Assert.Equal(new[] { "attn_norm.weight", "attn_qkv.weight", "attn_output.weight", "ffn_norm.weight", "ffn_down.weight", "ffn_up.weight" },
            ArchSpec.Phi3.BlockTensors);
        Assert.Equal(new[] { "attn_q.weight", "attn_q_norm.weight", "attn_k.weight", "attn_k_norm.weight", "attn_v.weight", "attn_output.weight",
            "attn_norm.weight", "post_attention_norm.weight", "ffn_gate.weight", "ffn_down.weight", "ffn_up.weight", "ffn_norm.weight",
            "post_ffw_norm.weight" }, ArchSpec.Gemma3.BlockTensors);
    }

    [Fact]
    public void Llama3RopeFactorsFollowTheScalingRule()
    {
        // Llama 3.1 (theta 500000, factor 8, low 1, high 4, original 8192), head 128: pair 0 has wavelength 2π (< 2048:
        // kept), the last pair's wavelength 2π·500000^(126/128) > 8192 (divided by the factor).
        var f = Llama3Rope.Factors(128, 500000, 8, 1, 4, 8192);
        Assert.Equal(64, f.Length);
        Assert.Equal(1f, f[0]);
        Assert.Equal(8f, f[63]);
        for (int i = 0; i < 64; i++)
        {
            double wavelen = 2 * Math.PI * Math.Pow(500000, 2.0 * i / 128);
            if (wavelen > 2048 && wavelen < 8192)
            {
                double smooth = (8192 / wavelen - 1) / 3;
                Assert.Equal(1 / ((1 - smooth) / 8 + smooth), f[i], 5);
            }
        }
    }
}
