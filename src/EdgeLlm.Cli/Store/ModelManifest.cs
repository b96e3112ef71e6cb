using System.Text.Json.Serialization;

namespace EdgeLlm.Cli.Store;

/// <summary>
/// What the store knows about one model: its name, other names it answers to, where it came from, and the
/// checksum and size of its GGUF file (kept next to it as NAME.json).
/// </summary>
public sealed record ModelManifest
{
    [JsonPropertyName("name")] public required string Name { get; init; }
    [JsonPropertyName("aliases")] public string[] Aliases { get; init; } = [];
    /// <summary>"hf:ORG/REPO:FILE" for a pull, "file:PATH" for an import.</summary>
    [JsonPropertyName("source")] public required string Source { get; init; }
    /// <summary>The model file's name inside the store folder.</summary>
    [JsonPropertyName("file")] public required string File { get; init; }
    [JsonPropertyName("sha256")] public required string Sha256 { get; init; }
    [JsonPropertyName("size")] public long Size { get; init; }
    /// <summary>When it was added, UTC, ISO 8601.</summary>
    [JsonPropertyName("date")] public required string Date { get; init; }
}

/// <summary>Source-generated (reflection-free, AOT-safe) JSON for the manifest and the hub's listing.</summary>
[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ModelManifest))]
[JsonSerializable(typeof(HubModelInfo))]
[JsonSerializable(typeof(HubTreeEntry[]))]
internal sealed partial class StoreJson : JsonSerializerContext;

/// <summary>The part of `GET /api/models/ORG/REPO` the store reads: the repository's files.</summary>
public sealed class HubModelInfo
{
    [JsonPropertyName("id")] public string? Id { get; set; }
    [JsonPropertyName("siblings")] public List<HubSibling>? Siblings { get; set; }
}

public sealed class HubSibling
{
    [JsonPropertyName("rfilename")] public string? RFilename { get; set; }
}

/// <summary>One entry of `GET /api/models/ORG/REPO/tree/main`.</summary>
public sealed class HubTreeEntry
{
    [JsonPropertyName("type")] public string? Type { get; set; }
    [JsonPropertyName("path")] public string? Path { get; set; }
}
