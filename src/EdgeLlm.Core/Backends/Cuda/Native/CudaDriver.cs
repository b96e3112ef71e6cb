using System.Runtime.InteropServices;

namespace EdgeLlm.Backends.Cuda.Native;

/// <summary>
/// The CUDA driver API entry points EdgeLlm uses, as source-generated <c>[LibraryImport]</c>s (AOT-safe, no
/// runtime marshalling). Handles are <c>nint</c>, device pointers <c>ulong</c> (CUdeviceptr is 64-bit), every
/// function returns a CUresult that callers pass to <see cref="Check"/>. The library is bound through
/// <see cref="CudaLibraries"/>, which must have loaded it first.
/// </summary>
public static unsafe partial class CudaDriver
{
    private const string Lib = CudaLibraries.DriverName;

    public const int Success = 0;
    public const int ErrorNoDevice = 100;

    // CUdevice_attribute values (cuda.h).
    public const int AttrMaxThreadsPerBlock = 1;
    public const int AttrMaxSharedMemoryPerBlock = 8;
    public const int AttrMultiprocessorCount = 16;
    public const int AttrIntegrated = 18;
    public const int AttrCanMapHostMemory = 19;
    public const int AttrMemoryClockRate = 36;     // kHz
    public const int AttrGlobalMemoryBusWidth = 37; // bits
    public const int AttrUnifiedAddressing = 41;
    public const int AttrComputeCapabilityMajor = 75;
    public const int AttrComputeCapabilityMinor = 76;
    public const int AttrPageableMemoryAccess = 88;
    public const int AttrCanUseHostPointerForRegisteredMem = 91;
    public const int AttrHostRegisterSupported = 99;
    public const int AttrReadOnlyHostRegisterSupported = 113;

    // Flags.
    public const uint StreamNonBlocking = 0x1;          // CU_STREAM_NON_BLOCKING
    public const uint MemHostRegisterDeviceMap = 0x2;   // CU_MEMHOSTREGISTER_DEVICEMAP
    public const uint MemHostRegisterReadOnly = 0x8;    // CU_MEMHOSTREGISTER_READ_ONLY
    public const int StreamCaptureModeThreadLocal = 1;  // CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
    public const uint EventDefault = 0x0;

    [LibraryImport(Lib)] public static partial int cuInit(uint flags);
    [LibraryImport(Lib)] public static partial int cuDriverGetVersion(out int version);
    [LibraryImport(Lib)] public static partial int cuDeviceGetCount(out int count);
    [LibraryImport(Lib)] public static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(Lib)] public static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(Lib)] public static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(Lib, EntryPoint = "cuDeviceTotalMem_v2")] public static partial int cuDeviceTotalMem(out nuint bytes, int device);

    [LibraryImport(Lib)] public static partial int cuDevicePrimaryCtxRetain(out nint context, int device);
    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] public static partial int cuDevicePrimaryCtxRelease(int device);
    /// <summary>The pre-11.0 name (JetPack 4's CUDA 10.2 driver has no _v2).</summary>
    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease")] public static partial int cuDevicePrimaryCtxReleaseV1(int device);
    [LibraryImport(Lib, EntryPoint = "cuCtxCreate_v2")] public static partial int cuCtxCreate(out nint context, uint flags, int device);
    [LibraryImport(Lib)] public static partial int cuCtxSetCurrent(nint context);
    [LibraryImport(Lib)] public static partial int cuCtxSynchronize();

    [LibraryImport(Lib)] public static partial int cuModuleLoadData(out nint module, void* image);
    [LibraryImport(Lib)] public static partial int cuModuleUnload(nint module);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int cuModuleGetFunction(out nint function, nint module, string name);

    [LibraryImport(Lib, EntryPoint = "cuMemAlloc_v2")] public static partial int cuMemAlloc(out ulong dptr, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemFree_v2")] public static partial int cuMemFree(ulong dptr);
    [LibraryImport(Lib, EntryPoint = "cuMemGetInfo_v2")] public static partial int cuMemGetInfo(out nuint free, out nuint total);
    [LibraryImport(Lib, EntryPoint = "cuMemAllocHost_v2")] public static partial int cuMemAllocHost(out void* host, nuint bytes);
    [LibraryImport(Lib)] public static partial int cuMemFreeHost(void* host);
    [LibraryImport(Lib, EntryPoint = "cuMemHostRegister_v2")] public static partial int cuMemHostRegister(void* host, nuint bytes, uint flags);
    [LibraryImport(Lib)] public static partial int cuMemHostUnregister(void* host);
    [LibraryImport(Lib, EntryPoint = "cuMemHostGetDevicePointer_v2")] public static partial int cuMemHostGetDevicePointer(out ulong dptr, void* host, uint flags);

    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoD_v2")] public static partial int cuMemcpyHtoD(ulong dst, void* src, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoH_v2")] public static partial int cuMemcpyDtoH(void* dst, ulong src, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoD_v2")] public static partial int cuMemcpyDtoD(ulong dst, ulong src, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")] public static partial int cuMemcpyHtoDAsync(ulong dst, void* src, nuint bytes, nint stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoHAsync_v2")] public static partial int cuMemcpyDtoHAsync(void* dst, ulong src, nuint bytes, nint stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoDAsync_v2")] public static partial int cuMemcpyDtoDAsync(ulong dst, ulong src, nuint bytes, nint stream);
    [LibraryImport(Lib, EntryPoint = "cuMemsetD8Async")] public static partial int cuMemsetD8Async(ulong dst, byte value, nuint count, nint stream);

    [LibraryImport(Lib)]
    public static partial int cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemBytes, nint stream, void** kernelParams, void** extra);

    [LibraryImport(Lib)] public static partial int cuStreamCreate(out nint stream, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuStreamDestroy_v2")] public static partial int cuStreamDestroy(nint stream);
    [LibraryImport(Lib)] public static partial int cuStreamSynchronize(nint stream);
    [LibraryImport(Lib, EntryPoint = "cuStreamBeginCapture_v2")] public static partial int cuStreamBeginCapture(nint stream, int mode);
    [LibraryImport(Lib)] public static partial int cuStreamEndCapture(nint stream, out nint graph);
    [LibraryImport(Lib)] public static partial int cuGraphInstantiateWithFlags(out nint graphExec, nint graph, ulong flags);
    [LibraryImport(Lib)] public static partial int cuGraphLaunch(nint graphExec, nint stream);
    [LibraryImport(Lib)] public static partial int cuGraphExecDestroy(nint graphExec);
    [LibraryImport(Lib)] public static partial int cuGraphDestroy(nint graph);

    [LibraryImport(Lib)] public static partial int cuEventCreate(out nint evt, uint flags);
    [LibraryImport(Lib)] public static partial int cuEventRecord(nint evt, nint stream);
    [LibraryImport(Lib)] public static partial int cuEventSynchronize(nint evt);
    [LibraryImport(Lib)] public static partial int cuEventElapsedTime(out float milliseconds, nint start, nint end);
    [LibraryImport(Lib, EntryPoint = "cuEventDestroy_v2")] public static partial int cuEventDestroy(nint evt);

    [LibraryImport(Lib)] public static partial int cuGetErrorName(int error, out byte* name);

    /// <summary>Throws a <see cref="CudaException"/> naming <paramref name="call"/> unless <paramref name="status"/> is CUDA_SUCCESS.</summary>
    public static void Check(int status, string call)
    {
        if (status != Success) throw new CudaException(call, status, ErrorName(status));
    }

    /// <summary>The CUresult's symbolic name from the driver (cuGetErrorName), or from a built-in table.</summary>
    public static string ErrorName(int status)
    {
        try
        {
            if (cuGetErrorName(status, out byte* name) == Success && name != null)
                return Marshal.PtrToStringUTF8((nint)name) ?? KnownName(status);
        }
        catch (DllNotFoundException) { }
        catch (EntryPointNotFoundException) { }
        return KnownName(status);
    }

    /// <summary>Names of the CUresult codes EdgeLlm is likely to meet, for when the driver cannot be asked.</summary>
    public static string KnownName(int status) => status switch
    {
        0 => "CUDA_SUCCESS",
        1 => "CUDA_ERROR_INVALID_VALUE",
        2 => "CUDA_ERROR_OUT_OF_MEMORY",
        3 => "CUDA_ERROR_NOT_INITIALIZED",
        4 => "CUDA_ERROR_DEINITIALIZED",
        34 => "CUDA_ERROR_STUB_LIBRARY",
        35 => "CUDA_ERROR_INSUFFICIENT_DRIVER",
        100 => "CUDA_ERROR_NO_DEVICE",
        101 => "CUDA_ERROR_INVALID_DEVICE",
        200 => "CUDA_ERROR_INVALID_IMAGE",
        201 => "CUDA_ERROR_INVALID_CONTEXT",
        209 => "CUDA_ERROR_NO_BINARY_FOR_GPU",
        218 => "CUDA_ERROR_INVALID_PTX",
        222 => "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
        400 => "CUDA_ERROR_INVALID_HANDLE",
        500 => "CUDA_ERROR_NOT_FOUND",
        700 => "CUDA_ERROR_ILLEGAL_ADDRESS",
        701 => "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
        702 => "CUDA_ERROR_LAUNCH_TIMEOUT",
        712 => "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED",
        713 => "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED",
        719 => "CUDA_ERROR_LAUNCH_FAILED",
        801 => "CUDA_ERROR_NOT_SUPPORTED",
        803 => "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
        804 => "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
        900 => "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
        999 => "CUDA_ERROR_UNKNOWN",
        _ => $"CUresult {status}",
    };
}
