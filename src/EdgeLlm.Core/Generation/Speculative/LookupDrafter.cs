namespace EdgeLlm.Generation;

/// <summary>
/// Prompt-lookup drafting (no second model): finds the most recent earlier occurrence of the longest suffix of the
/// sequence (n-grams of <see cref="MaxNgram"/> tokens down to <see cref="MinNgram"/>) and proposes the tokens that
/// followed it. Pays off on repetitive text (code edits, summaries, quoting the prompt). Proposals are deterministic.
/// </summary>
public sealed class LookupDrafter : DraftSource
{
    /// <summary>The longest suffix tried first.</summary>
    public const int DefaultMaxNgram = 4;

    /// <summary>The shortest suffix tried (a single repeated token predicts little).</summary>
    public const int DefaultMinNgram = 2;

    public int MaxNgram { get; }
    public int MinNgram { get; }
    private readonly int _maxDraft;

    /// <param name="maxDraft">tokens proposed per step (the N of --lookup N).</param>
    public LookupDrafter(int maxDraft, int maxNgram = DefaultMaxNgram, int minNgram = DefaultMinNgram)
    {
        if (maxDraft < 1) throw new ArgumentOutOfRangeException(nameof(maxDraft), $"lookup draft length {maxDraft} must be at least 1");
        if (minNgram < 1 || maxNgram < minNgram) throw new ArgumentOutOfRangeException(nameof(maxNgram), $"n-gram sizes {minNgram}..{maxNgram} are not a range of positive sizes");
        _maxDraft = maxDraft;
        MaxNgram = maxNgram;
        MinNgram = minNgram;
    }

    public override string Name => $"prompt lookup, n-grams {MaxNgram}..{MinNgram}, up to {_maxDraft} tokens";
    public override int MaxDraft => _maxDraft;
    public override bool HasDistribution => false;

    public override int Propose(ReadOnlySpan<int> history, int max, Span<int> drafts, Span<float> q)
    {
        int count = history.Length;
        max = Math.Min(Math.Min(max, _maxDraft), drafts.Length);
        if (max <= 0) return 0;
        for (int n = Math.Min(MaxNgram, count - 1); n >= MinNgram; n--)
        {
            var suffix = history[(count - n)..];
            // Most recent occurrence first; it must end before the suffix starts so something follows it.
            for (int start = count - n - 1; start >= 0; start--)
            {
                if (!history.Slice(start, n).SequenceEqual(suffix)) continue;
                int from = start + n;
                int len = Math.Min(max, count - from);
                history.Slice(from, len).CopyTo(drafts);
                return len;
            }
        }
        return 0;
    }
}
