using System.Runtime.InteropServices;

namespace EdgeLlm.IO;

/// <summary>
/// A file-size limit (<c>ulimit -f</c>, systemd's LimitFSIZE) raises SIGXFSZ (25 on Linux x64 and arm64) on the write
/// that crosses it, whose default action kills the process (exit 153) and leaves whatever it was writing behind.
/// <see cref="Handle"/> takes the signal, so the write fails with EFBIG instead, which .NET reports as an
/// <see cref="ArgumentOutOfRangeException"/> for the parameter "value" (<see cref="IsExceeded"/>), not as an
/// <see cref="IOException"/>; the writer then deletes its partial file and says so in one line (<see cref="Error"/>).
/// </summary>
public static class FileSizeLimit
{
    private const int SigXfsz = 25;

    /// <summary>Takes SIGXFSZ for as long as the registration lives (the process, in the entry points); null where signals cannot be registered.</summary>
    public static IDisposable? Handle()
    {
        try { return PosixSignalRegistration.Create((PosixSignal)SigXfsz, c => c.Cancel = true); }
        catch (PlatformNotSupportedException) { return null; }
        catch (IOException) { return null; }
    }

    /// <summary>Whether <paramref name="e"/> is a write refused with EFBIG (past the file-size limit).</summary>
    public static bool IsExceeded(Exception e) => e is ArgumentOutOfRangeException { ParamName: "value" };

    /// <summary>The one-line error for a write to <paramref name="path"/> that crossed the limit.</summary>
    public static EdgeLlmException Error(string path) =>
        new($"{path}: the file would pass the file size limit (ulimit -f); nothing written");
}
