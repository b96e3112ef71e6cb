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
/// The one model behind the server. A <see cref="LlamaModel"/> serves one caller at a time, so requests
/// run one after another on a single slot; up to <see cref="QueueLimit"/> more wait their turn, and
/// the rest are refused at once (503). The cache keeps the last request's tokens, so a request that
/// shares a prefix with the previous one (a chat growing turn by turn) prefills only its new part.
/// </summary>
public sealed class InferenceEngine : IDisposable
{
    private readonly SemaphoreSlim _slot = new(1, 1);
    private readonly Generator _generator;
    private int _admitted;
    private int _busy;

    public LlamaModel Model { get; }
    public Tokenizer Tokenizer { get; }
    public string ModelId { get; }
    public ChatTemplateKind Template { get; }
    public int[] ChatStopTokens { get; }
    public int QueueLimit { get; internal set; }
    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>Requests running or waiting now.</summary>
    public int Admitted => Volatile.Read(ref _admitted);

    /// <summary>1 while the slot is generating, else 0.</summary>
    public int Busy => Volatile.Read(ref _busy);

    /// <summary>Requests admitted but not yet generating.</summary>
    public int QueueDepth => Math.Max(0, Admitted - Busy);

    /// <summary>Test hook: awaited while the slot is held, before generating (holds a slot deterministically).</summary>
    internal Func<CancellationToken, Task>? HoldSlotHook { get; set; }

    /// <summary>Test hook: called for each piece of text before it is passed on (slows generation down deterministically).</summary>
    internal Action? TextHook { get; set; }

    /// <summary>Why the last generation stopped.</summary>
    public StopReason? LastStop { get; private set; }

    public InferenceEngine(LlamaModel model, string modelId, ChatTemplateKind template, int queueLimit)
    {
        Model = model;
        Tokenizer = Tokenizer.FromGguf(model.File);
        _generator = new Generator(model, Tokenizer);
        ModelId = modelId;
        Template = template;
        ChatStopTokens = ChatSession.StopTokenIds(Tokenizer.Vocab, template);
        QueueLimit = queueLimit;
    }

    /// <summary>Takes a place (running or queued); false when the queue is full.</summary>
    public bool TryAdmit()
    {
        if (Interlocked.Increment(ref _admitted) <= 1 + QueueLimit) return true;
        Interlocked.Decrement(ref _admitted);
        return false;
    }

    /// <summary>Gives back the place <see cref="TryAdmit"/> took.</summary>
    public void Leave() => Interlocked.Decrement(ref _admitted);

    /// <summary>
    /// Waits for the slot, then generates on a worker thread. <paramref name="cancel"/> (the client going
    /// away) ends the wait or stops generation at the next token, and the slot is free again at once.
    /// </summary>
    public async Task<EngineResult> GenerateAsync(int[] prompt, GenerateOptions options, Func<string, bool> onText, CancellationToken cancel)
    {
        await _slot.WaitAsync(cancel).ConfigureAwait(false);
        Volatile.Write(ref _busy, 1);
        try
        {
            if (HoldSlotHook is { } hold) await hold(cancel).ConfigureAwait(false);
            cancel.ThrowIfCancellationRequested();
            var o = options with { ReuseCache = true };
            var hook = TextHook;
            Func<string, bool> f = hook is null ? onText : t => { hook(); return onText(t); };
            var result = await Task.Run(() =>
            {
                var stats = _generator.Generate(prompt, o, f, cancel);
                return new EngineResult(stats, stats.PromptTokens - _generator.LastPrefillTokens);
            }, CancellationToken.None).ConfigureAwait(false);
            LastStop = result.Stats.Stop;
            return result;
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
            _slot.Release();
        }
    }

    public void Dispose() => _slot.Dispose();
}
