using EdgeLlm.Compute;
using EdgeLlm.Backends.Cuda.Native;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cuda;

// Device memory: the step's scratch buffers (Prepare), activation and KV-cache buffers, weight uploads (or the
// mapped file on an integrated GPU), and copies between host and device.
public sealed unsafe partial class CudaBackend
{
    /// <summary>Bytes of weights copied to the device.</summary>
    public long UploadedWeightBytes { get; private set; }

    private readonly List<CudaBuffer> _buffers = new();
    private readonly List<CudaWeight> _weights = new();
    private readonly List<ulong> _scratch = new();
    private readonly byte* _mappedHost;
    private readonly long _mappedLength;
    private readonly ulong _mappedDevice;
    private bool _needContextSync;

    private BackendLimits _limits;
    private bool _prepared;
    private ulong _qx, _dx, _sx;      // q8 activations: int8 [MaxBatch * MaxRow], per-32 scale and scaled sum
    private ulong _qxOther, _dxOther, _sxOther; // a second set: a product's norm epilogue writes the next activations there (SwapQ8)
    private bool _q8Swapped;          // the two sets are exchanged (put back at the start of every step)
    private ulong _epilogueCounter;   // matvec_packed's norm epilogue: blocks counted, zero between launches
    private ulong _step;              // int[1 + MaxBatch]: first position, then the token ids
    private int* _hostStep;           // pinned staging of _step
    private ulong _misc;              // argmax out: int token, int non-finite flag
    private int* _hostMisc;           // pinned staging of _misc
    private ulong _splitPartials;     // split attention's per-chunk partial results (CudaBackend.Ops.SplitPartials)
    private long _splitPartialFloats;
    private ulong _splitCounters;     // attention_flash_f16's per-kv-head counters, after the partials
    private int _splitCounterSlots;
    private float* _hostOut;          // pinned staging for CopyOut
    private long _hostOutFloats;
    private readonly List<(RopeSpec Spec, ulong Table)> _ropeTables = new(); // one per distinct spec (Gemma 3: local and global)

    public void Prepare(BackendLimits limits)
    {
        if (limits.MaxBatch < 1 || limits.MaxRowLength < 1 || limits.ContextSize < 1 || limits.HeadDim < 2 || limits.RopeDims < 2)
            throw new ArgumentOutOfRangeException(nameof(limits), $"invalid backend limits {limits}");
        if (limits.HeadDim > MaxHeadDim)
            throw new EdgeLlmException($"cuda: head dimension {limits.HeadDim} exceeds the {MaxHeadDim} the attention kernel holds");
        CudaLaunchLimits.CheckAttentionGrid(1, limits.MaxBatch);
        EnsureContext();
        FreeScratch();
        _limits = limits;
        long rowElems = (long)limits.MaxBatch * limits.MaxRowLength;
        _qx = Scratch(rowElems);
        _dx = Scratch((rowElems / 32 + 1) * sizeof(float));
        _sx = Scratch((rowElems / 32 + 1) * sizeof(float));
        _qxOther = Scratch(rowElems);
        _dxOther = Scratch((rowElems / 32 + 1) * sizeof(float));
        _sxOther = Scratch((rowElems / 32 + 1) * sizeof(float));
        _q8Swapped = false;
        _epilogueCounter = Scratch(sizeof(int));
        CudaDriver.Check(CudaDriver.cuMemsetD8Async(_epilogueCounter, 0, sizeof(int), _stream), "cuMemsetD8Async");
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
        if (CudaRepack.Packs(tensor.Type)) return LoadPacked(tensor);
        CudaDriver.Check(CudaDriver.cuMemAlloc(out ulong dptr, (nuint)Math.Max(1, tensor.ByteLength)), "cuMemAlloc_v2");
        var w = new CudaWeight(tensor.Name, tensor.Type, tensor.Ne0, tensor.Rows, dptr, rowBytes, owned: true);
        _weights.Add(w);
        Upload(dptr, tensor.Data, tensor.ByteLength);
        UploadedWeightBytes += tensor.ByteLength;
        return w;
    }

    /// <summary>
    /// A weight of a type <see cref="CudaRepack"/> handles, rewritten row by row into its packed layout on the way
    /// through the staging buffers. Only for device memory: on an integrated GPU the mapped file is read in place
    /// (the weights stay in the page cache once, no second copy in the shared memory), with matmul.cu's kernels.
    /// </summary>
    private BackendWeight LoadPacked(TensorView tensor)
    {
        long packedRow = CudaRepack.RowBytes(tensor.Type, tensor.Ne0), rawRow = tensor.RowBytes, rows = tensor.Rows;
        long bytes = packedRow * rows;
        if (packedRow > UploadPiece) throw new EdgeLlmException($"cuda: tensor {tensor.Name} has rows of {packedRow} bytes, more than the {UploadPiece}-byte upload piece");
        CudaDriver.Check(CudaDriver.cuMemAlloc(out ulong dptr, (nuint)Math.Max(1, bytes)), "cuMemAlloc_v2");
        var w = new CudaWeight(tensor.Name, tensor.Type, tensor.Ne0, rows, dptr, packedRow, owned: true, packed: true);
        _weights.Add(w);
        long perPiece = Math.Max(1, UploadPiece / packedRow);
        if (_uploadStaging == null && !TryAllocateUploadStaging())
        {
            var piece = new byte[Math.Min(perPiece, rows) * packedRow];
            for (long r0 = 0; r0 < rows; r0 += perPiece)
            {
                long n = Math.Min(perPiece, rows - r0);
                for (long r = 0; r < n; r++)
                    CudaRepack.PackRow(tensor.Type, tensor.Ne0, new ReadOnlySpan<byte>(tensor.Data + (r0 + r) * rawRow, (int)rawRow), piece.AsSpan((int)(r * packedRow), (int)packedRow));
                fixed (byte* p = piece)
                    CudaDriver.Check(CudaDriver.cuMemcpyHtoD(dptr + (ulong)(r0 * packedRow), p, (nuint)(n * packedRow)), "cuMemcpyHtoD_v2");
            }
            _needContextSync = true;
        }
        else
        {
            for (long r0 = 0; r0 < rows; r0 += perPiece)
            {
                long n = Math.Min(perPiece, rows - r0);
                int slot = _uploadSlot;
                _uploadSlot ^= 1;
                if (_uploadPending[slot]) CudaDriver.Check(CudaDriver.cuEventSynchronize(_uploadDone[slot]), "cuEventSynchronize");
                byte* staging = _uploadStaging + slot * UploadPiece;
                for (long r = 0; r < n; r++)
                    CudaRepack.PackRow(tensor.Type, tensor.Ne0, new ReadOnlySpan<byte>(tensor.Data + (r0 + r) * rawRow, (int)rawRow), new Span<byte>(staging + r * packedRow, (int)packedRow));
                CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync(dptr + (ulong)(r0 * packedRow), staging, (nuint)(n * packedRow), _stream), "cuMemcpyHtoDAsync_v2");
                CudaDriver.Check(CudaDriver.cuEventRecord(_uploadDone[slot], _stream), "cuEventRecord");
                _uploadPending[slot] = true;
            }
        }
        UploadedWeightBytes += bytes;
        return w;
    }

    // Weight uploads go through two pinned staging buffers: while the DMA engine copies one to the device, the
    // host fills the other from the file (page faults on a mapped file included), so reading and copying overlap.
    // The staging is freed at the first flush (the weights are loaded by then) and taken again if more come.
    private const long UploadPiece = 16L << 20;
    private byte* _uploadStaging;                 // 2 * UploadPiece pinned bytes
    private readonly nint[] _uploadDone = new nint[2]; // event after the copy out of each half
    private readonly bool[] _uploadPending = new bool[2];
    private int _uploadSlot;

    private void Upload(ulong dst, byte* src, long bytes)
    {
        if (_uploadStaging == null && !TryAllocateUploadStaging())
        {
            // No pinned memory: synchronous copies from pageable memory (the driver stages them itself).
            for (long done = 0; done < bytes; done += UploadPiece)
                CudaDriver.Check(CudaDriver.cuMemcpyHtoD(dst + (ulong)done, src + done, (nuint)Math.Min(UploadPiece, bytes - done)), "cuMemcpyHtoD_v2");
            _needContextSync = true;
            return;
        }
        for (long done = 0; done < bytes; done += UploadPiece)
        {
            long n = Math.Min(UploadPiece, bytes - done);
            int slot = _uploadSlot;
            _uploadSlot ^= 1;
            if (_uploadPending[slot]) CudaDriver.Check(CudaDriver.cuEventSynchronize(_uploadDone[slot]), "cuEventSynchronize");
            byte* staging = _uploadStaging + slot * UploadPiece;
            Buffer.MemoryCopy(src + done, staging, UploadPiece, n);
            CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync(dst + (ulong)done, staging, (nuint)n, _stream), "cuMemcpyHtoDAsync_v2");
            CudaDriver.Check(CudaDriver.cuEventRecord(_uploadDone[slot], _stream), "cuEventRecord");
            _uploadPending[slot] = true;
        }
    }

    private bool TryAllocateUploadStaging()
    {
        if (CudaDriver.cuMemAllocHost(out void* p, (nuint)(2 * UploadPiece)) != CudaDriver.Success) return false;
        for (int i = 0; i < 2; i++)
            if (_uploadDone[i] == 0 && CudaDriver.cuEventCreate(out _uploadDone[i], 0x2 /* CU_EVENT_DISABLE_TIMING */) != CudaDriver.Success)
            {
                CudaDriver.cuMemFreeHost(p);
                return false;
            }
        _uploadStaging = (byte*)p;
        return true;
    }

    /// <summary>Waits for the uploads still in flight and frees the pinned staging (errors ignored: teardown paths call it too).</summary>
    private void FreeUploadStaging()
    {
        for (int i = 0; i < 2; i++)
        {
            if (_uploadPending[i]) CudaDriver.cuEventSynchronize(_uploadDone[i]);
            _uploadPending[i] = false;
        }
        if (_uploadStaging != null) CudaDriver.cuMemFreeHost(_uploadStaging);
        _uploadStaging = null;
        if (_disposed)
            for (int i = 0; i < 2; i++)
            {
                if (_uploadDone[i] != 0) CudaDriver.cuEventDestroy(_uploadDone[i]);
                _uploadDone[i] = 0;
            }
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
        SyncStream();
        new ReadOnlySpan<float>(_hostOut, dst.Length).CopyTo(dst);
    }

    /// <summary>Copies host floats into dst[dstOffset...] (after the pending step; waits until done).</summary>
    public void CopyIn(ReadOnlySpan<float> src, BackendBuffer dst, long dstOffset)
    {
        Ready();
        var d = Buf(dst, "copy_in dst");
        Need(d, dstOffset + src.Length, "copy_in dst");
        Flush();
        SyncStream();
        fixed (float* p = src)
            CudaDriver.Check(CudaDriver.cuMemcpyHtoD(d.Ptr + (ulong)(dstOffset * sizeof(float)), p, (nuint)((long)src.Length * sizeof(float))), "cuMemcpyHtoD_v2");
        _needContextSync = true;
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
        // Captured graphs hold the scratch addresses (step buffer, quantized activations, rope tables) as kernel
        // arguments: they must not replay after those are freed and re-allocated.
        DestroyGraphs();
        _scratchGeneration++; // the device sampler's work space and fed token (CudaBackend.Sampling.cs) go with it
        foreach (ulong p in _scratch) CudaDriver.cuMemFree(p);
        _scratch.Clear();
        _ropeTables.Clear();
        _splitPartials = 0;
        _splitPartialFloats = 0;
        _splitCounters = 0;
        _splitCounterSlots = 0;
        if (_hostStep != null) CudaDriver.cuMemFreeHost(_hostStep);
        if (_hostMisc != null) CudaDriver.cuMemFreeHost(_hostMisc);
        FreeSampleStaging();
        _hostStep = null;
        _hostMisc = null;
        _prepared = false;
    }
}
