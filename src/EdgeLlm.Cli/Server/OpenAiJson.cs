using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeLlm.Cli.Server;

/// <summary>One message of a chat request or response.</summary>
public sealed class ChatMessageDto
{
    public string? Role { get; set; }
    public string? Content { get; set; }
}

/// <summary>
/// One message of a chat request: <c>content</c> is a string, null, or an array of typed parts, so it is kept
/// as raw JSON and read by the endpoint; <c>tool_calls</c> is only looked at to refuse it.
/// </summary>
public sealed class ChatRequestMessage
{
    public string? Role { get; set; }
    public JsonElement? Content { get; set; }
    public string? Name { get; set; }
    public string? ToolCallId { get; set; }
    public JsonElement? ToolCalls { get; set; }
    public JsonElement? FunctionCall { get; set; }
    public JsonElement? Audio { get; set; }
}

/// <summary>OpenAI's <c>stream_options</c>.</summary>
public sealed class StreamOptions
{
    public bool? IncludeUsage { get; set; }
}

/// <summary>
/// The fields of OpenAI's sampling parameters that EdgeLlm maps onto its sampler, and the ones it does not
/// implement (kept as raw JSON only so that a request setting them is refused by name instead of being
/// answered as if they had been honoured).
/// </summary>
public abstract class SamplingRequest
{
    public string? Model { get; set; }
    public float? Temperature { get; set; }
    public float? TopP { get; set; }
    public int? MaxTokens { get; set; }
    /// <summary>The newer name of max_tokens (what current OpenAI clients send).</summary>
    public int? MaxCompletionTokens { get; set; }
    /// <summary>A string or an array of strings in the JSON.</summary>
    [JsonConverter(typeof(StopJsonConverter))]
    public string[]? Stop { get; set; }
    public long? Seed { get; set; }
    public float? PresencePenalty { get; set; }
    public float? FrequencyPenalty { get; set; }
    public bool? Stream { get; set; }
    public int? N { get; set; }
    public StreamOptions? StreamOptions { get; set; }

    /// <summary>text, json_object or json_schema (read by the endpoint).</summary>
    public JsonElement? ResponseFormat { get; set; }
    /// <summary>Chat: a bool; completions: the number of top alternatives (read by the endpoint).</summary>
    public JsonElement? Logprobs { get; set; }
    public JsonElement? TopLogprobs { get; set; }

    // Defined by OpenAI, not implemented here: a request that sets them gets a 400 naming the field.
    public JsonElement? LogitBias { get; set; }
    public JsonElement? Tools { get; set; }
    public JsonElement? ToolChoice { get; set; }
    public JsonElement? Functions { get; set; }
    public JsonElement? FunctionCall { get; set; }
    public JsonElement? BestOf { get; set; }
    public JsonElement? Echo { get; set; }
    public JsonElement? Suffix { get; set; }
    public JsonElement? Audio { get; set; }
    public JsonElement? Modalities { get; set; }
    public JsonElement? Prediction { get; set; }
    public JsonElement? WebSearchOptions { get; set; }
}

/// <summary>POST /v1/chat/completions.</summary>
public sealed class ChatCompletionRequest : SamplingRequest
{
    public List<ChatRequestMessage>? Messages { get; set; }
}

/// <summary>POST /v1/completions: <c>prompt</c> is a string or an array (kept as raw JSON, read by the endpoint).</summary>
public sealed class CompletionRequest : SamplingRequest
{
    public JsonElement? Prompt { get; set; }
}

public sealed class PromptTokensDetails
{
    /// <summary>Prompt tokens whose keys and values were reused from the cache (not run through the prompt pass).</summary>
    public int CachedTokens { get; set; }
}

public sealed class Usage
{
    public int PromptTokens { get; set; }
    public int CompletionTokens { get; set; }
    public int TotalTokens { get; set; }
    public PromptTokensDetails PromptTokensDetails { get; set; } = new();
}

public sealed class ChatChoice
{
    public int Index { get; set; }
    public ChatMessageDto Message { get; set; } = new();
    public ChatLogprobs? Logprobs { get; set; }
    public string? FinishReason { get; set; }
}

/// <summary>OpenAI's chat <c>logprobs</c>: one entry per generated token.</summary>
public sealed class ChatLogprobs
{
    public List<ChatTokenLogprob> Content { get; set; } = new();
    public List<ChatTokenLogprob>? Refusal { get; set; }
}

public sealed class ChatTokenLogprob
{
    public string Token { get; set; } = "";
    public double Logprob { get; set; }
    public List<int> Bytes { get; set; } = new();
    public List<ChatTopLogprob> TopLogprobs { get; set; } = new();
}

public sealed class ChatTopLogprob
{
    public string Token { get; set; } = "";
    public double Logprob { get; set; }
    public List<int> Bytes { get; set; } = new();
}

/// <summary>The legacy completions <c>logprobs</c>: parallel lists, one entry per generated token.</summary>
public sealed class CompletionLogprobs
{
    public List<string> Tokens { get; set; } = new();
    public List<double> TokenLogprobs { get; set; } = new();
    public List<Dictionary<string, double>> TopLogprobs { get; set; } = new();
    public List<int> TextOffset { get; set; } = new();
}

public sealed class ChatCompletion
{
    public string Id { get; set; } = "";
    public string Object { get; set; } = "chat.completion";
    public long Created { get; set; }
    public string Model { get; set; } = "";
    public List<ChatChoice> Choices { get; set; } = new();
    public Usage Usage { get; set; } = new();
}

public sealed class ChatDelta
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Role { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Content { get; set; }
}

public sealed class ChatChunkChoice
{
    public int Index { get; set; }
    public ChatDelta Delta { get; set; } = new();
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ChatLogprobs? Logprobs { get; set; }
    public string? FinishReason { get; set; }
}

public sealed class ChatCompletionChunk
{
    public string Id { get; set; } = "";
    public string Object { get; set; } = "chat.completion.chunk";
    public long Created { get; set; }
    public string Model { get; set; } = "";
    public List<ChatChunkChoice> Choices { get; set; } = new();
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Usage? Usage { get; set; }
}

public sealed class CompletionChoice
{
    public int Index { get; set; }
    public string Text { get; set; } = "";
    public CompletionLogprobs? Logprobs { get; set; }
    public string? FinishReason { get; set; }
}

public sealed class Completion
{
    public string Id { get; set; } = "";
    public string Object { get; set; } = "text_completion";
    public long Created { get; set; }
    public string Model { get; set; } = "";
    public List<CompletionChoice> Choices { get; set; } = new();
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Usage? Usage { get; set; }
}

public sealed class ModelInfo
{
    public string Id { get; set; } = "";
    public string Object { get; set; } = "model";
    public long Created { get; set; }
    public string OwnedBy { get; set; } = "edgellm";
}

public sealed class ModelList
{
    public string Object { get; set; } = "list";
    public List<ModelInfo> Data { get; set; } = new();
}

public sealed class ErrorBody
{
    public string Message { get; set; } = "";
    public string Type { get; set; } = "invalid_request_error";
    public string? Param { get; set; }
    public string? Code { get; set; }
}

public sealed class ErrorResponse
{
    public ErrorBody Error { get; set; } = new();
}

public sealed class HealthResponse
{
    public string Status { get; set; } = "ok";
}

/// <summary>OpenAI's `stop`: null, one string, or an array of strings.</summary>
public sealed class StopJsonConverter : JsonConverter<string[]?>
{
    public override string[]? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType == JsonTokenType.String) return [reader.GetString()!];
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("stop must be a string or an array of strings");
        var list = new List<string>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.String) throw new JsonException("stop must be a string or an array of strings");
            list.Add(reader.GetString()!);
        }
        return list.ToArray();
    }

    public override void Write(Utf8JsonWriter writer, string[]? value, JsonSerializerOptions options)
    {
        if (value is null) { writer.WriteNullValue(); return; }
        writer.WriteStartArray();
        foreach (string s in value) writer.WriteStringValue(s);
        writer.WriteEndArray();
    }
}

/// <summary>Source-generated (reflection-free, trim-safe) JSON for every request and response type.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    NumberHandling = JsonNumberHandling.Strict, AllowTrailingCommas = false)]
[JsonSerializable(typeof(ChatCompletionRequest))]
[JsonSerializable(typeof(CompletionRequest))]
[JsonSerializable(typeof(ChatCompletion))]
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(Completion))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(HealthResponse))]
[JsonSerializable(typeof(EmbeddingRequest))]
[JsonSerializable(typeof(EmbeddingList))]
[JsonSerializable(typeof(EmbeddingListBase64))]
public sealed partial class OpenAiJsonContext : JsonSerializerContext;
