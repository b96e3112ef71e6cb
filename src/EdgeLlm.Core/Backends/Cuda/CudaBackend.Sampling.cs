using EdgeLlm.Backends.Cuda.Native;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cuda;

// Token selection on the device (kernels/sample.cu): only the chosen id crosses the bus.
public sealed unsafe partial class CudaBackend
{
    private const int SampleThreads = 1024;

    /// <summary>The id of the largest of <paramref name="count"/> logits at src[offset] (ties: lowest id); only the id crosses the bus.</summary>
    public int ArgMax(BackendBuffer logits, long offset, int count)
    {
        Ready();
        var s = Buf(logits, "argmax logits");
        Need(s, offset + count, "argmax logits");
        Flush();
        var args = new ArgMaxArgs { Logits = s.Ptr + (ulong)(offset * sizeof(float)), N = count, Out = _misc };
        Launch(_kernels.ArgMax, 1, 1, SampleThreads, ref args);
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
        var args = new SampleArgs
        {
            Logits = s.Ptr + (ulong)(offset * sizeof(float)), N = count, Temperature = temperature, TopK = topK, TopP = topP,
            Uniform = _misc + 4, Out = _misc,
        };
        Launch(_kernels.Sample, 1, 1, SampleThreads, ref args);
        return ReadToken();
    }

    private int ReadToken()
    {
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync(_hostMisc, _misc, 4, _stream), "cuMemcpyDtoHAsync_v2");
        CudaDriver.Check(CudaDriver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
        return _hostMisc[0];
    }
}
