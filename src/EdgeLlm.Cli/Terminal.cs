using System.Runtime.InteropServices;

namespace EdgeLlm.Cli;

/// <summary>
/// What the standard streams are connected to, decided once in Main: a terminal gets progress lines redrawn in
/// place and the chat's line editor; a pipe or file gets plain text only. In-process callers (tests) get
/// <see cref="None"/>: no terminal, nothing piped in.
/// </summary>
public sealed partial record Terminal(bool StdinIsTerminal, bool StdoutIsTerminal, bool StderrIsTerminal, bool StdinIsPiped)
{
    /// <summary>No terminal anywhere and no piped input (the default for in-process calls).</summary>
    public static readonly Terminal None = new(false, false, false, false);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int isatty(int fd);

    /// <summary>The process's own streams: isatty for each, and whether stdin is a pipe or a regular file.</summary>
    public static Terminal Detect()
    {
        if (!OperatingSystem.IsLinux()) return None;
        bool inTty = IsTty(0);
        return new Terminal(inTty, IsTty(1), IsTty(2), !inTty && StdinIsPipeOrFile());
    }

    private static bool IsTty(int fd)
    {
        try { return isatty(fd) == 1; }
        catch (DllNotFoundException) { return false; }
        catch (EntryPointNotFoundException) { return false; }
    }

    /// <summary>
    /// True when descriptor 0 is a pipe ("pipe:[n]"), a socket, or a regular file: text someone piped or redirected in.
    /// /dev/null and other devices are not (a service's or a test's inherited stdin must not be read as a prompt).
    /// </summary>
    private static bool StdinIsPipeOrFile()
    {
        string? target;
        try { target = new FileInfo("/proc/self/fd/0").LinkTarget; }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
        if (target is null) return false;
        if (target.StartsWith("pipe:", StringComparison.Ordinal) || target.StartsWith("socket:", StringComparison.Ordinal)) return true;
        if (target.StartsWith("/dev/", StringComparison.Ordinal)) return false;
        try { return File.Exists(target); }
        catch (IOException) { return false; }
    }
}
