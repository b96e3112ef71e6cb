using System.Diagnostics;
using EdgeLlm.Model;

namespace EdgeLlm.Generation;

/// <summary>Why generation stopped.</summary>
public enum StopReason { EndOfGeneration, TokenLimit, ContextFull, Cancelled }

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

    public Generator(LlamaModel model, Tokenizer tokenizer)
    {
        if (tokenizer.Vocab.Count != model.VocabSize)
            throw new EdgeLlmException($"{model.File.Path}: the tokenizer has {tokenizer.Vocab.Count} tokens but the model's output has {model.VocabSize}");
        _model = model;
        _tokenizer = tokenizer;
        _logits = new float[model.VocabSize];
        _history = new int[model.ContextSize];
    }

    /// <summary>
    /// Generates a continuation of <paramref name="prompt"/> (token ids, BOS included if wanted).
    /// <paramref name="maxTokens"/> &lt; 0 means no limit but the context. Each piece of text is passed to
    /// <paramref name="onText"/> as soon as it is complete.
    /// </summary>
    public GenerationStats Generate(ReadOnlySpan<int> prompt, int maxTokens, SamplerOptions options, Action<string> onText,
        bool ignoreEos = false, CancellationToken cancel = default)
    {
        int ctx = _model.ContextSize;
        if (prompt.Length == 0) throw new EdgeLlmException("the prompt is empty (not even a BOS token)");
        if (prompt.Length >= ctx)
            throw new EdgeLlmException($"the prompt is {prompt.Length} tokens, which does not fit in the context of {ctx} tokens (raise -c)");

        var sampler = new Sampler(_model.VocabSize, options);
        bool onlyBos = prompt.Length == 1 && prompt[0] == _tokenizer.Vocab.Bos;
        var decoder = _tokenizer.CreateDecoder(stripLeadingSpace: onlyBos);
        prompt.CopyTo(_history);
        int count = prompt.Length;

        var clock = Stopwatch.StartNew();
        _model.Forward(prompt, 0, _logits);
        var promptTime = clock.Elapsed;
        TimeSpan firstToken = TimeSpan.Zero;
        int generated = 0;
        StopReason stop;
        while (true)
        {
            if (cancel.IsCancellationRequested) { stop = StopReason.Cancelled; break; }
            int token = sampler.Sample(_logits, new ReadOnlySpan<int>(_history, 0, count));
            if (generated == 0) firstToken = clock.Elapsed;
            if (!ignoreEos && _tokenizer.Vocab.IsEndOfGeneration(token)) { stop = StopReason.EndOfGeneration; break; }
            generated++;
            _history[count++] = token;
            string text = decoder.Append(token);
            if (text.Length > 0) onText(text);
            if (maxTokens >= 0 && generated >= maxTokens) { stop = StopReason.TokenLimit; break; }
            if (count >= ctx) { stop = StopReason.ContextFull; break; }
            _model.Forward(token, count - 1, _logits);
        }
        string rest = decoder.Flush();
        if (rest.Length > 0) onText(rest);
        return new GenerationStats(prompt.Length, generated, promptTime, clock.Elapsed - firstToken, firstToken, stop);
    }
}
