namespace EdgeLlm.Generation;

/// <summary>
/// The speculative-sampling acceptance rule (Leviathan et al. 2023; Chen et al. 2023): a draft token x drawn from
/// the draft distribution q is kept with probability min(1, p(x)/q(x)), where p is the target's distribution at the
/// same position; otherwise the token is drawn from the residual normalize(max(0, p - q)). The token that comes
/// out is distributed exactly as p. When the proposal is deterministic (prompt lookup), q is a point mass at x and
/// the rule reads: keep x with probability p(x), else draw from p with x removed. p and q are formed by the same
/// sampler chain (penalties, top-k, top-p, min-p, temperature) as plain decoding, so the output distribution is
/// the plain sampler's. No allocation: every method works on caller-owned spans.
/// </summary>
public static class SpeculativeSampling
{
    /// <summary>
    /// Writes into <paramref name="probs"/> (VocabSize floats) the distribution <paramref name="sampler"/> draws
    /// from for these logits and history: the softmax of the candidates that survive its chain, 0 elsewhere
    /// (a point mass on the argmax when the sampler is greedy).
    /// </summary>
    public static void Distribution(Sampler sampler, ReadOnlySpan<float> logits, ReadOnlySpan<int> history, Span<float> probs)
    {
        if (probs.Length != sampler.VocabSize)
            throw new ArgumentException($"expected {sampler.VocabSize} probabilities, got {probs.Length}", nameof(probs));
        int n = sampler.Filter(logits, history, out bool greedy);
        var cand = sampler.Candidates(n);
        probs.Clear();
        if (greedy)
        {
            probs[cand[0].Id] = 1f;
            return;
        }
        float max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) max = MathF.Max(max, cand[i].Logit);
        double total = 0;
        for (int i = 0; i < n; i++) total += Math.Exp(cand[i].Logit - max);
        for (int i = 0; i < n; i++) probs[cand[i].Id] = (float)(Math.Exp(cand[i].Logit - max) / total);
    }

    /// <summary>Draws an index with probability proportional to <paramref name="weights"/> (non-negative, not all zero).</summary>
    public static int Draw(ReadOnlySpan<float> weights, ref Xoshiro256 rng)
    {
        double total = 0;
        for (int i = 0; i < weights.Length; i++) total += weights[i];
        if (!(total > 0)) throw new ArgumentException("cannot draw from an all-zero distribution", nameof(weights));
        double u = rng.NextDouble() * total, cum = 0;
        int last = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            if (weights[i] <= 0) continue;
            cum += weights[i];
            last = i;
            if (u < cum) return i;
        }
        return last; // rounding: u landed on the very top
    }

    /// <summary>
    /// Verifies draft token <paramref name="x"/> against the target distribution <paramref name="p"/>. <paramref name="q"/>
    /// is the distribution x was drawn from, or empty for a deterministic proposal (a point mass at x). Returns x with
    /// <paramref name="accepted"/> true, or the replacement drawn from the residual with accepted false.
    /// </summary>
    public static int Verify(ReadOnlySpan<float> p, ReadOnlySpan<float> q, int x, ref Xoshiro256 rng, out bool accepted)
    {
        if ((uint)x >= (uint)p.Length) throw new ArgumentOutOfRangeException(nameof(x), $"draft token {x} is not in [0, {p.Length})");
        bool pointMass = q.IsEmpty;
        if (!pointMass && q.Length != p.Length) throw new ArgumentException($"q has {q.Length} entries, p has {p.Length}", nameof(q));
        double px = p[x], qx = pointMass ? 1.0 : q[x];
        double u = rng.NextDouble();
        // u < px/qx, written without the division (qx == 0 cannot come from a draw from q, but is kept safe: accept iff px > 0).
        if (u * qx < px)
        {
            accepted = true;
            return x;
        }
        accepted = false;

        // Residual max(0, p - q): for a point mass that is p with x removed.
        double total = 0;
        for (int i = 0; i < p.Length; i++) total += Residual(p, q, x, pointMass, i);
        if (!(total > 0)) return Draw(p, ref rng); // p == q up to rounding: the rejection had probability ~0
        double v = rng.NextDouble() * total, cum = 0;
        int last = -1;
        for (int i = 0; i < p.Length; i++)
        {
            double r = Residual(p, q, x, pointMass, i);
            if (r <= 0) continue;
            cum += r;
            last = i;
            if (v < cum) return i;
        }
        return last;
    }

    private static double Residual(ReadOnlySpan<float> p, ReadOnlySpan<float> q, int x, bool pointMass, int i)
        => pointMass ? (i == x ? 0.0 : p[i]) : Math.Max(0.0, (double)p[i] - q[i]);
}
