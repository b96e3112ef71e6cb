using System.Text.Json;

namespace EdgeLlm.Cli.Server;

/// <summary>OpenAI's embeddings request: <c>input</c> is a string or an array of strings (kept raw, read by the endpoint).</summary>
public sealed class EmbeddingRequest
{
    public string? Model { get; set; }
    public JsonElement? Input { get; set; }
    public string? EncodingFormat { get; set; }
    public int? Dimensions { get; set; }
    public string? User { get; set; }
}

/// <summary>One embedding as floats (encoding_format "float", the default).</summary>
public sealed class EmbeddingItem
{
    public string Object { get; set; } = "embedding";
    public int Index { get; set; }
    public float[] Embedding { get; set; } = [];
}

/// <summary>One embedding as base64 of its little-endian float32 bytes (encoding_format "base64").</summary>
public sealed class EmbeddingItemBase64
{
    public string Object { get; set; } = "embedding";
    public int Index { get; set; }
    public string Embedding { get; set; } = "";
}

public sealed class EmbeddingUsage
{
    public int PromptTokens { get; set; }
    public int TotalTokens { get; set; }
}

public sealed class EmbeddingList
{
    public string Object { get; set; } = "list";
    public List<EmbeddingItem> Data { get; set; } = new();
    public string Model { get; set; } = "";
    public EmbeddingUsage Usage { get; set; } = new();
}

public sealed class EmbeddingListBase64
{
    public string Object { get; set; } = "list";
    public List<EmbeddingItemBase64> Data { get; set; } = new();
    public string Model { get; set; } = "";
    public EmbeddingUsage Usage { get; set; } = new();
}
