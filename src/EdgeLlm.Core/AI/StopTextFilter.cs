using System.Text;

namespace EdgeLlm.AI;

/// <summary>
/// Cuts generated text at the first of a set of stop strings. Text that could still be the start of a stop string is
/// held back until the next piece decides it, so a stop string split over several tokens is never shown in part.
/// </summary>
internal sealed class StopTextFilter(IReadOnlyList<string> stops, Action<string> emit)
{
    private readonly StringBuilder _pending = new();

    /// <summary>True once a stop string was seen; nothing more is emitted.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds a piece of text; returns false when generation should stop.</summary>
    public bool Push(string text)
    {
        if (Stopped) return false;
        if (stops.Count == 0) { emit(text); return true; }
        _pending.Append(text);
        string s = _pending.ToString();
        int first = -1;
        foreach (string stop in stops)
        {
            if (stop.Length == 0) continue;
            int i = s.IndexOf(stop, StringComparison.Ordinal);
            if (i >= 0 && (first < 0 || i < first)) first = i;
        }
        if (first >= 0)
        {
            if (first > 0) emit(s[..first]);
            _pending.Clear();
            Stopped = true;
            return false;
        }
        int keep = 0;
        foreach (string stop in stops)
            for (int k = Math.Min(stop.Length - 1, s.Length); k > keep; k--)
                if (s.AsSpan(s.Length - k).SequenceEqual(stop.AsSpan(0, k))) { keep = k; break; }
        if (s.Length > keep) emit(s[..^keep]);
        _pending.Clear();
        _pending.Append(s, s.Length - keep, keep);
        return true;
    }

    /// <summary>At the end of generation: what was held back was not a stop string after all.</summary>
    public void Flush()
    {
        if (!Stopped && _pending.Length > 0) emit(_pending.ToString());
        _pending.Clear();
    }
}
