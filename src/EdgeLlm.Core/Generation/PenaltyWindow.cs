namespace EdgeLlm.Generation;

/// <summary>
/// The penalty window of <see cref="Sampler"/> as a device sampler takes it: the distinct tokens of the last
/// <see cref="SamplerOptions.RepeatLastN"/> entries of the history with how often each occurs there, as (id, count)
/// pairs in order of first occurrence. Empty when the options turn the penalties off. Buffers are sized at
/// construction (the pairs grow only for a window longer than any before); one per sequence.
/// </summary>
public sealed class PenaltyWindow
{
    private readonly int[] _counts;
    private int[] _pairs;

    public int VocabSize => _counts.Length;

    public PenaltyWindow(int vocabSize, int initialWindow = 64)
    {
        if (vocabSize <= 0) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "vocabulary size must be positive");
        _counts = new int[vocabSize];
        _pairs = new int[2 * Math.Clamp(initialWindow, 1, vocabSize)];
    }

    /// <summary>The (id, count) pairs, interleaved, of the window <see cref="Sampler"/> would penalise after <paramref name="history"/>.</summary>
    public ReadOnlySpan<int> Pairs(SamplerOptions o, ReadOnlySpan<int> history)
    {
        if (DeviceSampling.PenaltiesOff(o)) return [];
        var window = o.RepeatLastN < 0 || history.Length <= o.RepeatLastN ? history : history[^o.RepeatLastN..];
        int need = 2 * Math.Min(window.Length, _counts.Length);
        if (_pairs.Length < need) _pairs = new int[need];
        int n = 0;
        foreach (int t in window)
        {
            if ((uint)t >= (uint)_counts.Length)
            {
                foreach (int u in window) if ((uint)u < (uint)_counts.Length) _counts[u] = 0; // leave the buffer clean
                throw new ArgumentException($"history contains token id {t}, outside the vocabulary (0 to {_counts.Length - 1})", nameof(history));
            }
            if (_counts[t]++ == 0) _pairs[2 * n++] = t;
        }
        for (int i = 0; i < n; i++)
        {
            int t = _pairs[2 * i];
            _pairs[2 * i + 1] = _counts[t];
            _counts[t] = 0;
        }
        return _pairs.AsSpan(0, 2 * n);
    }
}
