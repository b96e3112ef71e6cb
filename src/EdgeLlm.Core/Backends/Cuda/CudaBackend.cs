using EdgeLlm.Backends.Cuda.Native;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cuda;

/// <summary>
/// The CUDA implementation of <see cref="IBackend"/>: weights in device memory (uploaded once at load, or on an
/// integrated GPU the registered memory map itself), float32 activations and an fp16 KV cache in device memory,
/// one NVRTC-compiled kernel per operation on one stream.
///
/// <para>Deferred steps and CUDA graphs. Calls are not launched as they arrive: each is recorded as a
/// <see cref="CudaOp"/> and the recorded step is flushed at the next sync point (<see cref="CopyOut"/>, or the
/// <see cref="GetRows"/> that starts the next batch). Kernels read the step's first position and its token ids
/// from a small device buffer uploaded at flush, so every decode step (one token, the same buffers and weights)
/// launches exactly the same kernels with the same arguments. The first such step is captured into a CUDA
/// graph; later steps whose recorded ops match it (<see cref="CudaOp.SameLaunch"/>) replay the graph with one
/// <c>cuGraphLaunch</c> instead of hundreds of kernel launches. Anything else (prefill batches, a different
/// op sequence) is launched op by op. Set EDGELLM_CUDA_GRAPHS=0 to launch every step op by op.</para>
///
/// <para>The class is split by concern: this file opens the device and releases it; CudaBackend.Memory.cs
/// allocates buffers, uploads weights and copies to and from the host; CudaBackend.Ops.cs validates and records
/// the <see cref="IBackend"/> operations; CudaBackend.Launch.cs launches a recorded op's kernels (arguments in
/// the <see cref="IKernelArgs{TSelf}"/> structs); CudaBackend.Graphs.cs flushes a step (graph replay, capture,
/// or op by op); CudaBackend.Sampling.cs picks tokens on the device.</para>
/// </summary>
public sealed unsafe partial class CudaBackend : IBackend
{
    /// <summary>Warps (= weight rows) per block of the matrix-vector kernels.</summary>
    public const int MatVecWarps = 4;

    /// <summary>Largest head dimension the attention kernel holds (kernels/attention.cu MAX_HEAD_DIM).</summary>
    public const int MaxHeadDim = 256;

    /// <summary>Environment variable: "0" disables CUDA graphs.</summary>
    public const string GraphsVariable = CudaSettings.GraphsVariable;

    /// <summary>What the environment asked for (graphs, a synchronization after each launch).</summary>
    public CudaSettings Settings { get; internal set; } // (set by tests before a model loads: fused against unfused on one device)

    public CudaDeviceInfo Device { get; }
    public KernelTarget Target { get; }

    /// <summary>The prefill GEMM kernels batches use, chosen once from the compiled architecture (<see cref="CudaPrefill.PathFor"/>).</summary>
    public CudaGemmPath GemmPath { get; }

    /// <summary>True when the weights are read in place from the registered memory map (integrated GPU, no copy).</summary>
    public bool WeightsMapped { get; }

    /// <summary>Why the weights are (not) mapped, for the log.</summary>
    public string WeightPlacement { get; }

    /// <summary>Kernel files read from the disk cache / compiled by NVRTC when this backend started.</summary>
    public int KernelCacheHits => _kernels.CacheHits;
    public int KernelsCompiled => _kernels.Compiled;

    public string Name => $"{Device} {Target}, weights {(WeightsMapped ? "mapped" : "in device memory")}, graphs {(GraphsEnabled ? "on" : "off")}, prefill GEMM {GemmPath}{(Settings.SyncEachLaunch ? ", synchronized after each launch" : "")}{(Settings.Fuse ? "" : ", unfused")}{(Settings.Profile ? ", profiled" : "")}";

    [ThreadStatic] private static nint t_currentContext;

    private readonly int _deviceHandle;
    private readonly nint _context;
    private readonly nint _stream;
    private readonly CudaKernels _kernels;
    private bool _disposed;

    /// <summary>
    /// Opens device <paramref name="device"/> (its primary context), builds or loads the kernels for
    /// <paramref name="target"/>, and on an integrated GPU registers <paramref name="mapFile"/>'s memory map so
    /// the weights are used in place. Probe first with <see cref="CudaProbe"/>.
    /// </summary>
    public CudaBackend(CudaDeviceInfo device, KernelTarget target, KernelCache cache, GgufFile? mapFile = null)
    {
        Device = device;
        Target = target;
        CudaDriver.Check(CudaDriver.cuDeviceGet(out _deviceHandle, device.Ordinal), "cuDeviceGet");
        CudaDriver.Check(CudaDriver.cuDevicePrimaryCtxRetain(out _context, _deviceHandle), "cuDevicePrimaryCtxRetain");
        try
        {
            EnsureContext();
            CudaDriver.Check(CudaDriver.cuStreamCreate(out _stream, CudaDriver.StreamNonBlocking), "cuStreamCreate");
            _kernels = CudaKernels.Load(device, target, cache);
            GemmPath = CudaPrefill.PathFor(target.Arch);
            CudaDriver.Check(CudaDriver.cuEventCreate(out _stepUploaded, 0x2 /* CU_EVENT_DISABLE_TIMING */), "cuEventCreate");
            Settings = CudaSettings.FromEnvironment();
            GraphsEnabled = Settings.Graphs && CudaLibraries.DriverHas("cuGraphInstantiateWithFlags");
            if (Settings.Profile) _profile = new CudaProfile();

            WeightPlacement = "copied to device memory";
            if (mapFile is not null && device.Integrated)
            {
                if (!device.CanMapHostMemory) WeightPlacement = "copied: the integrated GPU cannot map host memory";
                else if (!device.HostRegisterSupported) WeightPlacement = "copied: the device does not support cuMemHostRegister";
                else if (TryRegister(mapFile, device, out _mappedDevice, out string why))
                {
                    _mappedHost = mapFile.BasePointer;
                    _mappedLength = mapFile.FileSize;
                    WeightsMapped = true;
                    WeightPlacement = "read in place from the registered memory map (integrated GPU, no copy)";
                }
                else WeightPlacement = "copied: registering the memory map failed: " + why;
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private static bool TryRegister(GgufFile file, CudaDeviceInfo device, out ulong devicePtr, out string why)
    {
        devicePtr = 0;
        long page = Environment.SystemPageSize;
        long length = (file.FileSize + page - 1) / page * page; // the mapping covers whole pages
        if (((nint)file.BasePointer & (nint)(page - 1)) != 0) { why = "the memory map is not page-aligned"; return false; }
        uint flags = CudaDriver.MemHostRegisterDeviceMap | (device.ReadOnlyHostRegister ? CudaDriver.MemHostRegisterReadOnly : 0u);
        int rc = CudaDriver.cuMemHostRegister(file.BasePointer, (nuint)length, flags);
        if (rc != CudaDriver.Success)
        {
            why = $"cuMemHostRegister_v2 returned {CudaDriver.ErrorName(rc)}";
            return false;
        }
        rc = CudaDriver.cuMemHostGetDevicePointer(out devicePtr, file.BasePointer, 0);
        if (rc != CudaDriver.Success)
        {
            CudaDriver.cuMemHostUnregister(file.BasePointer);
            why = $"cuMemHostGetDevicePointer_v2 returned {CudaDriver.ErrorName(rc)}";
            return false;
        }
        why = "";
        return true;
    }

    /// <summary>Free and total device memory, in bytes.</summary>
    public (long Free, long Total) MemoryInfo()
    {
        EnsureContext();
        CudaDriver.Check(CudaDriver.cuMemGetInfo(out nuint free, out nuint total), "cuMemGetInfo_v2");
        return ((long)free, (long)total);
    }

    private void EnsureContext()
    {
        if (t_currentContext == _context) return;
        CudaDriver.Check(CudaDriver.cuCtxSetCurrent(_context), "cuCtxSetCurrent");
        t_currentContext = _context;
    }

    private void Ready()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_prepared) throw new InvalidOperationException("CudaBackend.Prepare must be called before running operations");
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_context == 0) return;
        // Errors are ignored here: a failed device leaves nothing better to do than release what we can.
        CudaDriver.cuCtxSetCurrent(_context);
        t_currentContext = _context;
        if (_stream != 0) CudaDriver.cuStreamSynchronize(_stream);
        DestroyGraphs();
        DestroyProfileEvents();
        foreach (var b in _buffers) if (b.Ptr != 0) CudaDriver.cuMemFree(b.Ptr);
        _buffers.Clear();
        foreach (var w in _weights) if (w.Owned && w.Ptr != 0) CudaDriver.cuMemFree(w.Ptr);
        _weights.Clear();
        FreeScratch();
        FreeUploadStaging();
        if (_hostOut != null) CudaDriver.cuMemFreeHost(_hostOut);
        _hostOut = null;
        if (_stepUploaded != 0) CudaDriver.cuEventDestroy(_stepUploaded);
        FreePickSlots();
        _kernels?.Dispose();
        if (_stream != 0) CudaDriver.cuStreamDestroy(_stream);
        if (WeightsMapped) CudaDriver.cuMemHostUnregister(_mappedHost);
        CudaDriver.cuCtxSetCurrent(0);
        t_currentContext = 0;
        if (CudaLibraries.DriverHas("cuDevicePrimaryCtxRelease_v2")) CudaDriver.cuDevicePrimaryCtxRelease(_deviceHandle);
        else CudaDriver.cuDevicePrimaryCtxReleaseV1(_deviceHandle);
    }
}
