using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Threading.Channels;
using EdgeLlm.Generation;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace EdgeLlm.Cli.Server;

/// <summary>What the request log line and the metrics need to know about one request.</summary>
internal sealed class RequestInfo(string id)
{
    public const string Key = "edgellm.request";
    public string Id { get; set; } = id;
    public EngineResult? Result { get; set; }
}

/// <summary>
/// The routes: /v1/chat/completions, /v1/completions (streamed as server-sent events or one JSON),
/// /v1/models, /health, /metrics. Every refusal is OpenAI-shaped error JSON with a 4xx status; nothing a
/// client sends can produce a 500 or a hang. Fields OpenAI defines but EdgeLlm does not implement are
/// refused by name (never answered as if honoured); fields OpenAI does not define are ignored.
/// </summary>
internal sealed partial class Endpoints(InferenceEngine engine, ServerMetrics metrics, IReadOnlyList<string> aliases, ILogger log)
{
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    public void Map(WebApplication app)
    {
        app.MapGet("/health", http => Json(http, 200, new HealthResponse(), OpenAiJsonContext.Default.HealthResponse));
        app.MapGet("/metrics", http =>
        {
            http.Response.StatusCode = 200;
            http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            return http.Response.WriteAsync(metrics.Render(engine), http.RequestAborted);
        });
        app.MapGet("/v1/models", http =>
        {
            var list = new ModelList { Data = [new ModelInfo { Id = engine.ModelId, Created = engine.Created }] };
            foreach (string a in aliases) list.Data.Add(new ModelInfo { Id = a, Created = engine.Created });
            return Json(http, 200, list, OpenAiJsonContext.Default.ModelList);
        });
        app.MapPost("/v1/chat/completions", http => Guard(http, ChatCompletions));
        app.MapPost("/v1/completions", http => Guard(http, Completions));
        app.MapPost("/v1/embeddings", http => Guard(http, Embeddings));
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

    /// <summary>The request's log record (made by the logging middleware; a fresh one when called without it).</summary>
    private static RequestInfo Info(HttpContext http)
    {
        if (http.Items.TryGetValue(RequestInfo.Key, out var o) && o is RequestInfo i) return i;
        var fresh = new RequestInfo("req-" + Guid.NewGuid().ToString("N")[..12]);
        http.Items[RequestInfo.Key] = fresh;
        return fresh;
    }

    /// <summary>Turns every failure into an error response (or nothing, once a stream has started or the client left).</summary>
    private async Task Guard(HttpContext http, Func<HttpContext, Task> handler)
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
                : new ApiError(e.StatusCode, $"the HTTP request could not be read (status {e.StatusCode})");
        }
        catch (JsonException e)
        {
            // The serializer's own message names .NET types (or resource keys in the AOT build): say it plainly.
            string? param = e.Path is { Length: > 2 } p && p.StartsWith("$.", StringComparison.Ordinal) ? p[2..] : null;
            string where = e.LineNumber is { } line ? $" (line {line + 1}, byte {e.BytePositionInLine + 1})" : "";
            error = new ApiError(400, param is null
                    ? $"the request body is not valid JSON{where}"
                    : $"'{param}' has the wrong type for this endpoint, or the JSON is malformed there{where}",
                param, "invalid_json");
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested) { return; }
        catch (IOException) when (http.RequestAborted.IsCancellationRequested) { return; }
        catch (InvalidOperationException e) when (e.Source == "System.Text.Json.Rethrowable")
        {
            // System.Text.Json's mark on what it would report as bad JSON: a string of the body read as a JsonElement
            // (message content) that holds invalid UTF-8 or an unpaired \uD800-\uDFFF escape.
            error = new ApiError(400, "the request body has a string that is not valid UTF-8 or has an unpaired surrogate escape", code: "invalid_json");
        }
        catch (EdgeLlmException e) { error = new ApiError(400, e.Message); }
        catch (Exception e)
        {
            log.LogError(e, "request {Id}: internal error", Info(http).Id);
            error = new ApiError(500, "internal error while answering the request (see the server log)", type: "server_error");
        }
        if (http.Response.HasStarted || http.RequestAborted.IsCancellationRequested) return;
        await WriteError(http, error);
    }

    private static async Task<T> Read<T>(HttpContext http, JsonTypeInfo<T> info) where T : class
    {
        // The body is read whole first (Kestrel bounds it: 413 past the limit), so every string in it can be checked
        // before any field is used: a string read as a JsonElement (message content, prompt, input, a schema) that
        // holds an unpaired \uD800-\uDFFF escape or invalid UTF-8 would throw InvalidOperationException wherever it
        // is read later.
        var body = new MemoryStream();
        try { await http.Request.Body.CopyToAsync(body, http.RequestAborted); }
        catch (IOException e) when (e is not BadHttpRequestException && !http.RequestAborted.IsCancellationRequested)
        {
            // Kestrel's own body framing errors (e.g. a chunk size that overflows) come as IOException, not BadHttpRequestException;
            // a BadHttpRequestException (an IOException too: a body over the size limit, 413) goes on to the caller's handler.
            throw new ApiError(400, $"the request body could not be read: {e.Message}", code: "invalid_request_body");
        }
        var json = new ReadOnlySpan<byte>(body.GetBuffer(), 0, (int)body.Length);
        if (FirstStringNotText(json) is { } at)
            throw new ApiError(400, $"the request body has a string that is not valid text (an unpaired \\uD800-\\uDFFF escape or invalid UTF-8) at line {at.Line}, byte {at.Byte}", code: "invalid_json");
        if (!StartsAnObject(json)) throw new ApiError(400, "the request body must be a JSON object", code: "invalid_json");
        T? value = JsonSerializer.Deserialize(json, info);
        return value ?? throw new ApiError(400, "the request body must be a JSON object", code: "invalid_json");
    }

    /// <summary>False when the body's first token is a value other than an object (an array, a string, ...); true when it is an object or unreadable (the deserializer reports that).</summary>
    private static bool StartsAnObject(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        try { return !reader.Read() || reader.TokenType == JsonTokenType.StartObject; }
        catch (JsonException) { return true; }
    }

    /// <summary>
    /// Where (line and byte in it, from 1) the first string or property name of <paramref name="json"/> that is not
    /// text starts; null when there is none, or when the JSON is malformed before one (the deserializer reports that).
    /// </summary>
    internal static (long Line, long Byte)? FirstStringNotText(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        try
        {
            while (reader.Read())
            {
                if (reader.TokenType is not (JsonTokenType.String or JsonTokenType.PropertyName)) continue;
                try { reader.GetString(); }
                catch (InvalidOperationException)
                {
                    long at = reader.TokenStartIndex, line = 1, lineStart = 0;
                    for (long i = 0; i < at; i++)
                        if (json[(int)i] == (byte)'\n') { line++; lineStart = i + 1; }
                    return (line, at - lineStart + 1);
                }
            }
        }
        catch (JsonException) { }
        return null;
    }

    private static bool IsSet(JsonElement? e) => e is { } v && v.ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined);

    private static ApiError Unsupported(string field, string what)
        => new(400, $"'{field}' is not supported by this server ({what}); leave it out", field, "unsupported_parameter");

    /// <summary>Refuses, by name, every OpenAI field that is set to something this server would not honour.</summary>
    private static void RefuseUnimplemented(SamplingRequest r)
    {
        if (r.N is { } n && n != 1) throw new ApiError(400, $"'n' must be 1 (one choice per request), got {n}", "n", "unsupported_parameter");
        if (IsSet(r.LogitBias) && !(r.LogitBias!.Value.ValueKind == JsonValueKind.Object && !r.LogitBias.Value.EnumerateObject().Any()))
            throw Unsupported("logit_bias", "the sampler takes no per-token bias");
        if (IsSet(r.Tools) && !(r.Tools!.Value.ValueKind == JsonValueKind.Array && r.Tools.Value.GetArrayLength() == 0))
            throw Unsupported("tools", "tool calling is not implemented");
        if (IsSet(r.ToolChoice) && !(r.ToolChoice!.Value.ValueKind == JsonValueKind.String && r.ToolChoice.Value.GetString() == "none"))
            throw Unsupported("tool_choice", "tool calling is not implemented");
        if (IsSet(r.Functions)) throw Unsupported("functions", "function calling is not implemented");
        if (IsSet(r.FunctionCall) && !(r.FunctionCall!.Value.ValueKind == JsonValueKind.String && r.FunctionCall.Value.GetString() == "none"))
            throw Unsupported("function_call", "function calling is not implemented");
        if (IsSet(r.BestOf) && !(r.BestOf!.Value.ValueKind == JsonValueKind.Number && r.BestOf.Value.TryGetInt32(out int b) && b == 1))
            throw Unsupported("best_of", "one candidate is generated per request");
        if (IsSet(r.Echo) && r.Echo!.Value.ValueKind != JsonValueKind.False) throw Unsupported("echo", "the prompt is not echoed");
        if (IsSet(r.Suffix)) throw Unsupported("suffix", "fill-in-the-middle is not implemented");
        if (IsSet(r.Audio)) throw Unsupported("audio", "this server produces text only");
        if (IsSet(r.Modalities) && !(r.Modalities!.Value.ValueKind == JsonValueKind.Array
                && r.Modalities.Value.EnumerateArray().All(m => m.ValueKind == JsonValueKind.String && m.GetString() == "text")))
            throw Unsupported("modalities", "this server produces text only");
        if (IsSet(r.Prediction)) throw Unsupported("prediction", "predicted outputs are not implemented");
        if (IsSet(r.WebSearchOptions)) throw Unsupported("web_search_options", "there is no web search");
    }

    /// <summary>Checks the common fields and maps them onto the sampler (llama.cpp's defaults for the rest).</summary>
    private static GenerateOptions Sampling(SamplingRequest r, out bool stream, out bool includeUsage)
    {
        // Any model name is accepted: there is one model behind this server (its id and aliases are in /v1/models).
        RefuseUnimplemented(r);
        // OpenAI refuses 0 as well as negative limits (integer_below_min_value).
        if (r.MaxTokens is < 1)
            throw new ApiError(400, $"Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got {r.MaxTokens} instead.", "max_tokens", "integer_below_min_value");
        if (r.MaxCompletionTokens is < 1)
            throw new ApiError(400, $"Invalid 'max_completion_tokens': integer below minimum value. Expected a value >= 1, but got {r.MaxCompletionTokens} instead.", "max_completion_tokens", "integer_below_min_value");
        if (r.Temperature is { } t && !(t >= 0 && t <= 2)) throw new ApiError(400, $"temperature must be in [0, 2], got {t}", "temperature");
        if (r.TopP is { } p && !(p > 0 && p <= 1)) throw new ApiError(400, $"top_p must be in (0, 1], got {p}", "top_p");
        if (r.PresencePenalty is { } pp && !(pp >= -2 && pp <= 2)) throw new ApiError(400, $"presence_penalty must be in [-2, 2], got {pp}", "presence_penalty");
        if (r.FrequencyPenalty is { } fp && !(fp >= -2 && fp <= 2)) throw new ApiError(400, $"frequency_penalty must be in [-2, 2], got {fp}", "frequency_penalty");
        if (r.Stop is { Length: > 4 }) throw new ApiError(400, "stop takes at most 4 strings", "stop");
        stream = r.Stream ?? false;
        includeUsage = stream && r.StreamOptions?.IncludeUsage == true;
        var d = new SamplerOptions();
        var s = d with
        {
            Temperature = r.Temperature ?? d.Temperature,
            TopP = r.TopP ?? d.TopP,
            PresencePenalty = r.PresencePenalty ?? 0,
            FrequencyPenalty = r.FrequencyPenalty ?? 0,
            Seed = r.Seed ?? -1,
        };
        return new GenerateOptions { MaxTokens = r.MaxTokens ?? r.MaxCompletionTokens ?? -1, Sampler = s, Grammar = ResponseGrammar(r.ResponseFormat) };
    }

    /// <summary>
    /// <c>response_format</c>: <c>text</c> (no constraint), <c>json_object</c> (any JSON object) or
    /// <c>json_schema</c> (<c>{"name":..,"schema":{..},"strict":..}</c>, compiled by <see cref="JsonSchemaCompiler"/>;
    /// the schema is always enforced, whatever <c>strict</c> says).
    /// </summary>
    internal static Grammar? ResponseGrammar(JsonElement? format)
    {
        const string P = "response_format";
        if (!IsSet(format)) return null;
        var f = format!.Value;
        if (f.ValueKind != JsonValueKind.Object || !f.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String)
            throw new ApiError(400, "'response_format' must be an object with a 'type' of text, json_object or json_schema", P, "invalid_type");
        switch (t.GetString())
        {
            case "text": return null;
            case "json_object": return Grammar.JsonObject;
            case "json_schema":
                if (!f.TryGetProperty("json_schema", out var js) || js.ValueKind != JsonValueKind.Object)
                    throw new ApiError(400, "'response_format.json_schema' must be an object with a 'name' and a 'schema'", P + ".json_schema", "invalid_type");
                if (js.TryGetProperty("name", out var name) && name.ValueKind != JsonValueKind.String)
                    throw new ApiError(400, "'response_format.json_schema.name' must be a string", P + ".json_schema.name", "invalid_type");
                if (js.TryGetProperty("strict", out var strict) && strict.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
                    throw new ApiError(400, "'response_format.json_schema.strict' must be a boolean", P + ".json_schema.strict", "invalid_type");
                if (!js.TryGetProperty("schema", out var schema) || schema.ValueKind is JsonValueKind.Null)
                    throw new ApiError(400, "'response_format.json_schema.schema' is required (the JSON schema the answer must follow)", P + ".json_schema.schema", "missing_required_parameter");
                try { return JsonSchemaCompiler.Compile(schema); }
                catch (GrammarException e) { throw new ApiError(400, e.Message, P + ".json_schema.schema", "invalid_json_schema"); }
            default:
                throw new ApiError(400, $"'response_format.type' '{t.GetString()}' is not one of text, json_object, json_schema", P + ".type", "invalid_value");
        }
    }

    /// <summary>Chat: <c>logprobs</c> (bool) and <c>top_logprobs</c> (0 to 20, needs logprobs). Returns -1 for off, else the top count.</summary>
    internal static int ChatLogprobsRequest(SamplingRequest r)
    {
        bool on = false;
        if (IsSet(r.Logprobs))
        {
            var v = r.Logprobs!.Value;
            if (v.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                throw new ApiError(400, "'logprobs' must be a boolean on /v1/chat/completions (use 'top_logprobs' for the count)", "logprobs", "invalid_type");
            on = v.ValueKind == JsonValueKind.True;
        }
        if (!IsSet(r.TopLogprobs)) return on ? 0 : -1;
        var top = r.TopLogprobs!.Value;
        if (top.ValueKind != JsonValueKind.Number || !top.TryGetInt32(out int n) || n < 0 || n > TokenLogprobs.MaxTop)
            throw new ApiError(400, $"'top_logprobs' must be an integer from 0 to {TokenLogprobs.MaxTop}", "top_logprobs", "invalid_value");
        if (!on) throw new ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs", "invalid_value");
        return n;
    }

    /// <summary>Completions: <c>logprobs</c> is the number of top alternatives (0 to 20; OpenAI allows 5). Returns -1 for off.</summary>
    internal static int CompletionLogprobsRequest(SamplingRequest r)
    {
        if (IsSet(r.TopLogprobs)) throw Unsupported("top_logprobs", "that is a chat field; /v1/completions takes 'logprobs': N");
        if (!IsSet(r.Logprobs)) return -1;
        var v = r.Logprobs!.Value;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int n) || n < 0 || n > TokenLogprobs.MaxTop)
            throw new ApiError(400, $"'logprobs' must be an integer from 0 to {TokenLogprobs.MaxTop} on /v1/completions", "logprobs", "invalid_value");
        return n;
    }

    /// <summary>One generated token's log-probabilities, copied out of the generator's reused buffer.</summary>
    internal sealed record LogprobEntry(string Token, byte[] Bytes, double Logprob, (string Token, byte[] Bytes, double Logprob)[] Top);

    /// <summary>A piece of streamed text and the tokens (with log-probabilities) that were generated up to it.</summary>
    private readonly record struct Piece(string Text, List<LogprobEntry>? Logprobs);

    private LogprobEntry Entry(TokenLogprobs lp)
    {
        byte[] Bytes(int id) => engine.Tokenizer.TokenBytes(id);
        var top = new (string, byte[], double)[lp.TopCount];
        for (int i = 0; i < top.Length; i++)
        {
            byte[] b = Bytes(lp.TopIds[i]);
            top[i] = (Encoding.UTF8.GetString(b), b, lp.TopLogprobs[i]);
        }
        byte[] own = Bytes(lp.Token);
        return new LogprobEntry(Encoding.UTF8.GetString(own), own, lp.Logprob, top);
    }

    private static ChatLogprobs? ChatLogprobsOf(List<LogprobEntry>? entries)
    {
        if (entries is null) return null;
        var c = new ChatLogprobs();
        foreach (var e in entries)
        {
            var t = new ChatTokenLogprob { Token = e.Token, Logprob = e.Logprob, Bytes = [.. e.Bytes.Select(b => (int)b)] };
            foreach (var (tok, bytes, lp) in e.Top) t.TopLogprobs.Add(new ChatTopLogprob { Token = tok, Logprob = lp, Bytes = [.. bytes.Select(b => (int)b)] });
            c.Content.Add(t);
        }
        return c;
    }

    /// <summary>The legacy shape; <paramref name="offset"/> is the text offset (in chars) of the first entry, advanced past them.</summary>
    private static CompletionLogprobs? CompletionLogprobsOf(List<LogprobEntry>? entries, ref int offset)
    {
        if (entries is null) return null;
        var c = new CompletionLogprobs();
        foreach (var e in entries)
        {
            c.Tokens.Add(e.Token);
            c.TokenLogprobs.Add(e.Logprob);
            var top = new Dictionary<string, double>();
            foreach (var (tok, _, lp) in e.Top) top.TryAdd(tok, lp); // two tokens can print the same text: the likelier one stays
            c.TopLogprobs.Add(top);
            c.TextOffset.Add(offset);
            offset += e.Token.Length;
        }
        return c;
    }

    /// <summary>The model name answers carry: what the client asked for, else the file's id.</summary>
    private string ModelName(SamplingRequest r) => string.IsNullOrEmpty(r.Model) ? engine.ModelId : r.Model;

    private int[] CheckFits(int[] prompt, string param)
    {
        if (prompt.Length >= engine.Model.ContextSize)
            throw new ApiError(400, $"the prompt is {prompt.Length} tokens, which does not fit in the context of {engine.Model.ContextSize} tokens",
                param, "context_length_exceeded");
        return prompt;
    }

    /// <summary>
    /// A message's text: a string, null (empty), or an array of content parts whose text parts are joined
    /// as they are (no separator). Parts of any other type (image_url, input_audio, file, ...) are refused.
    /// </summary>
    internal static string ContentText(JsonElement? content, int index)
    {
        string param = $"messages[{index}].content";
        if (content is not { } c || c.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) return "";
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array)
            throw new ApiError(400, $"'{param}' must be a string or an array of content parts", param, "invalid_type");
        var sb = new StringBuilder();
        int k = 0;
        foreach (var part in c.EnumerateArray())
        {
            string at = $"{param}[{k++}]";
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw new ApiError(400, $"'{at}' must be an object with a 'type'", at, "invalid_type");
            string kind = type.GetString()!;
            if (kind != "text")
                throw new ApiError(400, $"'{at}' is a content part of type '{kind}': this model reads text only (only 'text' parts are accepted)",
                    at, "unsupported_content_type");
            if (!part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                throw new ApiError(400, $"'{at}.text' must be a string", $"{at}.text", "invalid_type");
            sb.Append(text.GetString());
        }
        return sb.ToString();
    }

    /// <summary>
    /// One request message as the chat template sees it. "developer" (OpenAI's newer name for the system
    /// message) is rendered as "system". A "tool" result is rendered as the template's own tool turn where
    /// the format has one: ChatML's "tool" turn (as Hermes-style ChatML models and llama.cpp write it) and
    /// Llama 3's "ipython" turn (Llama 3.1's role for tool output). The other formats here (Llama 2, Mistral,
    /// Gemma, Phi-3, Zephyr) have no tool turn, so the result goes in a user turn labelled as a tool result.
    /// </summary>
    internal static ChatMessage RenderMessage(ChatTemplateKind template, string role, string content, string? toolCallId) => role switch
    {
        "developer" => new ChatMessage("system", content),
        "tool" => template switch
        {
            ChatTemplateKind.ChatMl => new ChatMessage("tool", content),
            ChatTemplateKind.Llama3 => new ChatMessage("ipython", content),
            _ => new ChatMessage("user", (toolCallId is null ? "Tool result:\n" : $"Tool result ({toolCallId}):\n") + content),
        },
        _ => new ChatMessage(role, content),
    };

    private async Task ChatCompletions(HttpContext http)
    {
        var req = await Read(http, OpenAiJsonContext.Default.ChatCompletionRequest);
        var options = Sampling(req, out bool stream, out bool includeUsage);
        int logprobs = ChatLogprobsRequest(req);
        if (req.Messages is not { Count: > 0 }) throw new ApiError(400, "messages must be a non-empty array", "messages");
        var messages = new List<ChatMessage>(req.Messages.Count);
        for (int i = 0; i < req.Messages.Count; i++)
        {
            var m = req.Messages[i];
            if (m is null || m.Role is not ("system" or "developer" or "user" or "assistant" or "tool"))
                throw new ApiError(400, $"each message needs a role of system, developer, user, assistant or tool, got '{m?.Role}'", "messages");
            if (IsSet(m.ToolCalls) || IsSet(m.FunctionCall))
                throw new ApiError(400, $"'messages[{i}].tool_calls': tool calling is not implemented", $"messages[{i}].tool_calls", "unsupported_parameter");
            if (IsSet(m.Audio))
                throw new ApiError(400, $"'messages[{i}].audio': this model reads text only", $"messages[{i}].audio", "unsupported_parameter");
            messages.Add(RenderMessage(engine.Template, m.Role, ContentText(m.Content, i), m.ToolCallId));
        }
        string text = ChatTemplates.Render(engine.Template, messages, addGenerationPrompt: true);
        int[] prompt = CheckFits(engine.Tokenizer.Encode(text, addBos: engine.Tokenizer.Vocab.AddBos, parseSpecial: true), "messages");
        options = options with { StopTokens = engine.ChatStopTokens };
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        Info(http).Id = id;
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string model = ModelName(req);

        await Run(http, prompt, options, logprobs, req.Stop, stream, includeUsage,
            (piece, lp) => new ChatCompletionChunk { Id = id, Created = created, Model = model,
                Choices = [new ChatChunkChoice { Delta = new ChatDelta { Content = piece }, Logprobs = ChatLogprobsOf(lp) }] },
            OpenAiJsonContext.Default.ChatCompletionChunk,
            new ChatCompletionChunk { Id = id, Created = created, Model = model, Choices = [new ChatChunkChoice { Delta = new ChatDelta { Role = "assistant", Content = "" } }] },
            (all, lp, finish, usage) => Json(http, 200, new ChatCompletion
            {
                Id = id, Created = created, Model = model, Usage = usage,
                Choices = [new ChatChoice { Message = new ChatMessageDto { Role = "assistant", Content = all }, Logprobs = ChatLogprobsOf(lp), FinishReason = finish }],
            }, OpenAiJsonContext.Default.ChatCompletion),
            finish => new ChatCompletionChunk { Id = id, Created = created, Model = model, Choices = [new ChatChunkChoice { FinishReason = finish }] },
            usage => new ChatCompletionChunk { Id = id, Created = created, Model = model, Choices = [], Usage = usage });
    }

    /// <summary>
    /// The prompt of /v1/completions: a string, or an array holding exactly one string. One choice is
    /// generated per request, so an array of several prompts (or of token ids) is refused with a 400.
    /// </summary>
    internal static string PromptText(JsonElement? prompt)
    {
        if (prompt is not { } p || p.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
            throw new ApiError(400, "prompt is required (a string)", "prompt");
        if (p.ValueKind == JsonValueKind.String) return p.GetString()!;
        if (p.ValueKind == JsonValueKind.Array)
        {
            int n = p.GetArrayLength();
            if (n == 1 && p[0].ValueKind == JsonValueKind.String) return p[0].GetString()!;
            if (n > 1 && p[0].ValueKind == JsonValueKind.String)
                throw new ApiError(400, $"prompt has {n} strings: this server answers one prompt per request (send them one at a time)", "prompt", "unsupported_parameter");
            if (n > 0 && p[0].ValueKind is JsonValueKind.Number or JsonValueKind.Array)
                throw new ApiError(400, "prompt as token ids is not supported: send the text", "prompt", "unsupported_parameter");
        }
        throw new ApiError(400, "prompt must be a string or an array of one string", "prompt", "invalid_type");
    }

    private async Task Completions(HttpContext http)
    {
        var req = await Read(http, OpenAiJsonContext.Default.CompletionRequest);
        var options = Sampling(req, out bool stream, out bool includeUsage);
        int logprobs = CompletionLogprobsRequest(req);
        string promptText = PromptText(req.Prompt);
        int[] prompt = CheckFits(engine.Tokenizer.Encode(promptText, addBos: true), "prompt");
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        Info(http).Id = id;
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string model = ModelName(req);

        int offset = 0; // text_offset of the next streamed token
        await Run(http, prompt, options, logprobs, req.Stop, stream, includeUsage,
            (piece, lp) => new Completion { Id = id, Created = created, Model = model,
                Choices = [new CompletionChoice { Text = piece, Logprobs = CompletionLogprobsOf(lp, ref offset) }] },
            OpenAiJsonContext.Default.Completion,
            null,
            (all, lp, finish, usage) =>
            {
                int start = 0;
                return Json(http, 200, new Completion
                {
                    Id = id, Created = created, Model = model, Usage = usage,
                    Choices = [new CompletionChoice { Text = all, Logprobs = CompletionLogprobsOf(lp, ref start), FinishReason = finish }],
                }, OpenAiJsonContext.Default.Completion);
            },
            finish => new Completion { Id = id, Created = created, Model = model, Choices = [new CompletionChoice { FinishReason = finish }] },
            usage => new Completion { Id = id, Created = created, Model = model, Choices = [], Usage = usage });
    }

    /// <summary>
    /// Queues for the engine and generates; streams each piece as an SSE chunk, or answers with one JSON.
    /// The queue place is held until generation has really ended, so a client that leaves frees it at once.
    /// </summary>
    private async Task Run<TChunk>(HttpContext http, int[] prompt, GenerateOptions options, int logprobs, string[]? stops, bool stream, bool includeUsage,
        Func<string, List<LogprobEntry>?, TChunk> chunk, JsonTypeInfo<TChunk> chunkInfo, TChunk? first,
        Func<string, List<LogprobEntry>?, string, Usage, Task> whole, Func<string, TChunk> last, Func<Usage, TChunk> usageChunk)
    {
        if (!engine.TryAdmit())
            throw new ApiError(503, $"the server is busy ({engine.QueueLimit} requests already waiting); retry later", code: "server_busy", type: "server_error");
        var aborted = http.RequestAborted;
        var matcher = new StopMatcher(stops);
        var channel = Channel.CreateUnbounded<Piece>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var all = new StringBuilder();
        var allLogprobs = logprobs < 0 ? null : new List<LogprobEntry>();
        Task<EngineResult>? gen = null;
        try
        {
            gen = GenerateInto(prompt, options, logprobs, matcher, channel.Writer, aborted);
            if (!stream)
            {
                // The pieces wait in the channel until the end: reading them as they come would wake a pool thread
                // for every token, beside the scheduler's forward passes, for an answer sent only at the end.
                await ((Task)gen).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                aborted.ThrowIfCancellationRequested();
                var result = await Finished(http, gen);
                while (channel.Reader.TryRead(out var piece))
                {
                    all.Append(piece.Text);
                    if (piece.Logprobs is not null) allLogprobs!.AddRange(piece.Logprobs);
                }
                all.Append(matcher.Flush());
                await whole(all.ToString(), allLogprobs, Finish(result.Stats), UsageOf(result));
                return;
            }
            bool started = false;
            await foreach (var piece in channel.Reader.ReadAllAsync(aborted))
            {
                if (!started) { await StartStream(http, first, chunkInfo); started = true; }
                await Sse(http, chunk(piece.Text, piece.Logprobs), chunkInfo);
            }
            var s = await Finished(http, gen);
            if (!started) await StartStream(http, first, chunkInfo);
            string rest = matcher.Flush();
            if (rest.Length > 0) await Sse(http, chunk(rest, logprobs < 0 ? null : []), chunkInfo);
            await Sse(http, last(Finish(s.Stats)), chunkInfo);
            // As OpenAI does with stream_options.include_usage: one more chunk, with empty choices and the usage.
            if (includeUsage) await Sse(http, usageChunk(UsageOf(s)), chunkInfo);
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

    /// <summary>Awaits the generation and records it for the log line and the metrics.</summary>
    private async Task<EngineResult> Finished(HttpContext http, Task<EngineResult> gen)
    {
        var result = await gen;
        Info(http).Result = result;
        metrics.CountGeneration(result);
        return result;
    }

    /// <summary>
    /// Generates, writing each piece of text that passed the stop matcher to <paramref name="writer"/> with the
    /// log-probabilities of the tokens generated up to it (when <paramref name="logprobs"/> &gt;= 0); entries
    /// whose text never came out (held back, or cut by a stop string) go with a last empty piece.
    /// </summary>
    private async Task<EngineResult> GenerateInto(int[] prompt, GenerateOptions options, int logprobs, StopMatcher matcher,
        ChannelWriter<Piece> writer, CancellationToken cancel)
    {
        List<LogprobEntry>? pending = null;
        if (logprobs >= 0)
        {
            pending = new List<LogprobEntry>();
            options = options with { TopLogprobs = logprobs, OnLogprobs = lp => pending.Add(Entry(lp)) };
        }
        List<LogprobEntry>? Take()
        {
            if (pending is null) return null;
            var taken = new List<LogprobEntry>(pending);
            pending.Clear();
            return taken;
        }
        try
        {
            return await engine.GenerateAsync(prompt, options, text =>
            {
                string send = matcher.Feed(text);
                if (send.Length > 0) writer.TryWrite(new Piece(send, Take()));
                return !matcher.Stopped;
            }, cancel);
        }
        finally
        {
            if (pending is { Count: > 0 }) writer.TryWrite(new Piece("", Take()));
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

    /// <summary>
    /// One server-sent event, serialized straight into the response pipe and sent with one flush (a stream's tokens
    /// come every step, beside the scheduler's forward passes: one write per token, not four).
    /// </summary>
    private static async Task Sse<TChunk>(HttpContext http, TChunk value, JsonTypeInfo<TChunk> info)
    {
        var pipe = http.Response.BodyWriter;
        pipe.Write("data: "u8);
        using (var json = new Utf8JsonWriter(pipe, new JsonWriterOptions { Encoder = info.Options.Encoder, Indented = info.Options.WriteIndented }))
            JsonSerializer.Serialize(json, value, info);
        pipe.Write("\n\n"u8);
        await pipe.FlushAsync(http.RequestAborted);
    }

    private static string Finish(GenerationStats s) => s.Stop is StopReason.TokenLimit or StopReason.ContextFull ? "length" : "stop";

    private static Usage UsageOf(EngineResult r) => new()
    {
        PromptTokens = r.Stats.PromptTokens, CompletionTokens = r.Stats.GeneratedTokens, TotalTokens = r.Stats.PromptTokens + r.Stats.GeneratedTokens,
        PromptTokensDetails = new PromptTokensDetails { CachedTokens = r.CachedTokens },
    };
}
