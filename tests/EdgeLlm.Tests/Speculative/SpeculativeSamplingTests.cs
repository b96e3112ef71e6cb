using EdgeLlm.Generation;

namespace EdgeLlm.Tests.Speculative;

/// <summary>
/// The acceptance rule on synthetic distributions over a tiny vocabulary: draws of "x ~ q, then Verify" must be
/// distributed as p. Fixed seeds make every run draw the same numbers, so the bounds cannot flake; each bound is
/// checked to be tight enough to reject the distribution a wrong rule would give (q itself, or p without the residual).
/// </summary>
public class SpeculativeSamplingTests
{
    private const int Draws = 200_000;

    // Chi-square critical value at significance 1e-4 for 7 degrees of freedom (8 tokens); a correct sampler
    // exceeds it with probability 1e-4, and the seeds are fixed, so the outcome is fixed.
    private const double ChiSquareCritical7 = 29.88;

    public static TheoryData<float[], float[]> Pairs => new()
    {
        // q spreads mass where p has little, and misses p's mode.
        { [0.40f, 0.25f, 0.15f, 0.10f, 0.05f, 0.03f, 0.01f, 0.01f], [0.05f, 0.10f, 0.10f, 0.15f, 0.20f, 0.20f, 0.10f, 0.10f] },
        // q is zero where p is not (those tokens only come from the residual), p zero where q is not (never accepted).
        { [0.30f, 0.30f, 0.20f, 0.20f, 0f, 0f, 0f, 0f], [0f, 0.50f, 0f, 0.10f, 0.20f, 0.20f, 0f, 0f] },
        // Near-equal distributions: almost everything accepted.
        { [0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.125f], [0.13f, 0.12f, 0.125f, 0.125f, 0.13f, 0.12f, 0.125f, 0.125f] },
    };

    [Theory]
    [MemberData(nameof(Pairs))]
    public void DraftThenVerify_IsDistributedAsTarget(float[] p, float[] q)
    {
        var rng = new Xoshiro256(12345);
        var counts = new long[p.Length];
        long accepted = 0;
        double expectedAccept = 0;
        for (int i = 0; i < p.Length; i++) expectedAccept += Math.Min(p[i], q[i]); // P(accept) = sum min(p, q)
        for (int d = 0; d < Draws; d++)
        {
            int x = SpeculativeSampling.Draw(q, ref rng);
            int t = SpeculativeSampling.Verify(p, q, x, ref rng, out bool ok);
            if (ok)
            {
                Assert.Equal(x, t);
                accepted++;
            }
            counts[t]++;
        }
        AssertDistributedAs(p, counts);
        Assert.InRange(accepted / (double)Draws, expectedAccept - 0.01, expectedAccept + 0.01);
        // The test can tell: the draft's own distribution is far from p by the same measure (except the near-equal pair).
        if (TotalVariation(p, q) > 0.05) Assert.True(ChiSquare(q, counts) > 100 * ChiSquareCritical7);
    }

    public static TheoryData<float[], int> PointMasses => new()
    {
        { [0.40f, 0.25f, 0.15f, 0.10f, 0.05f, 0.03f, 0.01f, 0.01f], 0 },
        { [0.40f, 0.25f, 0.15f, 0.10f, 0.05f, 0.03f, 0.01f, 0.01f], 6 },
        { [0.30f, 0.30f, 0.20f, 0.20f, 0f, 0f, 0f, 0f], 5 }, // a proposal the target never makes
    };

    [Theory]
    [MemberData(nameof(PointMasses))]
    public void DeterministicProposal_IsDistributedAsTarget(float[] p, int x)
    {
        var rng = new Xoshiro256(777);
        var counts = new long[p.Length];
        long accepted = 0;
        for (int d = 0; d < Draws; d++)
        {
            int t = SpeculativeSampling.Verify(p, default, x, ref rng, out bool ok);
            if (ok) accepted++;
            else Assert.NotEqual(x, t); // the residual of a point mass excludes x
            counts[t]++;
        }
        AssertDistributedAs(p, counts);
        Assert.InRange(accepted / (double)Draws, p[x] - 0.01, p[x] + 0.01); // keep x with probability p(x)
    }

    [Fact]
    public void Verify_IdenticalDistributions_AcceptsEverything()
    {
        float[] p = [0.5f, 0.25f, 0.25f];
        var rng = new Xoshiro256(1);
        for (int d = 0; d < 1000; d++)
        {
            int x = SpeculativeSampling.Draw(p, ref rng);
            Assert.Equal(x, SpeculativeSampling.Verify(p, p, x, ref rng, out bool ok));
            Assert.True(ok);
        }
    }

    [Fact]
    public void Distribution_FollowsTheSamplerChain()
    {
        // top-k 3 at temperature 0.5 over 6 logits, no penalties, top-p and min-p off: softmax of the 3 best / 0.5.
        float[] logits = [1.0f, 3.0f, -2.0f, 2.5f, 0.5f, 2.9f];
        var sampler = new Sampler(6, new SamplerOptions { Temperature = 0.5f, TopK = 3, TopP = 1f, MinP = 0f, Seed = 1 });
        var probs = new float[6];
        SpeculativeSampling.Distribution(sampler, logits, [], probs);
        double z = Math.Exp(3.0 / 0.5) + Math.Exp(2.5 / 0.5) + Math.Exp(2.9 / 0.5);
        Assert.Equal(Math.Exp(3.0 / 0.5) / z, probs[1], 5);
        Assert.Equal(Math.Exp(2.5 / 0.5) / z, probs[3], 5);
        Assert.Equal(Math.Exp(2.9 / 0.5) / z, probs[5], 5);
        Assert.Equal(0f, probs[0]);
        Assert.Equal(0f, probs[2]);
        Assert.Equal(0f, probs[4]);

        // Greedy with a repeat penalty: the point mass is on the penalised argmax (token 1 repeated: 3.0 / 2 = 1.5 < 2.9).
        var greedy = new Sampler(6, new SamplerOptions { Temperature = 0, RepeatPenalty = 2f, RepeatLastN = 8 });
        SpeculativeSampling.Distribution(greedy, logits, [1, 1], probs);
        Assert.Equal(1f, probs[5]);
        Assert.Equal(1f, probs.Sum());
    }

    [Fact]
    public void Draw_MatchesWeights()
    {
        float[] w = [2f, 0f, 1f, 1f];
        var rng = new Xoshiro256(99);
        var counts = new long[4];
        for (int d = 0; d < Draws; d++) counts[SpeculativeSampling.Draw(w, ref rng)]++;
        Assert.Equal(0, counts[1]);
        AssertDistributedAs([0.5f, 0f, 0.25f, 0.25f], counts);
        Assert.Throws<ArgumentException>(() => { var r = new Xoshiro256(1); SpeculativeSampling.Draw([0f, 0f], ref r); });
    }

    private static void AssertDistributedAs(float[] p, long[] counts)
    {
        for (int i = 0; i < p.Length; i++)
            if (p[i] == 0) Assert.Equal(0, counts[i]);
        Assert.True(ChiSquare(p, counts) < ChiSquareCritical7, $"chi-square {ChiSquare(p, counts):F2} against p");
        var freq = counts.Select(c => c / (double)counts.Sum()).ToArray();
        Assert.True(TotalVariation(p, freq) < 0.006, $"total variation {TotalVariation(p, freq):F4}");
    }

    /// <summary>Pearson's statistic over the tokens p gives mass (a count where p is 0 is infinite).</summary>
    private static double ChiSquare(IReadOnlyList<float> p, long[] counts)
    {
        long n = counts.Sum();
        double chi = 0;
        for (int i = 0; i < p.Count; i++)
        {
            double e = p[i] * (double)n;
            if (e == 0) { if (counts[i] > 0) return double.PositiveInfinity; continue; }
            chi += (counts[i] - e) * (counts[i] - e) / e;
        }
        return chi;
    }

    private static double TotalVariation(IReadOnlyList<float> p, IReadOnlyList<float> q)
    {
        double s = 0;
        for (int i = 0; i < p.Count; i++) s += Math.Abs(p[i] - q[i]);
        return s / 2;
    }

    private static double TotalVariation(IReadOnlyList<float> p, double[] q)
    {
        double s = 0;
        for (int i = 0; i < p.Count; i++) s += Math.Abs(p[i] - q[i]);
        return s / 2;
    }
}
