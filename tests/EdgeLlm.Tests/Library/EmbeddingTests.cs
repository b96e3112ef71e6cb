using EdgeLlm.AI;
using EdgeLlm.Generation;
using EdgeLlm.Model;
using Microsoft.Extensions.AI;

namespace EdgeLlm.Tests.Library;

public sealed class EmbeddingTests
{
    /// <summary>The hidden states HiddenStates returns are what the output matrix turns into the logits (float64 product).</summary>
    [Fact]
    public unsafe void HiddenStatesAreTheInputOfTheOutputProjection()
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K);
        var tok = Tokenizer.FromGguf(model.File);
        int[] ids = tok.Encode("The little cat sat on the mat", addBos: true);
        int dim = model.Config.Dim, vocab = model.VocabSize;
        var hidden = new float[ids.Length * dim];
        model.HiddenStates(model.CreateCache(), ids, hidden);
        var logits = new float[ids.Length * vocab];
        model.Forward(ids, 0, logits, allLogits: true);
        var w = model.Weights.Output;
        Assert.Equal(EdgeLlm.Gguf.GgmlType.F32, w.Type);
        float* W = (float*)w.Data;
        for (int t = 0; t < ids.Length; t++)
            for (int r = 0; r < vocab; r++)
            {
                double dot = 0;
                for (int i = 0; i < dim; i++) dot += (double)W[(long)r * dim + i] * hidden[t * dim + i];
                Assert.True(Math.Abs(dot - logits[t * vocab + r]) <= 1e-4 * Math.Max(1, Math.Abs(dot)), $"token {t}, row {r}: {dot} vs {logits[t * vocab + r]}");
            }
    }

    [Fact]
    public async Task EmbeddingsAreMeanPooledUnitVectorsIndependentOfTheBatch()
    {
        using IEmbeddingGenerator<string, Embedding<float>> gen = new EdgeLlmEmbeddingGenerator(TestPaths.Stories260K);
        var meta = gen.GetService<EmbeddingGeneratorMetadata>()!;
        Assert.Equal(64, meta.DefaultModelDimensions);
        var both = await gen.GenerateAsync(["A dog ran in the park.", "Lily ate a red apple."]);
        var alone = await gen.GenerateAsync(["Lily ate a red apple."]);
        Assert.Equal(2, both.Count);
        Assert.Equal(alone[0].Vector.ToArray(), both[1].Vector.ToArray());
        Assert.NotEqual(both[0].Vector.ToArray(), both[1].Vector.ToArray());
        foreach (var e in both) Assert.Equal(1.0, e.Vector.ToArray().Sum(x => (double)x * x), 1e-5);

        // Against a float64 mean of the model's own final hidden states for the same tokens.
        using var model = LlamaModel.Load(TestPaths.Stories260K);
        var tok = Tokenizer.FromGguf(model.File);
        int[] ids = tok.Encode("Lily ate a red apple.", addBos: tok.Vocab.AddBos);
        var hidden = new float[ids.Length * 64];
        model.HiddenStates(model.CreateCache(), ids, hidden);
        var mean = new double[64];
        for (int t = 0; t < ids.Length; t++) for (int i = 0; i < 64; i++) mean[i] += hidden[t * 64 + i] / (double)ids.Length;
        double norm = Math.Sqrt(mean.Sum(x => x * x));
        for (int i = 0; i < 64; i++) Assert.Equal(mean[i] / norm, alone[0].Vector.Span[i], 1e-6);
        Assert.Equal(ids.Length, alone.Usage!.InputTokenCount);

        await Assert.ThrowsAsync<NotSupportedException>(() => gen.GenerateAsync(["x"], new EmbeddingGenerationOptions { Dimensions = 32 }));
    }
}
