using EdgeLlm.Backends.Cuda;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Tests.Cuda;

namespace EdgeLlm.Tests.CudaFusion;

/// <summary>
/// On a GPU (skipped elsewhere, CI included): the fused launches (stacked Q/K/V and gate/up, kernels/fused.cu) against
/// the unfused ones (<see cref="CudaSettings.Fuse"/> off before the model loads, as EDGELLM_CUDA_FUSE=0 does) on the
/// same device, prefill and decode. The fused kernels write the same bits as the sequences they replace (host
/// emulation: FusedKernelHostTests); the stacked products are the same dot products, but a matvec kernel may pick
/// its reduction by the matrix's shape, so the logits are compared to NMSE 1e-6 rather than bit for bit.
/// </summary>
public class FusedOnDeviceTests
{
    private static float[] Run(string model, bool fuse, int[] prompt, int decode)
    {
        var (info, target) = CudaTestEnvironment.Device.Value!.Value;
        var backend = new CudaBackend(info, target, new KernelCache(Path.Combine(Path.GetDirectoryName(TestPaths.TempFile("x"))!, "kernels")));
        backend.Settings = backend.Settings with { Fuse = fuse };
        using var m = new LlamaModel(GgufFile.Open(TestPaths.Data(Path.Combine("models-visible", model + ".gguf"))), backend,
            new BackendOptions { ContextSize = 128 }, ownsFile: true);
        int vocab = m.VocabSize;
        var all = new float[(prompt.Length + decode) * vocab];
        m.Forward(prompt, 0, all.AsSpan(0, prompt.Length * vocab), allLogits: true);
        for (int i = 0; i < decode; i++)
        {
            int pos = prompt.Length + i;
            m.Forward(3 + i * 7 % (vocab - 3), pos, all.AsSpan(pos * vocab, vocab));
        }
        return all;
    }

    [CudaDeviceTheory]
    [InlineData("llama-Q4_K")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("gemma")]
    [InlineData("gemma2")]
    [InlineData("phi3")]
    public void FusedLaunchesGiveTheUnfusedLogits(string model)
    {
        int[] prompt = [1, 17, 230, 5, 99, 41, 8, 600];
        const int decode = 12;
        var fused = Run(model, fuse: true, prompt, decode);
        var plain = Run(model, fuse: false, prompt, decode);
        int vocab = fused.Length / (prompt.Length + decode);
        for (int p = 0; p < prompt.Length + decode; p++)
        {
            double e = CudaAgreementTests.Nmse(fused.AsSpan(p * vocab, vocab), plain.AsSpan(p * vocab, vocab));
            Assert.True(e <= 1e-6, $"{model} position {p}: fused against unfused NMSE {e:E2}");
        }
        Assert.Contains(fused, v => v != 0f);
    }
}
