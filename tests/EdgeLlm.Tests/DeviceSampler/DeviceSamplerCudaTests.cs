using EdgeLlm.Backends.Cuda;
using EdgeLlm.Generation;
using EdgeLlm.Model;
using EdgeLlm.Tests.Cuda;

namespace EdgeLlm.Tests.DeviceSampler;

/// <summary>
/// The device sampler on a real GPU (skipped without one, like CudaAgreementTests): CudaBackend.Sample against the CPU
/// Sampler on the same rows, and generation on the GPU with the device sampler against generation on the same GPU
/// model through the host sampler (a logprobs callback keeps the host path), so both see the same logits. Exact
/// equality is expected; kernels/sample.cu documents the ulp-level exponentials that could, with a probability of
/// the order of 1e-7 per token, make one token differ.
/// </summary>
public class DeviceSamplerCudaTests
{
    [CudaDeviceFact]
    public void CudaSampleGivesTheCpuSamplersTokens()
    {
        using var gpu = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Device = "cuda" });
        var cuda = (CudaBackend)gpu.Backend;
        const int n = 32000;
        var buf = cuda.Allocate(n + 16);
        var rng = new Random(17);
        var logits = new float[n];
        var window = new PenaltyWindow(n);
        foreach (var o in new[]
                 {
                     new SamplerOptions { Seed = 1 },
                     new SamplerOptions { Seed = 2, Temperature = 1.2f, TopK = 0, TopP = 0.9f, MinP = 0f },
                     new SamplerOptions { Seed = 3, Temperature = 1f, TopK = 0, TopP = 1f, MinP = 0.02f },
                     new SamplerOptions { Seed = 4, Temperature = 0.8f, RepeatLastN = 16, RepeatPenalty = 1.3f, PresencePenalty = 0.2f, FrequencyPenalty = 0.1f },
                     new SamplerOptions { Seed = 5, Temperature = 0f, RepeatLastN = 16, RepeatPenalty = 1.5f },
                 })
        {
            var cpu = new Sampler(n, o);
            var uniforms = new Sampler(n, o);
            var history = new List<int> { 1, 2, 3 };
            for (int row = 0; row < 50; row++)
            {
                for (int i = 0; i < n; i++) logits[i] = (float)Math.Round((rng.NextDouble() * 2 - 1) * 24) / 4;
                cuda.CopyIn(logits, buf, 16);
                int want = cpu.Sample(logits, history.ToArray());
                double u = o.Temperature > 0 ? uniforms.NextUniform() : 0;
                int got = cuda.Sample(buf, 16, n, DeviceSampling.Settings(o), window.Pairs(o, history.ToArray()), u, out bool finite);
                Assert.True(finite);
                Assert.True(want == got, $"{o}, row {row}: the CPU sampler picked {want}, the GPU {got}");
                history.Add(want);
            }
        }
    }

    [CudaDeviceFact]
    public void GenerationWithTheDeviceSamplerGivesTheHostSamplersTokensOnTheSameLogits()
    {
        using var gpu = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Device = "cuda", ContextSize = 256 });
        Assert.True(gpu.HasDeviceSampler);
        var tokenizer = Tokenizer.FromGguf(gpu.File);
        var prompt = tokenizer.Encode("Once upon a time, there was a little girl named Lily. She loved to", addBos: true);
        var sampler = new SamplerOptions { Seed = 4321, RepeatLastN = 32, RepeatPenalty = 1.2f };
        int[] Run(bool host)
        {
            var generator = new Generator(gpu, tokenizer);
            generator.Generate(prompt, new GenerateOptions
            {
                MaxTokens = 64, IgnoreEos = true, Sampler = sampler,
                OnLogprobs = host ? _ => { } : null, // log-probabilities keep the logits copy and the CPU sampler
            }, _ => true);
            return generator.CachedTokens.ToArray();
        }
        int[] host = Run(host: true);
        int replays = ((CudaBackend)gpu.Backend).GraphReplays;
        int eager = ((CudaBackend)gpu.Backend).EagerSteps;
        int[] device = Run(host: false);
        Assert.Equal(host, device);
        if (((CudaBackend)gpu.Backend).GraphsEnabled)
        {
            Assert.True(((CudaBackend)gpu.Backend).GraphReplays > replays + 32); // decode steps replayed with fed ids
            // The pick is part of the decode step's graph: only the prompt's batch ran op by op.
            Assert.Equal(eager + 1, ((CudaBackend)gpu.Backend).EagerSteps);
        }
    }

    [CudaDeviceFact]
    public void GreedyGenerationPicksOnTheDeviceInsideTheGraphAndGivesTheHostsTokens()
    {
        using var gpu = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Device = "cuda", ContextSize = 256 });
        var cuda = (CudaBackend)gpu.Backend;
        var tokenizer = Tokenizer.FromGguf(gpu.File);
        var prompt = tokenizer.Encode("Once upon a time, there was a little girl named Lily. She loved to", addBos: true);
        int[] Run(bool host)
        {
            var generator = new Generator(gpu, tokenizer);
            generator.Generate(prompt, new GenerateOptions
            {
                MaxTokens = 48, IgnoreEos = true, Sampler = SamplerOptions.Greedy, OnLogprobs = host ? _ => { } : null,
            }, _ => true);
            return generator.CachedTokens.ToArray();
        }
        int[] hostTokens = Run(host: true);
        int captures = cuda.GraphCaptures, eager = cuda.EagerSteps;
        int[] device = Run(host: false);
        Assert.Equal(hostTokens, device);
        if (cuda.GraphsEnabled)
        {
            Assert.Equal(eager + 1, cuda.EagerSteps);         // the prompt's batch
            Assert.Equal(captures + 1, cuda.GraphCaptures);   // one graph (step + argmax) for all 47 decode steps
        }
    }
}
