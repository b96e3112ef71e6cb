using EdgeLlm.Compute;
using EdgeLlm.Backends.Cuda.Native;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cuda;

// Greedy token selection on the device (kernels/sample.cu): only the chosen id and a finiteness flag cross the bus.
// Generation uses it through IDeviceArgMax (LlamaModel.ForwardGreedy) when the CPU sampler would pick the argmax
// of the raw logits (Generation.DeviceSampling); every other sampling setting copies the logits and samples on
// the CPU.
public sealed unsafe partial class CudaBackend : IDeviceArgMax
{
    private const int SampleThreads = 1024;

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
}
