using System.Text.Json;
using EdgeLlm.Model;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Model;

/// <summary>
/// Every architecture in tests/data/models-visible (random F16 weights) against llama.cpp's top-10 logits at each of
/// the 40 positions of tokens.txt (see that folder's README): the 40 tokens run as one batch and again one token at
/// a time, and every logit llama.cpp lists must agree to 0.01 (the bar; llama.cpp keeps its KV cache in F16
/// and rounds GELU through an F16 table, so about 1e-3 is expected).
/// </summary>
public class FamilyLogitsTests(ITestOutputHelper output)
{
    private const double Tolerance = 0.01;

    public static string ModelPath(string name) => TestPaths.Data(Path.Combine("models-visible", name + ".gguf"));

    /// <summary>llama.cpp's token ids and, per position, its top-10 (id, logit) pairs.</summary>
    public static (int[] Tokens, (int Id, double Logit)[][] Top) LoadReference(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(TestPaths.Data(Path.Combine("models-visible", name + ".json"))));
        var root = doc.RootElement;
        int[] tokens = root.GetProperty("token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var top = root.GetProperty("top10").EnumerateArray()
            .Select(p => p.EnumerateArray().Select(pair => (pair[0].GetInt32(), pair[1].GetDouble())).ToArray()).ToArray();
        return (tokens, top);
    }

    /// <summary>Largest |engine − llama.cpp| over every position's top-10 ids.</summary>
    public static double MaxDiff(float[] logits, int vocab, (int Id, double Logit)[][] top)
    {
        double worst = 0;
        for (int p = 0; p < top.Length; p++)
            foreach (var (id, want) in top[p])
                worst = Math.Max(worst, Math.Abs(logits[(long)p * vocab + id] - want));
        return worst;
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("phi3")]
    [InlineData("gemma")]
    [InlineData("gemma2")]
    public void MatchesLlamaCpp(string name)
    {
        var (tokens, top) = LoadReference(name);
        Assert.Equal(40, tokens.Length);
        Assert.Equal(tokens.Length, top.Length);
        using var model = LlamaModel.Load(ModelPath(name), new BackendOptions { Threads = 2, ContextSize = 64 });
        Assert.Equal(name, model.Config.Architecture);
        int vocab = model.VocabSize;

        var batch = new float[tokens.Length * vocab];
        model.Forward(tokens, 0, batch, allLogits: true);
        double batchDiff = MaxDiff(batch, vocab, top);

        model.Cache.Clear();
        var single = new float[tokens.Length * vocab];
        for (int p = 0; p < tokens.Length; p++) model.Forward(tokens[p], p, single.AsSpan(p * vocab, vocab));
        double singleDiff = MaxDiff(single, vocab, top);

        output.WriteLine($"{name}: max |diff| vs llama.cpp top-10: batch {batchDiff:E2}, token by token {singleDiff:E2}");
        Assert.True(batchDiff <= Tolerance, $"{name}: batch max |diff| {batchDiff:E3} > {Tolerance}");
        Assert.True(singleDiff <= Tolerance, $"{name}: token-by-token max |diff| {singleDiff:E3} > {Tolerance}");
    }
}
