using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Channels;
using EdgeLlm.Backends;
using EdgeLlm.Compute;
using EdgeLlm.Generation;
using EdgeLlm.Model;
using Microsoft.Extensions.AI;
using ChatRole = Microsoft.Extensions.AI.ChatRole;
using MeaiMessage = Microsoft.Extensions.AI.ChatMessage;

namespace EdgeLlm.AI;

/// <summary>
/// A GGUF model as a Microsoft.Extensions.AI <see cref="IChatClient"/>: messages are rendered with the model's chat
/// template (detected from <c>tokenizer.chat_template</c>, chatml when there is none, or the one named), generated on
/// the CPU or a CUDA GPU, and returned whole or streamed token by token.
/// <para>
/// <see cref="ChatOptions"/> map to the sampler: Temperature (0 = greedy), TopP, TopK, Seed, MaxOutputTokens,
/// StopSequences (the answer is cut before the first one), and FrequencyPenalty/PresencePenalty, which like
/// llama.cpp's server look back over the last 64 tokens of the conversation (AdditionalProperties "repeat_last_n"
/// changes the window, -1 = all of it). AdditionalProperties "min_p" and "repeat_penalty" reach the sampler too.
/// Tools, JSON response formats and non-text content are refused with <see cref="NotSupportedException"/> rather
/// than ignored.
/// </para>
/// One model runs one request at a time: concurrent calls wait their turn. The KV cache is reused across calls
/// when the new conversation starts with the previous one (the next turn of a chat prefills only the new text).
/// </summary>
public sealed class EdgeLlmChatClient : IChatClient
{
    private readonly LlamaModel _model;
    private readonly bool _ownsModel;
    private readonly Tokenizer _tokenizer;
    private readonly Generator _generator;
    private readonly int[] _stopTokens;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ChatClientMetadata _metadata;

    /// <summary>The chat format prompts are rendered in.</summary>
    public ChatTemplateKind Template { get; }

    /// <summary>Set when the model named no chat template EdgeLlm knows and chatml is used instead.</summary>
    public string? TemplateWarning { get; }

    /// <summary>The sampling used where a request's <see cref="ChatOptions"/> say nothing (llama.cpp's defaults).</summary>
    public SamplerOptions DefaultSampling { get; init; } = new();

    /// <summary>Loads <paramref name="modelPath"/> (a GGUF file) on the device <paramref name="options"/> name (CPU by default).</summary>
    public EdgeLlmChatClient(string modelPath, BackendOptions? options = null, string? chatTemplate = null)
        : this(LlamaModel.Load(modelPath, options), chatTemplate, ownsModel: true)
    {
    }

    /// <summary>Wraps a loaded model; the client disposes it only when <paramref name="ownsModel"/>.</summary>
    public EdgeLlmChatClient(LlamaModel model, string? chatTemplate = null, bool ownsModel = false)
    {
        _model = model;
        _ownsModel = ownsModel;
        try
        {
            _tokenizer = Tokenizer.For(model);
            _generator = new Generator(model, _tokenizer);
            Template = ChatTemplates.Resolve(model.File.GetString("tokenizer.chat_template"), chatTemplate, out string? warning);
            TemplateWarning = warning;
            _stopTokens = ChatSession.StopTokenIds(_tokenizer.Vocab, Template);
        }
        catch
        {
            if (ownsModel) model.Dispose();
            throw;
        }
        _metadata = new ChatClientMetadata("edgellm", null, ModelId(model));
    }

    /// <summary>The model file's name without .gguf (general.name is often just the architecture).</summary>
    internal static string ModelId(LlamaModel model) => Path.GetFileNameWithoutExtension(model.File.Path);

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<MeaiMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var request = Prepare(messages, options);
        var text = new StringBuilder();
        GenerationStats stats;
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            stats = await Task.Run(() => Run(request, piece => text.Append(piece), cancellationToken), cancellationToken).ConfigureAwait(false);
        }
        finally { _gate.Release(); }
        cancellationToken.ThrowIfCancellationRequested();
        return new ChatResponse(new MeaiMessage(ChatRole.Assistant, text.ToString()))
        {
            ModelId = _metadata.DefaultModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = Finish(stats.Stop),
            Usage = Usage(stats),
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<MeaiMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var request = Prepare(messages, options);
        string responseId = Guid.NewGuid().ToString("N");
        var channel = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        // Cancelled when the consumer stops early too, so an abandoned stream does not keep the model busy.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        Task<GenerationStats> producer;
        try
        {
            producer = Task.Run(() =>
            {
                try { return Run(request, piece => channel.Writer.TryWrite(piece), stop.Token); }
                finally { channel.Writer.TryComplete(); }
            }, CancellationToken.None);
        }
        catch
        {
            _gate.Release();
            throw;
        }
        try
        {
            await foreach (string piece in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                yield return new ChatResponseUpdate(ChatRole.Assistant, piece) { ResponseId = responseId, MessageId = responseId, ModelId = _metadata.DefaultModelId };
            var stats = await producer.ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            yield return new ChatResponseUpdate
            {
                Role = ChatRole.Assistant,
                ResponseId = responseId,
                MessageId = responseId,
                ModelId = _metadata.DefaultModelId,
                FinishReason = Finish(stats.Stop),
                Contents = [new UsageContent(Usage(stats))],
            };
        }
        finally
        {
            // The generation winds down (within a token) before the next request may start.
            stop.Cancel();
            try { await producer.ConfigureAwait(false); } catch (OperationCanceledException) { }
            _gate.Release();
        }
    }

    private sealed record Request(int[] Prompt, GenerateOptions Options, IReadOnlyList<string> Stops);

    private Request Prepare(IEnumerable<MeaiMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = new List<Generation.ChatMessage>();
        foreach (var m in messages)
        {
            foreach (var c in m.Contents)
                if (c is not TextContent and not UsageContent)
                    throw new NotSupportedException($"EdgeLlm takes text messages only; a {m.Role} message holds {c.GetType().Name}");
            string role = m.Role == ChatRole.System ? "system" : m.Role == ChatRole.User ? "user" : m.Role == ChatRole.Assistant ? "assistant"
                : throw new NotSupportedException($"EdgeLlm takes system, user and assistant messages, not '{m.Role}'");
            list.Add(new Generation.ChatMessage(role, m.Text));
        }
        if (list.Count == 0) throw new ArgumentException("no messages", nameof(messages));
        var (sampler, maxTokens, stops) = Map(options, DefaultSampling);
        int[] prompt = _tokenizer.Encode(ChatTemplates.Render(Template, list, addGenerationPrompt: true), addBos: _tokenizer.Vocab.AddBos, parseSpecial: true);
        if (prompt.Length >= _model.ContextSize)
            throw new EdgeLlmException($"the conversation is {prompt.Length} tokens with the chat template, which does not fit in the context of {_model.ContextSize} tokens");
        return new Request(prompt, new GenerateOptions { MaxTokens = maxTokens, Sampler = sampler, StopTokens = _stopTokens, ReuseCache = true }, stops);
    }

    /// <summary>ChatOptions -> sampler settings, token limit and stop strings; unsupported requests are refused.</summary>
    internal static (SamplerOptions Sampler, int MaxTokens, IReadOnlyList<string> Stops) Map(ChatOptions? o, SamplerOptions defaults)
    {
        if (o is null) return (defaults, -1, []);
        if (o.Tools is { Count: > 0 }) throw new NotSupportedException("EdgeLlm does not call tools (ChatOptions.Tools)");
        if (o.ResponseFormat is ChatResponseFormatJson) throw new NotSupportedException("EdgeLlm cannot constrain output to JSON yet (ChatOptions.ResponseFormat)");
        var s = defaults;
        if (o.Temperature is { } t) s = s with { Temperature = t };
        if (o.TopP is { } p) s = s with { TopP = p };
        if (o.TopK is { } k) s = s with { TopK = k };
        if (o.Seed is { } seed) s = s with { Seed = seed };
        if (o.FrequencyPenalty is { } f) s = s with { FrequencyPenalty = f };
        if (o.PresencePenalty is { } pp) s = s with { PresencePenalty = pp };
        if (o.AdditionalProperties is { } extra)
        {
            if (Number(extra, "min_p") is { } minP) s = s with { MinP = (float)minP };
            if (Number(extra, "repeat_penalty") is { } rp) s = s with { RepeatPenalty = (float)rp };
            if (Number(extra, "repeat_last_n") is { } n) s = s with { RepeatLastN = checked((int)n) };
        }
        try { s.Validate(); }
        catch (ArgumentException e) { throw new ArgumentException(e.Message, nameof(o)); }
        int max = -1;
        if (o.MaxOutputTokens is { } m)
        {
            if (m < 0) throw new ArgumentException($"MaxOutputTokens must be at least 0, got {m}", nameof(o));
            max = m;
        }
        IReadOnlyList<string> stops = o.StopSequences is { Count: > 0 } st ? [.. st] : [];
        return (s, max, stops);
    }

    private static double? Number(AdditionalPropertiesDictionary d, string key)
    {
        if (!d.TryGetValue(key, out object? v) || v is null) return null;
        return v switch
        {
            double x => x,
            float x => x,
            int x => x,
            long x => x,
            decimal x => (double)x,
            System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.Number } j => j.GetDouble(),
            string str when double.TryParse(str, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double x) => x,
            _ => throw new ArgumentException($"AdditionalProperties[\"{key}\"] must be a number, got {v}"),
        };
    }

    private GenerationStats Run(Request r, Action<string> emit, CancellationToken cancel)
    {
        var filter = new StopTextFilter(r.Stops, emit);
        var stats = _generator.Generate(r.Prompt, r.Options, filter.Push, cancel);
        filter.Flush();
        return stats;
    }

    private static ChatFinishReason? Finish(StopReason stop) => stop switch
    {
        StopReason.EndOfGeneration or StopReason.StopText => ChatFinishReason.Stop,
        StopReason.TokenLimit or StopReason.ContextFull => ChatFinishReason.Length,
        _ => null,
    };

    private static UsageDetails Usage(GenerationStats s) => new()
    {
        InputTokenCount = s.PromptTokens,
        OutputTokenCount = s.GeneratedTokens,
        TotalTokenCount = s.PromptTokens + s.GeneratedTokens,
    };

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(LlamaModel)) return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose()
    {
        if (_ownsModel) _model.Dispose();
        _gate.Dispose();
    }
}
