using System.Runtime.InteropServices;

namespace EdgeLlm.Gguf;

/// <summary>
/// The few memory-management calls the loader uses on Linux (madvise for transparent huge pages, mlock/munlock),
/// as source-generated imports; elsewhere they do nothing or report that they are not available.
/// </summary>
internal static unsafe partial class MemoryLock
{
    private const int MADV_HUGEPAGE = 14;

    /// <summary>Asks for transparent huge pages on an anonymous range (best effort: failure is ignored).</summary>
    public static void AdviseHugePages(byte* p, nuint length)
    {
        if (!OperatingSystem.IsLinux()) return;
        try { _ = madvise(p, length, MADV_HUGEPAGE); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    /// <summary>MemAvailable from /proc/meminfo in bytes; null where unknown (not Linux, unreadable).</summary>
    public static long? AvailableBytes()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
            {
                if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return parts.Length >= 2 && long.TryParse(parts[1], out long kb) ? kb * 1024 : null;
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>Locks [p, p + length) in RAM; null on success, else why not (errno text).</summary>
    public static string? Lock(byte* p, nuint length)
    {
        if (!OperatingSystem.IsLinux()) return "mlock is only used on Linux";
        try
        {
            if (mlock(p, length) == 0) return null;
            int errno = Marshal.GetLastPInvokeError();
            return errno switch
            {
                12 => "ENOMEM: over the locked-memory limit, see ulimit -l",
                1 => "EPERM: not permitted",
                11 => "EAGAIN: some pages could not be locked",
                _ => $"errno {errno}",
            };
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return "mlock is not available";
        }
    }

    public static void Unlock(byte* p, nuint length)
    {
        if (!OperatingSystem.IsLinux()) return;
        try { _ = munlock(p, length); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int madvise(byte* addr, nuint length, int advice);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int mlock(byte* addr, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int munlock(byte* addr, nuint length);
}
