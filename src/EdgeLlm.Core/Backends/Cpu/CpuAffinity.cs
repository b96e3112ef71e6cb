using System.Runtime.InteropServices;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// Pins the worker pool's threads to distinct CPUs (Linux <c>sched_setaffinity</c>), so a worker keeps its core, its
/// L1/L2 and its hardware prefetcher streams for the whole run instead of being moved between ops. Only the CPUs the
/// process may use (its affinity mask, e.g. a container's cpuset) are considered, and nothing is pinned when there are
/// fewer of them than threads, on other systems, or when <c>EDGELLM_PIN=0</c>. A failed call leaves the thread
/// unpinned: pinning is an optimization, never a reason to fail.
/// </summary>
internal static unsafe partial class CpuAffinity
{
    private const int MaskBytes = 128; // 1024 CPUs

    /// <summary>The CPUs this process may run on, in increasing order; empty when unknown.</summary>
    public static int[] AllowedCpus()
    {
        if (!OperatingSystem.IsLinux()) return [];
        byte* mask = stackalloc byte[MaskBytes];
        new Span<byte>(mask, MaskBytes).Clear();
        try
        {
            if (sched_getaffinity(0, MaskBytes, mask) != 0) return [];
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return [];
        }
        int count = 0;
        for (int i = 0; i < MaskBytes * 8; i++) if ((mask[i >> 3] & (1 << (i & 7))) != 0) count++;
        var cpus = new int[count];
        for (int i = 0, k = 0; i < MaskBytes * 8; i++) if ((mask[i >> 3] & (1 << (i & 7))) != 0) cpus[k++] = i;
        return cpus;
    }

    /// <summary>Whether pinning is wanted: on unless EDGELLM_PIN is 0, false, off or no.</summary>
    public static bool Enabled()
    {
        string? v = Environment.GetEnvironmentVariable("EDGELLM_PIN");
        return v is null || !(v == "0" || v.Equals("false", StringComparison.OrdinalIgnoreCase) ||
                              v.Equals("off", StringComparison.OrdinalIgnoreCase) || v.Equals("no", StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>Pins the calling thread to <paramref name="cpu"/>; false when the system refused.</summary>
    public static bool PinCurrentThread(int cpu)
    {
        if (!OperatingSystem.IsLinux() || cpu < 0 || cpu >= MaskBytes * 8) return false;
        byte* mask = stackalloc byte[MaskBytes];
        new Span<byte>(mask, MaskBytes).Clear();
        mask[cpu >> 3] = (byte)(1 << (cpu & 7));
        try
        {
            return sched_setaffinity(0, MaskBytes, mask) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_getaffinity(int pid, nuint size, byte* mask);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_setaffinity(int pid, nuint size, byte* mask);
}
