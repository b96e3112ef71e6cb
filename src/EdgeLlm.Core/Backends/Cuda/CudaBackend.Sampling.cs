using EdgeLlm.Compute;
using EdgeLlm.Backends.Cuda.Native;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cuda;

// Token selection on the device (kernels/sample.cu): only the chosen id and a finiteness flag cross the bus.
// Generation uses IDeviceArgMax (LlamaModel.ForwardGreedy) when the CPU sampler would pick the argmax of the raw
// logits, and IDeviceSampler (LlamaModel.ForwardSampled) for every other setting without a grammar or
// log-probabilities (Generation.DeviceSampling): the whole chain runs in sample_f32 with the uniform drawn on the
// host, and the kernel also writes the token into the step buffer's id slot, so the next decode step (a replayed
// graph) uploads only its position (FedToken).
public sealed unsafe partial class CudaBackend : IDeviceArgMax, IDeviceSampler
{
    private const int SampleThreads = 1024;

    private ulong _sampleWork, _samplePenalties; // 24 B per padded candidate; (id, count) pairs
    private long _scratchGeneration;             // counts FreeScratch calls (Prepare): scratch addresses may come back
    private long _sampleScratchGeneration = -1;  // the generation the two were allocated in
    private int _samplePadded, _samplePairCapacity;
    private int[] _penaltyStaging = [];          // pinned managed staging of the pairs
    private FedToken _fedToken;

    /// <summary>The id of the largest of <paramref name="count"/> logits at logits[offset] (ties: lowest id), and whether all were finite.</summary>
    public int ArgMax(BackendBuffer logits, long offset, int count, out bool allFinite)
    {
        Ready();
        var s = Buf(logits, "argmax logits");
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), $"argmax of {count} logits");
        Need(s, offset + count, "argmax logits");
        Flush();
        var args = new ArgMaxArgs { Logits = s.Ptr + (ulong)(offset * sizeof(float)), N = count, Out = _misc };
        Launch(_kernels.ArgMax, 1, 1, SampleThreads, ref args);
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync(_hostMisc, _misc, 2 * sizeof(int), _stream), "cuMemcpyDtoHAsync_v2");
        SyncStream();
        allFinite = _hostMisc[1] == 0;
        return _hostMisc[0];
    }

    /// <summary>The CPU sampler's chain over <paramref name="count"/> logits (see <see cref="IDeviceSampler"/>); the token is also fed to the next step's get_rows.</summary>
    public int Sample(BackendBuffer logits, long offset, int count, in DeviceSamplerSettings settings, ReadOnlySpan<int> penalties, double uniform,
        out bool allFinite)
    {
        Ready();
        var s = Buf(logits, "sample logits");
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), $"sampling of {count} logits");
        if ((penalties.Length & 1) != 0 || penalties.Length / 2 > count)
            throw new ArgumentException($"{penalties.Length} penalty entries are not (id, count) pairs of at most {count} tokens", nameof(penalties));
        Need(s, offset + count, "sample logits");
        EnsureSampleScratch(count, penalties.Length / 2);
        Flush();
        if (penalties.Length > 0)
        {
            penalties.CopyTo(_penaltyStaging);
            fixed (int* p = _penaltyStaging)
                CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync(_samplePenalties, p, (nuint)(penalties.Length * sizeof(int)), _stream), "cuMemcpyHtoDAsync_v2");
        }
        var args = new SampleArgs
        {
            Logits = s.Ptr + (ulong)(offset * sizeof(float)), N = count, Penalties = _samplePenalties, PenaltyCount = penalties.Length / 2,
            RepeatPenalty = settings.RepeatPenalty, PresencePenalty = settings.PresencePenalty, FrequencyPenalty = settings.FrequencyPenalty,
            Temperature = settings.Temperature, InvTemp = settings.InvTemperature, TopK = settings.TopK, TopP = settings.TopP,
            MinP = settings.MinP, LogMinP = settings.LogMinP, Uniform = uniform, Work = _sampleWork, Padded = _samplePadded,
            Out = _misc, Feed = _step + sizeof(int),
        };
        Launch(_kernels.Sample, 1, 1, SampleThreads, ref args);
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync(_hostMisc, _misc, 2 * sizeof(int), _stream), "cuMemcpyDtoHAsync_v2");
        SyncStream(); // also the end of the pairs' upload: the staging may be rewritten
        allFinite = _hostMisc[1] == 0;
        int id = _hostMisc[0];
        _fedToken.Set(id, _scratchGeneration);
        return id;
    }

    /// <summary>Work space for <paramref name="count"/> candidates and <paramref name="pairs"/> penalty pairs (allocated on first use and after Prepare).</summary>
    private void EnsureSampleScratch(int count, int pairs)
    {
        if (_sampleScratchGeneration != _scratchGeneration) { _samplePadded = 0; _samplePairCapacity = 0; } // freed with the scratch
        int padded = (int)Math.Min(1L << 30, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)count));
        if (padded > _samplePadded)
        {
            _sampleWork = Scratch(24L * padded);
            _samplePadded = padded;
        }
        if (pairs > _samplePairCapacity || _samplePairCapacity == 0)
        {
            // Room for every token of the vocabulary at once (a window holds each id once), so a growing window
            // (repeat-last-n -1) never re-allocates per token: 8 bytes per vocabulary entry.
            int cap = Math.Max(pairs, count);
            _samplePenalties = Scratch(2L * cap * sizeof(int));
            _penaltyStaging = GC.AllocateArray<int>(2 * cap, pinned: true);
            _samplePairCapacity = cap;
        }
        _sampleScratchGeneration = _scratchGeneration;
    }
}
