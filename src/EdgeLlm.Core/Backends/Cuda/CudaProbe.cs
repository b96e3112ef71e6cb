using EdgeLlm.Backends.Cuda.Native;

namespace EdgeLlm.Backends.Cuda;

/// <summary>How the kernels are built for a device: the sm_XX they target, cubin or PTX, and the NVRTC that builds them.</summary>
public readonly record struct KernelTarget(int Arch, bool Cubin, int NvrtcMajor, int NvrtcMinor)
{
    public override string ToString() => $"{(Cubin ? "sm" : "compute")}_{Arch} {(Cubin ? "cubin" : "PTX")} by NVRTC {NvrtcMajor}.{NvrtcMinor}";
}

/// <summary>
/// Decides, step by step, whether CUDA can run here, and if not says why in words fit for one log line:
/// the driver library, cuInit, the device, its compute capability, NVRTC and its architectures.
/// </summary>
public static class CudaProbe
{
    /// <summary>The oldest compute capability the kernels support: 6.1 (dp4a, Pascal; Jetson TX2 is 6.2).</summary>
    public const int MinArch = 61;

    /// <summary>Loads the driver, runs cuInit and queries device <paramref name="ordinal"/>.</summary>
    public static bool TryGetDevice(int ordinal, out CudaDeviceInfo? device, out string reason)
    {
        device = null;
        if (!CudaLibraries.TryLoadDriver())
        {
            reason = "no CUDA driver (libcuda.so.1 not found)";
            return false;
        }
        int version = 0;
        try
        {
            CudaDriver.cuDriverGetVersion(out version);
            int rc = CudaDriver.cuInit(0);
            if (rc != CudaDriver.Success)
            {
                reason = $"CUDA driver {CudaDeviceInfo.FormatVersion(version)} found ({CudaLibraries.DriverPath}) but cuInit returned {rc} ({CudaDriver.ErrorName(rc)})"
                    + (rc == CudaDriver.ErrorNoDevice ? ": no CUDA device" : "");
                return false;
            }
            CudaDriver.Check(CudaDriver.cuDeviceGetCount(out int count), "cuDeviceGetCount");
            if (count == 0)
            {
                reason = $"CUDA driver {CudaDeviceInfo.FormatVersion(version)} reports no CUDA device";
                return false;
            }
            if (ordinal < 0 || ordinal >= count)
            {
                reason = $"cuda:{ordinal} does not exist (this machine has {count} CUDA device{(count == 1 ? "" : "s")}: cuda:0{(count > 1 ? $"..cuda:{count - 1}" : "")})";
                return false;
            }
            device = CudaDeviceInfo.Query(ordinal);
        }
        catch (Exception e) when (e is CudaException or EntryPointNotFoundException)
        {
            reason = $"CUDA driver {CudaDeviceInfo.FormatVersion(version)} failed: {e.Message}";
            return false;
        }
        if (device.Arch < MinArch)
        {
            reason = $"{device.Name} has compute capability {device.Major}.{device.Minor}; the CUDA kernels need {MinArch / 10}.{MinArch % 10} or newer (dp4a)";
            device = null;
            return false;
        }
        reason = device.ToString();
        return true;
    }

    /// <summary>
    /// Loads NVRTC and picks the build: a cubin for the device's own sm_XX when NVRTC knows it; otherwise PTX for
    /// the newest architecture NVRTC knows below it (the driver JIT-compiles that PTX for the device).
    /// </summary>
    public static bool TryGetTarget(CudaDeviceInfo device, out KernelTarget target, out string reason)
    {
        target = default;
        if (!CudaLibraries.TryLoadNvrtc())
        {
            reason = $"no NVRTC (none of {string.Join(", ", CudaLibraries.NvrtcSonames)} found; install the CUDA runtime compiler, e.g. libnvrtc11.2 or cuda-nvrtc-12-x)";
            return false;
        }
        try
        {
            var (major, minor) = KernelCompiler.Version();
            int[]? archs = KernelCompiler.SupportedArchs();
            bool cubinOk = KernelCompiler.CanEmitCubin;
            if (archs is null)
            {
                // NVRTC older than 11.2 cannot list its architectures: trust it with the device's own.
                target = new KernelTarget(device.Arch, cubinOk, major, minor);
            }
            else if (Array.IndexOf(archs, device.Arch) >= 0)
            {
                target = new KernelTarget(device.Arch, cubinOk, major, minor);
            }
            else
            {
                int best = 0;
                foreach (int a in archs) if (a <= device.Arch && a >= MinArch && a > best) best = a;
                if (best == 0)
                {
                    reason = $"NVRTC {major}.{minor} ({CudaLibraries.NvrtcPath}) cannot compile for sm_{device.Arch} or any architecture from sm_{MinArch} up to it";
                    return false;
                }
                target = new KernelTarget(best, false, major, minor);
            }
        }
        catch (Exception e) when (e is CudaException or EntryPointNotFoundException)
        {
            reason = $"NVRTC ({CudaLibraries.NvrtcPath}) failed: {e.Message}";
            return false;
        }
        reason = target.ToString();
        return true;
    }
}
