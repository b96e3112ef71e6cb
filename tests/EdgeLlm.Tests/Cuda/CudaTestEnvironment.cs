using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Backends.Cuda.Native;

namespace EdgeLlm.Tests.Cuda;

/// <summary>
/// What the CUDA tests can use on this machine. CI never has a GPU, but .ci/run installs NVRTC (Debian's
/// libnvrtc11.2) and unpacks Debian's libcuda1 into a scratch folder; it sets EDGELLM_REQUIRE_CUDA_TOOLS=1, and
/// then a missing tool is a failure, not a skip. Elsewhere (a developer machine without them) those tests skip.
/// </summary>
internal static class CudaTestEnvironment
{
    /// <summary>Set by .ci/run: NVRTC and the unpacked libcuda must be present (CI=true counts too).</summary>
    public static bool ToolsRequired =>
        Environment.GetEnvironmentVariable("EDGELLM_REQUIRE_CUDA_TOOLS") == "1"
        || string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    private static readonly Lazy<bool> Nvrtc = new(CudaLibraries.TryLoadNvrtc);

    public static bool NvrtcAvailable => Nvrtc.Value;

    /// <summary>
    /// A real NVIDIA driver on the loader path. Tests of the "no driver" path skip then; the unpacked Debian
    /// libcuda tests too (it would not match the machine's kernel module).
    /// </summary>
    public static bool SystemHasDriver { get; } = ProbeSystemDriver();

    private static bool ProbeSystemDriver()
    {
        if (!NativeLibrary.TryLoad("libcuda.so.1", out nint h)) return false;
        NativeLibrary.Free(h);
        return true;
    }

    /// <summary>Folder holding Debian's libcuda.so.1 unpacked by .ci/run ($EDGELLM_TEST_LIBCUDA_DIR overrides).</summary>
    public static string LibcudaDir =>
        Environment.GetEnvironmentVariable("EDGELLM_TEST_LIBCUDA_DIR") is { Length: > 0 } d
            ? d
            : Path.Combine(TestPaths.RepoRoot, ".ci", "cache", "libcuda1", "usr", "lib", "x86_64-linux-gnu", "nvidia", "current");

    public static bool LibcudaUnpacked => File.Exists(Path.Combine(LibcudaDir, "libcuda.so.1"));

    /// <summary>A usable CUDA device (for the tests that compare GPU and CPU results); probed once.</summary>
    public static bool DeviceAvailable => Device.Value is not null;

    public static readonly Lazy<(CudaDeviceInfo Info, KernelTarget Target)?> Device = new(() =>
    {
        if (!SystemHasDriver) return null;
        if (!CudaProbe.TryGetDevice(0, out var dev, out _)) return null;
        if (!CudaProbe.TryGetTarget(dev!, out var target, out _)) return null;
        return (dev!, target);
    });

    public static void RequireNvrtc() =>
        Assert.True(NvrtcAvailable, $"NVRTC did not load (tried {string.Join(", ", CudaLibraries.NvrtcSearchOrder().Take(7))}): "
            + "CI must install Debian's libnvrtc11.2 (.ci/run does)");

    public static void RequireLibcuda() =>
        Assert.True(LibcudaUnpacked, $"{LibcudaDir}/libcuda.so.1 is missing: .ci/run unpacks Debian's libcuda1 there (apt-get download + dpkg -x)");
}

/// <summary>A fact that needs NVRTC: skipped without it, unless CI requires it (then it runs and fails).</summary>
public sealed class NvrtcFactAttribute : FactAttribute
{
    public NvrtcFactAttribute()
    {
        if (!CudaTestEnvironment.NvrtcAvailable && !CudaTestEnvironment.ToolsRequired)
            Skip = "NVRTC is not installed (apt-get install libnvrtc11.2 from bookworm non-free; .ci/run does)";
    }
}

/// <summary>A theory that needs NVRTC (see <see cref="NvrtcFactAttribute"/>).</summary>
public sealed class NvrtcTheoryAttribute : TheoryAttribute
{
    public NvrtcTheoryAttribute()
    {
        if (!CudaTestEnvironment.NvrtcAvailable && !CudaTestEnvironment.ToolsRequired)
            Skip = "NVRTC is not installed (apt-get install libnvrtc11.2 from bookworm non-free; .ci/run does)";
    }
}

/// <summary>A fact for the machine without an NVIDIA driver: skipped where a real driver is installed.</summary>
public sealed class NoDriverFactAttribute : FactAttribute
{
    public NoDriverFactAttribute()
    {
        if (CudaTestEnvironment.SystemHasDriver) Skip = "this machine has an NVIDIA driver; the no-driver path cannot be tested here";
    }
}

/// <summary>
/// A fact that runs with Debian's libcuda unpacked (driver present, no device): skipped without it, unless CI
/// requires it; skipped where a real driver is installed.
/// </summary>
public sealed class UnpackedLibcudaFactAttribute : FactAttribute
{
    public UnpackedLibcudaFactAttribute()
    {
        if (CudaTestEnvironment.SystemHasDriver) Skip = "this machine has an NVIDIA driver; the driver-without-device path cannot be tested here";
        else if (!CudaTestEnvironment.LibcudaUnpacked && !CudaTestEnvironment.ToolsRequired)
            Skip = "Debian's libcuda1 is not unpacked (.ci/run does it: apt-get download libcuda1 + dpkg -x into .ci/cache/libcuda1)";
    }
}

/// <summary>A fact that needs a working CUDA device (driver, GPU, NVRTC): skipped everywhere else, CI included.</summary>
public sealed class CudaDeviceFactAttribute : FactAttribute
{
    public CudaDeviceFactAttribute()
    {
        if (!CudaTestEnvironment.DeviceAvailable) Skip = "no usable CUDA device here";
    }
}

/// <summary>A theory that needs a working CUDA device.</summary>
public sealed class CudaDeviceTheoryAttribute : TheoryAttribute
{
    public CudaDeviceTheoryAttribute()
    {
        if (!CudaTestEnvironment.DeviceAvailable) Skip = "no usable CUDA device here";
    }
}
