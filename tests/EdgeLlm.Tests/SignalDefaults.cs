using System.Diagnostics;
using System.Globalization;

namespace EdgeLlm.Tests;

/// <summary>
/// The start of a process that a test signals (SIGHUP, SIGINT, SIGQUIT, SIGTERM), with those signals at their default
/// disposition. A test run started in the background by a non-interactive shell ignores SIGINT and SIGQUIT, and one under
/// nohup ignores SIGHUP; children inherit the ignore, and the runtime (as every Unix program should) leaves an inherited
/// ignore alone, so the signal would do nothing and the test would fail for the way it was started. Where this process
/// ignores any of them, the child goes through <c>env --default-signal=...</c> (GNU coreutils 8.31+), which resets them
/// and execs it: the same pid, the same arguments.
/// </summary>
internal static class SignalDefaults
{
    private const string Signals = "HUP,INT,QUIT,TERM";
    private const ulong Mask = (1UL << 0) | (1UL << 1) | (1UL << 2) | (1UL << 14); // bit n-1 for signal n: 1, 2, 3, 15

    private static readonly Lazy<bool> Ignored = new(() =>
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("SigIgn:", StringComparison.Ordinal))
                return (ulong.Parse(line.AsSpan(7).Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture) & Mask) != 0;
        return false;
    });

    /// <summary>A start info for <paramref name="file"/> (add its arguments to <c>ArgumentList</c> as usual).</summary>
    public static ProcessStartInfo For(string file)
    {
        if (!Ignored.Value) return new ProcessStartInfo(file);
        var psi = new ProcessStartInfo("/usr/bin/env");
        psi.ArgumentList.Add("--default-signal=" + Signals);
        psi.ArgumentList.Add(file);
        return psi;
    }
}
