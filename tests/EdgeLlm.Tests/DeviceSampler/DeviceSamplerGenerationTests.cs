using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Compute;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Tests.Cuda;

namespace EdgeLlm.Tests.DeviceSampler;

/// <summary>
/// The device sampler in generation without a GPU: a CPU backend stands in for CudaBackend that answers
/// <see cref="IDeviceSampler.Sample"/> by running kernels/sample.cu's sample_f32 under the host emulation harness on its
/// logits, keeps the token the way CudaBackend does (<see cref="FedToken"/>) and counts the logits rows the model copies
/// out and the embedding lookups that get the fed token. Generation must give the CPU sampler's tokens for the same seed
/// with no logits copy after the prompt. Also: which requests take the device path, the penalty window's pairs, and the
/// fed-token bookkeeping that lets the CUDA step upload skip the id.
/// </summary>
public class DeviceSamplerGenerationTests
{
    private const string Prompt = "Once upon a time, there was a little girl named Lily. She loved to";

    private static (string Text, int[] Tokens, SamplerBackend Backend) Generate(SamplerOptions sampler, bool device)
    {
        var options = new BackendOptions { ContextSize = 128 };
        var backend = new SamplerBackend(new CpuBackend(1));
        IBackend b = device ? backend : backend.Inner;
        using var model = new LlamaModel(GgufFile.Open(TestPaths.Stories260K), b, options, ownsFile: true);
        Assert.Equal(device, model.HasDeviceSampler);
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

    public static TheoryData<string> Settings() => new(Options.Keys);

    private static readonly Dictionary<string, SamplerOptions> Options = new()
    {
        ["defaults"] = new SamplerOptions { Seed = 1234 },
        ["hot, no truncation"] = new SamplerOptions { Seed = 99, Temperature = 1.5f, TopK = 0, TopP = 1f, MinP = 0f },
        ["penalties"] = new SamplerOptions { Seed = 5, Temperature = 0.9f, TopP = 0.9f, RepeatLastN = 32, RepeatPenalty = 1.3f, PresencePenalty = 0.3f, FrequencyPenalty = 0.1f },
        ["greedy with penalties"] = new SamplerOptions { Temperature = 0f, RepeatLastN = 16, RepeatPenalty = 1.4f },
    };

    [HostCompilerTheory]
    [MemberData(nameof(Settings))]
    public void GenerationWithTheDeviceSamplerGivesTheCpuSamplersTokensWithoutCopyingLogits(string setting)
    {
        var sampler = Options[setting];
        var (cpuText, cpu, _) = Generate(sampler, device: false);
        var (deviceText, device, backend) = Generate(sampler, device: true);
        Assert.Equal(cpu, device);
        Assert.Equal(cpuText, deviceText);
        Assert.True(cpuText.Length > 40, cpuText);
        // The first token comes from the prompt's logits (copied with the prefill) and the host sampler; each of the
        // other 39 is sampled by the backend after its decode step, and no logits row is copied after the prompt.
        Assert.Equal(39, backend.SampleCalls);
        Assert.Equal(0, backend.LogitRowsCopied);
        // Every decode step after the first looks up the token the backend fed itself.
        Assert.Equal(38, backend.FedLookups);
        Assert.Equal(38 + 1, backend.SingleTokenLookups);
    }

    [Theory]
    [InlineData(0.8f, 1f, 64, false, false, true)]   // a temperature draw
    [InlineData(0f, 1.1f, 64, false, false, true)]   // greedy with penalties
    [InlineData(0f, 1f, 64, false, false, false)]    // plain greedy: the argmax path
    [InlineData(0f, 1.1f, 0, false, false, false)]   // penalties over an empty window are plain greedy
    [InlineData(0.8f, 1f, 64, true, false, false)]   // a grammar masks tokens against the tokenizer: host
    [InlineData(0.8f, 1f, 64, false, true, false)]   // log-probabilities need the row: host
    public void TheDeviceSamplerTakesWhatTheArgMaxDoesNotAndNothingThatNeedsTheRow(float temperature, float repeat, int lastN, bool grammar,
        bool logprobs, bool expected)
    {
        var o = new SamplerOptions { Temperature = temperature, RepeatPenalty = repeat, RepeatLastN = lastN };
        Assert.Equal(expected, DeviceSampling.UseDeviceSampler(o, backendCan: true, grammar, logprobs));
        Assert.False(DeviceSampling.UseDeviceSampler(o, backendCan: false, grammar, logprobs));
        if (expected) Assert.False(DeviceSampling.UseDeviceArgMax(o, backendCan: true, grammar, logprobs));
    }

    [Fact]
    public void OnlyEdgellmDeviceSamplingZeroTurnsTheDevicePathsOff()
    {
        Assert.True(DeviceSampling.AllowedBy(null));
        Assert.True(DeviceSampling.AllowedBy("1"));
        Assert.True(DeviceSampling.AllowedBy(""));
        Assert.False(DeviceSampling.AllowedBy("0"));
        Assert.False(DeviceSampling.AllowedBy(" 0\n"));
        Assert.True(DeviceSampling.Allowed); // the test run does not set it (the selection tests above rely on that)
    }

    [Fact]
    public void SettingsCarryTheHostsRoundingOfTheInverseTemperatureAndLnMinP()
    {
        var s = DeviceSampling.Settings(new SamplerOptions { Temperature = 0.7f, MinP = 0.05f, TopK = 12, TopP = 0.9f });
        Assert.Equal(1f / 0.7f, s.InvTemperature);
        Assert.Equal((float)Math.Log(0.05f), s.LogMinP, 6);
        Assert.Equal(MathF.Log(0.05f), s.LogMinP);
        Assert.Equal((12, 0.9f, 0.05f), (s.TopK, s.TopP, s.MinP));
        Assert.Equal(0f, DeviceSampling.Settings(new SamplerOptions { MinP = 0f }).LogMinP);
    }

    [Fact]
    public void PenaltyWindowCountsTheDistinctTokensOfTheLastN()
    {
        var w = new PenaltyWindow(50);
        int[] history = [1, 2, 3, 9, 4, 9, 5, 9, 4, 7];
        var o = new SamplerOptions { RepeatLastN = 6, RepeatPenalty = 1.1f };
        var pairs = w.Pairs(o, history).ToArray();
        // the last 6: 4, 9, 5, 9, 4, 7
        Assert.Equal(new[] { 4, 2, 9, 2, 5, 1, 7, 1 }, pairs);
        Assert.Equal(new[] { 1, 1, 2, 1, 3, 1, 9, 3, 4, 2, 5, 1, 7, 1 }, w.Pairs(o with { RepeatLastN = -1 }, history).ToArray());
        Assert.Equal(new[] { 7, 1 }, w.Pairs(o with { RepeatLastN = 1 }, history).ToArray());
        Assert.True(w.Pairs(o with { RepeatLastN = 0 }, history).IsEmpty);
        Assert.True(w.Pairs(o with { RepeatPenalty = 1f }, history).IsEmpty); // every penalty off
        Assert.False(w.Pairs(o with { RepeatPenalty = 1f, PresencePenalty = 0.5f }, history).IsEmpty);
        var e = Assert.Throws<ArgumentException>(() => w.Pairs(o, [3, 3, 50]));
        Assert.Contains("token id 50", e.Message);
        Assert.Equal(new[] { 3, 1 }, w.Pairs(o, [3]).ToArray()); // the failed call left no counts behind
    }

    [Fact]
    public void AFedTokenIsTakenOnceForExactlyThatTokenInTheSameScratch()
    {
        var f = new FedToken();
        Assert.False(f.Take([5], 0)); // nothing fed yet
        f.Set(5, 3);
        Assert.True(f.Take([5], 3));
        Assert.False(f.Take([5], 3)); // taken: the next lookup uploads
        f.Set(5, 3);
        Assert.False(f.Take([6], 3)); // another token
        Assert.False(f.Take([5], 3)); // and the mark is gone
        f.Set(5, 3);
        Assert.False(f.Take([5, 5], 3)); // a batch
        f.Set(5, 3);
        Assert.False(f.Take([5], 4)); // the scratch was re-allocated (Prepare)
    }

    /// <summary>A CPU backend that samples with the emulated kernel, keeps the token like CudaBackend and counts the copies.</summary>
    private sealed class SamplerBackend(CpuBackend inner) : IBackend, IDeviceSampler
    {
        public readonly CpuBackend Inner = inner;
        public int SampleCalls, LogitRowsCopied, FedLookups, SingleTokenLookups;
        private int _vocab = -1;
        private FedToken _fed;

        public int Sample(BackendBuffer logits, long offset, int count, in DeviceSamplerSettings settings, ReadOnlySpan<int> penalties, double uniform,
            out bool allFinite)
        {
            SampleCalls++;
            var row = new float[count];
            Inner.CopyOut(logits, offset, row);
            var r = SampleKernel.Run([new SampleKernel.Case(row, settings, penalties.ToArray(), uniform, 64)])[0];
            Assert.Equal(r.Token, r.Fed);
            allFinite = !r.NonFinite;
            _fed.Set(r.Fed, 0);
            return r.Token;
        }

        public void GetRows(BackendWeight table, ReadOnlySpan<int> ids, BackendBuffer dst)
        {
            if (ids.Length == 1) SingleTokenLookups++;
            if (_fed.Take(ids, 0)) FedLookups++;
            Inner.GetRows(table, ids, dst);
        }

        public string Name => "cpu with a device sampler";
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
