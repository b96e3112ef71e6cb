using System.Text.Json;

namespace EdgeLlm.Tests.Grammar;

/// <summary>
/// A small JSON-schema validator written for the tests, independent of the grammar compiler: it checks a
/// parsed value against the keywords the compiler supports (type, properties, required, additionalProperties,
/// items, minItems/maxItems, minLength/maxLength in code points, enum, const, anyOf, oneOf with exactly one
/// match, local $ref). Returns null when valid, else where and why not.
/// </summary>
internal static class MiniSchemaValidator
{
    public static string? Validate(JsonElement value, JsonElement schema) => Check(value, schema, schema, "$");

    private static string? Check(JsonElement v, JsonElement s, JsonElement root, string at)
    {
        if (s.ValueKind == JsonValueKind.True) return null;
        if (s.ValueKind == JsonValueKind.False) return $"{at}: schema false";
        if (s.TryGetProperty("$ref", out var r))
        {
            string path = r.GetString()!;
            var target = path == "#" ? root : root.GetProperty(path.Split('/')[1]).GetProperty(path.Split('/')[2]);
            return Check(v, target, root, at);
        }
        if (s.TryGetProperty("const", out var c) && !JsonElement.DeepEquals(v, c)) return $"{at}: not the const {c.GetRawText()}";
        if (s.TryGetProperty("enum", out var e) && !e.EnumerateArray().Any(x => JsonElement.DeepEquals(v, x))) return $"{at}: not in the enum";
        if (s.TryGetProperty("anyOf", out var any) && any.EnumerateArray().All(x => Check(v, x, root, at) is not null)) return $"{at}: matches no anyOf branch";
        if (s.TryGetProperty("oneOf", out var one))
        {
            int n = one.EnumerateArray().Count(x => Check(v, x, root, at) is null);
            if (n != 1) return $"{at}: matches {n} oneOf branches";
        }
        if (s.TryGetProperty("type", out var type))
        {
            var types = type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString()!).ToArray() : [type.GetString()!];
            if (!types.Any(t => IsType(v, t))) return $"{at}: {v.ValueKind} is not {string.Join("/", types)}";
        }
        switch (v.ValueKind)
        {
            case JsonValueKind.Object:
                var props = s.TryGetProperty("properties", out var p) ? p : default;
                if (s.TryGetProperty("required", out var req))
                    foreach (var name in req.EnumerateArray())
                        if (!v.TryGetProperty(name.GetString()!, out _)) return $"{at}: required '{name.GetString()}' is missing";
                var seen = new HashSet<string>();
                foreach (var m in v.EnumerateObject())
                {
                    if (!seen.Add(m.Name)) return $"{at}: duplicate key '{m.Name}'";
                    if (props.ValueKind == JsonValueKind.Object && props.TryGetProperty(m.Name, out var ps))
                    {
                        if (Check(m.Value, ps, root, $"{at}.{m.Name}") is { } err) return err;
                    }
                    else if (s.TryGetProperty("additionalProperties", out var ap))
                    {
                        if (ap.ValueKind == JsonValueKind.False) return $"{at}: additional property '{m.Name}'";
                        if (Check(m.Value, ap, root, $"{at}.{m.Name}") is { } err) return err;
                    }
                }
                break;
            case JsonValueKind.Array:
                int count = v.GetArrayLength();
                if (s.TryGetProperty("minItems", out var mi) && count < mi.GetInt32()) return $"{at}: {count} items < minItems";
                if (s.TryGetProperty("maxItems", out var ma) && count > ma.GetInt32()) return $"{at}: {count} items > maxItems";
                if (s.TryGetProperty("items", out var items))
                {
                    int i = 0;
                    foreach (var x in v.EnumerateArray())
                        if (Check(x, items, root, $"{at}[{i++}]") is { } err) return err;
                }
                break;
            case JsonValueKind.String:
                int len = v.GetString()!.EnumerateRunes().Count();
                if (s.TryGetProperty("minLength", out var ml) && len < ml.GetInt32()) return $"{at}: length {len} < minLength";
                if (s.TryGetProperty("maxLength", out var xl) && len > xl.GetInt32()) return $"{at}: length {len} > maxLength";
                break;
        }
        return null;
    }

    private static bool IsType(JsonElement v, string t) => t switch
    {
        "object" => v.ValueKind == JsonValueKind.Object,
        "array" => v.ValueKind == JsonValueKind.Array,
        "string" => v.ValueKind == JsonValueKind.String,
        "number" => v.ValueKind == JsonValueKind.Number,
        "integer" => v.ValueKind == JsonValueKind.Number && v.TryGetDecimal(out decimal d) && d == decimal.Truncate(d),
        "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => v.ValueKind == JsonValueKind.Null,
        _ => throw new ArgumentException("unknown type " + t),
    };
}
