using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Model;

/// <summary>The engine's forward pass against the float64 oracle, plus batching and threading invariants.</summary>
public class ForwardTests
{
    // Tolerance: the oracle dequantizes exactly the same weights, so the only difference is float32
    // arithmetic in the engine (dot products of 64-256 terms, rms norms, softmax, 1-2 layers). Each op
    // adds ~1e-7 relative error (float eps 6e-8, growing like sqrt(n) in sums); measured: 2e-7 to 3e-7
    // of the logit scale (max |logit|) for every type. 1e-5 of the scale leaves a 30x margin and still
    // catches real mistakes (a wrong rope pair or sign moves logits by 10-50% of the scale).
    private const double RelTolerance = 1e-5;

    // Block-quantized weights run through 8-bit activations (integer kernels, as llama.cpp). Against an oracle
    // that rounds the activations the same way, only float32 arithmetic and the rare activation that lands on
    // the other side of a rounding boundary (one step, 1/127 of its block's max) differ. Measured 1e-7 to 2e-7 of
    // the scale for Q8_0/Q4_0/Q4_K/Q6_K; the float bound (1e-5) applies unchanged.
    private const double RelToleranceQuantizedActivations = RelTolerance;

    // Against the exact float64 model, 8-bit activations add to every product an input error of up to half a step
    // (1/254 of the block max) per element; these random models have unnormalised, heavy-tailed activations, so it
    // compounds over 1-2 layers and the output: measured 1.1% to 1.6% of the logit scale. 5% leaves a 3x margin and
    // is still well below what a real mistake (a wrong scale, nibble or sign: 10-50% of the scale) causes.
    private const double RelToleranceExactModel = 5e-2;

    private static readonly int[] Tokens = [1, 17, 255, 3, 299, 42, 42, 7, 100, 260, 2, 0, 150, 151, 9, 33];

    private static double AssertMatchesReference(string path, int[] tokens, int threads = 2, int contextSize = 0,
        double relTolerance = RelTolerance, bool quantizeActivations = false)
    {
        var reference = new ReferenceTransformer(path, quantizeActivations);
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = threads, ContextSize = contextSize });
        var logits = new float[model.VocabSize];
        double worst = 0, scale = 0;
        for (int pos = 0; pos < tokens.Length; pos++)
        {
            model.Forward(tokens[pos], pos, logits);
            double[] expected = reference.Forward(tokens[pos]);
            Assert.Equal(expected.Length, logits.Length);
            for (int i = 0; i < expected.Length; i++)
            {
                scale = Math.Max(scale, Math.Abs(expected[i]));
                worst = Math.Max(worst, Math.Abs(logits[i] - expected[i]));
            }
        }
        Assert.True(scale > 0, "reference logits are all zero");
        Assert.True(worst <= relTolerance * scale, $"max |logit error| {worst:E3} exceeds {relTolerance} x logit scale {scale:E3}");
        return worst / scale;
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    public void MatchesReference(GgmlType type)
    {
        // GQA (4 heads share 2 kv heads), untied output.
        string path = RandomModel.Write(new RandomModelSpec { WeightType = type, Dim = 64, Heads = 4, KvHeads = 2, Ffn = 96 });
        AssertMatchesEitherWay(type, path, Tokens);
    }

    /// <summary>Float weights: the exact oracle, tightly. Quantized weights: the activation-rounding oracle tightly, and the exact model loosely.</summary>
    private static void AssertMatchesEitherWay(GgmlType type, string path, int[] tokens)
    {
        if (type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16)
        {
            AssertMatchesReference(path, tokens);
            return;
        }
        double same = AssertMatchesReference(path, tokens, relTolerance: RelToleranceQuantizedActivations, quantizeActivations: true);
        double exact = AssertMatchesReference(path, tokens, relTolerance: RelToleranceExactModel);
        Console.WriteLine($"{type}: max logit error {same:E2} of scale vs the 8-bit-activation oracle, {exact:E2} vs the exact model");
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q6_K)]
    public void MatchesReferenceKQuants(GgmlType type)
    {
        // K-quants need rows that are multiples of 256.
        string path = RandomModel.Write(new RandomModelSpec { WeightType = type, Dim = 256, Heads = 8, KvHeads = 2, Ffn = 256, Layers = 1 });
        AssertMatchesEitherWay(type, path, Tokens[..8]);
    }

    [Fact]
    public void MatchesReferenceWithTiedOutputPartialRopeAndScaling()
    {
        string path = RandomModel.Write(new RandomModelSpec
        {
            Dim = 128, Heads = 4, KvHeads = 1, Ffn = 128, Tied = true, RopeDims = 16, RopeScaleLinear = 4f, FreqBase = 500000f,
        });
        AssertMatchesReference(path, Tokens);
    }

    [Fact]
    public void MatchesReferenceWithRopeFreqs()
    {
        string path = RandomModel.Write(new RandomModelSpec { Dim = 128, Heads = 4, KvHeads = 2, Ffn = 128, RopeFreqs = true, FreqBase = 500000f });
        AssertMatchesReference(path, Tokens);
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 1 });
        Assert.NotNull(model.Rope.FreqFactors);
        Assert.Equal(8f, model.Rope.FreqFactors![^1]);
    }

    [Fact]
    public void RopeFreqsChangeTheLogits()
    {
        // Guards the test above: with factors the same weights give different logits, so it checks something.
        var spec = new RandomModelSpec { Dim = 128, Heads = 4, KvHeads = 2, Ffn = 128, FreqBase = 500000f };
        float[] a = LastLogits(RandomModel.Write(spec), Tokens);
        float[] b = LastLogits(RandomModel.Write(spec with { RopeFreqs = true }), Tokens);
        Assert.True(MaxDiff(a, b) > 1e-3, $"logits moved only {MaxDiff(a, b)}");
    }

    [Fact]
    public void BatchPrefillEqualsTokenByToken()
    {
        string path = RandomModel.Write(new RandomModelSpec { WeightType = GgmlType.F16 });
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 2, MaxBatch = 5 });
        int v = model.VocabSize;
        var batched = new float[Tokens.Length * v];
        model.Forward(Tokens, 0, batched, allLogits: true); // 16 tokens in chunks of 5, 5, 5, 1

        model.Cache.Clear();
        var one = new float[v];
        for (int pos = 0; pos < Tokens.Length; pos++)
        {
            model.Forward(Tokens[pos], pos, one);
            Assert.Equal(one, batched.AsSpan(pos * v, v).ToArray());
        }

        // Last-token-only prefill gives the last row of the all-logits run.
        model.Cache.Clear();
        var last = new float[v];
        model.Forward(Tokens, 0, last);
        Assert.Equal(batched.AsSpan((Tokens.Length - 1) * v, v).ToArray(), last);
    }

    [Fact]
    public void PrefillThenDecodeContinuesTheSameSequence()
    {
        string path = RandomModel.Write(new RandomModelSpec());
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 2 });
        int v = model.VocabSize;
        var all = new float[Tokens.Length * v];
        model.Forward(Tokens, 0, all, allLogits: true);

        model.Cache.Clear();
        var logits = new float[v];
        model.Forward(Tokens.AsSpan(0, 10), 0, logits);
        for (int pos = 10; pos < Tokens.Length; pos++) model.Forward(Tokens[pos], pos, logits);
        Assert.Equal(all.AsSpan((Tokens.Length - 1) * v, v).ToArray(), logits);

        // Rewinding to position 4 and replaying reproduces the same logits.
        model.Forward(Tokens.AsSpan(4, 12), 4, logits);
        Assert.Equal(all.AsSpan((Tokens.Length - 1) * v, v).ToArray(), logits);
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.Q4_0)]
    public void ThreadCountDoesNotChangeABit(GgmlType type)
    {
        string path = RandomModel.Write(new RandomModelSpec { WeightType = type, Dim = 128, Heads = 8, KvHeads = 2, Ffn = 160 });
        float[] one = AllLogits(path, Tokens, threads: 1);
        float[] two = AllLogits(path, Tokens, threads: 2);
        float[] three = AllLogits(path, Tokens, threads: 3);
        Assert.Equal(one, two);
        Assert.Equal(one, three);
    }

    [Theory]
    [InlineData(GgmlType.F32, 1)]
    [InlineData(GgmlType.F16, 1)]
    [InlineData(GgmlType.Q8_0, 1)]
    [InlineData(GgmlType.F16, 2)]
    public void ForwardAllocatesNothing(GgmlType type, int threads)
    {
        // With one thread every op runs on the calling thread, so its allocation counter sees everything.
        string path = RandomModel.Write(new RandomModelSpec { WeightType = type });
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = threads });
        var logits = new float[Tokens.Length * model.VocabSize];
        model.Forward(Tokens, 0, logits, allLogits: true); // warm up: JIT, first-use paths
        model.Forward(5, 16, logits);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int pos = 17; pos < 20; pos++) model.Forward(7, pos, logits);
        model.Forward(Tokens.AsSpan(0, 6), 20, logits);
        model.Forward(Tokens.AsSpan(0, 6), 26, logits, allLogits: true);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void LlamaTwoTinyRandomMatchesReference()
    {
        // ollama's random F16 model: dim 8, 2 heads of 4, rope dims 4, vocab 32000, untied output.
        string path = TestPaths.Data("llama-2-tiny-random.gguf");
        using (var model = LlamaModel.Load(path, new BackendOptions { Threads = 2 }))
        {
            Assert.Equal(8, model.Config.Dim);
            Assert.Equal(32000, model.VocabSize);
            Assert.False(model.Weights.TiedOutput);
            Assert.Equal(GgmlType.F16, model.Weights.Output.Type);
        }
        AssertMatchesReference(path, [1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203, 29889, 13, 2, 31999, 0]);
    }

    private static float[] LastLogits(string path, int[] tokens)
    {
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 1 });
        var logits = new float[model.VocabSize];
        model.Forward(tokens, 0, logits);
        return logits;
    }

    private static float[] AllLogits(string path, int[] tokens, int threads)
    {
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = threads });
        var logits = new float[tokens.Length * model.VocabSize];
        model.Forward(tokens, 0, logits, allLogits: true);
        return logits;
    }

    private static double MaxDiff(float[] a, float[] b)
    {
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }
}
