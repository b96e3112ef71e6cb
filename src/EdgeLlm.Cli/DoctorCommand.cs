using System.Globalization;
using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Backends.Cuda.Native;

namespace EdgeLlm.Cli;

/// <summary>
/// `edgellm doctor`: one line per thing that decides how well edgellm runs here: the build, the CPU's features and the
/// kernels this binary picks, transparent huge pages, the memlock limit, the CUDA driver and NVRTC, the kernel cache,
/// free disk where models are stored. Reports; never fails (exit 0).
/// </summary>
public sealed class DoctorCommand : Command
{
    public override string Name => "doctor";
    public override string Summary => "check this machine: CPU features vs the binary, huge pages, memlock, CUDA, caches, disk";
    public override string Usage => "doctor";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.NoPositionals();
        foreach (var (key, value) in Checks()) ctx.Out.WriteLine($"{key + ":",-22}{value}");
        return 0;
    }

    /// <summary>Every check as (name, finding); each finding is one line. A check that throws reports its error instead.</summary>
    public static IEnumerable<(string, string)> Checks()
    {
        yield return Safe("edgellm", VersionInfo.Describe);
        yield return Safe("cpu", Cpu);
        yield return Safe("kernels", Kernels);
        yield return Safe("huge pages", HugePages);
        yield return Safe("memlock limit", Memlock);
        yield return Safe("cuda driver", CudaDriverLine);
        yield return Safe("nvrtc", NvrtcLine);
        yield return Safe("kernel cache", KernelCacheLine);
        yield return Safe("model store", ModelStoreLine);
        yield return Safe("built-in model", () => EmbeddedModel.Present
            ? string.Create(CultureInfo.InvariantCulture, $"{EmbeddedModel.Name} ({EmbeddedModel.Size / 1e6:F1} MB, MIT), used when no -m is given")
            : "none in this build");
    }

    private static (string, string) Safe(string name, Func<string> check)
    {
        try { return (name, check()); }
        catch (Exception e) { return (name, $"could not check: {EdgeLlm.IO.ErrorText.OneLine(e)}"); }
    }

    private static string Cpu()
    {
        string model = CpuModel() ?? RuntimeInformation.ProcessArchitecture.ToString();
        return string.Create(CultureInfo.InvariantCulture, $"{model}, {Environment.ProcessorCount} cores usable; {VersionInfo.Simd()}");
    }

    /// <summary>"model name" (x64) or "Model"/"CPU part" (arm64) from /proc/cpuinfo.</summary>
    private static string? CpuModel()
    {
        if (!File.Exists("/proc/cpuinfo")) return null;
        string? part = null;
        foreach (string line in File.ReadLines("/proc/cpuinfo"))
        {
            int colon = line.IndexOf(':');
            if (colon < 0) continue;
            string key = line[..colon].Trim(), value = line[(colon + 1)..].Trim();
            if (key is "model name" or "Model" && value.Length > 0) return value;
            if (key == "CPU part" && part is null) part = "arm64 CPU part " + value;
        }
        return part;
    }

    private static string Kernels()
    {
        Rung selected = KernelRung.Selected, best = KernelRung.Best();
        var extras = new List<string>();
        if (selected == Rung.Avx2) extras.Add(KernelRung.UseAvxVnni ? "AVX-VNNI" : "no AVX-VNNI");
        if (selected == Rung.Neon) extras.Add(KernelRung.UseDotProd ? "sdot" : "no sdot (Cortex-A53/A57/A72 class)");
        if (selected is Rung.Avx2 or Rung.Avx512 && KernelRung.UseGfni) extras.Add("GFNI");
        string line = $"{selected.ToString().ToLowerInvariant()}{(extras.Count > 0 ? " (" + string.Join(", ", extras) + ")" : "")}";
        if (selected != best) line += $"; this CPU and binary could use {best.ToString().ToLowerInvariant()} ($EDGELLM_KERNEL_RUNG chose otherwise)";
        else if (selected == Rung.Scalar) line += "; no SIMD rung: expect slow decoding";
        if (RuntimeInformation.ProcessArchitecture == Architecture.X64 && selected != Rung.Avx512 && CpuFlag("avx512bw"))
            line += "; the CPU has AVX-512 but this binary does not use it (see the x64 builds in rid-matrix.json)";
        return line;
    }

    /// <summary>Whether /proc/cpuinfo's flags list <paramref name="flag"/> (what the CPU has, whatever this binary was built for).</summary>
    private static bool CpuFlag(string flag)
    {
        if (!File.Exists("/proc/cpuinfo")) return false;
        foreach (string line in File.ReadLines("/proc/cpuinfo"))
            if (line.StartsWith("flags", StringComparison.Ordinal))
                return Array.IndexOf(line[(line.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries), flag) >= 0;
        return false;
    }

    private static string HugePages()
    {
        const string path = "/sys/kernel/mm/transparent_hugepage/enabled";
        if (!File.Exists(path)) return "transparent huge pages not available (no " + path + ")";
        string mode = Selected(File.ReadAllText(path));
        string hint = mode switch
        {
            "always" or "madvise" => "weights read into memory (--no-mmap, the default when they fit) get 2 MiB pages",
            "never" => "weights use 4 KiB pages; as root: echo madvise > " + path,
            _ => "",
        };
        return $"{mode} ({path}){(hint.Length > 0 ? "; " + hint : "")}";
    }

    /// <summary>The bracketed choice of a sysfs setting ("always [madvise] never" -> "madvise").</summary>
    internal static string Selected(string setting)
    {
        int a = setting.IndexOf('['), b = setting.IndexOf(']');
        return a >= 0 && b > a ? setting[(a + 1)..b] : setting.Trim();
    }

    private static string Memlock()
    {
        const string path = "/proc/self/limits";
        if (!File.Exists(path)) return "unknown (no /proc/self/limits)";
        foreach (string line in File.ReadLines(path))
        {
            if (!line.StartsWith("Max locked memory", StringComparison.Ordinal)) continue;
            string[] parts = line["Max locked memory".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 1) break;
            if (parts[0] == "unlimited") return "unlimited: --mlock can lock any model";
            if (!long.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out long bytes)) break;
            return string.Create(CultureInfo.InvariantCulture,
                $"{FormatBytes(bytes)}: --mlock of a larger model is refused (a warning; raise it with ulimit -l or LimitMEMLOCK= in the systemd unit)");
        }
        return "unknown";
    }

    private static string CudaDriverLine()
    {
        if (!CudaLibraries.TryLoadDriver()) return "not found (CPU only; install the NVIDIA driver, or JetPack on a Jetson)";
        if (CudaProbe.TryGetDevice(0, out var dev, out string why))
        {
            string target = CudaProbe.TryGetTarget(dev!, out var t, out string tw) ? $"kernels {t}" : $"not usable: {tw}";
            return $"{CudaLibraries.DriverPath}; {dev}; {target}";
        }
        return why;
    }

    private static string NvrtcLine()
    {
        if (!CudaLibraries.TryLoadNvrtc())
            return $"not found (GPU kernels cannot be compiled; tried {string.Join(", ", CudaLibraries.NvrtcSonames)} and the CUDA toolkit folders)";
        var (major, minor) = KernelCompiler.Version();
        return string.Create(CultureInfo.InvariantCulture, $"{major}.{minor} ({CudaLibraries.NvrtcPath})");
    }

    private static string KernelCacheLine()
    {
        string dir = KernelCache.Default().Directory;
        if (!Directory.Exists(dir)) return $"{dir} (empty: the first CUDA run compiles the kernels, later runs load them)";
        long bytes = 0;
        int files = 0;
        foreach (var f in new DirectoryInfo(dir).EnumerateFiles())
        {
            files++;
            bytes += f.Length;
        }
        return string.Create(CultureInfo.InvariantCulture, $"{dir} ({files} files, {FormatBytes(bytes)})");
    }

    /// <summary>$EDGELLM_MODELS, else $XDG_DATA_HOME/edgellm/models, else ~/.local/share/edgellm/models.</summary>
    internal static string ModelStoreDirectory()
    {
        if (Environment.GetEnvironmentVariable("EDGELLM_MODELS") is { Length: > 0 } dir) return dir;
        string? data = Environment.GetEnvironmentVariable("XDG_DATA_HOME");
        if (string.IsNullOrEmpty(data))
        {
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            data = Path.Combine(string.IsNullOrEmpty(home) ? Path.GetTempPath() : home, ".local", "share");
        }
        return Path.Combine(data, "edgellm", "models");
    }

    private static string ModelStoreLine()
    {
        string dir = Path.GetFullPath(ModelStoreDirectory());
        string? existing = dir;
        while (existing is not null && !Directory.Exists(existing)) existing = Path.GetDirectoryName(existing);
        if (existing is null) return $"{dir} (no existing parent folder)";
        long free = new DriveInfo(existing).AvailableFreeSpace;
        return string.Create(CultureInfo.InvariantCulture, $"{dir}{(existing == dir ? "" : " (not created yet)")}: {FormatBytes(free)} free");
    }

    internal static string FormatBytes(long bytes)
    {
        var inv = CultureInfo.InvariantCulture;
        if (bytes >= 1L << 30) return string.Create(inv, $"{bytes / (double)(1L << 30):F1} GiB");
        if (bytes >= 1L << 20) return string.Create(inv, $"{bytes / (double)(1L << 20):F1} MiB");
        if (bytes >= 1L << 10) return string.Create(inv, $"{bytes / (double)(1L << 10):F0} KiB");
        return string.Create(inv, $"{bytes} bytes");
    }
}
