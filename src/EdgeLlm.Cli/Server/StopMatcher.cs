namespace EdgeLlm.Cli.Server;

/// <summary>
/// Finds OpenAI `stop` strings in streamed text. Text that could be the start of a stop string is held
/// back until it is known not to be one, so a stop string is never sent, even split over tokens.
/// </summary>
public sealed class StopMatcher(string[]? stops)
{
    private readonly string[] _stops = stops is null ? [] : Array.FindAll(stops, s => s.Length > 0);
    private string _pending = "";

    public bool Stopped { get; private set; }

    /// <summary>Adds generated text; returns what may be sent now (empty once stopped).</summary>
    public string Feed(string text)
    {
        if (Stopped) return "";
        if (_stops.Length == 0) return text;
        string buf = _pending + text;
        int cut = -1;
        foreach (string s in _stops)
        {
            int i = buf.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (cut < 0 || i < cut)) cut = i;
        }
        if (cut >= 0)
        {
            Stopped = true;
            _pending = "";
            return buf[..cut];
        }
        int hold = 0;
        foreach (string s in _stops)
            for (int k = Math.Min(s.Length - 1, buf.Length); k > hold; k--)
                if (buf.AsSpan(buf.Length - k).SequenceEqual(s.AsSpan(0, k))) { hold = k; break; }
        _pending = buf[(buf.Length - hold)..];
        return buf[..(buf.Length - hold)];
    }

    /// <summary>What was held back, at the end of generation.</summary>
    public string Flush()
    {
        string p = Stopped ? "" : _pending;
        _pending = "";
        return p;
    }
}
