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
    private static PosixSignalRegistration? s_registration;

    /// <summary>Takes SIGXFSZ for the rest of the process (call once, first in an entry point; do not dispose what it returns); null where signals cannot be registered.</summary>
    public static IDisposable? Handle()
    {
        // The runtime's signal handling opens a pipe the first time a signal is registered. Where the process was started
        // with stdin, stdout or stderr closed, that pipe would take the lowest free descriptor (0, 1 or 2), and the
        // closed stream would then look open (chat would wait forever on the pipe for input). So the closed ones are
        // held on /dev/null while the handler is registered and closed again afterwards.
        var placeholders = new List<Microsoft.Win32.SafeHandles.SafeFileHandle>(3);
        try
        {
            for (int i = 0; i < 3; i++)
            {
                Microsoft.Win32.SafeHandles.SafeFileHandle h;
                try { h = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.ReadWrite); }
                catch (IOException) { break; }
                catch (UnauthorizedAccessException) { break; }
                if (h.DangerousGetHandle() > 2) { h.Dispose(); break; }
                placeholders.Add(h);
            }
            // Held for the rest of the process, never disposed: the runtime dispatches a caught signal on a thread of its
            // own, and a SIGXFSZ still waiting there when the registration goes (a command that fails on its write and
            // returns at once) gets the default action after all (killed, exit 153, after the one-line error).
            try { return s_registration ??= PosixSignalRegistration.Create((PosixSignal)SigXfsz, c => c.Cancel = true); }
            catch (PlatformNotSupportedException) { return null; }
            catch (IOException) { return null; }
        }
        finally
        {
            foreach (var h in placeholders) h.Dispose();
        }
    }

    /// <summary>Whether <paramref name="e"/> is a write refused with EFBIG (past the file-size limit).</summary>
    public static bool IsExceeded(Exception e) => e is ArgumentOutOfRangeException { ParamName: "value" };

    /// <summary>The cause, in the words of <see cref="Error"/>.</summary>
    public const string Reason = "the file would pass the file size limit (ulimit -f)";

    /// <summary>The one-line error for a write to <paramref name="path"/> that crossed the limit.</summary>
    public static OutputWriteException Error(string path) => new(path, Reason);
}
