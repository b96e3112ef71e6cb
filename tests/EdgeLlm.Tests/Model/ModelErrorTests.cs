using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Model;

/// <summary>Bad model files and bad calls fail with one-line messages that name the key or tensor.</summary>
public class ModelErrorTests
{
    private static ModelFormatException LoadFails(RandomModelSpec spec)
    {
        string path = RandomModel.Write(spec);
        var e = Assert.Throws<ModelFormatException>(() => LlamaModel.Load(path, new BackendOptions { Threads = 1 }).Dispose());
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith(path, e.Message);
        return e;
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        var e = LoadFails(new RandomModelSpec { Omit = ["blk.1.ffn_up.weight"] });
        Assert.Contains("tensor 'blk.1.ffn_up.weight'", e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void WrongShapeIsNamed()
    {
        var e = LoadFails(new RandomModelSpec { Misshape = "blk.0.attn_k.weight" });
        Assert.Contains("tensor 'blk.0.attn_k.weight'", e.Message);
        Assert.Contains("[64, 33]", e.Message);
        Assert.Contains("[64, 32]", e.Message);
    }

    [Fact]
    public void UnsupportedTypeIsNamed()
    {
        // MXFP4 (32-element blocks, so the 96-wide ffn_down row fits) has no TypeTraits row.
        var e = LoadFails(new RandomModelSpec { RawType = ("blk.0.ffn_down.weight", GgmlType.MXFP4) });
        Assert.Contains("tensor 'blk.0.ffn_down.weight'", e.Message);
        Assert.Contains("MXFP4", e.Message);
    }

    [Fact]
    public void QuantizedNormIsRejected()
    {
        var e = LoadFails(new RandomModelSpec { RawType = ("output_norm.weight", GgmlType.F16) });
        Assert.Contains("tensor 'output_norm.weight'", e.Message);
    }

    [Theory]
    [InlineData("llama.attention.head_count", 3u, "do not divide")]
    [InlineData("llama.attention.head_count", 0u, "not in")]
    [InlineData("llama.attention.head_count_kv", 3u, "do not divide")]
    [InlineData("llama.attention.head_count_kv", 8u, "not in")]
    [InlineData("llama.rope.dimension_count", 7u, "odd")]
    [InlineData("llama.rope.dimension_count", 32u, "not in")]
    [InlineData("llama.block_count", 100000u, "not in")]
    public void BadHyperparameterIsNamed(string key, uint value, string problem)
    {
        var e = LoadFails(new RandomModelSpec { Overrides = [(key, GgufValue.Of(value))] });
        Assert.Contains($"metadata '{key}'", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void MissingRequiredKeyAndWrongTypeAreNamed()
    {
        var e = LoadFails(new RandomModelSpec { Overrides = [("llama.feed_forward_length", GgufValue.Of("ninety-six"))] });
        Assert.Contains("metadata 'llama.feed_forward_length'", e.Message);
        Assert.Contains("expected an integer", e.Message);

        e = LoadFails(new RandomModelSpec { Overrides = [("general.architecture", GgufValue.Of("gpt2"))] });
        Assert.Contains("'gpt2' is not supported", e.Message);

        e = LoadFails(new RandomModelSpec { Overrides = [("llama.rope.scaling.type", GgufValue.Of("yarn")), ("llama.rope.scaling.factor", GgufValue.Of(4f))] });
        Assert.Contains("metadata 'llama.rope.scaling.type'", e.Message);
    }

    [Fact]
    public void ConfigDefaultsFollowLlamaCpp()
    {
        string path = RandomModel.Write(new RandomModelSpec { Dim = 64, Heads = 4, KvHeads = 4 });
        using var f = GgufFile.Open(path);
        var c = LlamaConfig.FromGguf(f);
        Assert.Equal(16, c.HeadDim);
        Assert.Equal(16, c.RopeDims);
        Assert.Equal(1f, c.RopeScale);
        Assert.Equal(300, c.VocabSize);
        Assert.Equal(1e-5f, c.RmsEps);
    }

    [Fact]
    public void ContextOverflowAndBadTokensThrow()
    {
        string path = RandomModel.Write(new RandomModelSpec());
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 1, ContextSize = 8 });
        var logits = new float[model.VocabSize];
        int[] nine = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        var e = Assert.Throws<ContextOverflowException>(() => model.Forward(nine, 0, logits));
        Assert.Contains("context of 8 tokens", e.Message);

        model.Forward(nine.AsSpan(0, 8), 0, logits);
        Assert.Throws<ContextOverflowException>(() => model.Forward(9, 8, logits));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(300, 0, logits));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(-1, 0, logits));
        model.Cache.Clear();
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(5, 3, logits)); // skips past the cache
        Assert.Throws<ArgumentException>(() => model.Forward(nine.AsSpan(0, 2), 0, logits, allLogits: true));
    }
}
