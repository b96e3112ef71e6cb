using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.Model;

/// <summary>A family's required tensor missing, a tensor of the wrong shape, an unknown architecture: one line naming it.</summary>
public class FamilyErrorTests
{
    private static ModelFormatException LoadFails(string path)
    {
        var e = Assert.Throws<ModelFormatException>(() => LlamaModel.Load(path, new BackendOptions { Threads = 1 }).Dispose());
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith(path, e.Message);
        return e;
    }

    [Theory]
    [InlineData("qwen2", "blk.0.attn_q.bias")]
    [InlineData("qwen2", "blk.1.attn_v.bias")]
    [InlineData("qwen3", "blk.1.attn_k_norm.weight")]
    [InlineData("gemma3", "blk.0.attn_q_norm.weight")]
    [InlineData("gemma2", "blk.1.post_ffw_norm.weight")]
    [InlineData("gemma2", "blk.0.post_attention_norm.weight")]
    [InlineData("phi3", "blk.0.ffn_up.weight")]
    [InlineData("phi3", "blk.1.attn_qkv.weight")] // without the fused tensor the separate attn_q is required
    public void MissingRequiredTensorIsNamed(string arch, string tensor)
    {
        var e = LoadFails(RandomModel.Write(RandomModelSpec.Family(arch) with { Omit = [tensor], SlidingWindow = arch == "gemma3" ? 4 : null }));
        string named = tensor == "blk.1.attn_qkv.weight" ? "blk.1.attn_q.weight" : tensor;
        Assert.Contains($"tensor '{named}'", e.Message);
        Assert.Contains("required tensor is missing", e.Message);
    }

    [Theory]
    [InlineData("qwen2", "blk.0.attn_k.bias", "[33]", "[32]")]
    [InlineData("qwen3", "blk.0.attn_q_norm.weight", "[17]", "[16]")]
    [InlineData("phi3", "blk.0.attn_qkv.weight", "[64, 129]", "[64, 128]")]
    [InlineData("phi3", "blk.1.ffn_up.weight", "[64, 193]", "[64, 192]")]
    [InlineData("gemma", "blk.0.attn_q.weight", "[64, 65]", "[64, 64]")]
    public void WrongShapeIsNamed(string arch, string tensor, string found, string expected)
    {
        var e = LoadFails(RandomModel.Write(RandomModelSpec.Family(arch) with { Misshape = tensor }));
        Assert.Contains($"tensor '{tensor}'", e.Message);
        Assert.Contains(found, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void UnknownArchitectureIsRefusedByName()
    {
        string path = RandomModel.Write(RandomModelSpec.Family("qwen2moe"));
        var e = LoadFails(path);
        Assert.Contains("metadata 'general.architecture'", e.Message);
        Assert.Contains("'qwen2moe' is not supported", e.Message);
        Assert.Contains("gemma3", e.Message); // the refusal lists what runs
    }

    [Fact]
    public void Gemma3WithoutSlidingWindowKeyIsNamed()
    {
        var e = LoadFails(RandomModel.Write(RandomModelSpec.Family("gemma3")));
        Assert.Contains("metadata 'gemma3.attention.sliding_window'", e.Message);
        Assert.Contains("required integer key is missing", e.Message);
    }

    [Fact]
    public void YarnScalingIsRefusedAndNoneIsAccepted()
    {
        string path = TestPaths.TempFile("yarn.gguf");
        var s = RandomModelSpec.Family("qwen3");
        RandomModel.Write(s, path);
        using (var f = GgufFile.Open(path))
        {
            var w = new GgufWriter().CopyMetadataFrom(f).Set("qwen3.rope.scaling.type", "yarn").Set("qwen3.rope.scaling.factor", 4f);
            foreach (var t in f.Tensors) w.AddTensor(t.Name, t.Type, t.Dims, f.GetTensor(t).Span.ToArray());
            w.Write(path + ".yarn");
            w.Set("qwen3.rope.scaling.type", "none");
            w.Write(path + ".none");
        }
        var e = LoadFails(path + ".yarn");
        Assert.Contains("metadata 'qwen3.rope.scaling.type'", e.Message);
        Assert.Contains("'yarn' is not supported", e.Message);
        using var model = LlamaModel.Load(path + ".none", new BackendOptions { Threads = 1 });
        Assert.Equal(1f, model.Config.RopeScale);
    }

    [Fact]
    public void CliExitsWithOneLineNamingTheTensor()
    {
        string path = RandomModel.Write(RandomModelSpec.Family("qwen2") with { Omit = ["blk.0.attn_q.bias"] });
        var r = CliRunner.InProcess("logits", "-m", path, "--tokens", "1,2");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("tensor 'blk.0.attn_q.bias': required tensor is missing", r.Stderr);
        Assert.Single(r.Stderr.TrimEnd('\n').Split('\n'));
    }
}
