using System.Text.Json;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Model;

/// <summary>The bundled real model against greedy decoding by an independent float64 llama2.c reference.</summary>
public class Stories260KTests
{
    [Fact]
    public void GreedyFromBosMatchesReferenceFor256Positions()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(TestPaths.Data("stories260K.reference_greedy.json")));
        var root = json.RootElement;
        int[] expected = root.GetProperty("generated_token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(256, expected.Length);

        // The file says context_length 128; the reference ran 256 positions (llama2.c's seq_len is 512).
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 2, ContextSize = 256 });
        Assert.Equal(128, model.Config.ContextLength);
        Assert.Equal(4, model.Config.KvHeadCount);
        var logits = new float[model.VocabSize];
        int token = root.GetProperty("bos_token_id").GetInt32();
        var got = new int[expected.Length];
        for (int pos = 0; pos < expected.Length; pos++)
        {
            model.Forward(token, pos, logits);
            if (pos == 0)
            {
                foreach (var e in root.GetProperty("step0_top5_logits").EnumerateArray())
                {
                    int id = e.GetProperty("token_id").GetInt32();
                    double want = e.GetProperty("logit").GetDouble();
                    Assert.True(Math.Abs(logits[id] - want) <= 1e-3, $"step 0 logit of {id}: {logits[id]} vs {want}");
                }
            }
            token = ArgMax(logits);
            got[pos] = token;
        }
        Assert.Equal(expected, got);
    }

    [Fact]
    public void BatchedPrefillOfTheGreedyTextGivesTheSameNextTokens()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(TestPaths.Data("stories260K.reference_greedy.json")));
        int[] gen = json.RootElement.GetProperty("generated_token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] input = [1, .. gen[..99]];
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 2, ContextSize = 128, MaxBatch = 32 });
        int v = model.VocabSize;
        var logits = new float[input.Length * v];
        model.Forward(input, 0, logits, allLogits: true);
        for (int i = 0; i < input.Length; i++) Assert.Equal(gen[i], ArgMax(logits.AsSpan(i * v, v)));
    }

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
