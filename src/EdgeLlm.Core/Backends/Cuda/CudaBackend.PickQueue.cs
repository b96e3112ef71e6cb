using EdgeLlm.Compute;
using EdgeLlm.Backends.Cuda.Native;

namespace EdgeLlm.Backends.Cuda;

// Decode steps run one ahead of the host (IDevicePickQueue): a step's pick (argmax_f32 or sample_f32 without
// penalties) writes its token into the step buffer's id slot, where the next step's get_rows reads it, and its 8-byte
// result (id, finiteness flag) is copied into a pinned read-back slot with an event behind it. The host can therefore
// launch step N+1 (uploading only its position) before it waits for token N; Generator checks token N for the end of
// generation one step late and drops the step ahead. All of it is stream-ordered on the one stream: step N+1's state
// and position uploads run after step N's pick, and step N's read-back before step N+1 overwrites the result.
public sealed unsafe partial class CudaBackend : IDevicePickQueue
{
    private const int PickSlots = 2;

    private int* _hostPicks;          // pinned: PickSlots x (id, non-finite flag)
    private byte* _hostPickStates;    // pinned: PickSlots x the sample state header (the uniform; no penalty pairs)
    private readonly nint[] _pickDone = new nint[PickSlots]; // event after each slot's read-back
    private int _pickHead, _pickCount;

    public int PickDepth => PickSlots;
    public int PendingPicks => _pickCount;

    public void EnqueuePick(BackendBuffer logits, long offset, int count, DeviceSamplerSettings? settings, double uniform)
    {
        Ready();
        var s = Buf(logits, "pick logits");
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), $"a pick of {count} logits");
        if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset), $"a pick at offset {offset}");
        Need(s, offset + count, "pick logits");
        if (_pickCount == PickSlots) throw new InvalidOperationException($"{PickSlots} picks are already in flight");
        EnsurePickSlots();
        int slot = (_pickHead + _pickCount) % PickSlots;
        if (settings is { } st)
        {
            EnsureSampleScratch(count, 0);
            // This slot's staging was last read by the upload before the pick taken from it, so it is free. The upload
            // runs on the stream after the step in flight (whose sampler reads the state block) and before this one.
            byte* staging = _hostPickStates + slot * CudaSampleState.HeaderBytes;
            CudaSampleState.Write(new Span<byte>(staging, CudaSampleState.HeaderBytes), uniform, []);
            CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync(_sampleState, staging, CudaSampleState.HeaderBytes, _stream), "cuMemcpyHtoDAsync_v2");
            RecordSample(s, offset, count, st);
        }
        else RecordArgMax(s, offset, count);
        Flush();
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync(_hostPicks + 2 * slot, _misc, 2 * sizeof(int), _stream), "cuMemcpyDtoHAsync_v2");
        CudaDriver.Check(CudaDriver.cuEventRecord(_pickDone[slot], _stream), "cuEventRecord");
        _pickCount++;
    }

    public void FeedLastPick()
    {
        if (_pickCount == 0) throw new InvalidOperationException("no pick is in flight to feed the next step");
        _fedToken.SetUnread(_scratchGeneration);
    }

    public int TakePick(out bool allFinite)
    {
        if (_pickCount == 0) throw new InvalidOperationException("no pick is in flight");
        int slot = _pickHead;
        int rc = CudaDriver.cuEventSynchronize(_pickDone[slot]);
        if (rc != CudaDriver.Success) throw CudaLaunchLimits.SyncFault("cuEventSynchronize", rc, Settings.SyncEachLaunch);
        int id = _hostPicks[2 * slot];
        allFinite = _hostPicks[2 * slot + 1] == 0;
        _pickHead = (slot + 1) % PickSlots;
        _pickCount--;
        // The last pick is also known on the host now: a plain step of that token skips the id upload (FedToken).
        if (_pickCount == 0) _fedToken.Set(id, _scratchGeneration);
        return id;
    }

    /// <summary>The pinned read-back and state slots and their events (made on first use, kept until Dispose).</summary>
    private void EnsurePickSlots()
    {
        if (_hostPicks != null) return;
        for (int i = 0; i < PickSlots; i++)
            if (_pickDone[i] == 0)
                CudaDriver.Check(CudaDriver.cuEventCreate(out _pickDone[i], 0x2 /* CU_EVENT_DISABLE_TIMING */), "cuEventCreate");
        CudaDriver.Check(CudaDriver.cuMemAllocHost(out void* p, (nuint)(PickSlots * (2 * sizeof(int) + CudaSampleState.HeaderBytes))), "cuMemAllocHost_v2");
        _hostPicks = (int*)p;
        _hostPickStates = (byte*)p + PickSlots * 2 * sizeof(int);
    }

    /// <summary>Frees the pick slots (teardown; the stream has been synchronized).</summary>
    private void FreePickSlots()
    {
        if (_hostPicks != null) CudaDriver.cuMemFreeHost(_hostPicks);
        _hostPicks = null;
        _hostPickStates = null;
        for (int i = 0; i < PickSlots; i++)
        {
            if (_pickDone[i] != 0) CudaDriver.cuEventDestroy(_pickDone[i]);
            _pickDone[i] = 0;
        }
        _pickHead = _pickCount = 0;
    }
}
