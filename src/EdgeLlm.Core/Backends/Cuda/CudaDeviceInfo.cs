using System.Globalization;
using System.Text;
using EdgeLlm.Backends.Cuda.Native;

namespace EdgeLlm.Backends.Cuda;

/// <summary>What the driver reports about one CUDA device (read once, before any context exists).</summary>
public sealed record CudaDeviceInfo(
    int Ordinal,
    string Name,
    int Major,
    int Minor,
    int Multiprocessors,
    bool Integrated,
    bool CanMapHostMemory,
    bool HostRegisterSupported,
    bool ReadOnlyHostRegister,
    long TotalMemory,
    int MemoryClockKHz,
    int MemoryBusWidthBits,
    int DriverVersion)
{
    /// <summary>Compute capability as NVRTC spells it: 10 * major + minor (sm_87 -> 87).</summary>
    public int Arch => Major * 10 + Minor;

    /// <summary>The driver's CUDA version, "12.2".</summary>
    public string DriverVersionText => FormatVersion(DriverVersion);

    /// <summary>Peak DRAM bandwidth from the memory clock and bus width (GB/s, double data rate); 0 if unknown.</summary>
    public double TheoreticalBandwidthGBs => 2.0 * MemoryClockKHz * 1e3 * (MemoryBusWidthBits / 8.0) / 1e9;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"cuda:{Ordinal} {Name} (sm_{Arch}, {Multiprocessors} SMs, {TotalMemory / (double)(1L << 30):F1} GiB{(Integrated ? ", integrated" : "")}, driver {DriverVersionText})");

    public static string FormatVersion(int v) => string.Create(CultureInfo.InvariantCulture, $"{v / 1000}.{v % 1000 / 10}");

    /// <summary>Queries device <paramref name="ordinal"/>; the driver must be loaded and cuInit done.</summary>
    public static unsafe CudaDeviceInfo Query(int ordinal)
    {
        CudaDriver.Check(CudaDriver.cuDeviceGet(out int dev, ordinal), "cuDeviceGet");
        byte* name = stackalloc byte[256];
        CudaDriver.Check(CudaDriver.cuDeviceGetName(name, 256, dev), "cuDeviceGetName");
        int len = 0;
        while (len < 256 && name[len] != 0) len++;
        CudaDriver.Check(CudaDriver.cuDeviceTotalMem(out nuint total, dev), "cuDeviceTotalMem_v2");
        CudaDriver.Check(CudaDriver.cuDriverGetVersion(out int driver), "cuDriverGetVersion");
        int Attr(int a)
        {
            CudaDriver.Check(CudaDriver.cuDeviceGetAttribute(out int v, a, dev), "cuDeviceGetAttribute");
            return v;
        }
        // Attributes newer than the driver read as errors; treat them as "not supported".
        int OptionalAttr(int a) => CudaDriver.cuDeviceGetAttribute(out int v, a, dev) == CudaDriver.Success ? v : 0;
        return new CudaDeviceInfo(
            ordinal,
            Encoding.UTF8.GetString(name, len),
            Attr(CudaDriver.AttrComputeCapabilityMajor),
            Attr(CudaDriver.AttrComputeCapabilityMinor),
            Attr(CudaDriver.AttrMultiprocessorCount),
            Attr(CudaDriver.AttrIntegrated) != 0,
            Attr(CudaDriver.AttrCanMapHostMemory) != 0,
            OptionalAttr(CudaDriver.AttrHostRegisterSupported) != 0,
            OptionalAttr(CudaDriver.AttrReadOnlyHostRegisterSupported) != 0,
            (long)total,
            OptionalAttr(CudaDriver.AttrMemoryClockRate),
            OptionalAttr(CudaDriver.AttrGlobalMemoryBusWidth),
            driver);
    }
}
