using System.Diagnostics;
using System.Globalization;

namespace EdgeLlm.Cli;

/// <summary>
/// Progress on stderr. On a terminal one line is redrawn in place (at most 10 times a second) and erased at the end;
/// elsewhere (only with -v) a whole line is written at each quarter, so a pipe or log file never sees carriage
/// returns or escape sequences. Silent when the context shows no progress (<see cref="CliContext.ShowProgress"/>).
/// </summary>
public sealed class ProgressLine
{
    private readonly TextWriter _err;
    private readonly bool _enabled, _terminal;
    private readonly string _label;
    private readonly Func<long, long, string> _format;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _lastDrawTicks = long.MinValue;
    private int _lastQuarter = -1;
    private bool _drawn;

    /// <param name="linesWithVerbose">false: only on a terminal (for commands whose -v log already reports each step).</param>
    public ProgressLine(CliContext ctx, string label, Func<long, long, string>? format = null, bool linesWithVerbose = true)
    {
        _err = ctx.Err;
        _terminal = ctx.Terminal.StderrIsTerminal;
        _enabled = linesWithVerbose ? ctx.ShowProgress : _terminal;
        _label = label;
        _format = format ?? Counts;
    }

    /// <summary>"3/10".</summary>
    public static string Counts(long done, long total) => string.Create(CultureInfo.InvariantCulture, $"{done}/{total}");

    /// <summary>"1.2/3.4 GiB" (or MiB below 1 GiB).</summary>
    public static string Bytes(long done, long total)
    {
        bool gib = total >= 1L << 30;
        double unit = gib ? 1L << 30 : 1L << 20;
        return string.Create(CultureInfo.InvariantCulture, $"{done / unit:F1}/{total / unit:F1} {(gib ? "GiB" : "MiB")}");
    }

    /// <summary>The text one report shows, e.g. "loading m.gguf: 45% (1.2/2.6 GiB)".</summary>
    public string Text(long done, long total)
    {
        int pct = total <= 0 ? 100 : (int)Math.Clamp(done * 100 / total, 0, 100);
        return string.Create(CultureInfo.InvariantCulture, $"{_label}: {pct}% ({_format(done, total)})");
    }

    public void Report(long done, long total)
    {
        if (!_enabled) return;
        if (_terminal)
        {
            long now = _clock.ElapsedTicks;
            if (done < total && _lastDrawTicks != long.MinValue && now - _lastDrawTicks < Stopwatch.Frequency / 10) return;
            _lastDrawTicks = now;
            _err.Write("\r\u001b[K" + Text(done, total));
            _err.Flush();
            _drawn = true;
            return;
        }
        int quarter = total <= 0 ? 4 : (int)Math.Clamp(done * 4 / total, 0, 4);
        if (quarter == _lastQuarter) return;
        _lastQuarter = quarter;
        _err.WriteLine(Text(done, total));
    }

    /// <summary>Erases the line on a terminal (the caller then prints its own summary).</summary>
    public void Done()
    {
        if (!_drawn) return;
        _err.Write("\r\u001b[K");
        _err.Flush();
        _drawn = false;
    }
}
