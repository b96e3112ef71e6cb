using System.Text.Json;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// Typed reads from a parsed JSON object (config.json, params.json, tokenizer_config.json) that fail with one
/// line naming the file and the key. JsonDocument only: no reflection serialization (Native AOT).
/// </summary>
internal sealed class JsonFile : IDisposable
{
    private readonly JsonDocument _doc;

    public string Path { get; }
    public JsonElement Root => _doc.RootElement;

    private JsonFile(string path, JsonDocument doc) { Path = path; _doc = doc; }

    public static JsonFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        JsonDocument doc;
        byte[] bytes = File.ReadAllBytes(path);
        var json = bytes.AsMemory();
        if (json.Span.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) json = json[3..]; // UTF-8 BOM (JsonDocument rejects it)
        // JsonDocument checks UTF-8 only when a string is read, and then throws InvalidOperationException: check it here.
        if (!System.Text.Unicode.Utf8.IsValid(json.Span)) throw new EdgeLlmException($"{path}: not valid JSON (the text is not valid UTF-8)");
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip }); }
        catch (JsonException e) { throw new EdgeLlmException($"{path}: not valid JSON ({e.Message.ReplaceLineEndings(" ")})"); }
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            doc.Dispose();
            throw new EdgeLlmException($"{path}: expected a JSON object");
        }
        return new JsonFile(path, doc);
    }

    /// <summary>
    /// System.Text.Json's JsonElement accessors throw InvalidOperationException when a value has another JSON type
    /// than the one read; the readers catch that at their entry points and name the file.
    /// </summary>
    public static bool IsWrongJsonType(InvalidOperationException e) =>
        e.StackTrace is not { } trace || trace.Contains("System.Text.Json", StringComparison.Ordinal);

    public EdgeLlmException Error(string key, string problem) => new($"{Path}: '{key}' {problem}");

    public bool Has(string key) => Root.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null;

    public int Int(string key) => OptInt(key) ?? throw Error(key, "is missing");

    public int? OptInt(string key)
    {
        if (!Root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
        throw Error(key, $"must be an integer, found {v}");
    }

    public double? OptDouble(string key) => OptDouble(Root, key);

    public double? OptDouble(JsonElement obj, string key)
    {
        if (!obj.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number) return v.GetDouble();
        throw Error(key, $"must be a number, found {v}");
    }

    public string? OptString(string key)
    {
        if (!Root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Error(key, $"must be a string, found {v}");
    }

    public bool? OptBool(string key)
    {
        if (!Root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(key, $"must be true or false, found {v}"),
        };
    }

    public void Dispose() => _doc.Dispose();
}
