using System.Diagnostics;
using EdgeLlm.Model;

namespace EdgeLlm.Generation;

/// <summary>Why generation stopped.</summary>
public enum StopReason { EndOfGeneration, TokenLimit, ContextFull, Cancelled, StopText }

/// <summary>Counts and timings of one generation, for the stderr summary and for benchmarks.</summary>
public sealed record GenerationStats(
    int PromptTokens, int GeneratedTokens, TimeSpan PromptTime, TimeSpan GenerationTime, TimeSpan TimeToFirstToken, StopReason Stop)
{
    public double PromptTokensPerSecond => PromptTokens / Math.Max(PromptTime.TotalSeconds, 1e-9);

    /// <summary>Tokens/s of the decode steps (every generated token after the first, which the prompt pass produced).</summary>
    public double GenerationTokensPerSecond => Math.Max(GeneratedTokens - 1, 0) / Math.Max(GenerationTime.TotalSeconds, 1e-9);
}

/// <summary>
/// The generate loop: prefill the prompt in batches, then sample one token at a time, feeding each back,
/// until an end-of-generation token, the token limit, the end of the context, or cancellation. Text is
/// streamed through <see cref="TokenDecoder"/> so multi-byte characters split over tokens print whole.
/// Buffers are allocated once per generator; the per-token loop allocates only the printed text.
/// </summary>
public sealed class Generator
{
    private readonly LlamaModel _model;
    private readonly Tokenizer _tokenizer;
    private readonly float[] _logits;
    private readonly int[] _history;
    private PenaltyWindow? _penaltyWindow; // the device sampler's window counts (made on first use)

    public Generator(LlamaModel model, Tokenizer tokenizer)
    {
        if (tokenizer.Vocab.Count != model.VocabSize)
            throw new EdgeLlmException($"{model.File.Path}: the tokenizer has {tokenizer.Vocab.Count} tokens but the model's output has {model.VocabSize}");
        _model = model;
        _tokenizer = tokenizer;
        _logits = new float[model.VocabSize];
        _history = new int[model.ContextSize];
    }

    /// <summary>Positions of the KV cache that hold <see cref="CachedTokens"/> after the last call.</summary>
    public int CachedCount { get; private set; }

    /// <summary>The tokens whose keys and values the model's cache holds, oldest first (prompt and generated).</summary>
    public ReadOnlySpan<int> CachedTokens => new(_history, 0, CachedCount);

    /// <summary>Tokens the last call actually ran through the prompt pass (the prompt minus the reused prefix).</summary>
    public int LastPrefillTokens { get; private set; }

    /// <summary>Context shifts the last call made (<see cref="GenerateOptions.ContextShift"/>).</summary>
    public int ContextShifts { get; private set; }

    /// <summary>The logits after the prompt pass of the last call (before any sampling), for tests.</summary>
    public ReadOnlySpan<float> PromptLogits => _promptLogits;
    private float[] _promptLogits = [];

    /// <summary>
    /// Generates a continuation of <paramref name="prompt"/> (token ids, BOS included if wanted).
    /// <paramref name="maxTokens"/> &lt; 0 means no limit but the context. Each piece of text is passed to
    /// <paramref name="onText"/> as soon as it is complete.
    /// </summary>
    public GenerationStats Generate(ReadOnlySpan<int> prompt, int maxTokens, SamplerOptions options, Action<string> onText,
        bool ignoreEos = false, CancellationToken cancel = default)
        => Generate(prompt, new GenerateOptions { MaxTokens = maxTokens, Sampler = options, IgnoreEos = ignoreEos },
            text => { onText(text); return true; }, cancel);

    /// <summary>
    /// The general form: reuses the longest prefix of <paramref name="prompt"/> that is already in the KV cache
    /// (when <see cref="GenerateOptions.ReuseCache"/>), prefills only the rest, then samples until an end
    /// token (the vocabulary's or <see cref="GenerateOptions.StopTokens"/>), the token limit, the context end,
    /// cancellation, or <paramref name="onText"/> returning false.
    /// </summary>
    public GenerationStats Generate(ReadOnlySpan<int> prompt, GenerateOptions o, Func<string, bool> onText, CancellationToken cancel = default)
    {
        int ctx = _model.ContextSize;
        if (prompt.Length == 0) throw new EdgeLlmException("the prompt is empty (not even a BOS token)");
        if (prompt.Length >= ctx)
            throw new EdgeLlmException($"the prompt is {prompt.Length} tokens, which does not fit in the context of {ctx} tokens (raise -c)");

        ContextShifts = 0;
        int reuse = 0;
        if (o.ReuseCache)
        {
            int limit = Math.Min(CachedCount, prompt.Length - 1); // at least one token must run to get logits
            while (reuse < limit && _history[reuse] == prompt[reuse]) reuse++;
        }
        var sampler = new Sampler(_model.VocabSize, o.Sampler);
        bool onlyBos = prompt.Length == 1 && prompt[0] == _tokenizer.Vocab.Bos;
        // Under a grammar the text must be exactly the bytes the grammar saw: no leading space is stripped.
        var decoder = _tokenizer.CreateDecoder(stripLeadingSpace: onlyBos && o.Grammar is null);
        var constraint = o.Grammar is null ? null : new TokenConstraint(o.Grammar, _tokenizer, o.StopTokens, allowEnd: !o.IgnoreEos);
        var logprobs = o.OnLogprobs is null ? null : new TokenLogprobs();
        prompt.CopyTo(_history);
        int count = prompt.Length;
        CachedCount = reuse; // what is valid while the prefill runs, should it throw

        var clock = Stopwatch.StartNew();
        // The prompt runs one batch at a time so a cancellation (Ctrl-C, a client that went away) stops it
        // within one batch instead of at the end of a long prefill.
        for (int pos = reuse; pos < count;)
        {
            if (cancel.IsCancellationRequested)
            {
                LastPrefillTokens = pos - reuse;
                return new GenerationStats(prompt.Length, 0, clock.Elapsed, TimeSpan.Zero, TimeSpan.Zero, StopReason.Cancelled);
            }
            int nb = Math.Min(_model.MaxBatch, count - pos);
            _model.Forward(prompt.Slice(pos, nb), pos, _logits);
            pos += nb;
            CachedCount = pos;
        }
        LogitCheck.Require(_model, _logits, count - 1);
        LastPrefillTokens = count - reuse;
        if (o.KeepPromptLogits) _promptLogits = (float[])_logits.Clone();
        o.OnPromptEvaluated?.Invoke();
        // Context shift keeps the first `keep` tokens: ShiftKeep tokens after a leading BOS (the BOS is always kept), or the whole prompt.
        int keep = o.ShiftKeep < 0 ? count : Math.Min(count, o.ShiftKeep + (prompt[0] == _tokenizer.Vocab.Bos ? 1 : 0));
        var promptTime = clock.Elapsed;
        TimeSpan firstToken = TimeSpan.Zero;
        int generated = 0;
        StopReason stop;
        if (o.MaxTokens == 0) return new GenerationStats(prompt.Length, 0, promptTime, TimeSpan.Zero, TimeSpan.Zero, StopReason.TokenLimit);
        // Greedy decoding on a backend that picks tokens itself: after the prompt, only the id comes back per token.
        bool deviceGreedy = DeviceSampling.UseDeviceArgMax(o.Sampler, _model.HasDeviceArgMax, constraint is not null, logprobs is not null);
        // Any other setting without a grammar or log-probabilities: the whole chain on the device, the uniform drawn here.
        bool deviceSample = !deviceGreedy && DeviceSampling.UseDeviceSampler(o.Sampler, _model.HasDeviceSampler, constraint is not null, logprobs is not null);
        var deviceSettings = deviceSample ? DeviceSampling.Settings(o.Sampler) : default;
        if (deviceSample) _penaltyWindow ??= new PenaltyWindow(_model.VocabSize);
        if ((deviceGreedy || deviceSample && DeviceSampling.PenaltiesOff(o.Sampler)) && _model.HasDevicePickQueue && DeviceSampling.PipelineAllowed)
        {
            stop = DecodeAhead(o, onText, cancel, sampler, decoder, deviceGreedy ? null : deviceSettings, ref count, keep, clock, ref firstToken, ref generated);
            string tail = decoder.Flush();
            if (tail.Length > 0) onText(tail);
            return new GenerationStats(prompt.Length, generated, promptTime, clock.Elapsed - firstToken, firstToken, stop);
        }
        int picked = -1; // the token the backend picked in the last step (deviceGreedy, deviceSample)
        while (true)
        {
            if (cancel.IsCancellationRequested) { stop = StopReason.Cancelled; break; }
            int token = picked >= 0 ? picked : sampler.Sample(_logits, new ReadOnlySpan<int>(_history, 0, count), constraint);
            if (generated == 0) firstToken = clock.Elapsed;
            if (!o.IgnoreEos && _tokenizer.Vocab.EndsGeneration(token, o.StopTokens)) { stop = StopReason.EndOfGeneration; break; }
            generated++;
            _history[count++] = token;
            constraint?.Accept(token);
            if (logprobs is not null)
            {
                logprobs.Compute(_logits, token, o.TopLogprobs);
                o.OnLogprobs!(logprobs);
            }
            string text = decoder.Append(token);
            if (text.Length > 0 && !onText(text)) { stop = StopReason.StopText; break; }
            if (constraint is { Finished: true }) { stop = StopReason.EndOfGeneration; break; }
            if (o.MaxTokens >= 0 && generated >= o.MaxTokens) { stop = StopReason.TokenLimit; break; }
            if (count >= ctx)
            {
                // The cache holds count - 1 positions; the new token needs one more. Shift: keep the first `keep`,
                // drop the older half of the rest, move the later positions down and re-rotate their keys.
                int drop = o.ContextShift ? (count - 1 - keep) / 2 : 0;
                if (drop < 1) { stop = StopReason.ContextFull; break; }
                _model.ShiftContext(keep, drop);
                Array.Copy(_history, keep + drop, _history, keep, count - keep - drop);
                count -= drop;
                CachedCount = count - 1;
                ContextShifts++;
            }
            if (deviceSample)
            {
                var penalties = _penaltyWindow!.Pairs(o.Sampler, new ReadOnlySpan<int>(_history, 0, count));
                double uniform = o.Sampler.Temperature > 0 ? sampler.NextUniform() : 0; // Sample draws one per non-greedy token
                picked = _model.ForwardSampled(token, count - 1, deviceSettings, penalties, uniform, out bool finite);
                CachedCount = count;
                LogitCheck.Require(_model, finite, count - 1);
                continue;
            }
            if (deviceGreedy)
            {
                picked = _model.ForwardGreedy(token, count - 1, out bool finite);
                CachedCount = count;
                LogitCheck.Require(_model, finite, count - 1);
                continue;
            }
            _model.Forward(token, count - 1, _logits);
            CachedCount = count;
            LogitCheck.Require(_model, _logits, count - 1);
        }
        string rest = decoder.Flush();
        if (rest.Length > 0) onText(rest);
        return new GenerationStats(prompt.Length, generated, promptTime, clock.Elapsed - firstToken, firstToken, stop);
    }

    /// <summary>
    /// The decode loop of a backend that picks tokens itself and can run a step ahead (<see cref="Compute.IDevicePickQueue"/>):
    /// while token N is read back and handled here (end token, text, limits), step N+1 already runs on the device with
    /// token N as its input (fed there, not uploaded). The step ahead is enqueued only when it will be needed if token N
    /// does not end generation: not past the token limit, not where the context is full (a shift runs between steps, so
    /// that step goes after the shift, unpipelined). When token N ends generation the step ahead is waited for and
    /// dropped (<see cref="LlamaModel.DiscardPicks"/>): the cache and <see cref="CachedCount"/> end after token N's
    /// predecessor, as in the loop without it. The sampler's uniforms are drawn in step order, one per step, so a seed
    /// gives the same tokens. Returns why generation stopped.
    /// </summary>
    private StopReason DecodeAhead(GenerateOptions o, Func<string, bool> onText, CancellationToken cancel, Sampler sampler, TokenDecoder decoder,
        Compute.DeviceSamplerSettings? settings, ref int count, int keep, Stopwatch clock, ref TimeSpan firstToken, ref int generated)
    {
        int ctx = _model.ContextSize;
        bool draws = settings is not null && o.Sampler.Temperature > 0; // the sampler draws one uniform per non-greedy token
        bool ahead = false; // a step whose input is `token` is already in flight (fed on the device)
        try
        {
            if (cancel.IsCancellationRequested) return StopReason.Cancelled;
            int token = sampler.Sample(_logits, new ReadOnlySpan<int>(_history, 0, count), null); // the prompt's logits
            while (true)
            {
                if (generated > 0 && cancel.IsCancellationRequested) return StopReason.Cancelled; // the step ahead is dropped
                if (generated == 0) firstToken = clock.Elapsed;
                if (!o.IgnoreEos && _tokenizer.Vocab.EndsGeneration(token, o.StopTokens)) return StopReason.EndOfGeneration;
                generated++;
                _history[count++] = token;
                string text = decoder.Append(token);
                if (text.Length > 0 && !onText(text)) return StopReason.StopText;
                if (o.MaxTokens >= 0 && generated >= o.MaxTokens) return StopReason.TokenLimit;
                if (!ahead)
                {
                    if (count >= ctx)
                    {
                        // As in Generate's loop: keep the first `keep`, drop the older half of the rest, re-rotate.
                        int drop = o.ContextShift ? (count - 1 - keep) / 2 : 0;
                        if (drop < 1) return StopReason.ContextFull;
                        _model.ShiftContext(keep, drop);
                        Array.Copy(_history, keep + drop, _history, keep, count - keep - drop);
                        count -= drop;
                        CachedCount = count - 1;
                        ContextShifts++;
                    }
                    _model.EnqueueDecode(token, count - 1, settings, draws ? sampler.NextUniform() : 0);
                }
                // One step is in flight: `token` at count - 1. Its successor goes at count; run it ahead when it will be
                // wanted unless that token ends generation (one more under the limit, no shift before it).
                ahead = count + 1 <= ctx - 1 && (o.MaxTokens < 0 || generated + 1 < o.MaxTokens);
                if (ahead) _model.EnqueueDecode(-1, count, settings, draws ? sampler.NextUniform() : 0);
                token = _model.TakePick(out bool finite);
                CachedCount = count;
                LogitCheck.Require(_model, finite, count - 1);
            }
        }
        finally
        {
            _model.DiscardPicks(); // the step ahead of the last token, if any: the cache ends at CachedCount again
        }
    }

    /// <summary>
    /// Declares that the model's cache holds <paramref name="tokens"/> at positions 0.. (restored from a prompt cache
    /// file), so the next call with <see cref="GenerateOptions.ReuseCache"/> evaluates only what follows their longest
    /// common prefix with its prompt.
    /// </summary>
    public void AdoptCache(ReadOnlySpan<int> tokens)
    {
        if (tokens.Length > _model.Cache.Filled || tokens.Length >= _history.Length)
            throw new ArgumentOutOfRangeException(nameof(tokens), $"{tokens.Length} tokens are more than the {_model.Cache.Filled} cached positions");
        tokens.CopyTo(_history);
        CachedCount = tokens.Length;
    }

    /// <summary>Forgets what the cache holds, so the next call prefills from position 0.</summary>
    public void ResetCache()
    {
        CachedCount = 0;
        _model.Cache.Clear();
    }
}

/// <summary>Settings of one <see cref="Generator.Generate(ReadOnlySpan{int}, GenerateOptions, Func{string, bool}, CancellationToken)"/> call.</summary>
public sealed record GenerateOptions
{
    /// <summary>Tokens to generate; &lt; 0 means until an end token or the context end.</summary>
    public int MaxTokens { get; init; } = -1;
    public SamplerOptions Sampler { get; init; } = new();
    public bool IgnoreEos { get; init; }
    /// <summary>End-of-turn tokens of a chat template, on top of the vocabulary's end-of-generation set.</summary>
    public int[]? StopTokens { get; init; }
    /// <summary>Reuse the longest common prefix with the tokens already in the KV cache.</summary>
    public bool ReuseCache { get; init; }
    /// <summary>
    /// When the context is full, shift it instead of stopping: keep the first <see cref="ShiftKeep"/> tokens, drop the
    /// older half of the rest, and go on (<see cref="LlamaModel.ShiftContext"/>).
    /// </summary>
    public bool ContextShift { get; init; }
    /// <summary>Tokens a context shift keeps after a leading BOS (which is always kept); &lt; 0 = the whole prompt.</summary>
    public int ShiftKeep { get; init; }
    /// <summary>Called once the prompt pass is done (the cache holds the prompt), before the first token is sampled.</summary>
    public Action? OnPromptEvaluated { get; init; }
    /// <summary>Copy the logits after the prompt pass to <see cref="Generator.PromptLogits"/> (tests).</summary>
    public bool KeepPromptLogits { get; init; }
    /// <summary>Constrains the output to this grammar (see <see cref="TokenConstraint"/>): end tokens only once it is complete, and generation stops when nothing more may follow.</summary>
    public Grammar? Grammar { get; init; }
    /// <summary>Called for each generated token (before its text) with its log-probabilities (see <see cref="TokenLogprobs"/>); the object is reused.</summary>
    public Action<TokenLogprobs>? OnLogprobs { get; init; }
    /// <summary>How many most likely alternatives <see cref="OnLogprobs"/> gets (0 to 20).</summary>
    public int TopLogprobs { get; init; }
}
