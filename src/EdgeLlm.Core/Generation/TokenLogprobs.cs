namespace EdgeLlm.Generation;

/// <summary>
/// The log-probabilities of one generated token, reused from token to token (copy what you keep).
/// They are the model's own distribution: the float64 log-softmax of the raw logits of that position, before
/// penalties, grammar mask, truncation (top-k/top-p/min-p) and temperature, as OpenAI reports them (llama.cpp's
/// server reports the post-sampling probabilities instead). The sampled token's value is given whether or not
/// it is among the top ones.
/// </summary>
public sealed class TokenLogprobs
{
    /// <summary>OpenAI's limit for top_logprobs.</summary>
    public const int MaxTop = 20;

    public int Token { get; internal set; }
    public double Logprob { get; internal set; }

    /// <summary>How many of <see cref="TopIds"/>/<see cref="TopLogprobs"/> are filled (most likely first; equal values by lower id).</summary>
    public int TopCount { get; internal set; }
    public int[] TopIds { get; } = new int[MaxTop];
    public double[] TopLogprobs { get; } = new double[MaxTop];

    /// <summary>Fills this from one row of logits for the chosen <paramref name="token"/>, with the <paramref name="top"/> most likely. No allocation.</summary>
    public void Compute(ReadOnlySpan<float> logits, int token, int top)
    {
        if ((uint)top > MaxTop) throw new ArgumentOutOfRangeException(nameof(top), top, $"top must be 0 to {MaxTop}");
        double max = double.NegativeInfinity;
        foreach (float l in logits) if (l > max) max = l;
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        double logZ = max + Math.Log(sum);
        Token = token;
        Logprob = logits[token] - logZ;

        // Insertion into a small sorted list: O(V * top) worst case, O(V) typically.
        int n = 0;
        var ids = TopIds;
        var lp = TopLogprobs;
        for (int i = 0; i < logits.Length && top > 0; i++)
        {
            double v = logits[i];
            if (n == top && v <= lp[n - 1]) continue; // not better than the worst kept (ties keep the lower id)
            int j = n < top ? n++ : n - 1;
            while (j > 0 && lp[j - 1] < v)
            {
                lp[j] = lp[j - 1];
                ids[j] = ids[j - 1];
                j--;
            }
            lp[j] = v;
            ids[j] = i;
        }
        for (int i = 0; i < n; i++) lp[i] -= logZ;
        TopCount = n;
    }
}
