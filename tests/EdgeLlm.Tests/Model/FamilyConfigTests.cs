using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Model;

/// <summary>
/// What LlamaConfig makes of each family's metadata, against llama.cpp's hparams loading (src/llama-model.cpp):
/// head size from key_length, llama.cpp's sliding-window patterns, Gemma 3's local rope base, Gemma 2's softcap
/// defaults and the 27B query scale.
/// </summary>
public class FamilyConfigTests
{
    private static LlamaConfig Config(RandomModelSpec spec)
    {
        using var f = GgufFile.Open(RandomModel.Write(spec));
        return LlamaConfig.FromGguf(f);
    }

    [Fact]
    public void Gemma3LayersAreFiveLocalThenOneGlobalWithTheirOwnRope()
    {
        var c = Config(RandomModelSpec.Family("gemma3") with { Layers = 13, HeadDim = 32, SlidingWindow = 512, FreqBase = 1e6f, RopeScaleLinear = 8f });
        int[] windows = Enumerable.Range(0, 13).Select(c.LayerWindow).ToArray();
        Assert.Equal([512, 512, 512, 512, 512, 0, 512, 512, 512, 512, 512, 0, 512], windows);
        Assert.Equal(32, c.HeadDim);
        Assert.Equal(128, c.QDim);
        Assert.Equal(1e6f, c.RopeFreqBase);
        Assert.Equal(8f, c.RopeScale);
        Assert.Equal(10000f, c.RopeFreqBaseSwa);
        Assert.Equal(0f, c.AttnSoftcap);
        Assert.Equal(0f, c.FinalSoftcap);
        Assert.Equal(1f / MathF.Sqrt(32), c.AttentionScale);
        Assert.Equal(MathF.Sqrt(64), c.EmbeddingScale);

        using var model = LlamaModel.Load(RandomModel.Write(RandomModelSpec.Family("gemma3") with { Layers = 7, HeadDim = 32, SlidingWindow = 5, FreqBase = 1e6f, RopeScaleLinear = 8f }),
            new BackendOptions { Threads = 1, ContextSize = 16 });
        Assert.Equal(10000f, model.RopeSwa.Base);
        Assert.Equal(1f, model.RopeSwa.Scale);
        Assert.Equal(1e6f, model.Rope.Base);
        Assert.Equal(8f, model.Rope.Scale);
        Assert.True(model.Rope.Neox && model.RopeSwa.Neox);
    }

    [Fact]
    public void Gemma2SlidesOnEvenLayersWithDefaultSoftcaps()
    {
        var c = Config(RandomModelSpec.Family("gemma2") with { Layers = 4, HeadDim = 24 });
        Assert.Equal([4096, 0, 4096, 0], Enumerable.Range(0, 4).Select(c.LayerWindow).ToArray()); // n_swa defaults to 4096
        Assert.Equal(50f, c.AttnSoftcap);
        Assert.Equal(30f, c.FinalSoftcap);
        Assert.Equal(1f / MathF.Sqrt(24), c.AttentionScale);
        Assert.Equal(GluKind.GeluTanh, c.Arch.Activation);
    }

    [Fact]
    public void Gemma2With46LayersScalesQueriesByWidthOverHeads()
    {
        // llama.cpp: the 27B (46 layers) uses 1/sqrt(n_embd / n_head), every other size 1/sqrt(head_dim).
        var c = Config(RandomModelSpec.Family("gemma2") with { Layers = 46, Dim = 64, Heads = 2, KvHeads = 1, HeadDim = 16, Ffn = 32, Vocab = 40 });
        Assert.Equal(1f / MathF.Sqrt(32), c.AttentionScale);
    }

    [Theory]
    [InlineData("llama", false, 0)]
    [InlineData("qwen2", true, 0)]
    [InlineData("qwen3", true, 0)]
    [InlineData("phi3", true, 0)]
    [InlineData("gemma", true, 0)]
    public void RopeLayoutAndNoWindowOutsideGemma2And3(string arch, bool neox, int window)
    {
        var c = Config(RandomModelSpec.Family(arch));
        Assert.Equal(neox, c.Arch.NeoxRope);
        Assert.Equal(window, c.LayerWindow(0));
        Assert.Equal(window, c.LayerWindow(1));
        Assert.Equal(arch == "gemma" ? GluKind.GeluTanh : GluKind.Silu, c.Arch.Activation);
    }
}
