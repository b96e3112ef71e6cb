using EdgeLlm.Compute;
using EdgeLlm.Backends.Cuda.Native;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cuda;

// Token selection on the device (kernels/sample.cu): only the chosen id and a finiteness flag cross the bus.
// Generation uses IDeviceArgMax (LlamaModel.ForwardGreedy) when the CPU sampler would pick the argmax of the raw
// logits, and IDeviceSampler (LlamaModel.ForwardSampled) for every other setting without a grammar or
// log-probabilities (Generation.DeviceSampling): the whole chain runs in sample_f32 with the uniform drawn on the
// host. The pick is recorded as the last op of the step (CudaOpKind.ArgMax / Sample), so a decode step is captured
// with it and replayed whole: what changes per token (the uniform, the penalty window) goes up in the sample state
// block (CudaSampleState) before the launch, not as kernel arguments. Both kernels also write the token into the step
// buffer's id slot, so the next decode step uploads only its position (FedToken).
public sealed unsafe partial class CudaBackend : IDeviceArgMax, IDeviceSampler
{
    private const int SampleThreads = 1024;

    private ulong _sampleWork, _sampleState;     // 24 B per padded candidate; the sample state block
    private long _scratchGeneration;             // counts FreeScratch calls (Prepare): scratch addresses may come back
    private long _sampleScratchGeneration = -1;  // the generation the two were allocated in
    private int _samplePadded, _samplePairCapacity;
    private byte* _hostSampleState;              // pinned staging of the state block (cuMemAllocHost)
    private long _hostSampleStateBytes;
    private CudaSampleLaunch? _argMaxLaunch, _sampleLaunch; // the last launch data, reused while nothing changes
    private FedToken _fedToken;

    /// <summary>The id of the largest of <paramref name="count"/> logits at logits[offset] (ties: lowest id), and whether all were finite.</summary>
    public int ArgMax(BackendBuffer logits, long offset, int count, out bool allFinite)
    {
        Ready();
        var s = Buf(logits, "argmax logits");
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), $"argmax of {count} logits");
        if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset), $"argmax at offset {offset}");
        Need(s, offset + count, "argmax logits");
        RecordArgMax(s, offset, count);
        return Picked(out allFinite);
    }

    /// <summary>Records argmax_f32 as the step's last op (launch data reused while the scratch stays).</summary>
    private void RecordArgMax(CudaBuffer logits, long offset, int count)
    {
        ulong feed = _step + sizeof(int);
        if (_argMaxLaunch is not { } l || l.Out != _misc || l.Feed != feed)
            _argMaxLaunch = new CudaSampleLaunch(null, 0, 0, 0, _misc, feed);
        Record(new CudaOp { Kind = CudaOpKind.ArgMax, X = logits, SrcOffset = offset, Count = count, Pick = _argMaxLaunch });
    }

    /// <summary>Records sample_f32 as the step's last op; the state block's upload must already be on the stream.</summary>
    private void RecordSample(CudaBuffer logits, long offset, int count, in DeviceSamplerSettings settings)
    {
        ulong feed = _step + sizeof(int);
        if (_sampleLaunch is not { } l || l.Settings != settings || l.Work != _sampleWork || l.Padded != _samplePadded || l.State != _sampleState
            || l.Out != _misc || l.Feed != feed)
            _sampleLaunch = new CudaSampleLaunch(settings, _sampleWork, _samplePadded, _sampleState, _misc, feed);
        Record(new CudaOp { Kind = CudaOpKind.Sample, X = logits, SrcOffset = offset, Count = count, Pick = _sampleLaunch });
    }

    /// <summary>The CPU sampler's chain over <paramref name="count"/> logits (see <see cref="IDeviceSampler"/>); the token is also fed to the next step's get_rows.</summary>
    public int Sample(BackendBuffer logits, long offset, int count, in DeviceSamplerSettings settings, ReadOnlySpan<int> penalties, double uniform,
        out bool allFinite)
    {
        Ready();
        var s = Buf(logits, "sample logits");
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), $"sampling of {count} logits");
        if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset), $"sampling at offset {offset}");
        if ((penalties.Length & 1) != 0 || penalties.Length / 2 > count)
            throw new ArgumentException($"{penalties.Length} penalty entries are not (id, count) pairs of at most {count} tokens", nameof(penalties));
        Need(s, offset + count, "sample logits");
        EnsureSampleScratch(count, penalties.Length / 2);
        // The previous pick waited for its step, so the staging is free; the upload runs on the stream before the
        // step's launch (the step's own ops are only recorded so far).
        int bytes = CudaSampleState.Write(new Span<byte>(_hostSampleState, (int)_hostSampleStateBytes), uniform, penalties);
        CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync(_sampleState, _hostSampleState, (nuint)bytes, _stream), "cuMemcpyHtoDAsync_v2");
        RecordSample(s, offset, count, settings);
        return Picked(out allFinite);
    }

    /// <summary>Launches the recorded step with its pick (a graph for a decode step), and reads back the 8 bytes of the result.</summary>
    private int Picked(out bool allFinite)
    {
        Flush();
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync(_hostMisc, _misc, 2 * sizeof(int), _stream), "cuMemcpyDtoHAsync_v2");
        SyncStream(); // also the end of the state block's upload: the staging may be rewritten
        allFinite = _hostMisc[1] == 0;
        int id = _hostMisc[0];
        _fedToken.Set(id, _scratchGeneration);
        return id;
    }

    /// <summary>argmax_f32 or sample_f32 for a recorded pick: one block, results in _misc and the step buffer's id slot.</summary>
    private void ExecPick(in CudaOp op)
    {
        var p = op.Pick!;
        ulong logits = op.X!.Ptr + (ulong)(op.SrcOffset * sizeof(float));
        if (op.Kind == CudaOpKind.ArgMax)
        {
            var args = new ArgMaxArgs { Logits = logits, N = (int)op.Count, Out = p.Out, Feed = p.Feed };
            Launch(_kernels.ArgMax, 1, 1, SampleThreads, ref args);
            return;
        }
        var s = p.Settings!.Value;
        var sample = new SampleArgs
        {
            Logits = logits, N = (int)op.Count, State = p.State,
            RepeatPenalty = s.RepeatPenalty, PresencePenalty = s.PresencePenalty, FrequencyPenalty = s.FrequencyPenalty,
            Temperature = s.Temperature, InvTemp = s.InvTemperature, TopK = s.TopK, TopP = s.TopP,
            MinP = s.MinP, LogMinP = s.LogMinP, Work = p.Work, Padded = p.Padded, Out = p.Out, Feed = p.Feed,
        };
        Launch(_kernels.Sample, 1, 1, SampleThreads, ref sample);
    }

    /// <summary>Work space for <paramref name="count"/> candidates and <paramref name="pairs"/> penalty pairs (allocated on first use and after Prepare).</summary>
    private void EnsureSampleScratch(int count, int pairs)
    {
        if (_sampleScratchGeneration != _scratchGeneration)
        {
            _samplePadded = 0; // freed with the scratch
            _samplePairCapacity = 0;
        }
        int padded = (int)Math.Min(1L << 30, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)count));
        if (padded > _samplePadded)
        {
            _sampleWork = Scratch(24L * padded);
            _samplePadded = padded;
        }
        if (pairs > _samplePairCapacity || _samplePairCapacity == 0)
        {
            // Room for every token of the vocabulary at once (a window holds each id once), so a growing window
            // (repeat-last-n -1) never re-allocates per token: 8 bytes per vocabulary entry and the header.
            int cap = Math.Max(pairs, count);
            long bytes = CudaSampleState.Bytes(cap);
            _sampleState = Scratch(bytes);
            FreeSampleStaging();
            CudaDriver.Check(CudaDriver.cuMemAllocHost(out void* h, (nuint)bytes), "cuMemAllocHost_v2");
            _hostSampleState = (byte*)h;
            _hostSampleStateBytes = bytes;
            _samplePairCapacity = cap;
        }
        _sampleScratchGeneration = _scratchGeneration;
    }

    /// <summary>Frees the pinned staging of the state block (with the scratch, and on re-allocation).</summary>
    private void FreeSampleStaging()
    {
        if (_hostSampleState != null) CudaDriver.cuMemFreeHost(_hostSampleState);
        _hostSampleState = null;
        _hostSampleStateBytes = 0;
    }
}
