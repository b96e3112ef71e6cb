using System.Diagnostics;
using System.Globalization;

namespace EdgeLlm.Convert;

/// <summary>
/// Progress on stderr: a one-line bar redrawn in place (tensor, bytes done, MB/s, ETA) when stderr is a
/// terminal, one plain log line per tensor otherwise. Bytes are input bytes (the checkpoint's stored size).
/// </summary>
internal sealed class ConvertProgress(TextWriter err, bool bar, int tensorCount, long totalBytes)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Stopwatch _tensorClock = new();
    private long _done;
    private long _lastDraw = -1000;
    private int _index;
    private string _name = "";
    private string _what = "";
    private int _lastWidth;

    public TimeSpan Elapsed => _clock.Elapsed;

    public void BeginTensor(int index, string name, string what)
    {
        _index = index;
        _name = name;
        _what = what;
        _tensorClock.Restart();
        if (bar) Draw(force: true);
    }

    public void Advance(long bytes)
    {
        _done += bytes;
        if (bar) Draw(force: false);
    }

    public void EndTensor(long outputBytes)
    {
        if (bar) { Draw(force: true); return; }
        err.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"[{_index + 1,4}/{tensorCount}] {_name,-28} {_what}  {outputBytes / 1048576.0,9:F2} MiB  {_tensorClock.Elapsed.TotalSeconds,6:F2} s"));
    }

    /// <summary>Ends the bar's line (success or failure) so later messages start on a fresh line.</summary>
    public void Finish()
    {
        if (bar && _lastWidth > 0) { err.WriteLine(); _lastWidth = 0; }
    }

    private void Draw(bool force)
    {
        long now = _clock.ElapsedMilliseconds;
        if (!force && now - _lastDraw < 100) return;
        _lastDraw = now;
        double secs = Math.Max(1e-3, _clock.Elapsed.TotalSeconds);
        double mbps = _done / 1e6 / secs;
        double frac = totalBytes == 0 ? 1 : Math.Min(1, (double)_done / totalBytes);
        string eta = _done == 0 ? "--:--" : FormatTime(TimeSpan.FromSeconds((totalBytes - _done) / Math.Max(1.0, _done / secs)));
        const int width = 24;
        int filled = (int)(frac * width);
        string line = string.Create(CultureInfo.InvariantCulture,
            $"[{_index + 1,4}/{tensorCount}] {Trim(_name, 28),-28} [{new string('#', filled)}{new string('.', width - filled)}] {Size(_done)}/{Size(totalBytes)} {mbps,7:F1} MB/s ETA {eta}");
        int pad = Math.Max(0, _lastWidth - line.Length);
        err.Write("\r" + line + new string(' ', pad));
        err.Flush();
        _lastWidth = line.Length;
    }

    private string Size(long bytes) => totalBytes >= 1_000_000_000
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e9:F2} GB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e6:F1} MB");

    private static string Trim(string s, int n) => s.Length <= n ? s : "..." + s[^(n - 3)..];

    internal static string FormatTime(TimeSpan t) => t.TotalHours >= 1
        ? string.Create(CultureInfo.InvariantCulture, $"{(int)t.TotalHours}:{t.Minutes:D2}:{t.Seconds:D2}")
        : string.Create(CultureInfo.InvariantCulture, $"{t.Minutes:D2}:{t.Seconds:D2}");
}
