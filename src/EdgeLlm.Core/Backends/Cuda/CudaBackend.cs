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
/// </summary>
public sealed unsafe class CudaBackend : IBackend
{
    /// <summary>Warps (= weight rows) per block of the matrix-vector kernels.</summary>
    public const int MatVecWarps = 4;

    /// <summary>Largest head dimension the attention kernel holds (kernels/attention.cu MAX_HEAD_DIM).</summary>
    public const int MaxHeadDim = 256;

    /// <summary>Environment variable: "0" disables CUDA graphs.</summary>
    public const string GraphsVariable = "EDGELLM_CUDA_GRAPHS";

    private const int MaxGraphs = 4;
    private const int ElementwiseThreads = 256;
    private const int AttentionThreads = 128;
    private const int SampleThreads = 1024;

    public CudaDeviceInfo Device { get; }
    public KernelTarget Target { get; }

    /// <summary>True when the weights are read in place from the registered memory map (integrated GPU, no copy).</summary>
    public bool WeightsMapped { get; }

    /// <summary>Why the weights are (not) mapped, for the log.</summary>
    public string WeightPlacement { get; }

    public bool GraphsEnabled { get; private set; }

    /// <summary>Steps captured into a new graph / steps replayed from one / steps launched op by op.</summary>
    public int GraphCaptures { get; private set; }
    public int GraphReplays { get; private set; }
    public int EagerSteps { get; private set; }

    /// <summary>Bytes of weights copied to the device.</summary>
    public long UploadedWeightBytes { get; private set; }

    /// <summary>Kernel files read from the disk cache / compiled by NVRTC when this backend started.</summary>
    public int KernelCacheHits => _kernels.CacheHits;
    public int KernelsCompiled => _kernels.Compiled;

    public string Name => $"{Device} {Target}, weights {(WeightsMapped ? "mapped" : "in device memory")}, graphs {(GraphsEnabled ? "on" : "off")}";

    [ThreadStatic] private static nint t_currentContext;

    private readonly int _deviceHandle;
    private readonly nint _context;
    private readonly nint _stream;
    private readonly CudaKernels _kernels;
    private readonly List<CudaBuffer> _buffers = new();
    private readonly List<CudaWeight> _weights = new();
    private readonly List<ulong> _scratch = new();
    private readonly byte* _mappedHost;
    private readonly long _mappedLength;
    private readonly ulong _mappedDevice;
    private bool _needContextSync;
    private bool _disposed;

    // Step state.
    private BackendLimits _limits;
    private bool _prepared;
    private ulong _qx, _dx, _sx;      // q8 activations: int8 [MaxBatch * MaxRow], per-32 scale and scaled sum
    private ulong _step;              // int[1 + MaxBatch]: first position, then the token ids
    private int* _hostStep;           // pinned staging of _step
    private ulong _misc;              // int token out; float uniform in
    private int* _hostMisc;           // pinned staging of _misc
    private nint _stepUploaded;       // event after the last step upload (the staging may be reused after it)
    private bool _stepUploadPending;
    private float* _hostOut;          // pinned staging for CopyOut
    private long _hostOutFloats;
    private readonly List<(RopeSpec Spec, ulong Table)> _ropeTables = new(); // one per distinct spec (Gemma 3: local and global)

    private CudaOp[] _ops = new CudaOp[256];
    private int _opCount;
    private int _stepIds;
    private CudaBuffer? _qxSource;    // whose activations _qx holds during ExecuteAll
    private int _qxTokens;
    private long _qxK;

    private readonly Graph?[] _graphs = new Graph?[MaxGraphs];
    private long _graphClock;

    private sealed class Graph(CudaOp[] ops, nint graph, nint exec)
    {
        public readonly CudaOp[] Ops = ops;
        public readonly nint Handle = graph;
        public readonly nint Exec = exec;
        public long LastUse;
    }

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
            CudaDriver.Check(CudaDriver.cuEventCreate(out _stepUploaded, 0x2 /* CU_EVENT_DISABLE_TIMING */), "cuEventCreate");
            GraphsEnabled = Environment.GetEnvironmentVariable(GraphsVariable) != "0" && CudaLibraries.DriverHas("cuGraphInstantiateWithFlags");

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

    public void Prepare(BackendLimits limits)
    {
        if (limits.MaxBatch < 1 || limits.MaxRowLength < 1 || limits.ContextSize < 1 || limits.HeadDim < 2 || limits.RopeDims < 2)
            throw new ArgumentOutOfRangeException(nameof(limits), $"invalid backend limits {limits}");
        if (limits.HeadDim > MaxHeadDim)
            throw new EdgeLlmException($"cuda: head dimension {limits.HeadDim} exceeds the {MaxHeadDim} the attention kernel holds");
        EnsureContext();
        FreeScratch();
        _limits = limits;
        long rowElems = (long)limits.MaxBatch * limits.MaxRowLength;
        _qx = Scratch(rowElems);
        _dx = Scratch((rowElems / 32 + 1) * sizeof(float));
        _sx = Scratch((rowElems / 32 + 1) * sizeof(float));
        _step = Scratch((1L + limits.MaxBatch) * sizeof(int));
        _misc = Scratch(16);
        void* p;
        CudaDriver.Check(CudaDriver.cuMemAllocHost(out p, (nuint)((1 + limits.MaxBatch) * sizeof(int))), "cuMemAllocHost_v2");
        _hostStep = (int*)p;
        CudaDriver.Check(CudaDriver.cuMemAllocHost(out p, 16), "cuMemAllocHost_v2");
        _hostMisc = (int*)p;
        _prepared = true;
    }

    public BackendBuffer Allocate(long length) => NewBuffer(length, sizeof(float));

    /// <summary>The KV cache is stored in fp16: half the memory and half the attention bandwidth.</summary>
    public BackendBuffer AllocateCache(long length) => NewBuffer(length, 2);

    /// <summary>The only cache type the CUDA kernels read (f32 and q8_0 caches are refused by <see cref="IBackend.AllocateCache(long, KvCacheType)"/>).</summary>
    public KvCacheType DefaultCacheType => KvCacheType.F16;

    private CudaBuffer NewBuffer(long length, int elementBytes)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length));
        EnsureContext();
        long bytes = Math.Max(1, length) * elementBytes;
        CudaDriver.Check(CudaDriver.cuMemAlloc(out ulong ptr, (nuint)bytes), "cuMemAlloc_v2");
        var b = new CudaBuffer(length, ptr, elementBytes);
        _buffers.Add(b);
        CudaDriver.Check(CudaDriver.cuMemsetD8Async(ptr, 0, (nuint)bytes, _stream), "cuMemsetD8Async");
        return b;
    }

    public BackendWeight LoadWeight(TensorView tensor)
    {
        if (!CudaKernels.Supports(tensor.Type))
            throw new EdgeLlmException($"cuda: tensor {tensor.Name} has type {GgmlTypes.Name(tensor.Type)}, which the CUDA kernels do not read");
        EnsureContext();
        long rowBytes = tensor.RowBytes;
        if (WeightsMapped && tensor.Data >= _mappedHost && tensor.Data + tensor.ByteLength <= _mappedHost + _mappedLength)
        {
            ulong ptr = _mappedDevice + (ulong)(tensor.Data - _mappedHost);
            var mapped = new CudaWeight(tensor.Name, tensor.Type, tensor.Ne0, tensor.Rows, ptr, rowBytes, owned: false);
            _weights.Add(mapped);
            return mapped;
        }
        CudaDriver.Check(CudaDriver.cuMemAlloc(out ulong dptr, (nuint)Math.Max(1, tensor.ByteLength)), "cuMemAlloc_v2");
        var w = new CudaWeight(tensor.Name, tensor.Type, tensor.Ne0, tensor.Rows, dptr, rowBytes, owned: true);
        _weights.Add(w);
        // Synchronous copy from the (pageable) memory map, in 256 MiB pieces. The DMA may still be in flight on
        // the legacy stream when this returns, so the first flush synchronises the whole context once.
        const long Piece = 256L << 20;
        for (long done = 0; done < tensor.ByteLength; done += Piece)
        {
            long n = Math.Min(Piece, tensor.ByteLength - done);
            CudaDriver.Check(CudaDriver.cuMemcpyHtoD(dptr + (ulong)done, tensor.Data + done, (nuint)n), "cuMemcpyHtoD_v2");
        }
        UploadedWeightBytes += tensor.ByteLength;
        _needContextSync = true;
        return w;
    }

    // ---------------------------------------------------------------- recorded operations

    public void GetRows(BackendWeight table, ReadOnlySpan<int> ids, BackendBuffer dst)
    {
        Ready();
        var w = Wt(table);
        var d = Buf(dst, "get_rows dst");
        if (ids.Length == 0) return;
        if (ids.Length > _limits.MaxBatch) throw new ArgumentException($"get_rows: {ids.Length} ids exceed the prepared batch of {_limits.MaxBatch}");
        Need(d, (long)ids.Length * w.Ne0, "get_rows dst");
        foreach (int id in ids)
            if ((uint)id >= (ulong)w.Rows) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside {w.Name} (0..{w.Rows - 1})");
        if (_opCount > 0) Flush(); // a new batch: launch the previous one, its ids are in the staging buffer
        if (_stepUploadPending)
        {
            CudaDriver.Check(CudaDriver.cuEventSynchronize(_stepUploaded), "cuEventSynchronize");
            _stepUploadPending = false;
        }
        for (int i = 0; i < ids.Length; i++) _hostStep[1 + i] = ids[i];
        _stepIds = ids.Length;
        Record(new CudaOp { Kind = CudaOpKind.GetRows, W = w, D = d, L0 = ids.Length });
    }

    public void RmsNorm(BackendBuffer x, BackendWeight weight, BackendBuffer dst, int nTokens, int dim, float eps)
    {
        Ready();
        var w = Wt(weight);
        if (w.Ne0 != dim || w.Type != GgmlType.F32) throw new ArgumentException($"rms_norm weight {w.Name} is not F32 [{dim}]");
        var a = Buf(x, "rms_norm x");
        var d = Buf(dst, "rms_norm dst");
        Need(a, (long)nTokens * dim, "rms_norm x");
        Need(d, (long)nTokens * dim, "rms_norm dst");
        Record(new CudaOp { Kind = CudaOpKind.RmsNorm, A = a, W = w, D = d, I0 = nTokens, I1 = dim, F0 = eps });
    }

    public void MatMul(BackendWeight weight, BackendBuffer x, BackendBuffer dst, int nTokens)
    {
        Ready();
        var w = Wt(weight);
        var a = Buf(x, "matmul x");
        var d = Buf(dst, "matmul dst");
        if (nTokens < 1 || nTokens > _limits.MaxBatch) throw new ArgumentOutOfRangeException(nameof(nTokens), $"matmul of {nTokens} tokens is outside the prepared batch of {_limits.MaxBatch}");
        if (w.Ne0 > _limits.MaxRowLength) throw new ArgumentException($"{w.Name} rows of {w.Ne0} exceed the prepared row of {_limits.MaxRowLength}");
        if (w.Rows > int.MaxValue || w.Ne0 > int.MaxValue) throw new ArgumentException($"{w.Name} is too large for the CUDA kernels");
        Need(a, nTokens * w.Ne0, "matmul x");
        Need(d, nTokens * w.Rows, "matmul dst");
        Record(new CudaOp { Kind = CudaOpKind.MatMul, W = w, A = a, D = d, I0 = nTokens });
    }

    public void Rope(BackendBuffer x, int nTokens, int nHeads, int startPos, RopeSpec rope)
    {
        Ready();
        var a = Buf(x, "rope x");
        Need(a, (long)nTokens * nHeads * rope.HeadDim, "rope x");
        Record(new CudaOp { Kind = CudaOpKind.Rope, A = a, Rope = rope, Table = RopeTable(rope), I0 = nTokens, I1 = nHeads, StartPos = startPos });
    }

    public void StoreKv(KvCache cache, int layer, int startPos, int nTokens, BackendBuffer k, BackendBuffer v)
    {
        Ready();
        if (startPos < 0 || startPos + nTokens > cache.Size) throw new ArgumentOutOfRangeException(nameof(startPos), $"positions {startPos}..{startPos + nTokens - 1} are outside the kv cache of {cache.Size}");
        var kb = Buf(k, "store_kv k");
        var vb = Buf(v, "store_kv v");
        var kc = CacheBuf(cache.Keys(layer));
        var vc = CacheBuf(cache.Values(layer));
        Need(kb, (long)nTokens * cache.KvDim, "store_kv k");
        Need(vb, (long)nTokens * cache.KvDim, "store_kv v");
        Record(new CudaOp { Kind = CudaOpKind.StoreKv, A = kb, B = vb, C = kc, D = vc, I0 = nTokens, I1 = cache.KvDim, StartPos = startPos });
    }

    public void Attention(BackendBuffer q, KvCache cache, int layer, int startPos, int nTokens, int nHeads, int headDim, BackendBuffer dst, AttentionOptions options)
    {
        Ready();
        if (!float.IsFinite(options.Scale)) throw new ArgumentOutOfRangeException(nameof(options), $"attention scale {options.Scale} is not finite");
        if (!(options.Softcap >= 0) || !float.IsFinite(options.Softcap)) throw new ArgumentOutOfRangeException(nameof(options), $"attention softcap {options.Softcap} must be 0 (none) or positive");
        if (options.Window < 0) throw new ArgumentOutOfRangeException(nameof(options), $"attention window {options.Window} is negative");
        if (startPos + nTokens > _limits.ContextSize) throw new ArgumentOutOfRangeException(nameof(startPos), $"attention up to position {startPos + nTokens} exceeds the prepared context of {_limits.ContextSize}");
        if (headDim > MaxHeadDim) throw new ArgumentException($"head dimension {headDim} exceeds {MaxHeadDim}");
        int kvHeads = cache.KvDim / headDim;
        if (kvHeads < 1 || nHeads % kvHeads != 0) throw new ArgumentException($"{nHeads} query heads do not group over {kvHeads} kv heads");
        var qb = Buf(q, "attention q");
        var d = Buf(dst, "attention dst");
        Need(qb, (long)nTokens * nHeads * headDim, "attention q");
        Need(d, (long)nTokens * nHeads * headDim, "attention dst");
        Record(new CudaOp
        {
            Kind = CudaOpKind.Attention, A = qb, B = CacheBuf(cache.Keys(layer)), C = CacheBuf(cache.Values(layer)), D = d,
            I0 = nTokens, I1 = nHeads, I2 = headDim, I3 = cache.KvDim, I4 = options.Window, F0 = options.Scale, F1 = options.Softcap,
            StartPos = startPos,
        });
    }

    public void Glu(BackendBuffer gate, BackendBuffer up, long count, GluKind kind)
    {
        Ready();
        var op = kind switch
        {
            GluKind.Silu => CudaOpKind.SwiGlu,
            GluKind.GeluTanh => CudaOpKind.GeGlu,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), $"unknown gate activation {kind}"),
        };
        var g = Buf(gate, "glu gate");
        var u = Buf(up, "glu up");
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count));
        Need(g, count, "glu gate");
        Need(u, count, "glu up");
        Record(new CudaOp { Kind = op, A = g, B = u, L0 = count });
    }

    public void AddBias(BackendBuffer x, BackendWeight bias, int nTokens)
    {
        Ready();
        var w = Wt(bias);
        if (w.Type != GgmlType.F32 || w.Rows != 1 || w.Ne0 < 1 || w.Ne0 > int.MaxValue) throw new ArgumentException($"add_bias: {w.Name} is not an F32 vector");
        if (nTokens < 0) throw new ArgumentOutOfRangeException(nameof(nTokens));
        var a = Buf(x, "add_bias x");
        Need(a, nTokens * w.Ne0, "add_bias x");
        Record(new CudaOp { Kind = CudaOpKind.AddBias, A = a, W = w, L0 = nTokens * w.Ne0 });
    }

    public void Scale(BackendBuffer x, long count, float factor)
    {
        Ready();
        var a = Buf(x, "scale x");
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count));
        Need(a, count, "scale x");
        Record(new CudaOp { Kind = CudaOpKind.Scale, A = a, L0 = count, F0 = factor });
    }

    public void Softcap(BackendBuffer x, long count, float cap)
    {
        Ready();
        if (!(cap > 0) || !float.IsFinite(cap)) throw new ArgumentOutOfRangeException(nameof(cap), $"softcap {cap} must be positive");
        var a = Buf(x, "softcap x");
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count));
        Need(a, count, "softcap x");
        Record(new CudaOp { Kind = CudaOpKind.Softcap, A = a, L0 = count, F0 = cap });
    }

    public void Add(BackendBuffer x, BackendBuffer y, long count)
    {
        Ready();
        var a = Buf(x, "add x");
        var b = Buf(y, "add y");
        Need(a, count, "add x");
        Need(b, count, "add y");
        Record(new CudaOp { Kind = CudaOpKind.Add, A = a, B = b, L0 = count });
    }

    public void Copy(BackendBuffer src, long srcOffset, BackendBuffer dst, long dstOffset, long count)
    {
        Ready();
        var s = Buf(src, "copy src");
        var d = Buf(dst, "copy dst");
        if (srcOffset < 0 || dstOffset < 0 || count < 0) throw new ArgumentOutOfRangeException(nameof(count), "copy offsets and count must not be negative");
        Need(s, srcOffset + count, "copy src");
        Need(d, dstOffset + count, "copy dst");
        Record(new CudaOp { Kind = CudaOpKind.Copy, A = s, D = d, L0 = srcOffset, L1 = dstOffset, L2 = count });
    }

    public void CopyOut(BackendBuffer src, long srcOffset, Span<float> dst)
    {
        Ready();
        var s = Buf(src, "copy_out src");
        Need(s, srcOffset + dst.Length, "copy_out src");
        Flush();
        if (dst.Length > _hostOutFloats)
        {
            if (_hostOut != null) CudaDriver.cuMemFreeHost(_hostOut);
            _hostOut = null;
            _hostOutFloats = 0;
            CudaDriver.Check(CudaDriver.cuMemAllocHost(out void* p, (nuint)((long)dst.Length * sizeof(float))), "cuMemAllocHost_v2");
            _hostOut = (float*)p;
            _hostOutFloats = dst.Length;
        }
        if (dst.Length > 0)
            CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync(_hostOut, s.Ptr + (ulong)(srcOffset * sizeof(float)), (nuint)((long)dst.Length * sizeof(float)), _stream), "cuMemcpyDtoHAsync_v2");
        CudaDriver.Check(CudaDriver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
        new ReadOnlySpan<float>(_hostOut, dst.Length).CopyTo(dst);
    }

    /// <summary>Copies host floats into dst[dstOffset...] (after the pending step; waits until done).</summary>
    public void CopyIn(ReadOnlySpan<float> src, BackendBuffer dst, long dstOffset)
    {
        Ready();
        var d = Buf(dst, "copy_in dst");
        Need(d, dstOffset + src.Length, "copy_in dst");
        Flush();
        CudaDriver.Check(CudaDriver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
        fixed (float* p = src)
            CudaDriver.Check(CudaDriver.cuMemcpyHtoD(d.Ptr + (ulong)(dstOffset * sizeof(float)), p, (nuint)((long)src.Length * sizeof(float))), "cuMemcpyHtoD_v2");
        _needContextSync = true;
    }

    // ---------------------------------------------------------------- token selection on the device

    /// <summary>The id of the largest of <paramref name="count"/> logits at src[offset] (ties: lowest id); only the id crosses the bus.</summary>
    public int ArgMax(BackendBuffer logits, long offset, int count)
    {
        Ready();
        var s = Buf(logits, "argmax logits");
        Need(s, offset + count, "argmax logits");
        Flush();
        ulong src = s.Ptr + (ulong)(offset * sizeof(float));
        ulong outp = _misc;
        void** a = stackalloc void*[3];
        a[0] = &src;
        a[1] = &count;
        a[2] = &outp;
        Launch(_kernels.ArgMax, 1, 1, SampleThreads, a, "cuLaunchKernel(argmax_f32)");
        return ReadToken();
    }

    /// <summary>
    /// Temperature, top-k and top-p sampling of <paramref name="count"/> logits at src[offset] on the device, with
    /// <paramref name="uniform"/> in [0, 1) as the draw (temperature 0 = argmax). Returns the chosen id.
    /// </summary>
    public int Sample(BackendBuffer logits, long offset, int count, float temperature, int topK, float topP, float uniform)
    {
        Ready();
        var s = Buf(logits, "sample logits");
        Need(s, offset + count, "sample logits");
        Flush();
        ((float*)_hostMisc)[1] = uniform;
        CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync(_misc + 4, _hostMisc + 1, 4, _stream), "cuMemcpyHtoDAsync_v2");
        ulong src = s.Ptr + (ulong)(offset * sizeof(float));
        ulong u = _misc + 4, outp = _misc;
        void** a = stackalloc void*[7];
        a[0] = &src;
        a[1] = &count;
        a[2] = &temperature;
        a[3] = &topK;
        a[4] = &topP;
        a[5] = &u;
        a[6] = &outp;
        Launch(_kernels.Sample, 1, 1, SampleThreads, a, "cuLaunchKernel(sample_f32)");
        return ReadToken();
    }

    private int ReadToken()
    {
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync(_hostMisc, _misc, 4, _stream), "cuMemcpyDtoHAsync_v2");
        CudaDriver.Check(CudaDriver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
        return _hostMisc[0];
    }

    /// <summary>
    /// Device-to-device copy bandwidth in GB/s (bytes read + bytes written per second, as CUDA's bandwidthTest
    /// counts them): the yardstick for "achieved fraction of bandwidth" in benchmarks.
    /// </summary>
    public double MeasureCopyBandwidth(long bytes = 1L << 30, int repetitions = 20)
    {
        EnsureContext();
        Flush();
        CudaDriver.Check(CudaDriver.cuMemAlloc(out ulong a, (nuint)bytes), "cuMemAlloc_v2");
        ulong b = 0;
        nint start = 0, stop = 0;
        try
        {
            CudaDriver.Check(CudaDriver.cuMemAlloc(out b, (nuint)bytes), "cuMemAlloc_v2");
            CudaDriver.Check(CudaDriver.cuEventCreate(out start, 0), "cuEventCreate");
            CudaDriver.Check(CudaDriver.cuEventCreate(out stop, 0), "cuEventCreate");
            CudaDriver.Check(CudaDriver.cuMemcpyDtoDAsync(b, a, (nuint)bytes, _stream), "cuMemcpyDtoDAsync_v2"); // warm-up
            CudaDriver.Check(CudaDriver.cuEventRecord(start, _stream), "cuEventRecord");
            for (int i = 0; i < repetitions; i++)
                CudaDriver.Check(CudaDriver.cuMemcpyDtoDAsync(i % 2 == 0 ? b : a, i % 2 == 0 ? a : b, (nuint)bytes, _stream), "cuMemcpyDtoDAsync_v2");
            CudaDriver.Check(CudaDriver.cuEventRecord(stop, _stream), "cuEventRecord");
            CudaDriver.Check(CudaDriver.cuEventSynchronize(stop), "cuEventSynchronize");
            CudaDriver.Check(CudaDriver.cuEventElapsedTime(out float ms, start, stop), "cuEventElapsedTime");
            return 2.0 * bytes * repetitions / (ms / 1e3) / 1e9;
        }
        finally
        {
            if (start != 0) CudaDriver.cuEventDestroy(start);
            if (stop != 0) CudaDriver.cuEventDestroy(stop);
            if (b != 0) CudaDriver.cuMemFree(b);
            CudaDriver.cuMemFree(a);
        }
    }

    // ---------------------------------------------------------------- flush: graph replay, capture, or op by op

    private void Record(in CudaOp op)
    {
        if (_opCount == _ops.Length) Array.Resize(ref _ops, _ops.Length * 2);
        _ops[_opCount++] = op;
    }

    /// <summary>Launches the recorded step (as a graph when it can) and clears the record. Does not wait.</summary>
    private void Flush()
    {
        if (_opCount == 0) return;
        EnsureContext();
        if (_needContextSync)
        {
            CudaDriver.Check(CudaDriver.cuCtxSynchronize(), "cuCtxSynchronize");
            _needContextSync = false;
        }
        int basePos = 0;
        bool found = false;
        for (int i = 0; i < _opCount; i++)
        {
            ref var op = ref _ops[i];
            if (op.Kind is not (CudaOpKind.Rope or CudaOpKind.StoreKv or CudaOpKind.Attention)) continue;
            if (!found) { basePos = op.StartPos; found = true; }
            op.PosDelta = op.StartPos - basePos;
        }
        if (_stepUploadPending)
        {
            CudaDriver.Check(CudaDriver.cuEventSynchronize(_stepUploaded), "cuEventSynchronize");
            _stepUploadPending = false;
        }
        _hostStep[0] = basePos;
        CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync(_step, _hostStep, (nuint)((1 + _stepIds) * sizeof(int)), _stream), "cuMemcpyHtoDAsync_v2");
        CudaDriver.Check(CudaDriver.cuEventRecord(_stepUploaded, _stream), "cuEventRecord");
        _stepUploadPending = true;
        try
        {
            bool decodeStep = GraphsEnabled && _ops[0].Kind == CudaOpKind.GetRows && _ops[0].L0 == 1;
            if (decodeStep && TryReplay()) GraphReplays++;
            else if (decodeStep && TryCapture()) GraphCaptures++;
            else
            {
                ExecuteAll();
                EagerSteps++;
            }
        }
        finally
        {
            _opCount = 0;
            _stepIds = 0;
        }
    }

    private bool TryReplay()
    {
        for (int g = 0; g < _graphs.Length; g++)
        {
            var graph = _graphs[g];
            if (graph is null || graph.Ops.Length != _opCount) continue;
            bool same = true;
            for (int i = 0; i < _opCount && same; i++) same = graph.Ops[i].SameLaunch(in _ops[i]);
            if (!same) continue;
            graph.LastUse = ++_graphClock;
            CudaDriver.Check(CudaDriver.cuGraphLaunch(graph.Exec, _stream), "cuGraphLaunch");
            return true;
        }
        return false;
    }

    /// <summary>Captures the step into a new graph and launches it; false (graphs switched off) if capture is refused.</summary>
    private bool TryCapture()
    {
        int rc = CudaDriver.cuStreamBeginCapture(_stream, CudaDriver.StreamCaptureModeThreadLocal);
        if (rc != CudaDriver.Success)
        {
            GraphsEnabled = false;
            return false;
        }
        nint graph;
        try
        {
            ExecuteAll();
        }
        catch (CudaException)
        {
            // A launch the capture refused: end it, switch graphs off, and let the caller launch op by op
            // (which reports the error again if it was not about capturing).
            if (CudaDriver.cuStreamEndCapture(_stream, out graph) == CudaDriver.Success && graph != 0) CudaDriver.cuGraphDestroy(graph);
            GraphsEnabled = false;
            return false;
        }
        rc = CudaDriver.cuStreamEndCapture(_stream, out graph);
        if (rc != CudaDriver.Success || graph == 0)
        {
            GraphsEnabled = false;
            return false;
        }
        rc = CudaDriver.cuGraphInstantiateWithFlags(out nint exec, graph, 0);
        if (rc != CudaDriver.Success)
        {
            CudaDriver.cuGraphDestroy(graph);
            GraphsEnabled = false;
            return false;
        }
        int slot = 0;
        for (int g = 0; g < _graphs.Length; g++)
        {
            if (_graphs[g] is null) { slot = g; break; }
            if (_graphs[g]!.LastUse < _graphs[slot]!.LastUse) slot = g;
        }
        if (_graphs[slot] is { } old)
        {
            CudaDriver.cuGraphExecDestroy(old.Exec);
            CudaDriver.cuGraphDestroy(old.Handle);
        }
        _graphs[slot] = new Graph(_ops.AsSpan(0, _opCount).ToArray(), graph, exec) { LastUse = ++_graphClock };
        CudaDriver.Check(CudaDriver.cuGraphLaunch(exec, _stream), "cuGraphLaunch");
        return true;
    }

    private void ExecuteAll()
    {
        _qxSource = null;
        for (int i = 0; i < _opCount; i++) Execute(in _ops[i]);
        _qxSource = null;
    }

    private void Execute(in CudaOp op)
    {
        switch (op.Kind)
        {
            case CudaOpKind.GetRows: ExecGetRows(in op); break;
            case CudaOpKind.RmsNorm: ExecRmsNorm(in op); break;
            case CudaOpKind.MatMul: ExecMatMul(in op); return; // keeps _qxSource when it stays valid
            case CudaOpKind.Rope: ExecRope(in op); break;
            case CudaOpKind.StoreKv: ExecStoreKv(in op); break;
            case CudaOpKind.Attention: ExecAttention(in op); break;
            case CudaOpKind.SwiGlu: ExecElementwise(_kernels.SwiGlu, in op, "cuLaunchKernel(swiglu_f32)"); break;
            case CudaOpKind.GeGlu: ExecElementwise(_kernels.GeGlu, in op, "cuLaunchKernel(geglu_f32)"); break;
            case CudaOpKind.AddBias: ExecAddBias(in op); break;
            case CudaOpKind.Scale: ExecScalar(_kernels.Scale, in op, "cuLaunchKernel(scale_f32)"); break;
            case CudaOpKind.Softcap: ExecScalar(_kernels.Softcap, in op, "cuLaunchKernel(softcap_f32)"); break;
            case CudaOpKind.Add: ExecElementwise(_kernels.Add, in op, "cuLaunchKernel(add_f32)"); break;
            case CudaOpKind.Copy:
                CudaDriver.Check(CudaDriver.cuMemcpyDtoDAsync(op.D!.Ptr + (ulong)(op.L1 * sizeof(float)), op.A!.Ptr + (ulong)(op.L0 * sizeof(float)),
                    (nuint)(op.L2 * sizeof(float)), _stream), "cuMemcpyDtoDAsync_v2");
                break;
        }
        _qxSource = null; // every other op may have written the quantized activations' source
    }

    private void ExecGetRows(in CudaOp op)
    {
        var w = op.W!;
        ulong table = w.Ptr, ids = _step + sizeof(int), dst = op.D!.Ptr;
        long rowBytes = w.RowBytes;
        int ne0 = (int)w.Ne0;
        void** a = stackalloc void*[5];
        a[0] = &table;
        a[1] = &rowBytes;
        a[2] = &ne0;
        a[3] = &ids;
        a[4] = &dst;
        Launch(_kernels.GetRows[(int)w.Type], (uint)op.L0, 1, ElementwiseThreads, a, "cuLaunchKernel(get_rows)");
    }

    private void ExecRmsNorm(in CudaOp op)
    {
        ulong x = op.A!.Ptr, w = op.W!.Ptr, dst = op.D!.Ptr;
        int dim = op.I1;
        float eps = op.F0;
        void** a = stackalloc void*[5];
        a[0] = &x;
        a[1] = &w;
        a[2] = &dst;
        a[3] = &dim;
        a[4] = &eps;
        Launch(_kernels.RmsNorm, (uint)op.I0, 1, ElementwiseThreads, a, "cuLaunchKernel(rmsnorm_f32)");
    }

    private void ExecMatMul(in CudaOp op)
    {
        var w = op.W!;
        var x = op.A!;
        int n = op.I0, k = (int)w.Ne0, rows = (int)w.Rows;
        ulong wp = w.Ptr, dst = op.D!.Ptr;
        long rowBytes = w.RowBytes;
        uint grid = (uint)((rows + MatVecWarps - 1) / MatVecWarps);
        nint fn = n == 1 ? _kernels.MatVecT1[(int)w.Type] : _kernels.MatVecT8[(int)w.Type];
        if (CudaKernels.IsIntegerDot(w.Type))
        {
            if (!ReferenceEquals(_qxSource, x) || _qxTokens != n || _qxK != k)
            {
                ulong xp = x.Ptr, qx = _qx, dx = _dx, sx = _sx;
                long blocks = (long)n * k / 32;
                void** q = stackalloc void*[5];
                q[0] = &xp;
                q[1] = &qx;
                q[2] = &dx;
                q[3] = &sx;
                q[4] = &blocks;
                int perBlock = ElementwiseThreads / 32;
                Launch(_kernels.QuantizeQ8, (uint)((blocks + perBlock - 1) / perBlock), 1, ElementwiseThreads, q, "cuLaunchKernel(quantize_q8)");
                _qxSource = x;
                _qxTokens = n;
                _qxK = k;
            }
            ulong qxp = _qx, dxp = _dx, sxp = _sx;
            void** a = stackalloc void*[9];
            a[0] = &wp;
            a[1] = &rowBytes;
            a[2] = &k;
            a[3] = &rows;
            a[4] = &qxp;
            a[5] = &dxp;
            a[6] = &sxp;
            a[7] = &dst;
            a[8] = &n;
            Launch(fn, grid, 1, MatVecWarps * 32, a, "cuLaunchKernel(matvec)");
        }
        else
        {
            ulong xp = x.Ptr;
            void** a = stackalloc void*[7];
            a[0] = &wp;
            a[1] = &rowBytes;
            a[2] = &k;
            a[3] = &rows;
            a[4] = &xp;
            a[5] = &dst;
            a[6] = &n;
            Launch(fn, grid, 1, MatVecWarps * 32, a, "cuLaunchKernel(matvec)");
        }
        if (ReferenceEquals(op.D, _qxSource)) _qxSource = null;
    }

    private void ExecRope(in CudaOp op)
    {
        var spec = op.Rope!;
        ulong x = op.A!.Ptr, step = _step, table = op.Table;
        int delta = op.PosDelta, n = op.I0, heads = op.I1, headDim = spec.HeadDim, half = spec.Dims / 2;
        float scale = spec.Scale, attnFactor = spec.AttnFactor;
        int neox = spec.Neox ? 1 : 0;
        long total = (long)n * heads * half;
        void** a = stackalloc void*[11];
        a[0] = &x;
        a[1] = &step;
        a[2] = &delta;
        a[3] = &n;
        a[4] = &heads;
        a[5] = &headDim;
        a[6] = &half;
        a[7] = &table;
        a[8] = &scale;
        a[9] = &neox;
        a[10] = &attnFactor;
        Launch(_kernels.Rope, (uint)((total + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, a, "cuLaunchKernel(rope_f32)");
    }

    private void ExecStoreKv(in CudaOp op)
    {
        ulong k = op.A!.Ptr, v = op.B!.Ptr, kc = op.C!.Ptr, vc = op.D!.Ptr, step = _step;
        int delta = op.PosDelta, n = op.I0, kvDim = op.I1;
        long total = (long)n * kvDim;
        void** a = stackalloc void*[8];
        a[0] = &k;
        a[1] = &v;
        a[2] = &kc;
        a[3] = &vc;
        a[4] = &step;
        a[5] = &delta;
        a[6] = &n;
        a[7] = &kvDim;
        Launch(_kernels.StoreKv, (uint)((total + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, a, "cuLaunchKernel(store_kv_f16)");
    }

    private void ExecAttention(in CudaOp op)
    {
        ulong q = op.A!.Ptr, kc = op.B!.Ptr, vc = op.C!.Ptr, dst = op.D!.Ptr, step = _step;
        int delta = op.PosDelta, n = op.I0, heads = op.I1, headDim = op.I2, kvDim = op.I3;
        int group = heads / (kvDim / headDim);
        float scale = op.F0, softcap = op.F1;
        int window = op.I4;
        void** a = stackalloc void*[13];
        a[0] = &q;
        a[1] = &kc;
        a[2] = &vc;
        a[3] = &dst;
        a[4] = &step;
        a[5] = &delta;
        a[6] = &heads;
        a[7] = &headDim;
        a[8] = &kvDim;
        a[9] = &group;
        a[10] = &scale;
        a[11] = &softcap;
        a[12] = &window;
        Launch(_kernels.Attention, (uint)heads, (uint)n, AttentionThreads, a, "cuLaunchKernel(attention_f16)");
    }

    private void ExecElementwise(nint fn, in CudaOp op, string call)
    {
        ulong x = op.A!.Ptr, y = op.B!.Ptr;
        long count = op.L0;
        if (count == 0) return;
        void** a = stackalloc void*[3];
        a[0] = &x;
        a[1] = &y;
        a[2] = &count;
        Launch(fn, (uint)((count + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, a, call);
    }

    private void ExecAddBias(in CudaOp op)
    {
        ulong x = op.A!.Ptr, bias = op.W!.Ptr;
        int width = (int)op.W.Ne0;
        long count = op.L0;
        if (count == 0) return;
        void** a = stackalloc void*[4];
        a[0] = &x;
        a[1] = &bias;
        a[2] = &width;
        a[3] = &count;
        Launch(_kernels.AddBias, (uint)((count + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, a, "cuLaunchKernel(add_bias_f32)");
    }

    /// <summary>x[i] = f(x[i], F0) for i &lt; L0 (scale, softcap).</summary>
    private void ExecScalar(nint fn, in CudaOp op, string call)
    {
        ulong x = op.A!.Ptr;
        float f = op.F0;
        long count = op.L0;
        if (count == 0) return;
        void** a = stackalloc void*[3];
        a[0] = &x;
        a[1] = &f;
        a[2] = &count;
        Launch(fn, (uint)((count + ElementwiseThreads - 1) / ElementwiseThreads), 1, ElementwiseThreads, a, call);
    }

    private void Launch(nint fn, uint gridX, uint gridY, uint block, void** args, string call) =>
        CudaDriver.Check(CudaDriver.cuLaunchKernel(fn, gridX, gridY, 1, block, 1, 1, 0, _stream, args, null), call);

    // ---------------------------------------------------------------- helpers

    /// <summary>The device table of per-pair inverse frequencies for a rope spec (uploaded once per spec).</summary>
    private ulong RopeTable(RopeSpec spec)
    {
        foreach (var (known, t) in _ropeTables)
            if (ReferenceEquals(known, spec)) return t;
        EnsureContext();
        double[] inv = spec.InverseFrequencies;
        ulong table = Scratch((long)inv.Length * sizeof(double));
        fixed (double* p = inv) CudaDriver.Check(CudaDriver.cuMemcpyHtoD(table, p, (nuint)(inv.Length * sizeof(double))), "cuMemcpyHtoD_v2");
        _needContextSync = true;
        _ropeTables.Add((spec, table));
        return table;
    }

    private ulong Scratch(long bytes)
    {
        CudaDriver.Check(CudaDriver.cuMemAlloc(out ulong p, (nuint)Math.Max(1, bytes)), "cuMemAlloc_v2");
        _scratch.Add(p);
        return p;
    }

    private void FreeScratch()
    {
        foreach (ulong p in _scratch) CudaDriver.cuMemFree(p);
        _scratch.Clear();
        _ropeTables.Clear();
        if (_hostStep != null) CudaDriver.cuMemFreeHost(_hostStep);
        if (_hostMisc != null) CudaDriver.cuMemFreeHost(_hostMisc);
        _hostStep = null;
        _hostMisc = null;
        _prepared = false;
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

    private static CudaBuffer Buf(BackendBuffer b, string what)
    {
        var c = b as CudaBuffer ?? throw new ArgumentException($"{what}: not a CUDA buffer");
        if (c.IsHalf) throw new ArgumentException($"{what}: a KV-cache buffer (fp16) cannot be used as an activation");
        return c;
    }

    private static CudaBuffer CacheBuf(BackendBuffer b) =>
        b as CudaBuffer is { IsHalf: true } c ? c : throw new ArgumentException("kv cache buffers must come from CudaBackend.AllocateCache");

    private static CudaWeight Wt(BackendWeight w) => w as CudaWeight ?? throw new ArgumentException($"{w.Name}: not a CUDA weight");

    private static void Need(CudaBuffer b, long elements, string what)
    {
        if (elements > b.Length) throw new ArgumentException($"{what}: {elements} elements needed, buffer holds {b.Length}");
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
        foreach (var g in _graphs)
        {
            if (g is null) continue;
            CudaDriver.cuGraphExecDestroy(g.Exec);
            CudaDriver.cuGraphDestroy(g.Handle);
        }
        Array.Clear(_graphs);
        foreach (var b in _buffers) if (b.Ptr != 0) CudaDriver.cuMemFree(b.Ptr);
        _buffers.Clear();
        foreach (var w in _weights) if (w.Owned && w.Ptr != 0) CudaDriver.cuMemFree(w.Ptr);
        _weights.Clear();
        FreeScratch();
        if (_hostOut != null) CudaDriver.cuMemFreeHost(_hostOut);
        _hostOut = null;
        if (_stepUploaded != 0) CudaDriver.cuEventDestroy(_stepUploaded);
        _kernels?.Dispose();
        if (_stream != 0) CudaDriver.cuStreamDestroy(_stream);
        if (WeightsMapped) CudaDriver.cuMemHostUnregister(_mappedHost);
        CudaDriver.cuCtxSetCurrent(0);
        t_currentContext = 0;
        if (CudaLibraries.DriverHas("cuDevicePrimaryCtxRelease_v2")) CudaDriver.cuDevicePrimaryCtxRelease(_deviceHandle);
        else CudaDriver.cuDevicePrimaryCtxReleaseV1(_deviceHandle);
    }
}
