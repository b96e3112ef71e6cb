using EdgeLlm.Backends.Cpu;
using EdgeLlm.Compute;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Tests.Cuda;

namespace EdgeLlm.Tests.DeviceSampler;

/// <summary>
/// The decode loop that runs one step ahead of the host (<see cref="IDevicePickQueue"/>, Generator.DecodeAhead) without a
/// GPU: a CPU backend stands in for CudaBackend that keeps each pick in a "device" slot, feeds it to the next one-token
/// lookup when told to (ignoring the placeholder id the model passes), and hands the ids back only when taken, oldest
/// first. Every way generation can stop (token limit, end token one step late, stop text, a full context, a context
/// shift, cancellation) must give the tokens, stop reason, cache count and KV cache fill of the plain CPU loop, and a
/// following call that reuses the cache must continue exactly as it does there.
/// </summary>
public class DecodeAheadTests
{
    private const string Prompt = "Once upon a time, there was a little girl named Lily. She loved to";

    private sealed record Run(int Prompt, int[] Tokens, string Text, StopReason Stop, int Generated, int CachedCount, int Filled, int[] Second, AheadBackend? Backend);

    private static Run Generate(bool ahead, GenerateOptions o, int context = 128, int stopAfterPieces = -1, int cancelAfterPieces = -1, bool emulateSampler = false)
    {
        var options = new BackendOptions { ContextSize = context };
        var cpu = new CpuBackend(1);
        var backend = ahead ? new AheadBackend(cpu, emulateSampler) : null;
        using var model = new LlamaModel(GgufFile.Open(TestPaths.Stories260K), backend ?? (IBackend)cpu, options, ownsFile: true);
        Assert.Equal(ahead, model.HasDevicePickQueue);
        var tokenizer = Tokenizer.FromGguf(model.File);
        var generator = new Generator(model, tokenizer);
        var text = new System.Text.StringBuilder();
        using var cts = new CancellationTokenSource();
        int pieces = 0;
        var stats = generator.Generate(tokenizer.Encode(Prompt, addBos: true), o, t =>
        {
            text.Append(t);
            pieces++;
            if (pieces == cancelAfterPieces) cts.Cancel();
            return pieces != stopAfterPieces;
        }, cts.Token);
        int[] tokens = generator.CachedTokens.ToArray();
        int cached = generator.CachedCount, filled = model.Cache.Filled;
        if (backend is not null) Assert.Equal(0, backend.InFlight);
        Assert.Equal(0, model.PendingPicks);
        // Go on from what the cache holds: a stale step ahead left in the cache would change these tokens.
        var next = generator.CachedTokens.ToArray().Concat(tokenizer.Encode(" and then", addBos: false)).ToArray();
        int[] second = [];
        if (next.Length + 12 < context)
        {
            generator.Generate(next, o with { ReuseCache = true, MaxTokens = 12, IgnoreEos = true }, _ => true);
            second = generator.CachedTokens.ToArray();
        }
        return new Run(stats.PromptTokens, tokens, text.ToString(), stats.Stop, stats.GeneratedTokens, cached, filled, second, backend);
    }

    private static void Same(Run cpu, Run ahead)
    {
        Assert.Equal(cpu.Stop, ahead.Stop);
        Assert.Equal(cpu.Generated, ahead.Generated);
        Assert.Equal(cpu.Text, ahead.Text);
        Assert.Equal(cpu.Tokens, ahead.Tokens);
        Assert.Equal(cpu.CachedCount, ahead.CachedCount);
        Assert.Equal(cpu.Filled, ahead.Filled);
        Assert.Equal(cpu.Second, ahead.Second);
    }

    [Fact]
    public void GreedyToTheTokenLimitRunsEveryStepAheadAndNoneTooMany()
    {
        var o = new GenerateOptions { MaxTokens = 40, IgnoreEos = true, Sampler = SamplerOptions.Greedy };
        var cpu = Generate(false, o);
        var ahead = Generate(true, o);
        Same(cpu, ahead);
        Assert.Equal(StopReason.TokenLimit, ahead.Stop);
        var b = ahead.Backend!;
        // 39 decode steps of the first call (token 1 came from the prompt), none dropped; all but the first were fed on
        // the device and enqueued while the step before was still in flight.
        Assert.Equal(39, b.EnqueuedInFirstCall);
        Assert.Equal(39 + 11, b.Enqueued);
        Assert.Equal(38 + 10, b.FedLookups);
        Assert.Equal(2, b.MaxInFlight);
        Assert.Equal(0, b.LogitRowsCopiedAfterPrompt);
    }

    [Fact]
    public void AnEndTokenSeenOneStepLateDropsTheStepAhead()
    {
        // Stop on the 15th token greedy generation gives (as an extra end token; the cache holds the first 29 of the 30
        // tokens: the last was never run), where the step after it is already running.
        var plain = Generate(false, new GenerateOptions { MaxTokens = 30, IgnoreEos = true, Sampler = SamplerOptions.Greedy });
        int promptLength = plain.Prompt;
        int end = plain.Tokens[promptLength + 14];
        int first = Array.IndexOf(plain.Tokens, end, promptLength);
        var o = new GenerateOptions { MaxTokens = 30, Sampler = SamplerOptions.Greedy, StopTokens = [end] };
        var cpu = Generate(false, o);
        var ahead = Generate(true, o);
        Same(cpu, ahead);
        Assert.Equal(StopReason.EndOfGeneration, ahead.Stop);
        Assert.Equal(first - promptLength, ahead.Generated);
        // Steps enqueued: one per token after the first, and the one after the end token, dropped.
        Assert.Equal(ahead.Generated - 1 + 1 + 1, ahead.Backend!.EnqueuedInFirstCall);
    }

    [Theory]
    [InlineData(5, -1)]
    [InlineData(1, -1)]
    [InlineData(-1, 7)]
    [InlineData(-1, 1)]
    public void StopTextAndCancellationLeaveTheCacheAsThePlainLoopDoes(int stopAfter, int cancelAfter)
    {
        var o = new GenerateOptions { MaxTokens = 30, IgnoreEos = true, Sampler = SamplerOptions.Greedy };
        var cpu = Generate(false, o, stopAfterPieces: stopAfter, cancelAfterPieces: cancelAfter);
        var ahead = Generate(true, o, stopAfterPieces: stopAfter, cancelAfterPieces: cancelAfter);
        Same(cpu, ahead);
        Assert.Equal(stopAfter > 0 ? StopReason.StopText : StopReason.Cancelled, ahead.Stop);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AFullContextStopsOrShiftsBetweenStepsAsThePlainLoopDoes(bool shift)
    {
        var o = new GenerateOptions { MaxTokens = 70, IgnoreEos = true, Sampler = SamplerOptions.Greedy, ContextShift = shift, ShiftKeep = 4 };
        var cpu = Generate(false, o, context: 48);
        var ahead = Generate(true, o, context: 48);
        Same(cpu, ahead);
        Assert.Equal(shift ? StopReason.TokenLimit : StopReason.ContextFull, ahead.Stop);
        // No step ahead may run at a position the plain loop would not use before a shift.
        Assert.Equal(46, ahead.Backend!.MaxPosition);
    }

    [HostCompilerTheory]
    [InlineData(1234, 0.8f, 40, 0.95f, 0.05f)]
    [InlineData(7, 1.4f, 0, 1f, 0f)]
    public void SampledStepsAheadDrawTheUniformsInStepOrder(int seed, float temperature, int topK, float topP, float minP)
    {
        var o = new GenerateOptions
        {
            MaxTokens = 24, IgnoreEos = true,
            Sampler = new SamplerOptions { Seed = seed, Temperature = temperature, TopK = topK, TopP = topP, MinP = minP },
        };
        var cpu = Generate(false, o);
        var ahead = Generate(true, o, emulateSampler: true);
        Same(cpu, ahead);
        Assert.Equal(23 + 11, ahead.Backend!.SampledPicks);
    }

    [Fact]
    public void PenaltiesKeepTheStepByStepLoop()
    {
        // The window of step N+1 holds token N, which the host does not know when it would enqueue it.
        var o = new GenerateOptions { MaxTokens = 10, IgnoreEos = true, Sampler = new SamplerOptions { Temperature = 0f, RepeatLastN = 16, RepeatPenalty = 1.3f } };
        var ahead = Generate(true, o);
        Assert.Equal(0, ahead.Backend!.Enqueued);
        Assert.Equal(9 + 11, ahead.Backend.StepByStepSamples);
    }

    /// <summary>
    /// A CPU backend with a pick queue of depth 2: picks are computed when enqueued (the "device" runs them), their ids
    /// wait in a FIFO until taken, and a fed lookup reads the last pick's id, not the placeholder it is given.
    /// </summary>
    private sealed class AheadBackend(CpuBackend inner, bool emulateSampler) : IBackend, IDeviceArgMax, IDeviceSampler, IDevicePickQueue
    {
        private readonly CpuBackend _inner = inner;
        private readonly Queue<(int Id, bool Finite)> _picks = new();
        private int _deviceSlot = -1, _vocab = -1;
        private bool _feed, _firstCallOver;
        public int Enqueued, EnqueuedInFirstCall, FedLookups, MaxInFlight, SampledPicks, StepByStepSamples, LogitRowsCopiedAfterPrompt, MaxPosition = -1;
        private int _promptCopies;
        public int InFlight => _picks.Count;

        public int PickDepth => 2;
        public int PendingPicks => _picks.Count;

        public void EnqueuePick(BackendBuffer logits, long offset, int count, DeviceSamplerSettings? settings, double uniform)
        {
            Assert.True(_picks.Count < PickDepth, "a pick enqueued past the queue's depth");
            var row = new float[count];
            _inner.CopyOut(logits, offset, row);
            int id;
            if (settings is { } s)
            {
                Assert.True(emulateSampler, "a sampled pick without the emulated kernel");
                SampledPicks++;
                id = SampleKernel.Run([new SampleKernel.Case(row, s, [], uniform, 64)])[0].Token;
            }
            else
            {
                id = 0;
                for (int i = 1; i < count; i++) if (row[i] > row[id]) id = i;
            }
            _deviceSlot = id;
            _picks.Enqueue((id, LogitCheck.AllFinite(row)));
            Enqueued++;
            MaxInFlight = Math.Max(MaxInFlight, _picks.Count);
        }

        public void FeedLastPick()
        {
            Assert.True(_picks.Count > 0, "fed with no pick in flight");
            _feed = true;
        }

        public int TakePick(out bool allFinite)
        {
            var (id, finite) = _picks.Dequeue();
            allFinite = finite;
            return id;
        }

        public int ArgMax(BackendBuffer logits, long offset, int count, out bool allFinite) =>
            throw new InvalidOperationException("the step-by-step argmax was used where the queue should be");

        public int Sample(BackendBuffer logits, long offset, int count, in DeviceSamplerSettings settings, ReadOnlySpan<int> penalties, double uniform,
            out bool allFinite)
        {
            // Penalties: the step-by-step device sampler. Only the path is checked here (the argmax stands in for the chain;
            // DeviceSamplerGenerationTests checks its tokens).
            StepByStepSamples++;
            var row = new float[count];
            _inner.CopyOut(logits, offset, row);
            allFinite = true;
            int best = 0;
            for (int i = 1; i < count; i++) if (row[i] > row[best]) best = i;
            return best;
        }

        public void GetRows(BackendWeight table, ReadOnlySpan<int> ids, BackendBuffer dst)
        {
            if (_feed)
            {
                _feed = false;
                Assert.Equal(1, ids.Length);
                FedLookups++;
                _inner.GetRows(table, [_deviceSlot], dst);
                return;
            }
            if (ids.Length > 1 && _promptCopies > 0 && !_firstCallOver)
            {
                _firstCallOver = true; // the second call's prompt
                EnqueuedInFirstCall = Enqueued;
            }
            _inner.GetRows(table, ids, dst);
        }

        public void StoreKv(KvCache cache, int layer, int startPos, int nTokens, BackendBuffer k, BackendBuffer v)
        {
            if (!_firstCallOver) MaxPosition = Math.Max(MaxPosition, startPos + nTokens - 1);
            _inner.StoreKv(cache, layer, startPos, nTokens, k, v);
        }

        public string Name => "cpu with a pick queue";
        public void Prepare(BackendLimits limits) => _inner.Prepare(limits);
        public BackendBuffer Allocate(long length) => _inner.Allocate(length);
        public BackendBuffer AllocateCache(long length) => ((IBackend)_inner).AllocateCache(length);
        public KvCacheType DefaultCacheType => ((IBackend)_inner).DefaultCacheType;
        public BackendBuffer AllocateCache(long length, KvCacheType type) => ((IBackend)_inner).AllocateCache(length, type);
        public void ShiftKv(KvCache cache, int layer, int keep, int drop, RopeSpec rope) => ((IBackend)_inner).ShiftKv(cache, layer, keep, drop, rope);
        public void CacheRows(KvCache cache, int layer, bool values, int pos, int count, Span<byte> dst, bool write) =>
            ((IBackend)_inner).CacheRows(cache, layer, values, pos, count, dst, write);
        public BackendWeight LoadWeight(TensorView tensor)
        {
            if (tensor.Name == "token_embd.weight") _vocab = (int)tensor.Rows;
            return _inner.LoadWeight(tensor);
        }
        public void RmsNorm(BackendBuffer x, BackendWeight weight, BackendBuffer dst, int nTokens, int dim, float eps) => _inner.RmsNorm(x, weight, dst, nTokens, dim, eps);
        public void MatMul(BackendWeight weight, BackendBuffer x, BackendBuffer dst, int nTokens) => _inner.MatMul(weight, x, dst, nTokens);
        public void Rope(BackendBuffer x, int nTokens, int nHeads, int startPos, RopeSpec rope) => _inner.Rope(x, nTokens, nHeads, startPos, rope);
        public void Attention(BackendBuffer q, KvCache cache, int layer, int startPos, int nTokens, int nHeads, int headDim, BackendBuffer dst, AttentionOptions options) =>
            _inner.Attention(q, cache, layer, startPos, nTokens, nHeads, headDim, dst, options);
        public void Glu(BackendBuffer gate, BackendBuffer up, long count, GluKind kind) => _inner.Glu(gate, up, count, kind);
        public void AddBias(BackendBuffer x, BackendWeight bias, int nTokens) => _inner.AddBias(x, bias, nTokens);
        public void Scale(BackendBuffer x, long count, float factor) => _inner.Scale(x, count, factor);
        public void Softcap(BackendBuffer x, long count, float cap) => _inner.Softcap(x, count, cap);
        public void Add(BackendBuffer x, BackendBuffer y, long count) => _inner.Add(x, y, count);
        public void Copy(BackendBuffer src, long srcOffset, BackendBuffer dst, long dstOffset, long count) => _inner.Copy(src, srcOffset, dst, dstOffset, count);
        public void CopyOut(BackendBuffer src, long srcOffset, Span<float> dst)
        {
            if (dst.Length == _vocab && ++_promptCopies > 1 && !_firstCallOver) LogitRowsCopiedAfterPrompt++;
            _inner.CopyOut(src, srcOffset, dst);
        }
        public void CopyIn(ReadOnlySpan<float> src, BackendBuffer dst, long dstOffset) => _inner.CopyIn(src, dst, dstOffset);
        public void Dispose() => _inner.Dispose();
    }
}
