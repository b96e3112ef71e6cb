using System.Collections.Concurrent;
using System.Diagnostics;
using EdgeLlm.Compute;
using EdgeLlm.Generation;
using EdgeLlm.Model;

namespace EdgeLlm.Cli.Server;

/// <summary>One served generation: its stats and how many prompt tokens came from the cache (the reused prefix).</summary>
public sealed record EngineResult(GenerationStats Stats, int CachedTokens)
{
    /// <summary>Tokens the prompt pass actually ran.</summary>
    public int PrefilledTokens => Stats.PromptTokens - CachedTokens;

    /// <summary>Prefill speed over the tokens actually run (the reused prefix cost nothing).</summary>
    public double PrefillTokensPerSecond => PrefilledTokens / Math.Max(Stats.PromptTime.TotalSeconds, 1e-9);
}

/// <summary>
/// The one model behind the server, shared by <see cref="SlotCount"/> slots (<c>--parallel N</c>), each with its
/// own KV cache, token history and sampler. A request takes a free slot (the one whose cached tokens share the
/// longest prefix with its prompt, so a chat growing turn by turn prefills only its new part), or waits; up to
/// <see cref="QueueLimit"/> requests wait and the rest are refused at once (503). One scheduler thread owns the
/// model: each iteration is one forward call holding the next token of every generating slot and the next prompt
/// chunk of every starting request that fits (<see cref="LlamaModel.ForwardSequences"/>: the weights are read once
/// per step for all of them). A slot whose request ends (or whose client leaves) is free at once for the next
/// waiting request (continuous batching). A step that would run prompts only waits briefly for the clients of
/// requests that just ended (<see cref="GatherPrompts"/>), so requests that end together start again together.
/// Each slot samples and stops exactly as <see cref="Generator"/> does, so a request's tokens do not depend on what
/// else runs beside it.
/// </summary>
public sealed class InferenceEngine : IDisposable
{
    private readonly SemaphoreSlim _free;
    private readonly Slot[] _slots;
    private readonly Lock _slotLock = new();
    private readonly ConcurrentQueue<object> _incoming = new(); // Job or EmbedWork
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _scheduler;
    private readonly List<Job> _prefilling = new(), _decoding = new();
    private readonly int[] _stepTokens;
    private readonly SequenceBatch[] _stepSeqs;
    private readonly float[] _stepLogits;
    private readonly Job?[] _stepPrefill;
    private readonly int[] _stepChunks;
    private readonly Embedder? _embedder;
    private volatile bool _stopping;
    private long _useClock;
    private int _admitted;
    private int _busy;
    private long _decodeSteps, _decodeTokens;
    private double _lastStepTokensPerSecond;
    private int _lastStepSize;
    private long _steps, _stepPromptTokens, _forwardTicks, _hostTicks, _idleTicks, _gatherTicks;
    private readonly StepLog? _stepLog;
    private readonly PromptGather _gather;
    private long _lastForwardTicks;

    public LlamaModel Model { get; }
    public Tokenizer Tokenizer { get; }
    public string ModelId { get; }
    public ChatTemplateKind Template { get; }
    public int[] ChatStopTokens { get; }
    public int QueueLimit { get; internal set; }
    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>Generation slots (<c>--parallel</c>).</summary>
    public int SlotCount => _slots.Length;

    /// <summary>The embedder behind /v1/embeddings, or null when the server was started without <c>--embeddings</c>.</summary>
    public Embedder? Embedder => _embedder;

    /// <summary>Requests running or waiting now.</summary>
    public int Admitted => Volatile.Read(ref _admitted);

    /// <summary>Slots holding a request now.</summary>
    public int Busy => Volatile.Read(ref _busy);

    /// <summary>Requests admitted but not yet holding a slot.</summary>
    public int QueueDepth => Math.Max(0, Admitted - Busy);

    /// <summary>Batched decode steps run so far.</summary>
    public long DecodeSteps => Interlocked.Read(ref _decodeSteps);

    /// <summary>Tokens the decode steps produced (all slots).</summary>
    public long DecodeTokens => Interlocked.Read(ref _decodeTokens);

    /// <summary>Tokens per second of the last decode step, all its slots together.</summary>
    public double LastStepTokensPerSecond => Volatile.Read(ref _lastStepTokensPerSecond);

    /// <summary>Slots the last decode step ran.</summary>
    public int LastStepSize => Volatile.Read(ref _lastStepSize);

    /// <summary>Forward calls run so far (decode steps, prompt-only steps and mixed ones).</summary>
    public long Steps => Interlocked.Read(ref _steps);

    /// <summary>Prompt tokens the steps ran (a reused prefix is not run).</summary>
    public long StepPromptTokens => Interlocked.Read(ref _stepPromptTokens);

    /// <summary>Seconds the scheduler spent inside the forward calls.</summary>
    public double ForwardSeconds => Interlocked.Read(ref _forwardTicks) / (double)Stopwatch.Frequency;

    /// <summary>
    /// Seconds the scheduler spent with work but outside the forward calls: taking new requests, sampling,
    /// detokenizing and passing text on (the per-step host work the forward waits for), and embedding requests.
    /// </summary>
    public double HostSeconds => Interlocked.Read(ref _hostTicks) / (double)Stopwatch.Frequency;

    /// <summary>Seconds the scheduler waited with no request to run.</summary>
    public double IdleSeconds => Interlocked.Read(ref _idleTicks) / (double)Stopwatch.Frequency;

    /// <summary>Seconds prompt-only steps waited for the clients of just-finished requests (<see cref="GatherPrompts"/>).</summary>
    public double GatherSeconds => Interlocked.Read(ref _gatherTicks) / (double)Stopwatch.Frequency;

    /// <summary>
    /// Test hook: when set, a prompt-only step waits this long (instead of half a step) for the clients of requests
    /// that ended within this long (instead of two steps).
    /// </summary>
    internal TimeSpan? GatherWaitOverride { get; set; }

    /// <summary>The most prompts one step has started together (tests reset it).</summary>
    internal int MaxStepPrompts { get; set; }

    /// <summary>Test hook: awaited while the slot is held, before generating (holds a slot deterministically).</summary>
    internal Func<CancellationToken, Task>? HoldSlotHook { get; set; }

    /// <summary>Test hook: called for each piece of text before it is passed on (slows generation down deterministically).</summary>
    internal Action? TextHook { get; set; }

    /// <summary>Test hook: when set, the scheduler waits on it before each iteration (lets a test queue several requests first).</summary>
    internal ManualResetEventSlim? SchedulerGate { get; set; }

    /// <summary>Requests and embedding calls posted to the scheduler and not yet picked up (tests).</summary>
    internal int Pending => _incoming.Count;

    /// <summary>The most slots one decode step has run together (tests reset it).</summary>
    internal int MaxStepSize { get; set; }

    /// <summary>Why the last generation stopped.</summary>
    public StopReason? LastStop { get; private set; }

    /// <param name="parallel">slots decoded together; slot 0 uses the model's own cache, the others their own.</param>
    /// <param name="embeddings">serve /v1/embeddings (its own cache, allocated on the first request).</param>
    public InferenceEngine(LlamaModel model, string modelId, ChatTemplateKind template, int queueLimit, int parallel = 1, bool embeddings = false)
    {
        if (parallel < 1 || parallel > model.MaxBatch)
            throw new EdgeLlmException($"--parallel {parallel} must be in [1, {model.MaxBatch}] (the batch size)");
        Model = model;
        Tokenizer = Tokenizer.For(model);
        if (Tokenizer.Vocab.Count != model.VocabSize)
            throw new EdgeLlmException($"{model.File.Path}: the tokenizer has {Tokenizer.Vocab.Count} tokens but the model's output has {model.VocabSize}");
        ModelId = modelId;
        Template = template;
        ChatStopTokens = ChatSession.StopTokenIds(Tokenizer.Vocab, template);
        QueueLimit = queueLimit;
        if (embeddings) _embedder = new Embedder(model, Tokenizer);
        _slots = new Slot[parallel];
        for (int i = 0; i < parallel; i++) _slots[i] = new Slot(i, i == 0 ? model.Cache : model.CreateCache(), model.ContextSize);
        _free = new SemaphoreSlim(parallel, parallel);
        _stepTokens = new int[model.MaxBatch];
        _stepSeqs = new SequenceBatch[parallel + 1];
        _stepLogits = new float[(long)(parallel + 1) * model.VocabSize];
        _stepPrefill = new Job?[parallel];
        _stepChunks = new int[parallel];
        _stepLog = StepLog.FromEnvironment();
        _gather = new PromptGather(parallel);
        _scheduler = new Thread(SchedulerLoop) { IsBackground = true, Name = "edgellm-scheduler" };
        _scheduler.Start();
    }

    /// <summary>Takes a place (running or queued); false when every slot is busy and the queue is full.</summary>
    public bool TryAdmit()
    {
        if (Interlocked.Increment(ref _admitted) <= _slots.Length + QueueLimit) return true;
        Interlocked.Decrement(ref _admitted);
        return false;
    }

    /// <summary>Gives back the place <see cref="TryAdmit"/> took.</summary>
    public void Leave() => Interlocked.Decrement(ref _admitted);

    /// <summary>
    /// Waits for a slot, then generates on the scheduler thread. <paramref name="cancel"/> (the client going
    /// away) ends the wait or stops generation at the next step, and the slot is free again at once.
    /// <paramref name="onText"/> is called on the scheduler thread and must not block.
    /// </summary>
    public async Task<EngineResult> GenerateAsync(int[] prompt, GenerateOptions options, Func<string, bool> onText, CancellationToken cancel)
    {
        if (prompt.Length == 0) throw new EdgeLlmException("the prompt is empty (not even a BOS token)");
        if (prompt.Length >= Model.ContextSize)
            throw new EdgeLlmException($"the prompt is {prompt.Length} tokens, which does not fit in the context of {Model.ContextSize} tokens (raise -c)");
        await _free.WaitAsync(cancel).ConfigureAwait(false);
        Slot slot = TakeSlot(prompt);
        Interlocked.Increment(ref _busy);
        try
        {
            if (HoldSlotHook is { } hold) await hold(cancel).ConfigureAwait(false);
            cancel.ThrowIfCancellationRequested();
            var hook = TextHook;
            Func<string, bool> f = hook is null ? onText : t => { hook(); return onText(t); };
            var job = new Job(slot, prompt, options, f, cancel);
            Post(job);
            var result = await job.Done.Task.ConfigureAwait(false);
            LastStop = result.Stats.Stop;
            return result;
        }
        finally
        {
            lock (_slotLock) slot.InUse = false;
            Interlocked.Decrement(ref _busy);
            _free.Release();
        }
    }

    /// <summary>
    /// Embeds each input (token ids) on the scheduler thread, between decode steps. Throws when the server was
    /// started without embeddings.
    /// </summary>
    public Task<float[][]> EmbedAsync(IReadOnlyList<int[]> inputs, CancellationToken cancel)
    {
        if (_embedder is null) throw new InvalidOperationException("embeddings are not enabled");
        var work = new EmbedWork(inputs, cancel);
        Post(work);
        return work.Done.Task;
    }

    private void Post(object work)
    {
        if (_stopping) throw new ObjectDisposedException(nameof(InferenceEngine));
        _incoming.Enqueue(work);
        _wake.Release();
    }

    /// <summary>The free slot whose cached tokens share the longest prefix with the prompt (ties: the least recently used).</summary>
    private Slot TakeSlot(int[] prompt)
    {
        lock (_slotLock)
        {
            Slot? best = null;
            int bestMatch = -1;
            foreach (var s in _slots)
            {
                if (s.InUse) continue;
                int limit = Math.Min(s.CachedCount, prompt.Length - 1), m = 0;
                while (m < limit && s.History[m] == prompt[m]) m++;
                if (m > bestMatch || (m == bestMatch && s.LastUsed < best!.LastUsed)) { best = s; bestMatch = m; }
            }
            // The semaphore admitted this request, so a slot is free.
            best!.InUse = true;
            best.LastUsed = ++_useClock;
            return best;
        }
    }

    private void SchedulerLoop()
    {
        long idle = 0;
        while (!_stopping)
        {
            SchedulerGate?.Wait();
            long t0 = Stopwatch.GetTimestamp();
            while (_incoming.TryDequeue(out var work))
            {
                if (work is Job job) { Begin(job); }
                else if (work is EmbedWork e) RunEmbed(e);
            }
            if (_prefilling.Count == 0 && _decoding.Count == 0)
            {
                long w0 = Stopwatch.GetTimestamp();
                Interlocked.Add(ref _hostTicks, w0 - t0);
                _wake.Wait();
                long waited = Stopwatch.GetTimestamp() - w0;
                Interlocked.Add(ref _idleTicks, waited);
                idle += waited;
                continue;
            }
            long gathered = _decoding.Count == 0 ? GatherPrompts() : 0;
            var r = Step();
            long host = Stopwatch.GetTimestamp() - t0 - r.ForwardTicks - gathered;
            Interlocked.Add(ref _hostTicks, host);
            if (r.ForwardTicks > 0) _stepLog?.Add(t0, idle, gathered, r, host, Busy);
            idle = 0;
        }
        _stepLog?.Write();
        // Shutting down: whatever still runs ends as cancelled.
        foreach (var j in _prefilling) j.Done.TrySetCanceled();
        foreach (var j in _decoding) j.Done.TrySetCanceled();
        while (_incoming.TryDequeue(out var w))
        {
            if (w is Job j) j.Done.TrySetCanceled();
            else if (w is EmbedWork e) e.Done.TrySetCanceled();
        }
    }

    /// <summary>
    /// Before a step that would only run prompts (no slot is decoding): while slots are free and requests ended
    /// recently (within two steps) with no new request answering them yet, waits for those clients' next requests,
    /// up to half a step, so that requests ending together start again together (<see cref="PromptGather"/>).
    /// Waiting half a step at most to spare the late ones a whole step of their own, and only when requests just
    /// ended: a lone client, or the first request after a quiet spell, starts at once. Returns the ticks waited.
    /// </summary>
    private long GatherPrompts()
    {
        long step = Volatile.Read(ref _lastForwardTicks);
        long window = 2 * step, wait = step / 2;
        if (GatherWaitOverride is { } o) window = wait = (long)(o.TotalSeconds * Stopwatch.Frequency);
        long start = Stopwatch.GetTimestamp(), now = start, deadline = start + wait;
        while (!_stopping && now < deadline && _prefilling.Count < _slots.Length && _gather.Expected(now, window) > 0)
        {
            _wake.Wait(TimeSpan.FromSeconds((deadline - now) / (double)Stopwatch.Frequency));
            while (_incoming.TryDequeue(out var work))
            {
                if (work is Job job) Begin(job);
                else if (work is EmbedWork e) RunEmbed(e);
            }
            now = Stopwatch.GetTimestamp();
        }
        long waited = now - start;
        if (waited > 0) Interlocked.Add(ref _gatherTicks, waited);
        return waited;
    }

    private void Begin(Job j)
    {
        _gather.Arrived();
        var s = j.Slot;
        var o = j.Options;
        int limit = Math.Min(s.CachedCount, j.Prompt.Length - 1); // at least one token must run to get logits
        int reuse = 0;
        while (reuse < limit && s.History[reuse] == j.Prompt[reuse]) reuse++;
        j.Sampler = new Sampler(Model.VocabSize, o.Sampler);
        bool onlyBos = j.Prompt.Length == 1 && j.Prompt[0] == Tokenizer.Vocab.Bos;
        // As in Generator: under a grammar the text is exactly the bytes the grammar saw (no leading space stripped).
        j.Decoder = Tokenizer.CreateDecoder(stripLeadingSpace: onlyBos && o.Grammar is null);
        j.Constraint = o.Grammar is null ? null : new TokenConstraint(o.Grammar, Tokenizer, o.StopTokens, allowEnd: !o.IgnoreEos);
        j.Logprobs = o.OnLogprobs is null ? null : new TokenLogprobs();
        j.Prompt.CopyTo(s.History, 0);
        j.Count = j.Prompt.Length;
        j.Reuse = reuse;
        j.Pos = reuse;
        s.CachedCount = reuse;
        j.Logits = new float[Model.VocabSize];
        j.Clock.Restart();
        _prefilling.Add(j);
    }

    /// <summary>
    /// One forward call: the next token of every generating slot, plus the next chunk of the prompt of every request
    /// still prefilling, in arrival order, as much as fits in the batch (requests that arrive together start
    /// decoding together), so a starting request costs the others no extra pass over the weights.
    /// </summary>
    private StepCounts Step()
    {
        // A request whose client left before its prompt ran ends here.
        for (int i = _prefilling.Count - 1; i >= 0; i--)
        {
            var c = _prefilling[i];
            if (!c.Cancel.IsCancellationRequested) continue;
            _prefilling.RemoveAt(i);
            Complete(c, new GenerationStats(c.Prompt.Length, 0, c.Clock.Elapsed, TimeSpan.Zero, TimeSpan.Zero, StopReason.Cancelled), flush: false);
        }
        int n = _decoding.Count;
        for (int i = 0; i < n; i++)
        {
            var j = _decoding[i];
            _stepTokens[i] = j.Next;
            _stepSeqs[i] = new SequenceBatch(j.Slot.Cache, j.Count - 1, 1);
        }
        // Every request holds a slot and there are at most MaxBatch slots, so the first prefilling request gets at
        // least one prompt token.
        int used = n, segs = n, np = 0;
        for (int k = 0; k < _prefilling.Count && used < Model.MaxBatch; k++)
        {
            var p = _prefilling[k];
            int nb = Math.Min(Model.MaxBatch - used, p.Count - p.Pos);
            p.Prompt.AsSpan(p.Pos, nb).CopyTo(_stepTokens.AsSpan(used));
            _stepSeqs[segs++] = new SequenceBatch(p.Slot.Cache, p.Pos, nb);
            _stepPrefill[np] = p;
            _stepChunks[np++] = nb;
            used += nb;
        }
        if (segs == 0) return default;
        long t0 = Stopwatch.GetTimestamp();
        var counts = new StepCounts(n, np, used - n, 0);
        try
        {
            Model.ForwardSequences(_stepTokens.AsSpan(0, used), _stepSeqs.AsSpan(0, segs), _stepLogits);
            counts = counts with { ForwardTicks = Stopwatch.GetTimestamp() - t0 };
            Volatile.Write(ref _lastForwardTicks, counts.ForwardTicks);
            if (np > MaxStepPrompts) MaxStepPrompts = np;
            Interlocked.Add(ref _forwardTicks, counts.ForwardTicks);
            Interlocked.Increment(ref _steps);
            Interlocked.Add(ref _stepPromptTokens, used - n);
        }
        catch (Exception e)
        {
            foreach (var j in _decoding) Fail(j, e);
            _decoding.Clear();
            for (int k = 0; k < np; k++)
            {
                var p = _stepPrefill[k]!;
                _stepPrefill[k] = null;
                _prefilling.Remove(p);
                Fail(p, e);
            }
            return default;
        }
        int vocab = Model.VocabSize;
        if (n > 0)
        {
            double seconds = counts.ForwardTicks / (double)Stopwatch.Frequency;
            Interlocked.Increment(ref _decodeSteps);
            Interlocked.Add(ref _decodeTokens, n);
            Volatile.Write(ref _lastStepTokensPerSecond, n / Math.Max(seconds, 1e-9));
            Volatile.Write(ref _lastStepSize, n);
            if (n > MaxStepSize) MaxStepSize = n;
            // Backwards, so that finished requests can be removed in place.
            for (int i = n - 1; i >= 0; i--)
            {
                var j = _decoding[i];
                try
                {
                    _stepLogits.AsSpan(i * vocab, vocab).CopyTo(j.Logits);
                    j.Slot.CachedCount = j.Count;
                    LogitCheck.Require(Model, j.Logits, j.Count - 1);
                    if (!Accept(j)) _decoding.RemoveAt(i);
                }
                catch (Exception e)
                {
                    _decoding.RemoveAt(i);
                    Fail(j, e);
                }
            }
        }
        for (int k = 0; k < np; k++)
        {
            Prefilled(_stepPrefill[k]!, _stepChunks[k], _stepLogits.AsSpan((n + k) * vocab, vocab));
            _stepPrefill[k] = null;
        }
        return counts;
    }

    /// <summary>A chunk of a request's prompt has run: at the end of the prompt, its first token is sampled.</summary>
    private void Prefilled(Job j, int nb, ReadOnlySpan<float> logits)
    {
        try
        {
            j.Pos += nb;
            j.Slot.CachedCount = j.Pos;
            if (j.Pos < j.Count) return;
            _prefilling.Remove(j);
            logits.CopyTo(j.Logits);
            LogitCheck.Require(Model, j.Logits, j.Count - 1);
            j.PromptTime = j.Clock.Elapsed;
            if (j.Options.MaxTokens == 0)
            {
                Complete(j, new GenerationStats(j.Prompt.Length, 0, j.PromptTime, TimeSpan.Zero, TimeSpan.Zero, StopReason.TokenLimit), flush: false);
                return;
            }
            if (Accept(j)) _decoding.Add(j);
        }
        catch (Exception e)
        {
            _prefilling.Remove(j);
            Fail(j, e);
        }
    }

    /// <summary>
    /// Samples the next token from the request's logits, exactly as <see cref="Generator.Generate(ReadOnlySpan{int}, GenerateOptions, Func{string, bool}, CancellationToken)"/>
    /// does; false (and the request completed) when it stops here.
    /// </summary>
    private bool Accept(Job j)
    {
        var o = j.Options;
        StopReason stop;
        var s = j.Slot;
        if (j.Cancel.IsCancellationRequested) stop = StopReason.Cancelled;
        else
        {
            int token = j.Sampler!.Sample(j.Logits, new ReadOnlySpan<int>(s.History, 0, j.Count), j.Constraint);
            if (j.Generated == 0) j.FirstToken = j.Clock.Elapsed;
            if (!o.IgnoreEos && Tokenizer.Vocab.EndsGeneration(token, o.StopTokens)) stop = StopReason.EndOfGeneration;
            else
            {
                j.Generated++;
                s.History[j.Count++] = token;
                j.Constraint?.Accept(token);
                if (j.Logprobs is not null)
                {
                    j.Logprobs.Compute(j.Logits, token, o.TopLogprobs);
                    o.OnLogprobs!(j.Logprobs);
                }
                string text = j.Decoder!.Append(token);
                if (text.Length > 0 && !j.OnText(text)) stop = StopReason.StopText;
                else if (j.Constraint is { Finished: true }) stop = StopReason.EndOfGeneration;
                else if (o.MaxTokens >= 0 && j.Generated >= o.MaxTokens) stop = StopReason.TokenLimit;
                else if (j.Count >= Model.ContextSize) stop = StopReason.ContextFull;
                else
                {
                    j.Next = token;
                    return true;
                }
            }
        }
        Complete(j, new GenerationStats(j.Prompt.Length, j.Generated, j.PromptTime, j.Clock.Elapsed - j.FirstToken, j.FirstToken, stop), flush: true);
        return false;
    }

    private void Complete(Job j, GenerationStats stats, bool flush)
    {
        // Its client will likely send the next request soon (one that left will not).
        if (stats.Stop != StopReason.Cancelled) _gather.Completed(Stopwatch.GetTimestamp());
        if (flush)
        {
            try
            {
                string rest = j.Decoder!.Flush();
                if (rest.Length > 0) j.OnText(rest);
            }
            catch (Exception e)
            {
                Fail(j, e);
                return;
            }
        }
        j.Done.TrySetResult(new EngineResult(stats, j.Reuse));
    }

    private static void Fail(Job j, Exception e)
    {
        j.Slot.CachedCount = 0; // the cache's state is unknown after a failure: forget it
        j.Done.TrySetException(e);
    }

    private void RunEmbed(EmbedWork e)
    {
        try
        {
            var result = new float[e.Inputs.Count][];
            for (int i = 0; i < result.Length; i++)
            {
                e.Cancel.ThrowIfCancellationRequested();
                result[i] = _embedder!.Embed(e.Inputs[i]);
            }
            e.Done.TrySetResult(result);
        }
        catch (OperationCanceledException) { e.Done.TrySetCanceled(); }
        catch (Exception x) { e.Done.TrySetException(x); }
    }

    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        _wake.Release();
        _scheduler.Join();
        _free.Dispose();
        _wake.Dispose();
    }

    /// <summary>A generation slot: its KV cache and the tokens the cache holds.</summary>
    private sealed class Slot(int index, KvCache cache, int contextSize)
    {
        public int Index { get; } = index;
        public KvCache Cache { get; } = cache;
        public int[] History { get; } = new int[contextSize];
        /// <summary>Leading entries of History whose keys and values are in Cache.</summary>
        public int CachedCount;
        public bool InUse;
        public long LastUsed;
    }

    /// <summary>One request on its way through the scheduler (touched only by the scheduler thread once posted).</summary>
    private sealed class Job(Slot slot, int[] prompt, GenerateOptions options, Func<string, bool> onText, CancellationToken cancel)
    {
        public Slot Slot { get; } = slot;
        public int[] Prompt { get; } = prompt;
        public GenerateOptions Options { get; } = options;
        public Func<string, bool> OnText { get; } = onText;
        public CancellationToken Cancel { get; } = cancel;
        public TaskCompletionSource<EngineResult> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public Sampler? Sampler;
        public TokenDecoder? Decoder;
        public TokenConstraint? Constraint;
        public TokenLogprobs? Logprobs;
        public float[] Logits = [];
        public Stopwatch Clock = new();
        public TimeSpan PromptTime, FirstToken;
        public int Count, Reuse, Pos, Generated, Next;
    }

    /// <summary>What one step ran: decoding slots, prompt chunks and their tokens, and the forward call's time.</summary>
    internal readonly record struct StepCounts(int Decode, int PrefillSeqs, int PrefillTokens, long ForwardTicks);

    private sealed class EmbedWork(IReadOnlyList<int[]> inputs, CancellationToken cancel)
    {
        public IReadOnlyList<int[]> Inputs { get; } = inputs;
        public CancellationToken Cancel { get; } = cancel;
        public TaskCompletionSource<float[][]> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
