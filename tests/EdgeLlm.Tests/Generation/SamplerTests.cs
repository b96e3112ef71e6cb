using EdgeLlm.Generation;

namespace EdgeLlm.Tests.Generation;

public class SamplerTests
{
    private static readonly SamplerOptions NoTruncation = new() { Temperature = 1, TopK = 0, TopP = 1, MinP = 0, Seed = 1234 };

    private static float[] RandomLogits(int n, int seed)
    {
        var r = new Random(seed);
        var l = new float[n];
        for (int i = 0; i < n; i++) l[i] = (float)(r.NextDouble() * 20 - 10);
        return l;
    }

    private static int ArgMax(float[] l)
    {
        int best = 0;
        for (int i = 1; i < l.Length; i++) if (l[i] > l[best]) best = i;
        return best;
    }

    /// <summary>Logits whose softmax is exactly the given distribution (up to float rounding).</summary>
    private static float[] LogitsFor(params double[] probs) => Array.ConvertAll(probs, p => (float)Math.Log(p));

    private static int[] Kept(Sampler s, float[] logits, int[]? history = null)
    {
        int n = s.Filter(logits, history ?? [], out _);
        var ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = s.Candidates(n)[i].Id;
        Array.Sort(ids);
        return ids;
    }

    [Fact]
    public void DefaultsAreLlamaCpps()
    {
        var o = new SamplerOptions();
        Assert.Equal(0.8f, o.Temperature);
        Assert.Equal(40, o.TopK);
        Assert.Equal(0.95f, o.TopP);
        Assert.Equal(0.05f, o.MinP);
        Assert.Equal(64, o.RepeatLastN);
        Assert.Equal(1.0f, o.RepeatPenalty);
        Assert.Equal(0f, o.PresencePenalty);
        Assert.Equal(0f, o.FrequencyPenalty);
        Assert.Equal(-1, o.Seed);
    }

    [Fact]
    public void GreedyIsArgMax()
    {
        var s = new Sampler(1000, SamplerOptions.Greedy);
        for (int trial = 0; trial < 20; trial++)
        {
            var logits = RandomLogits(1000, trial);
            Assert.Equal(ArgMax(logits), s.Sample(logits, []));
        }
    }

    [Fact]
    public void FirstArgMaxIsTheScalarLoopsFirstHighest()
    {
        var r = new Random(11);
        for (int n = 1; n <= 70; n++)
            for (int trial = 0; trial < 20; trial++)
            {
                // Few distinct values, so the maximum repeats (ties within a vector, across vectors and in the tail).
                var l = new float[n];
                for (int i = 0; i < n; i++) l[i] = r.Next(4) switch { 0 => -0f, 1 => 0f, 2 => r.Next(3) - 1.5f, _ => float.NegativeInfinity };
                Assert.Equal(ArgMax(l), Sampler.FirstArgMax(l));
            }
        Assert.Equal(0, Sampler.FirstArgMax(new[] { float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity }));
        Assert.Equal(0, Sampler.FirstArgMax(new[] { -0f, 0f, -0f, 0f, -0f, 0f, -0f, 0f, -0f, 0f, -0f, 0f, -0f, 0f, -0f, 0f, 0f }));
        var big = RandomLogits(32000, 5);
        big[31999] = 20f;
        Assert.Equal(31999, Sampler.FirstArgMax(big));
        big[17] = float.PositiveInfinity;
        big[40] = float.PositiveInfinity;
        Assert.Equal(17, Sampler.FirstArgMax(big));
        big[20000] = float.NaN;
        Assert.Equal(-1, Sampler.FirstArgMax(big));
        Assert.Equal(-1, Sampler.FirstArgMax(new[] { 1f, float.NaN }));
        Assert.Equal(-1, Sampler.FirstArgMax(ReadOnlySpan<float>.Empty));
    }

    [Fact]
    public void GreedyTakesTheFirstOfTiedLogitsAndSkipsNaN()
    {
        var s = new Sampler(40, SamplerOptions.Greedy);
        var l = new float[40];
        Array.Fill(l, -3f);
        l[9] = 2f;
        l[33] = 2f;
        Assert.Equal(9, s.Sample(l, []));
        l[9] = float.NaN; // the scalar loop never picks a NaN after index 0
        Assert.Equal(33, s.Sample(l, []));
        l[0] = float.NaN; // ... and keeps one at index 0
        Assert.Equal(0, s.Sample(l, []));
    }

    [Theory]
    [InlineData(0.3f)]
    [InlineData(1f)]
    [InlineData(5f)]
    public void TopKOneIsArgMaxAtAnyTemperature(float temperature)
    {
        var s = new Sampler(500, new SamplerOptions { TopK = 1, Temperature = temperature, Seed = 7 });
        for (int trial = 0; trial < 50; trial++)
        {
            var logits = RandomLogits(500, 100 + trial);
            Assert.Equal(ArgMax(logits), s.Sample(logits, []));
        }
    }

    [Fact]
    public void TopKKeepsTheKLargest()
    {
        var logits = RandomLogits(300, 5);
        var s = new Sampler(300, NoTruncation with { TopK = 10 });
        var expected = Enumerable.Range(0, 300).OrderByDescending(i => logits[i]).Take(10).Order().ToArray();
        Assert.Equal(expected, Kept(s, logits));
    }

    [Fact]
    public void TopPKeepsTheSmallestPrefixReachingP()
    {
        // p = [.05 .5 .1 .2 .15] by id; sorted: .5 (1), .2 (3), .15 (4), .1 (2), .05 (0).
        var logits = LogitsFor(0.05, 0.5, 0.1, 0.2, 0.15);
        Assert.Equal(new[] { 1, 3 }, Kept(new Sampler(5, NoTruncation with { TopP = 0.6f }), logits));    // .5 < .6 <= .7
        Assert.Equal(new[] { 1, 3, 4 }, Kept(new Sampler(5, NoTruncation with { TopP = 0.8f }), logits)); // .7 < .8 <= .85
        Assert.Equal(new[] { 1 }, Kept(new Sampler(5, NoTruncation with { TopP = 0.3f }), logits));
        Assert.Equal(new[] { 0, 1, 2, 3, 4 }, Kept(new Sampler(5, NoTruncation with { TopP = 0.97f }), logits)); // .95 < .97
    }

    [Fact]
    public void MinPCutsRelativeToTheMostLikelyToken()
    {
        var logits = LogitsFor(0.1, 0.4, 0.05, 0.3, 0.15);
        // min-p 0.3 -> threshold 0.12: keeps .4, .3, .15.
        Assert.Equal(new[] { 1, 3, 4 }, Kept(new Sampler(5, NoTruncation with { MinP = 0.3f }), logits));
        // min-p 0.2 -> threshold 0.08: also .1.
        Assert.Equal(new[] { 0, 1, 3, 4 }, Kept(new Sampler(5, NoTruncation with { MinP = 0.2f }), logits));
        // min-p 1 keeps only the top.
        Assert.Equal(new[] { 1 }, Kept(new Sampler(5, NoTruncation with { MinP = 1f }), logits));
    }

    [Fact]
    public void RepeatPresenceAndFrequencyPenaltiesFollowLlamaCpp()
    {
        float[] logits = [2f, -2f, 1f, 0.5f];
        var s = new Sampler(4, NoTruncation with { RepeatPenalty = 2f, FrequencyPenalty = 0.5f, PresencePenalty = 0.25f });
        int n = s.Filter(logits, [0, 1, 1], out _);
        Assert.Equal(4, n);
        var c = s.Candidates(n);
        // token 0: once, positive: 2/2 - (1*0.5 + 0.25) = 0.25
        // token 1: twice, negative: -2*2 - (2*0.5 + 0.25) = -5.25
        Assert.Equal(new[] { 0.25f, -5.25f, 1f, 0.5f }, new[] { c[0].Logit, c[1].Logit, c[2].Logit, c[3].Logit });

        // Only the last 2 tokens count: token 0 is untouched.
        var s2 = new Sampler(4, NoTruncation with { RepeatPenalty = 2f, RepeatLastN = 2 });
        s2.Filter(logits, [0, 1, 1], out _);
        Assert.Equal(2f, s2.Candidates(4)[0].Logit);
        Assert.Equal(-4f, s2.Candidates(4)[1].Logit);

        // The buffer is clean for the next call: no history, no penalty.
        s.Filter(logits, [], out _);
        Assert.Equal(2f, s.Candidates(4)[0].Logit);
    }

    [Fact]
    public void RepeatPenaltyCanChangeTheGreedyChoice()
    {
        float[] logits = [3f, 2f, 0f];
        var s = new Sampler(3, SamplerOptions.Greedy with { RepeatPenalty = 1.6f });
        Assert.Equal(1, s.Sample(logits, [0])); // 3/1.6 = 1.875 < 2
        Assert.Equal(0, s.Sample(logits, [2]));
    }

    [Fact]
    public void SameSeedGivesTheSameThousandDraws()
    {
        var logits = RandomLogits(64, 9);
        for (int i = 0; i < logits.Length; i++) logits[i] *= 0.3f; // flat enough that many tokens are drawn
        var a = new Sampler(64, NoTruncation with { Seed = 42 });
        var b = new Sampler(64, NoTruncation with { Seed = 42 });
        var c = new Sampler(64, NoTruncation with { Seed = 43 });
        var da = new int[1000];
        var db = new int[1000];
        var dc = new int[1000];
        for (int i = 0; i < 1000; i++)
        {
            da[i] = a.Sample(logits, []);
            db[i] = b.Sample(logits, []);
            dc[i] = c.Sample(logits, []);
        }
        Assert.Equal(da, db);
        Assert.NotEqual(da, dc);
        Assert.True(da.Distinct().Count() > 20);

        // Reseeding restarts the stream.
        a.Reseed(42);
        Assert.Equal(da[0], a.Sample(logits, []));
    }

    [Fact]
    public void XoshiroMatchesTheReferenceStream()
    {
        // SplitMix64 from 0 gives the well-known first output 0xE220A8397B1DCDAF; xoshiro256** then mixes its state.
        var r = new Xoshiro256(0);
        ulong a = r.NextUInt64(), b = r.NextUInt64();
        Assert.NotEqual(a, b);
        var r2 = new Xoshiro256(0);
        Assert.Equal(a, r2.NextUInt64());
        Assert.Equal(b, r2.NextUInt64());
        // Hand computation: s1 = splitmix #2 = 0x6E789E6AA1B965F4; result = rotl(s1*5, 7)*9.
        ulong s1 = 0x6E789E6AA1B965F4UL;
        Assert.Equal(ulong.RotateLeft(unchecked(s1 * 5), 7) * 9, a);
    }

    [Fact]
    public void RandomSeedIsChosenWhenMinusOne()
    {
        var a = new Sampler(10, new SamplerOptions());
        var b = new Sampler(10, new SamplerOptions());
        Assert.NotEqual(a.Seed, b.Seed); // 2^-64 chance of a false failure
        Assert.Equal(5ul, new Sampler(10, new SamplerOptions { Seed = 5 }).Seed);
    }

    [Theory]
    [InlineData(1f)]
    [InlineData(2f)]
    [InlineData(0.5f)]
    public void FrequenciesMatchSoftmaxAtTheTemperature(float temperature)
    {
        float[] logits = [1.0f, 0.2f, -0.5f, 2.0f, 0.0f];
        double max = logits.Max() / temperature;
        double[] w = Array.ConvertAll(logits, l => Math.Exp(l / temperature - max));
        double sum = w.Sum();
        double[] p = Array.ConvertAll(w, x => x / sum);

        const int draws = 20000;
        var s = new Sampler(5, NoTruncation with { Temperature = temperature, Seed = 2024 });
        var counts = new int[5];
        for (int i = 0; i < draws; i++) counts[s.Sample(logits, [])]++;
        for (int i = 0; i < 5; i++)
        {
            double f = (double)counts[i] / draws;
            double sigma = Math.Sqrt(p[i] * (1 - p[i]) / draws);
            // Within 4 standard deviations (at most 0.0142 for p = 0.5).
            Assert.True(Math.Abs(f - p[i]) <= 4 * sigma + 1e-9, $"token {i}: frequency {f:F4}, softmax {p[i]:F4}, 4 sigma {4 * sigma:F4}");
        }
    }

    [Fact]
    public void SampleDoesNotAllocate()
    {
        var logits = RandomLogits(32000, 3);
        int[] history = [1, 2, 3, 4, 5, 6, 7, 8];
        var s = new Sampler(32000, new SamplerOptions { Seed = 1, RepeatPenalty = 1.1f, TopK = 0 });
        s.Sample(logits, history); // warm up
        var s2 = new Sampler(32000, new SamplerOptions { Seed = 1, RepeatPenalty = 1.1f });
        s2.Sample(logits, history);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++)
        {
            s.Sample(logits, history);
            s2.Sample(logits, history);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void BadInputIsRejectedWithOneLineMessages()
    {
        var e1 = Assert.Throws<ArgumentException>(() => new Sampler(10, new SamplerOptions { TopP = 0 }));
        Assert.Contains("top-p", e1.Message);
        Assert.Throws<ArgumentException>(() => new Sampler(10, new SamplerOptions { MinP = 1.5f }));
        Assert.Throws<ArgumentException>(() => new Sampler(10, new SamplerOptions { RepeatPenalty = 0 }));
        var s = new Sampler(10, new SamplerOptions { Seed = 1, RepeatPenalty = 1.1f });
        var e2 = Assert.Throws<ArgumentException>(() => s.Sample(new float[9], []));
        Assert.Contains("expected 10 logits", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => s.Sample(new float[10], [3, 12]));
        Assert.Contains("token id 12", e3.Message);
        Assert.DoesNotContain('\n', e3.Message);
    }
}
