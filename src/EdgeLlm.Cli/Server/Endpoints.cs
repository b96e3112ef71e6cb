using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Threading.Channels;
using EdgeLlm.Generation;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace EdgeLlm.Cli.Server;

/// <summary>
/// The routes: /v1/chat/completions, /v1/completions (streamed as server-sent events or one JSON),
/// /v1/models, /health. Every refusal is OpenAI-shaped error JSON with a 4xx status; nothing a client
/// sends can produce a 500 or a hang.
/// </summary>
internal sealed class Endpoints(InferenceEngine engine)
{
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    public void Map(WebApplication app)
    {
        app.MapGet("/health", http => Json(http, 200, new HealthResponse(), OpenAiJsonContext.Default.HealthResponse));
        app.MapGet("/v1/models", http => Json(http, 200, new ModelList
        {
            Data = [new ModelInfo { Id = engine.ModelId, Created = engine.Created }],
        }, OpenAiJsonContext.Default.ModelList));
        app.MapPost("/v1/chat/completions", http => Guard(http, ChatCompletions));
        app.MapPost("/v1/completions", http => Guard(http, Completions));
    }

    private static Task Json<T>(HttpContext http, int status, T value, JsonTypeInfo<T> info)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(http.Response.Body, value, info, http.RequestAborted);
    }

    public static Task WriteError(HttpContext http, ApiError e)
    {
        if (e.Status == 503) http.Response.Headers.RetryAfter = "1";
        return Json(http, e.Status, new ErrorResponse
        {
            Error = new ErrorBody { Message = e.Message, Type = e.Type, Param = e.Param, Code = e.Code },
        }, OpenAiJsonContext.Default.ErrorResponse);
    }

    /// <summary>Turns every failure into an error response (or nothing, once a stream has started or the client left).</summary>
    private static async Task Guard(HttpContext http, Func<HttpContext, Task> handler)
    {
        ApiError? error;
        try
        {
            await handler(http);
            return;
        }
        catch (ApiError e) { error = e; }
        catch (BadHttpRequestException e)
        {
            error = e.StatusCode == 413
                ? new ApiError(413, "the request body is too large", code: "request_too_large")
                : new ApiError(e.StatusCode, $"bad request: {e.Message}");
        }
        catch (JsonException e)
        {
            string? param = e.Path is { Length: > 2 } p && p.StartsWith("$.", StringComparison.Ordinal) ? p[2..] : null;
            error = new ApiError(400, $"the request body is not valid for this endpoint: {EdgeLlm.IO.ErrorText.OneLine(e)} (a syntax error or a value of the wrong type)",
                param, "invalid_json");
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested) { return; }
        catch (IOException) when (http.RequestAborted.IsCancellationRequested) { return; }
        catch (EdgeLlmException e) { error = new ApiError(400, e.Message); }
        catch (Exception e) { error = new ApiError(500, $"internal error: {e.GetType().Name}: {FirstLine(e.Message)}", type: "server_error"); }
        if (http.Response.HasStarted || http.RequestAborted.IsCancellationRequested) return;
        await WriteError(http, error);
    }

    private static string FirstLine(string s)
    {
        int nl = s.IndexOfAny(['\r', '\n']);
        return nl < 0 ? s : s[..nl];
    }

    private static async Task<T> Read<T>(HttpContext http, JsonTypeInfo<T> info) where T : class
    {
        var value = await JsonSerializer.DeserializeAsync(http.Request.Body, info, http.RequestAborted);
        return value ?? throw new ApiError(400, "the request body must be a JSON object", code: "invalid_json");
    }

    /// <summary>Checks the common fields and maps them onto the sampler (llama.cpp's defaults for the rest).</summary>
    private GenerateOptions Sampling(SamplingRequest r, out bool stream)
    {
        if (!string.IsNullOrEmpty(r.Model) && r.Model != engine.ModelId)
            throw new ApiError(404, $"the model '{r.Model}' does not exist (this server has '{engine.ModelId}')", "model", "model_not_found");
        if (r.N is { } n && n != 1) throw new ApiError(400, $"n must be 1, got {n}", "n");
        if (r.MaxTokens is < 0) throw new ApiError(400, $"max_tokens must not be negative, got {r.MaxTokens}", "max_tokens");
        if (r.MaxCompletionTokens is < 0) throw new ApiError(400, $"max_completion_tokens must not be negative, got {r.MaxCompletionTokens}", "max_completion_tokens");
        if (r.Temperature is { } t && !(t >= 0 && t <= 2)) throw new ApiError(400, $"temperature must be in [0, 2], got {t}", "temperature");
        if (r.TopP is { } p && !(p > 0 && p <= 1)) throw new ApiError(400, $"top_p must be in (0, 1], got {p}", "top_p");
        if (r.PresencePenalty is { } pp && !(pp >= -2 && pp <= 2)) throw new ApiError(400, $"presence_penalty must be in [-2, 2], got {pp}", "presence_penalty");
        if (r.FrequencyPenalty is { } fp && !(fp >= -2 && fp <= 2)) throw new ApiError(400, $"frequency_penalty must be in [-2, 2], got {fp}", "frequency_penalty");
        if (r.Stop is { Length: > 4 }) throw new ApiError(400, "stop takes at most 4 strings", "stop");
        stream = r.Stream ?? false;
        var d = new SamplerOptions();
        var s = d with
        {
            Temperature = r.Temperature ?? d.Temperature,
            TopP = r.TopP ?? d.TopP,
            PresencePenalty = r.PresencePenalty ?? 0,
            FrequencyPenalty = r.FrequencyPenalty ?? 0,
            Seed = r.Seed ?? -1,
        };
        return new GenerateOptions { MaxTokens = r.MaxTokens ?? r.MaxCompletionTokens ?? -1, Sampler = s };
    }

    private int[] CheckFits(int[] prompt)
    {
        if (prompt.Length >= engine.Model.ContextSize)
            throw new ApiError(400, $"the prompt is {prompt.Length} tokens, which does not fit in the context of {engine.Model.ContextSize} tokens",
                "messages", "context_length_exceeded");
        return prompt;
    }

    private async Task ChatCompletions(HttpContext http)
    {
        var req = await Read(http, OpenAiJsonContext.Default.ChatCompletionRequest);
        var options = Sampling(req, out bool stream);
        if (req.Messages is not { Count: > 0 }) throw new ApiError(400, "messages must be a non-empty array", "messages");
        var messages = new List<ChatMessage>(req.Messages.Count);
        foreach (var m in req.Messages)
        {
            if (m is null || m.Role is not ("system" or "user" or "assistant"))
                throw new ApiError(400, $"each message needs a role of system, user or assistant, got '{m?.Role}'", "messages");
            messages.Add(new ChatMessage(m.Role, m.Content ?? ""));
        }
        string text = ChatTemplates.Render(engine.Template, messages, addGenerationPrompt: true);
        int[] prompt = CheckFits(engine.Tokenizer.Encode(text, addBos: engine.Tokenizer.Vocab.AddBos, parseSpecial: true));
        options = options with { StopTokens = engine.ChatStopTokens };
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        await Run(http, prompt, options, req.Stop, stream,
            piece => new ChatCompletionChunk { Id = id, Created = created, Model = engine.ModelId, Choices = [new ChatChunkChoice { Delta = new ChatDelta { Content = piece } }] },
            OpenAiJsonContext.Default.ChatCompletionChunk,
            new ChatCompletionChunk { Id = id, Created = created, Model = engine.ModelId, Choices = [new ChatChunkChoice { Delta = new ChatDelta { Role = "assistant", Content = "" } }] },
            (all, finish, usage) => Json(http, 200, new ChatCompletion
            {
                Id = id, Created = created, Model = engine.ModelId, Usage = usage,
                Choices = [new ChatChoice { Message = new ChatMessageDto { Role = "assistant", Content = all }, FinishReason = finish }],
            }, OpenAiJsonContext.Default.ChatCompletion),
            finish => new ChatCompletionChunk { Id = id, Created = created, Model = engine.ModelId, Choices = [new ChatChunkChoice { FinishReason = finish }] });
    }

    private async Task Completions(HttpContext http)
    {
        var req = await Read(http, OpenAiJsonContext.Default.CompletionRequest);
        var options = Sampling(req, out bool stream);
        if (req.Prompt is null) throw new ApiError(400, "prompt must be a string", "prompt");
        int[] prompt = CheckFits(engine.Tokenizer.Encode(req.Prompt, addBos: true));
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        await Run(http, prompt, options, req.Stop, stream,
            piece => new Completion { Id = id, Created = created, Model = engine.ModelId, Choices = [new CompletionChoice { Text = piece }] },
            OpenAiJsonContext.Default.Completion,
            null,
            (all, finish, usage) => Json(http, 200, new Completion
            {
                Id = id, Created = created, Model = engine.ModelId, Usage = usage,
                Choices = [new CompletionChoice { Text = all, FinishReason = finish }],
            }, OpenAiJsonContext.Default.Completion),
            finish => new Completion { Id = id, Created = created, Model = engine.ModelId, Choices = [new CompletionChoice { FinishReason = finish }] });
    }

    /// <summary>
    /// Queues for the engine and generates; streams each piece as an SSE chunk, or answers with one JSON.
    /// The queue place is held until generation has really ended, so a client that leaves frees it at once.
    /// </summary>
    private async Task Run<TChunk>(HttpContext http, int[] prompt, GenerateOptions options, string[]? stops, bool stream,
        Func<string, TChunk> chunk, JsonTypeInfo<TChunk> chunkInfo, TChunk? first,
        Func<string, string, Usage, Task> whole, Func<string, TChunk> last)
    {
        if (!engine.TryAdmit())
            throw new ApiError(503, $"the server is busy ({engine.QueueLimit} requests already waiting); retry later", code: "server_busy", type: "server_error");
        var aborted = http.RequestAborted;
        var matcher = new StopMatcher(stops);
        var channel = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var all = new StringBuilder();
        Task<GenerationStats>? gen = null;
        try
        {
            gen = GenerateInto(prompt, options, matcher, channel.Writer, aborted);
            if (!stream)
            {
                await foreach (string piece in channel.Reader.ReadAllAsync(aborted)) all.Append(piece);
                var stats = await gen;
                all.Append(matcher.Flush());
                await whole(all.ToString(), Finish(stats), UsageOf(stats));
                return;
            }
            bool started = false;
            await foreach (string piece in channel.Reader.ReadAllAsync(aborted))
            {
                if (!started) { await StartStream(http, first, chunkInfo); started = true; }
                await Sse(http, chunk(piece), chunkInfo);
            }
            var s = await gen;
            if (!started) await StartStream(http, first, chunkInfo);
            string rest = matcher.Flush();
            if (rest.Length > 0) await Sse(http, chunk(rest), chunkInfo);
            await Sse(http, last(Finish(s)), chunkInfo);
            await http.Response.Body.WriteAsync(Done, aborted);
            await http.Response.Body.FlushAsync(aborted);
        }
        finally
        {
            if (gen is not null)
            {
                try { await gen; } catch (OperationCanceledException) { }
            }
            engine.Leave();
        }
    }

    private async Task<GenerationStats> GenerateInto(int[] prompt, GenerateOptions options, StopMatcher matcher, ChannelWriter<string> writer, CancellationToken cancel)
    {
        try
        {
            return await engine.GenerateAsync(prompt, options, text =>
            {
                string send = matcher.Feed(text);
                if (send.Length > 0) writer.TryWrite(send);
                return !matcher.Stopped;
            }, cancel);
        }
        finally
        {
            writer.TryComplete();
        }
    }

    private static async Task StartStream<TChunk>(HttpContext http, TChunk? first, JsonTypeInfo<TChunk> info)
    {
        http.Response.StatusCode = 200;
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        if (first is not null) await Sse(http, first, info);
        else await http.Response.Body.FlushAsync(http.RequestAborted);
    }

    private static async Task Sse<TChunk>(HttpContext http, TChunk value, JsonTypeInfo<TChunk> info)
    {
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(value, info);
        var body = http.Response.Body;
        await body.WriteAsync("data: "u8.ToArray(), http.RequestAborted);
        await body.WriteAsync(json, http.RequestAborted);
        await body.WriteAsync("\n\n"u8.ToArray(), http.RequestAborted);
        await body.FlushAsync(http.RequestAborted);
    }

    private static string Finish(GenerationStats s) => s.Stop is StopReason.TokenLimit or StopReason.ContextFull ? "length" : "stop";

    private static Usage UsageOf(GenerationStats s) => new()
    {
        PromptTokens = s.PromptTokens, CompletionTokens = s.GeneratedTokens, TotalTokens = s.PromptTokens + s.GeneratedTokens,
    };
}
