using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Split;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Offload;

/// <summary>
/// A model split over two CPU backends at every layer boundary gives the same logits and the same greedy text as the
/// model on one CPU backend (the same kernels run on the same numbers; only where the buffers live changes), and the
/// activations cross between the backends a fixed number of times per step.
/// </summary>
public class SplitBackendTests
{
    private static string Visible(string name) => Path.Combine(TestPaths.Data("models-visible"), name);

    public static TheoryData<string> Models => new() { TestPaths.Stories260K, Visible("llama.gguf"), Visible("qwen2.gguf"), Visible("gemma.gguf"), Visible("gemma2.gguf") };

    private static readonly BackendOptions Options = new() { ContextSize = 48, MaxBatch = 16 };

    private static int[] Prompt(int vocab) => Enumerable.Range(0, 20).Select(i => (i * 37 + 1) % vocab).ToArray();

    /// <summary>Logits of a 20-token prefill (two batches, every position) and of 4 one-token steps after it.</summary>
    private static float[] Run(LlamaModel model, out long[] transfersPerStep)
    {
        int v = model.VocabSize;
        var prompt = Prompt(v);
        var all = new float[(prompt.Length + 4) * v];
        model.Forward(prompt, 0, all.AsSpan(0, prompt.Length * v), allLogits: true);
        transfersPerStep = new long[4];
        for (int s = 0; s < 4; s++)
        {
            long before = (model.Backend as SplitBackend)?.Transfers ?? 0;
            int token = (s * 101 + 7) % v;
            model.Forward(token, prompt.Length + s, all.AsSpan((prompt.Length + s) * v, v));
            transfersPerStep[s] = ((model.Backend as SplitBackend)?.Transfers ?? 0) - before;
        }
        return all;
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void EveryLayerBoundary_GivesTheSameLogits(string path)
    {
        using var file = GgufFile.Open(path);
        float[] reference;
        int layers;
        using (var plain = new LlamaModel(file, new CpuBackend(1), Options, ownsFile: false))
        {
            reference = Run(plain, out _);
            layers = plain.Config.LayerCount;
        }
        bool tied = !file.Tensors.Any(t => t.Name == "output.weight");
        for (int split = 0; split <= layers; split++)
        {
            foreach (bool tableOnBoth in tied ? new[] { false, true } : [false])
            {
                var backend = new SplitBackend(new CpuBackend(1), new CpuBackend(1), split, layers, tiedOutput: tableOnBoth);
                using var model = new LlamaModel(file, backend, Options, ownsFile: false);
                var logits = Run(model, out var transfers);
                Assert.True(reference.AsSpan().SequenceEqual(logits), $"split at layer {split} of {layers} (table on both: {tableOnBoth}): logits differ");
                // One crossing of the residual stream per step; a tied output projection left with the embeddings on the
                // first backend adds the way back after the output norm.
                Assert.All(transfers, t => Assert.Equal(tied && !tableOnBoth ? 2 : 1, t));
            }
        }
    }

    [Theory]
    [InlineData(KvCacheType.F16)]
    [InlineData(KvCacheType.Q8_0)]
    public void QuantizedCache_SplitsGiveTheSameLogits(KvCacheType type)
    {
        // The cache of each layer is allocated, shifted and read on its own side, in the type asked for.
        using var file = GgufFile.Open(TestPaths.Stories260K);
        var o = new BackendOptions { ContextSize = 48, MaxBatch = 16, CacheTypeK = type, CacheTypeV = type };
        float[] reference, shifted;
        using (var plain = new LlamaModel(file, new CpuBackend(1), o, ownsFile: false))
        {
            reference = Run(plain, out _);
            shifted = ShiftAndStep(plain);
        }
        for (int split = 0; split <= 5; split++)
        {
            using var model = new LlamaModel(file, new SplitBackend(new CpuBackend(1), new CpuBackend(1), split, 5), o, ownsFile: false);
            Assert.Equal(type, model.Cache.KeyType);
            Assert.True(reference.AsSpan().SequenceEqual(Run(model, out _)), $"split at {split}, {type} cache: logits differ");
            Assert.True(shifted.AsSpan().SequenceEqual(ShiftAndStep(model)), $"split at {split}, {type} cache: logits after a context shift differ");
        }
    }

    /// <summary>Context shift (keep 4, drop 10 of the 24 cached positions), then one more step.</summary>
    private static float[] ShiftAndStep(LlamaModel model)
    {
        model.ShiftContext(4, 10);
        var logits = new float[model.VocabSize];
        model.Forward(5, model.Cache.Filled, logits);
        return logits;
    }

    [Fact]
    public void Split_GreedyGeneration_EqualsPlain()
    {
        using var file = GgufFile.Open(TestPaths.Stories260K);
        var tok = Tokenizer.FromGguf(file);
        int[] prompt = tok.Encode("Once upon a time", addBos: true);
        var o = new GenerateOptions { MaxTokens = 40, Sampler = SamplerOptions.Greedy, IgnoreEos = true };
        string Generate(IBackend backend)
        {
            using var model = new LlamaModel(file, backend, Options, ownsFile: false);
            var text = new System.Text.StringBuilder();
            new Generator(model, tok).Generate(prompt, o, t => { text.Append(t); return true; });
            return text.ToString();
        }
        string plain = Generate(new CpuBackend(1));
        Assert.True(plain.Length > 40);
        for (int split = 0; split <= 5; split++)
            Assert.Equal(plain, Generate(new SplitBackend(new CpuBackend(1), new CpuBackend(1), split, 5)));
    }

    [Fact]
    public void WeightsAndCacheLiveOnTheirLayersSide()
    {
        var split = new SplitBackend(new CpuBackend(1), new CpuBackend(1), 3, 5);
        using (split)
        {
            Assert.Same(split.First, split.LayerBackend(2));
            Assert.Same(split.Second, split.LayerBackend(3));
            Assert.Equal(1, split.SideOf("token_embd.weight"));
            Assert.Equal(1, split.SideOf("blk.2.attn_q.weight"));
            Assert.Equal(2, split.SideOf("blk.3.attn_q.weight"));
            Assert.Equal(2, split.SideOf("blk.12.ffn_down.weight"));
            Assert.Equal(2, split.SideOf("output_norm.weight"));
            Assert.Equal(2, split.SideOf("output.weight"));
            Assert.Contains("layers 0-2 on", split.Name);
            Assert.Contains("layers 3-4 and output on", split.Name);
        }
        using var a = new CpuBackend(1);
        using var b = new CpuBackend(1);
        Assert.Throws<ArgumentOutOfRangeException>(() => new SplitBackend(a, b, 6, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SplitBackend(a, b, -1, 5));
    }
}
