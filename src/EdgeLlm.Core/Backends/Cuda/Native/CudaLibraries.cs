using System.Runtime.InteropServices;

namespace EdgeLlm.Backends.Cuda.Native;

/// <summary>
/// Finds and loads the CUDA driver (libcuda.so.1) and the first NVRTC that exists, and maps the logical
/// library names the <c>[LibraryImport]</c> declarations use (<see cref="DriverName"/>, <see cref="NvrtcName"/>)
/// to those handles. Nothing is loaded until asked, so a machine without CUDA never touches these files;
/// the bindings throw <see cref="DllNotFoundException"/> if called before a successful load.
/// </summary>
public static class CudaLibraries
{
    /// <summary>Logical name of the driver library in <see cref="CudaDriver"/>'s imports.</summary>
    public const string DriverName = "edgellm-libcuda";

    /// <summary>Logical name of the NVRTC library in <see cref="Nvrtc"/>'s imports.</summary>
    public const string NvrtcName = "edgellm-libnvrtc";

    /// <summary>Environment variable naming an explicit libcuda path (tried before the search).</summary>
    public const string DriverPathVariable = "EDGELLM_LIBCUDA";

    /// <summary>Environment variable naming an explicit libnvrtc path (tried before the search).</summary>
    public const string NvrtcPathVariable = "EDGELLM_LIBNVRTC";

    /// <summary>Sonames tried for the driver, in order (the last two are where Jetson and WSL keep it).</summary>
    public static IReadOnlyList<string> DriverCandidates { get; } =
    [
        "libcuda.so.1",
        "/usr/lib/aarch64-linux-gnu/tegra/libcuda.so.1",
        "/usr/lib/wsl/lib/libcuda.so.1",
    ];

    /// <summary>
    /// NVRTC sonames, newest first: CUDA 13, 12, 11.2+ (every 11.x from 11.2 on, including JetPack 5's 11.4,
    /// keeps the .11.2 soname), 11.1, 11.0, 10.2 (JetPack 4), then the unversioned development link.
    /// </summary>
    public static IReadOnlyList<string> NvrtcSonames { get; } =
    [
        "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so.11.1", "libnvrtc.so.11.0", "libnvrtc.so.10.2", "libnvrtc.so",
    ];

    /// <summary>Toolkit folders searched after the loader path (CUDA installs and JetPack put NVRTC there).</summary>
    public static IReadOnlyList<string> NvrtcFolders()
    {
        var dirs = new List<string>();
        foreach (string v in new[] { "CUDA_HOME", "CUDA_PATH", "CUDA_ROOT" })
            if (Environment.GetEnvironmentVariable(v) is { Length: > 0 } root) dirs.Add(Path.Combine(root, "lib64"));
        dirs.Add("/usr/local/cuda/lib64");
        dirs.Add("/usr/local/cuda/targets/x86_64-linux/lib");
        dirs.Add("/usr/local/cuda/targets/aarch64-linux/lib");
        dirs.Add("/usr/local/cuda/targets/sbsa-linux/lib");
        return dirs;
    }

    private static readonly Lock Gate = new();
    private static nint _driver;
    private static nint _nvrtc;
    private static bool _driverTried, _nvrtcTried;

    /// <summary>Where the driver was loaded from (null until <see cref="TryLoadDriver"/> succeeds).</summary>
    public static string? DriverPath { get; private set; }

    /// <summary>Where NVRTC was loaded from (null until <see cref="TryLoadNvrtc"/> succeeds).</summary>
    public static string? NvrtcPath { get; private set; }

    static CudaLibraries() => NativeLibrary.SetDllImportResolver(typeof(CudaLibraries).Assembly, Resolve);

    /// <summary>Loads libcuda.so.1 once; false if no candidate loads (no NVIDIA driver installed).</summary>
    public static bool TryLoadDriver()
    {
        lock (Gate)
        {
            if (_driverTried) return _driver != 0;
            _driverTried = true;
            var names = new List<string>();
            if (Environment.GetEnvironmentVariable(DriverPathVariable) is { Length: > 0 } explicitPath) names.Add(explicitPath);
            names.AddRange(DriverCandidates);
            foreach (string name in names)
            {
                if (NativeLibrary.TryLoad(name, out nint h))
                {
                    _driver = h;
                    DriverPath = name;
                    return true;
                }
            }
            return false;
        }
    }

    /// <summary>Loads the first NVRTC found (see <see cref="NvrtcSonames"/>, <see cref="NvrtcFolders"/>); false if none.</summary>
    public static bool TryLoadNvrtc()
    {
        lock (Gate)
        {
            if (_nvrtcTried) return _nvrtc != 0;
            _nvrtcTried = true;
            foreach (string name in NvrtcSearchOrder())
            {
                if (NativeLibrary.TryLoad(name, out nint h))
                {
                    _nvrtc = h;
                    NvrtcPath = name;
                    return true;
                }
            }
            return false;
        }
    }

    /// <summary>Every name or path <see cref="TryLoadNvrtc"/> tries, in order.</summary>
    public static IEnumerable<string> NvrtcSearchOrder()
    {
        if (Environment.GetEnvironmentVariable(NvrtcPathVariable) is { Length: > 0 } explicitPath) yield return explicitPath;
        foreach (string soname in NvrtcSonames) yield return soname;
        foreach (string dir in NvrtcFolders())
            foreach (string soname in NvrtcSonames) yield return Path.Combine(dir, soname);
    }

    /// <summary>True if the loaded driver exports <paramref name="symbol"/> (for entry points newer drivers added).</summary>
    public static bool DriverHas(string symbol) => _driver != 0 && NativeLibrary.TryGetExport(_driver, symbol, out _);

    /// <summary>True if the loaded NVRTC exports <paramref name="symbol"/> (nvrtcGetCUBIN needs 11.1+).</summary>
    public static bool NvrtcHas(string symbol) => _nvrtc != 0 && NativeLibrary.TryGetExport(_nvrtc, symbol, out _);

    private static nint Resolve(string name, System.Reflection.Assembly assembly, DllImportSearchPath? path) => name switch
    {
        DriverName => _driver,
        NvrtcName => _nvrtc,
        _ => 0,
    };
}
