using EdgeLlm.Model;

namespace EdgeLlm.Tests.Slots;

/// <summary>
/// <see cref="LlamaModel.ForwardSequences"/> against the single-sequence forward pass: several sequences, each with
/// its own KV cache and at its own positions, run together in one batch must give every sequence the logits (and
/// so the greedy tokens) it gets when it runs alone.
/// </summary>
public class MultiSequenceForwardTests
{
    public static TheoryData<string, int> Cases()
    {
        var d = new TheoryData<string, int>();
        foreach (string m in new[] { "stories260K", "llama.gguf", "gemma2.gguf", "llama-Q4_K.gguf", RandomQ4_0, RandomQ8_0 })
            foreach (int s in new[] { 2, 3, 5 })
                d.Add(m, s);
        return d;
    }

    /// <summary>
    /// Random llamas in Q4_0 and Q8_0: on x64 their matmuls run the eight-row GEMM over the repacked weights (four-,
    /// two- and one-token steps), so a sequence decoding alone and the same sequence inside a batch of several go through
    /// different kernels of that GEMM, which must give each token the same bits.
    /// </summary>
    private const string RandomQ4_0 = "random-Q4_0";
    private const string RandomQ8_0 = "random-Q8_0";

    private static readonly Lazy<string> RandomQ8_0Path = new(() => Model.RandomModel.Write(
        new Model.RandomModelSpec { Dim = 256, Ffn = 512, Heads = 4, KvHeads = 2, Vocab = 300, WeightType = EdgeLlm.Gguf.GgmlType.Q8_0, Seed = 16 },
        TestPaths.TempFile("slots-random-q8_0.gguf")));

    private static readonly Lazy<string> RandomQ4_0Path = new(() => Model.RandomModel.Write(
        new Model.RandomModelSpec { Dim = 256, Ffn = 512, Heads = 4, KvHeads = 2, Vocab = 300, WeightType = EdgeLlm.Gguf.GgmlType.Q4_0, Seed = 15 },
        TestPaths.TempFile("slots-random-q4_0.gguf")));

    private static string PathOf(string name) => name switch
    {
        "stories260K" => TestPaths.Stories260K,
        RandomQ4_0 => RandomQ4_0Path.Value,
        RandomQ8_0 => RandomQ8_0Path.Value,
        _ => TestPaths.Data(Path.Combine("models-visible", name)),
    };

    private static LlamaModel Load(string name) => LlamaModel.Load(PathOf(name), new BackendOptions { Threads = 2, ContextSize = 64, MaxBatch = 64, BatchInvariant = true });

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    /// <summary>Prompts of different lengths (so that the sequences sit at different positions), seeded random tokens.</summary>
    private static int[][] Prompts(int count, int vocab)
    {
        var rng = new Random(1234 + count);
        var p = new int[count][];
        for (int s = 0; s < count; s++)
        {
            p[s] = new int[2 + 3 * s + s % 2];
            for (int i = 0; i < p[s].Length; i++) p[s][i] = 1 + rng.Next(vocab - 1);
        }
        return p;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Batched_sequences_match_each_sequence_run_alone(string modelName, int count)
    {
        const int steps = 8;
        using var alone = Load(modelName);
        using var batched = Load(modelName);
        int vocab = alone.VocabSize;
        int[][] prompts = Prompts(count, vocab);

        // Alone: each sequence from position 0 in the model's own cache, greedy, token by token.
        var refLogits = new float[count][][];
        var refTokens = new int[count][];
        for (int s = 0; s < count; s++)
        {
            refLogits[s] = new float[steps + 1][];
            refTokens[s] = new int[steps];
            alone.Cache.Clear();
            var l = new float[vocab];
            alone.Forward(prompts[s], 0, l);
            refLogits[s][0] = (float[])l.Clone();
            int pos = prompts[s].Length;
            for (int k = 0; k < steps; k++)
            {
                refTokens[s][k] = ArgMax(l);
                alone.Forward(refTokens[s][k], pos++, l);
                refLogits[s][k + 1] = (float[])l.Clone();
            }
        }

        // Together: every prompt in one batch (multi-token sequences at rows other than 0 included), then one
        // batched decode step per token, the sequences at different positions.
        var caches = new KvCache[count];
        for (int s = 0; s < count; s++) caches[s] = s == 0 ? batched.Cache : batched.CreateCache();
        var seqs = new SequenceBatch[count];
        var tokens = new List<int>();
        for (int s = 0; s < count; s++)
        {
            seqs[s] = new SequenceBatch(caches[s], 0, prompts[s].Length);
            tokens.AddRange(prompts[s]);
        }
        var logits = new float[count * vocab];
        batched.ForwardSequences(tokens.ToArray(), seqs, logits);
        var pos2 = new int[count];
        var next = new int[count];
        for (int s = 0; s < count; s++)
        {
            Close(refLogits[s][0], logits.AsSpan(s * vocab, vocab), $"{modelName} seq {s} prompt");
            pos2[s] = prompts[s].Length;
        }
        for (int k = 0; k < steps; k++)
        {
            for (int s = 0; s < count; s++)
            {
                next[s] = ArgMax(logits.AsSpan(s * vocab, vocab));
                Assert.Equal(refTokens[s][k], next[s]);
                seqs[s] = new SequenceBatch(caches[s], pos2[s]++, 1);
            }
            batched.ForwardSequences(next, seqs, logits);
            for (int s = 0; s < count; s++)
                Close(refLogits[s][k + 1], logits.AsSpan(s * vocab, vocab), $"{modelName} seq {s} step {k}");
        }
        for (int s = 0; s < count; s++) Assert.Equal(prompts[s].Length + steps, caches[s].Filled);
    }

    [Fact]
    public void Sequences_in_any_order_and_subset_match()
    {
        // A batch holding only some of the sequences, in reverse order, one of them a multi-token chunk.
        using var alone = Load("llama.gguf");
        using var batched = Load("llama.gguf");
        int vocab = alone.VocabSize;
        int[][] p = Prompts(3, vocab);
        var a = batched.CreateCache();
        var b = batched.CreateCache();
        var l = new float[2 * vocab];
        batched.ForwardSequences(p[0], [new SequenceBatch(a, 0, p[0].Length)], l);
        // b gets p[1] in one go while a continues with p[2] (as a second chunk of its sequence).
        int[] both = [.. p[1], .. p[2]];
        batched.ForwardSequences(both, [new SequenceBatch(b, 0, p[1].Length), new SequenceBatch(a, p[0].Length, p[2].Length)], l);

        var one = new float[vocab];
        alone.Forward(p[1], 0, one);
        Close(one, l.AsSpan(0, vocab), "b");
        alone.Cache.Clear();
        alone.Forward([.. p[0], .. p[2]], 0, one);
        Close(one, l.AsSpan(vocab, vocab), "a");
    }

    [Fact]
    public void Bad_batches_are_refused()
    {
        using var m = Load("stories260K");
        var a = m.CreateCache();
        var l = new float[2 * m.VocabSize];
        Assert.Throws<ArgumentException>(() => m.ForwardSequences([1, 2], [new SequenceBatch(a, 0, 1), new SequenceBatch(a, 1, 1)], l));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.ForwardSequences([1], [new SequenceBatch(a, 3, 1)], l));
        Assert.Throws<ArgumentException>(() => m.ForwardSequences([1, 2, 3], [new SequenceBatch(a, 0, 2)], l));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.ForwardSequences([m.VocabSize], [new SequenceBatch(a, 0, 1)], l));
        Assert.Throws<ArgumentException>(() => m.ForwardSequences([1], [new SequenceBatch(a, 0, 0)], l));
        using var other = LlamaModel.Load(PathOf("llama.gguf"), new BackendOptions { Threads = 1, ContextSize = 64 });
        Assert.Throws<ArgumentException>(() => m.ForwardSequences([1], [new SequenceBatch(other.CreateCache(), 0, 1)], l));
    }

    /// <summary>Within a tight tolerance of the single-sequence logits (each row is computed the same way, so in practice equal).</summary>
    private static void Close(float[] expected, ReadOnlySpan<float> actual, string what)
    {
        double worst = 0, scale = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }
        Assert.True(worst <= 1e-5 * Math.Max(1, scale), $"{what}: max |diff| {worst:E3} (scale {scale:F3})");
    }
}
