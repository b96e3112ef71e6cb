using EdgeLlm.Model;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Model;

/// <summary>
/// The float64 oracle (<see cref="ReferenceTransformer"/>, written from the transformers model definitions) first
/// checked against llama.cpp on every models-visible family, then used as the reference for the families llama.cpp's
/// snapshot here cannot run (qwen3, gemma3) and for generated qwen2/gemma2/phi3 files of other shapes: the engine's
/// logits at every position, in one batch and token by token, against the oracle's.
/// </summary>
public class FamilyOracleTests(ITestOutputHelper output)
{
    // Oracle vs llama.cpp: llama.cpp keeps K/V in F16 and rounds GELU through an F16 table; the bar.
    private const double LlamaCppTolerance = 0.01;

    // Engine vs oracle on the same F16/F32 weights: only float32 arithmetic differs (dot products of 64-128 terms,
    // norms, softmax, tanh/exp through the vector kernels, 2-7 layers). Measured up to 2e-6 of the logit scale;
    // 2e-5 leaves a 10x margin, and a real mistake (wrong rope pair, missing norm, window off by one, wrong
    // rope base on one layer) moves logits by percents of the scale.
    private const double RelTolerance = 2e-5;

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("phi3")]
    [InlineData("gemma")]
    [InlineData("gemma2")]
    public void OracleMatchesLlamaCpp(string name)
    {
        var (tokens, top) = FamilyLogitsTests.LoadReference(name);
        var oracle = new ReferenceTransformer(FamilyLogitsTests.ModelPath(name));
        double worst = 0;
        for (int p = 0; p < tokens.Length; p++)
        {
            double[] logits = oracle.Forward(tokens[p]);
            foreach (var (id, want) in top[p]) worst = Math.Max(worst, Math.Abs(logits[id] - want));
        }
        output.WriteLine($"oracle {name}: max |diff| vs llama.cpp top-10 {worst:E2}");
        Assert.True(worst <= LlamaCppTolerance, $"oracle {name}: max |diff| {worst:E3} > {LlamaCppTolerance}");
    }

    public static TheoryData<string> Families => new() { "qwen3", "gemma3", "qwen2", "gemma2", "phi3", "gemma" };

    /// <summary>Per family a shape that exercises what is particular to it.</summary>
    private static RandomModelSpec Spec(string arch) => arch switch
    {
        // Qwen 3: head_dim 32 with 4 heads over a width of 64 (q is 128 wide), q/k norms.
        "qwen3" => RandomModelSpec.Family("qwen3") with { HeadDim = 32, FreqBase = 1e6f },
        // Gemma 3: 7 layers = 5 local, 1 global, 1 local; window 5 over 24 positions; global rope base 1e6 with
        // linear scaling 8, local base 10000 unscaled; head_dim 32 != 64/4.
        "gemma3" => RandomModelSpec.Family("gemma3") with { Layers = 7, HeadDim = 32, SlidingWindow = 5, FreqBase = 1e6f, RopeScaleLinear = 8f },
        "gemma2" => RandomModelSpec.Family("gemma2") with { Layers = 3, HeadDim = 24, SlidingWindow = 6, AttnSoftcap = 2f, FinalSoftcap = 15f },
        "qwen2" => RandomModelSpec.Family("qwen2"),
        "phi3" => RandomModelSpec.Family("phi3") with { KvHeads = 4, WeightType = EdgeLlm.Gguf.GgmlType.F32 },
        "gemma" => RandomModelSpec.Family("gemma") with { HeadDim = 24 },
        _ => throw new ArgumentException(arch),
    };

    [Theory]
    [MemberData(nameof(Families))]
    public void EngineMatchesOracle(string arch) => CompareWithOracle(arch, RandomModel.Write(Spec(arch)), contextSize: 32);

    [Theory]
    [InlineData(16)] // within original_context_length 16: short factors
    [InlineData(32)] // past it: long factors
    public void Phi3LongRopeWithPartialRotaryMatchesOracle(int contextSize)
    {
        // Phi-4-mini style: 3/4 of each head rotated (12 of 16), LongRoPE factors and attention factor 1.19.
        string path = RandomModel.Write(RandomModelSpec.Family("phi3") with { KvHeads = 2, RopeDims = 12, LongRope = true, ContextLength = 64 });
        CompareWithOracle("phi3", path, contextSize, positions: contextSize);
    }

    private void CompareWithOracle(string arch, string path, int contextSize, int positions = 24)
    {
        int[] tokens = new int[positions];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = (7 + 37 * i) % 300;
        var oracle = new ReferenceTransformer(path, contextSize: contextSize);
        var expected = new double[tokens.Length][];
        for (int p = 0; p < tokens.Length; p++) expected[p] = oracle.Forward(tokens[p]);
        double scale = expected.Max(e => e.Max(Math.Abs));

        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 2, ContextSize = contextSize, MaxBatch = 16 });
        Assert.Equal(arch, model.Config.Architecture);
        int vocab = model.VocabSize;
        var batch = new float[tokens.Length * vocab];
        model.Forward(tokens, 0, batch, allLogits: true); // two batches of 16 and 8
        model.Cache.Clear();
        var single = new float[tokens.Length * vocab];
        for (int p = 0; p < tokens.Length; p++) model.Forward(tokens[p], p, single.AsSpan(p * vocab, vocab));

        double batchErr = 0, singleErr = 0;
        for (int p = 0; p < tokens.Length; p++)
            for (int i = 0; i < vocab; i++)
            {
                batchErr = Math.Max(batchErr, Math.Abs(batch[p * vocab + i] - expected[p][i]));
                singleErr = Math.Max(singleErr, Math.Abs(single[p * vocab + i] - expected[p][i]));
            }
        output.WriteLine($"{arch} (context {contextSize}): logit scale {scale:F3}, max |engine - oracle| batch {batchErr:E2} ({batchErr / scale:E2} of scale), token by token {singleErr:E2}");
        Assert.True(scale > 0.5, "oracle logits are degenerate");
        Assert.True(batchErr <= RelTolerance * scale, $"{arch}: batch max |diff| {batchErr:E3} > {RelTolerance} x {scale:F3}");
        Assert.True(singleErr <= RelTolerance * scale, $"{arch}: token-by-token max |diff| {singleErr:E3} > {RelTolerance} x {scale:F3}");
    }
}
