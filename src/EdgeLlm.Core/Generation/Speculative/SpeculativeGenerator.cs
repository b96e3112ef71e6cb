using System.Diagnostics;
using EdgeLlm.Model;

namespace EdgeLlm.Generation;

/// <summary>
/// Speculative decoding: each step a <see cref="DraftSource"/> proposes up to K tokens, the target model runs the
/// last accepted token and the K drafts in one batched forward pass (logits for all K+1 positions), and the drafts
/// are checked left to right: greedy keeps a draft when it is the target's argmax (so the output is exactly plain
/// greedy decoding), sampling applies <see cref="SpeculativeSampling.Verify"/> (so the output has the plain
/// sampler's distribution). The first rejected draft is replaced by the target's token; when all are kept the
/// K+1-th row gives one more. The target's KV cache is position-indexed, so rolling back past the rejected drafts
/// is setting <see cref="KvCache.Filled"/> back; the next pass overwrites those positions.
/// Buffers are allocated once per generator.
/// </summary>
public sealed class SpeculativeGenerator
{
    private readonly LlamaModel _model;
    private readonly Tokenizer _tokenizer;
    private readonly DraftSource _draft;
    private readonly int _maxDraft;
    private readonly float[] _logits; // [(K+1), vocab]
    private readonly float[] _p;      // [vocab]
    private readonly float[] _q;      // [K, vocab] when the draft has a distribution
    private readonly int[] _drafts;
    private readonly int[] _batch;
    private readonly int[] _history;

    public SpeculativeGenerator(LlamaModel model, Tokenizer tokenizer, DraftSource draft)
    {
        if (tokenizer.Vocab.Count != model.VocabSize)
            throw new EdgeLlmException($"{model.File.Path}: the tokenizer has {tokenizer.Vocab.Count} tokens but the model's output has {model.VocabSize}");
        _model = model;
        _tokenizer = tokenizer;
        _draft = draft;
        // The verification pass is one batch: the last accepted token and the drafts.
        _maxDraft = Math.Max(0, Math.Min(draft.MaxDraft, model.MaxBatch - 1));
        int vocab = model.VocabSize;
        _logits = new float[(long)(_maxDraft + 1) * vocab];
        _p = new float[vocab];
        _q = draft.HasDistribution ? new float[(long)Math.Max(_maxDraft, 1) * vocab] : [];
        _drafts = new int[Math.Max(_maxDraft, 1)];
        _batch = new int[_maxDraft + 1];
        _history = new int[model.ContextSize];
    }

    /// <summary>Draft tokens proposed in the last call.</summary>
    public int Drafted { get; private set; }

    /// <summary>Draft tokens the target kept in the last call.</summary>
    public int Accepted { get; private set; }

    /// <summary>Verification passes of the target in the last call.</summary>
    public int Steps { get; private set; }

    /// <summary>Accepted / drafted (0 when nothing was drafted).</summary>
    public double AcceptanceRate => Drafted == 0 ? 0 : (double)Accepted / Drafted;

    /// <summary>The tokens of the last call: prompt and generated, oldest first.</summary>
    public ReadOnlySpan<int> Tokens => new(_history, 0, _count);
    private int _count;

    /// <summary>
    /// Generates a continuation of <paramref name="prompt"/> like <see cref="Generator.Generate(ReadOnlySpan{int}, GenerateOptions, Func{string, bool}, CancellationToken)"/>
    /// (the same stop rules and statistics; <see cref="GenerateOptions.ReuseCache"/> and context shift are not supported: the cache is rebuilt).
    /// </summary>
    public GenerationStats Generate(ReadOnlySpan<int> prompt, GenerateOptions o, Func<string, bool> onText, CancellationToken cancel = default)
    {
        int ctx = _model.ContextSize;
        int vocab = _model.VocabSize;
        if (prompt.Length == 0) throw new EdgeLlmException("the prompt is empty (not even a BOS token)");
        if (prompt.Length >= ctx)
            throw new EdgeLlmException($"the prompt is {prompt.Length} tokens, which does not fit in the context of {ctx} tokens (raise -c)");
        if (o.ContextShift) throw new EdgeLlmException("speculative decoding does not shift the context; run it without context shift");
        Drafted = Accepted = Steps = 0;
        var sampler = new Sampler(vocab, o.Sampler);
        bool greedy = o.Sampler.Temperature <= 0;
        var rng = new Xoshiro256(sampler.Seed);
        bool onlyBos = prompt.Length == 1 && prompt[0] == _tokenizer.Vocab.Bos;
        var decoder = _tokenizer.CreateDecoder(stripLeadingSpace: onlyBos);
        prompt.CopyTo(_history);
        int count = prompt.Length;
        _count = count;
        _model.Cache.Clear();
        _draft.Begin(prompt);

        var clock = Stopwatch.StartNew();
        // Prefill all but the last prompt token; the last one opens the first verification batch.
        for (int pos = 0; pos < count - 1;)
        {
            if (cancel.IsCancellationRequested)
                return new GenerationStats(prompt.Length, 0, clock.Elapsed, TimeSpan.Zero, TimeSpan.Zero, StopReason.Cancelled);
            int nb = Math.Min(_model.MaxBatch, count - 1 - pos);
            _model.Forward(prompt.Slice(pos, nb), pos, _logits.AsSpan(0, vocab));
            pos += nb;
        }
        var promptTime = clock.Elapsed;
        TimeSpan firstToken = TimeSpan.Zero;
        int generated = 0;
        StopReason stop;
        if (o.MaxTokens == 0) return new GenerationStats(prompt.Length, 0, promptTime, TimeSpan.Zero, TimeSpan.Zero, StopReason.TokenLimit);

        while (true)
        {
            if (cancel.IsCancellationRequested) { stop = StopReason.Cancelled; break; }
            // The cache holds count - 1 positions; the batch runs history[count-1] and k drafts at count-1..count-1+k.
            int k = Math.Min(_maxDraft, ctx - count);
            if (o.MaxTokens >= 0) k = Math.Min(k, o.MaxTokens - generated - 1);
            int nd = k > 0 ? _draft.Propose(new ReadOnlySpan<int>(_history, 0, count), k, _drafts.AsSpan(0, k), _q) : 0;
            if (nd < 0 || nd > k) throw new InvalidOperationException($"draft source proposed {nd} tokens, at most {k} allowed");
            _batch[0] = _history[count - 1];
            _drafts.AsSpan(0, nd).CopyTo(_batch.AsSpan(1));
            _model.Forward(_batch.AsSpan(0, nd + 1), count - 1, _logits.AsSpan(0, (nd + 1) * vocab), allLogits: true);
            Steps++;
            Drafted += nd;

            stop = StopReason.TokenLimit; // overwritten below unless the step ends normally
            bool done = false;
            for (int i = 0; i <= nd; i++)
            {
                var row = new ReadOnlySpan<float>(_logits, i * vocab, vocab);
                LogitCheck.Require(_model, row, count - 1);
                var seen = new ReadOnlySpan<int>(_history, 0, count);
                int token;
                bool accepted;
                if (greedy)
                {
                    token = sampler.Sample(row, seen);
                    accepted = i < nd && token == _drafts[i];
                }
                else
                {
                    SpeculativeSampling.Distribution(sampler, row, seen, _p);
                    if (i < nd)
                    {
                        var q = _draft.HasDistribution ? new ReadOnlySpan<float>(_q, i * vocab, vocab) : default;
                        token = SpeculativeSampling.Verify(_p, q, _drafts[i], ref rng, out accepted);
                    }
                    else
                    {
                        token = SpeculativeSampling.Draw(_p, ref rng);
                        accepted = false;
                    }
                }
                if (accepted) Accepted++;

                if (generated == 0) firstToken = clock.Elapsed;
                if (!o.IgnoreEos && _tokenizer.Vocab.EndsGeneration(token, o.StopTokens)) { stop = StopReason.EndOfGeneration; done = true; break; }
                generated++;
                _history[count++] = token;
                _count = count;
                string text = decoder.Append(token);
                if (text.Length > 0 && !onText(text)) { stop = StopReason.StopText; done = true; break; }
                if (o.MaxTokens >= 0 && generated >= o.MaxTokens) { stop = StopReason.TokenLimit; done = true; break; }
                if (count >= ctx) { stop = StopReason.ContextFull; done = true; break; }
                if (!accepted) break;
            }
            // Roll back past the rejected drafts: every position before the newest token is valid.
            _model.Cache.Filled = Math.Min(_model.Cache.Filled, count - 1);
            if (done) break;
        }
        string rest = decoder.Flush();
        if (rest.Length > 0) onText(rest);
        return new GenerationStats(prompt.Length, generated, promptTime, clock.Elapsed - firstToken, firstToken, stop);
    }
}
