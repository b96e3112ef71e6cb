using EdgeLlm.Backends.Cpu;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Cuda;

/// <summary>
/// Greedy decoding with the token picked by the backend (<see cref="IDeviceArgMax"/>, as CudaBackend does with
/// kernels/sample.cu): when generation uses it, and that it gives the same tokens as the CPU sampler. Without a
/// GPU, a CPU backend stands in that answers <see cref="IDeviceArgMax.ArgMax"/> itself and counts the logits rows
/// copied to the host; the kernel's own argmax is checked against the CPU sampler in CudaKernelHygieneTests.
/// </summary>
public class DeviceSamplingTests
{
    private const string Prompt = "Once upon a time, there was a little girl named Lily. She loved to";

    [Theory]
    [InlineData(0f, 1f, 0f, 0f, 64, false, false, true)]    // plain greedy
    [InlineData(-1f, 1f, 0f, 0f, 64, false, false, true)]   // negative temperature is greedy too
    [InlineData(0f, 1.1f, 0f, 0f, 0, false, false, true)]   // a repeat penalty over an empty window changes nothing
    [InlineData(0.8f, 1f, 0f, 0f, 64, false, false, false)] // a temperature draw stays on the CPU
    [InlineData(0f, 1.1f, 0f, 0f, 64, false, false, false)] // penalties change the logits before the argmax
    [InlineData(0f, 1f, 0.5f, 0f, 64, false, false, false)]
    [InlineData(0f, 1f, 0f, 0.5f, 64, false, false, false)]
    [InlineData(0f, 1f, 0f, 0f, 64, true, false, false)]    // a grammar masks tokens
    [InlineData(0f, 1f, 0f, 0f, 64, false, true, false)]    // log-probabilities need the row
    public void DeviceArgMaxOnlyWhereItGivesTheSamplersToken(float temperature, float repeat, float presence, float frequency, int lastN,
        bool grammar, bool logprobs, bool expected)
    {
        var o = new SamplerOptions
        {
            Temperature = temperature, RepeatPenalty = repeat, PresencePenalty = presence, FrequencyPenalty = frequency, RepeatLastN = lastN,
        };
        Assert.Equal(expected, DeviceSampling.UseDeviceArgMax(o, backendCan: true, grammar, logprobs));
        Assert.False(DeviceSampling.UseDeviceArgMax(o, backendCan: false, grammar, logprobs));
    }

    private static (string Text, int[] Tokens, ArgMaxBackend Backend) Generate(SamplerOptions sampler, bool deviceArgMax, bool reportNonFinite = false)
    {
        var options = new BackendOptions { ContextSize = 128 };
        var backend = new ArgMaxBackend(new CpuBackend(1)) { ReportNonFinite = reportNonFinite };
        IBackend b = deviceArgMax ? backend : backend.Inner;
        using var model = new LlamaModel(GgufFile.Open(TestPaths.Stories260K), b, options, ownsFile: true);
        var tokenizer = Tokenizer.FromGguf(model.File);
        var text = new System.Text.StringBuilder();
        var generator = new Generator(model, tokenizer);
        generator.Generate(tokenizer.Encode(Prompt, addBos: true), new GenerateOptions
        {
            MaxTokens = 40, IgnoreEos = true, Sampler = sampler,
            OnPromptEvaluated = () => backend.LogitRowsCopied = 0,
        }, t => { text.Append(t); return true; });
        return (text.ToString(), generator.CachedTokens.ToArray(), backend);
    }

    [Fact]
    public void GreedyGenerationWithTheBackendsArgMaxMatchesTheCpuSamplerWithoutCopyingLogits()
    {
        var (cpuText, cpu, _) = Generate(SamplerOptions.Greedy, deviceArgMax: false);
        var (deviceText, device, backend) = Generate(SamplerOptions.Greedy, deviceArgMax: true);
        Assert.Equal(cpu, device);
        Assert.Equal(cpuText, deviceText);
        Assert.True(cpuText.Length > 40, cpuText);
        // The first token comes from the prompt's logits (copied with the prefill); each of the other 39 is picked
        // by the backend after its decode step, and no logits row is copied after the prompt.
        Assert.Equal(39, backend.ArgMaxCalls);
        Assert.Equal(0, backend.LogitRowsCopied);
    }

    [Fact]
    public void SampledGenerationKeepsTheCpuSampler()
    {
        var sampler = new SamplerOptions { Temperature = 0.9f, Seed = 1234 };
        var (cpuText, cpu, _) = Generate(sampler, deviceArgMax: false);
        var (deviceText, device, backend) = Generate(sampler, deviceArgMax: true);
        Assert.Equal(cpu, device);
        Assert.Equal(cpuText, deviceText);
        Assert.Equal(0, backend.ArgMaxCalls);
        Assert.Equal(39, backend.LogitRowsCopied);
    }

    [Fact]
    public void NonFiniteLogitsFoundOnTheDeviceAreRefusedAsOnTheHost()
    {
        var e = Assert.Throws<EdgeLlmException>(() => Generate(SamplerOptions.Greedy, deviceArgMax: true, reportNonFinite: true));
        Assert.Contains("non-finite logits", e.Message);
        Assert.Contains("stories260K.gguf", e.Message);
    }

    /// <summary>A CPU backend that also picks greedy tokens itself, counting the logits rows the model copies out.</summary>
    private sealed class ArgMaxBackend(CpuBackend inner) : IBackend, IDeviceArgMax
    {
        public readonly CpuBackend Inner = inner;
        public int ArgMaxCalls, LogitRowsCopied;
        public bool ReportNonFinite;
        private int _vocab = -1;
        private float[] _row = [];

        public int ArgMax(BackendBuffer logits, long offset, int count, out bool allFinite)
        {
            ArgMaxCalls++;
            if (_row.Length < count) _row = new float[count];
            Inner.CopyOut(logits, offset, _row.AsSpan(0, count));
            int best = 0;
            for (int i = 1; i < count; i++) if (_row[i] > _row[best]) best = i;
            allFinite = !ReportNonFinite && LogitCheck.AllFinite(_row.AsSpan(0, count));
            return best;
        }

        public string Name => "cpu with argmax";
        public void Prepare(BackendLimits limits) => Inner.Prepare(limits);
        public BackendBuffer Allocate(long length) => Inner.Allocate(length);
        public BackendBuffer AllocateCache(long length) => ((IBackend)Inner).AllocateCache(length);
        public KvCacheType DefaultCacheType => ((IBackend)Inner).DefaultCacheType;
        public BackendBuffer AllocateCache(long length, KvCacheType type) => ((IBackend)Inner).AllocateCache(length, type);
        public void ShiftKv(KvCache cache, int layer, int keep, int drop, RopeSpec rope) => ((IBackend)Inner).ShiftKv(cache, layer, keep, drop, rope);
        public void CacheRows(KvCache cache, int layer, bool values, int pos, int count, Span<byte> dst, bool write) =>
            ((IBackend)Inner).CacheRows(cache, layer, values, pos, count, dst, write);
        public BackendWeight LoadWeight(TensorView tensor)
        {
            if (tensor.Name == "token_embd.weight") _vocab = (int)tensor.Rows;
            return Inner.LoadWeight(tensor);
        }
        public void GetRows(BackendWeight table, ReadOnlySpan<int> ids, BackendBuffer dst) => Inner.GetRows(table, ids, dst);
        public void RmsNorm(BackendBuffer x, BackendWeight weight, BackendBuffer dst, int nTokens, int dim, float eps) => Inner.RmsNorm(x, weight, dst, nTokens, dim, eps);
        public void MatMul(BackendWeight weight, BackendBuffer x, BackendBuffer dst, int nTokens) => Inner.MatMul(weight, x, dst, nTokens);
        public void Rope(BackendBuffer x, int nTokens, int nHeads, int startPos, RopeSpec rope) => Inner.Rope(x, nTokens, nHeads, startPos, rope);
        public void StoreKv(KvCache cache, int layer, int startPos, int nTokens, BackendBuffer k, BackendBuffer v) => Inner.StoreKv(cache, layer, startPos, nTokens, k, v);
        public void Attention(BackendBuffer q, KvCache cache, int layer, int startPos, int nTokens, int nHeads, int headDim, BackendBuffer dst, AttentionOptions options) =>
            Inner.Attention(q, cache, layer, startPos, nTokens, nHeads, headDim, dst, options);
        public void Glu(BackendBuffer gate, BackendBuffer up, long count, GluKind kind) => Inner.Glu(gate, up, count, kind);
        public void AddBias(BackendBuffer x, BackendWeight bias, int nTokens) => Inner.AddBias(x, bias, nTokens);
        public void Scale(BackendBuffer x, long count, float factor) => Inner.Scale(x, count, factor);
        public void Softcap(BackendBuffer x, long count, float cap) => Inner.Softcap(x, count, cap);
        public void Add(BackendBuffer x, BackendBuffer y, long count) => Inner.Add(x, y, count);
        public void Copy(BackendBuffer src, long srcOffset, BackendBuffer dst, long dstOffset, long count) => Inner.Copy(src, srcOffset, dst, dstOffset, count);
        public void CopyOut(BackendBuffer src, long srcOffset, Span<float> dst)
        {
            if (dst.Length == _vocab) LogitRowsCopied++;
            Inner.CopyOut(src, srcOffset, dst);
        }
        public void CopyIn(ReadOnlySpan<float> src, BackendBuffer dst, long dstOffset) => Inner.CopyIn(src, dst, dstOffset);
        public void Dispose() => Inner.Dispose();
    }
}
