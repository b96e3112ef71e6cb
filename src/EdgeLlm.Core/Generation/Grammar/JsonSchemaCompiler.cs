using System.Text.Encodings.Web;
using System.Text.Json;

namespace EdgeLlm.Generation;

/// <summary>
/// Compiles a JSON schema (a subset) into a byte <see cref="Grammar"/> whose every complete match is JSON that
/// validates against the schema.
/// <para>Supported: <c>type</c> (object, array, string, number, integer, boolean, null, or a list of them),
/// <c>properties</c>, <c>required</c>, <c>additionalProperties</c> (false, true or a schema), <c>items</c>,
/// <c>minItems</c>/<c>maxItems</c>, <c>minLength</c>/<c>maxLength</c>, <c>enum</c>, <c>const</c>,
/// <c>anyOf</c>/<c>oneOf</c> (oneOf is generated as anyOf: exclusivity is not enforced), local <c>$ref</c>
/// (<c>#</c>, <c>#/$defs/NAME</c>, <c>#/definitions/NAME</c>, recursion allowed), nesting; annotations
/// (title, description, format, default, examples, ...) are ignored. Any other keyword is refused with a
/// one-line <see cref="GrammarException"/> naming it and where it is.</para>
/// <para>What is generated: properties in the schema's order, the required ones always and the others
/// optionally; no properties beyond the declared ones when an object has <c>properties</c> (still valid
/// whatever <c>additionalProperties</c> says); whitespace between tokens is nothing, one space, or a newline
/// and up to 16 spaces of indent; no whitespace around the root value; integers at most 16 digits, fractions
/// at most 16 digits, exponents at most 2 digits; <c>\u</c> escapes never name a lone surrogate; strings are
/// valid UTF-8 without control characters. Lengths count characters (an escape is one).</para>
/// </summary>
public sealed class JsonSchemaCompiler
{
    private const int MaxCount = 1000;

    private static readonly HashSet<string> Annotations =
    [
        "title", "description", "$schema", "$id", "$comment", "default", "examples", "format", "deprecated",
        "readOnly", "writeOnly", "contentEncoding", "contentMediaType", "$defs", "definitions",
    ];

    private static readonly JavaScriptEncoder Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping;

    private readonly GrammarBuilder _b = new();
    private readonly JsonElement _root;
    private readonly Dictionary<string, int> _refs = new();
    private int _ws = -1, _value = -1, _object = -1, _array = -1, _string = -1, _char = -1, _number = -1, _integer = -1;

    private JsonSchemaCompiler(JsonElement root) => _root = root;

    /// <summary>Compiles the schema in <paramref name="json"/> (text); syntax errors are a <see cref="GrammarException"/> too.</summary>
    public static Grammar Compile(string json)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = MaxDepth }); }
        catch (JsonException e) { throw new GrammarException(SyntaxError(json, e)); }
        using (doc) return Compile(doc.RootElement);
    }

    /// <summary>How deep a schema's JSON may nest (System.Text.Json's default).</summary>
    private const int MaxDepth = 64;

    /// <summary>
    /// The one line for a schema text that does not parse: where (line and byte, counted from 1) and, for the common
    /// cases, what; never System.Text.Json's own message (it names .NET internals, or resource keys in the AOT build).
    /// </summary>
    private static string SyntaxError(string json, JsonException e)
    {
        string where = e.LineNumber is { } line ? $" at line {line + 1}, byte {e.BytePositionInLine + 1}" : "";
        string what = json.AsSpan().Trim().IsEmpty ? "the file is empty"
            : Depth(json) > MaxDepth ? $"it nests arrays and objects more than {MaxDepth} deep"
            : "a syntax error";
        return $"the JSON schema is not valid JSON{where} ({what})";
    }

    /// <summary>The deepest nesting of [ and { outside strings (for the error message only).</summary>
    private static int Depth(string json)
    {
        int depth = 0, most = 0;
        bool inString = false;
        for (int i = 0; i < json.Length; i++)
        {
            char ch = json[i];
            if (inString)
            {
                if (ch == '\\') i++;
                else if (ch == '"') inString = false;
            }
            else if (ch == '"') inString = true;
            else if (ch is '[' or '{') most = Math.Max(most, ++depth);
            else if (ch is ']' or '}') depth--;
        }
        return most;
    }

    public static Grammar Compile(JsonElement schema)
    {
        CheckText(schema, "#");
        var c = new JsonSchemaCompiler(schema.Clone());
        int root = c.Schema(c._root, "#");
        return c._b.Build("JSON schema", root);
    }

    /// <summary>The grammar of any JSON object.</summary>
    internal static Grammar AnyObject()
    {
        var c = new JsonSchemaCompiler(default);
        return c._b.Build("json_object", c.AnyObjectRule());
    }

    private static GrammarException Refuse(string where, string what) => new($"JSON schema at {where}: {what}");

    /// <summary>
    /// Refuses, by path, a string or property name that is not text: an unpaired \uD800-\uDFFF escape or invalid
    /// UTF-8 (System.Text.Json parses them but throws an InvalidOperationException when the string is read).
    /// </summary>
    private static void CheckText(JsonElement e, string where)
    {
        const string NotText = "is not valid text (an unpaired \\uD800-\\uDFFF escape or invalid UTF-8)";
        switch (e.ValueKind)
        {
            case JsonValueKind.String:
                try { e.GetString(); }
                catch (InvalidOperationException) { throw Refuse(where, $"a string {NotText}"); }
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var item in e.EnumerateArray()) CheckText(item, $"{where}/{i++}");
                break;
            case JsonValueKind.Object:
                int k = 0;
                foreach (var p in e.EnumerateObject())
                {
                    string name;
                    try { name = p.Name; }
                    catch (InvalidOperationException) { throw Refuse(where, $"the name of member {k} {NotText}"); }
                    CheckText(p.Value, $"{where}/{name}");
                    k++;
                }
                break;
        }
    }

    private int Schema(JsonElement s, string where)
    {
        if (s.ValueKind == JsonValueKind.True) return Value();
        if (s.ValueKind == JsonValueKind.False) throw Refuse(where, "the schema 'false' matches nothing");
        if (s.ValueKind != JsonValueKind.Object) throw Refuse(where, $"a schema must be an object or a boolean, got {s.ValueKind.ToString().ToLowerInvariant()}");

        string[] known =
        [
            "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength",
            "enum", "const", "anyOf", "oneOf", "$ref",
        ];
        foreach (var p in s.EnumerateObject())
        {
            if (Annotations.Contains(p.Name) || System.Array.IndexOf(known, p.Name) >= 0) continue;
            if (p.Name == "uniqueItems" && p.Value.ValueKind == JsonValueKind.False) continue;
            throw Refuse(where, $"keyword '{p.Name}' is not supported");
        }

        if (s.TryGetProperty("$ref", out var r))
        {
            foreach (var p in s.EnumerateObject())
                if (p.Name != "$ref" && !Annotations.Contains(p.Name))
                    throw Refuse(where, $"keyword '{p.Name}' next to '$ref' is not supported");
            return Ref(r, where);
        }
        if (s.TryGetProperty("const", out var cst)) return Literal(cst);
        if (s.TryGetProperty("enum", out var en))
        {
            if (en.ValueKind != JsonValueKind.Array || en.GetArrayLength() == 0) throw Refuse(where, "'enum' must be a non-empty array");
            int rule = _b.NewRule();
            foreach (var v in en.EnumerateArray()) _b.Alt(rule, GrammarBuilder.Ref(Literal(v)));
            return rule;
        }
        foreach (string kw in (string[])["anyOf", "oneOf"])
        {
            if (!s.TryGetProperty(kw, out var list)) continue;
            if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0) throw Refuse(where, $"'{kw}' must be a non-empty array");
            foreach (var p in s.EnumerateObject())
                if (p.Name != kw && !Annotations.Contains(p.Name))
                    throw Refuse(where, $"keyword '{p.Name}' next to '{kw}' is not supported (put it inside each alternative)");
            int rule = _b.NewRule();
            int i = 0;
            foreach (var alt in list.EnumerateArray()) _b.Alt(rule, GrammarBuilder.Ref(Schema(alt, $"{where}/{kw}/{i++}")));
            return rule;
        }

        if (!s.TryGetProperty("type", out var type))
        {
            if (s.TryGetProperty("properties", out _) || s.TryGetProperty("additionalProperties", out _) || s.TryGetProperty("required", out _))
                return Object(s, where);
            if (s.TryGetProperty("items", out _) || s.TryGetProperty("minItems", out _) || s.TryGetProperty("maxItems", out _))
                return Array(s, where);
            if (s.TryGetProperty("minLength", out _) || s.TryGetProperty("maxLength", out _)) return String(s, where);
            return Value();
        }
        if (type.ValueKind == JsonValueKind.String) return Typed(type.GetString()!, s, where);
        if (type.ValueKind == JsonValueKind.Array && type.GetArrayLength() > 0)
        {
            int rule = _b.NewRule();
            foreach (var t in type.EnumerateArray())
            {
                if (t.ValueKind != JsonValueKind.String) throw Refuse(where, "'type' must be a string or an array of strings");
                _b.Alt(rule, GrammarBuilder.Ref(Typed(t.GetString()!, s, where)));
            }
            return rule;
        }
        throw Refuse(where, "'type' must be a string or a non-empty array of strings");
    }

    private int Typed(string type, JsonElement s, string where) => type switch
    {
        "object" => Object(s, where),
        "array" => Array(s, where),
        "string" => String(s, where),
        "number" => Number(),
        "integer" => Integer(),
        "boolean" => Literal("true", "false"),
        "null" => Literal("null"),
        _ => throw Refuse(where, $"unknown type '{type}'"),
    };

    private int Ref(JsonElement r, string where)
    {
        if (r.ValueKind != JsonValueKind.String) throw Refuse(where, "'$ref' must be a string");
        string path = r.GetString()!;
        if (_refs.TryGetValue(path, out int known)) return known;
        JsonElement target;
        if (path == "#") target = _root;
        else
        {
            string[] parts = path.Split('/');
            if (parts.Length != 3 || parts[0] != "#" || parts[1] is not ("$defs" or "definitions")
                || !_root.TryGetProperty(parts[1], out var defs) || defs.ValueKind != JsonValueKind.Object
                || !defs.TryGetProperty(Unescape(parts[2]), out target))
                throw Refuse(where, $"'$ref' '{path}' is not supported (only '#', '#/$defs/NAME' and '#/definitions/NAME' of this schema)");
        }
        int rule = _b.NewRule();
        _refs[path] = rule; // before compiling the target, so recursion finds it
        _b.Alt(rule, GrammarBuilder.Ref(Schema(target, path)));
        return rule;
    }

    private static string Unescape(string pointer) => pointer.Replace("~1", "/").Replace("~0", "~");

    private static int Count(JsonElement s, string key, string where, int fallback)
    {
        if (!s.TryGetProperty(key, out var v)) return fallback;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int n) || n < 0)
            throw Refuse(where, $"'{key}' must be a non-negative integer");
        if (n > MaxCount) throw Refuse(where, $"'{key}' {n} is larger than this server generates ({MaxCount} at most)");
        return n;
    }

    private int Object(JsonElement s, string where)
    {
        bool hasProps = s.TryGetProperty("properties", out var props);
        if (hasProps && props.ValueKind != JsonValueKind.Object) throw Refuse(where, "'properties' must be an object");
        var required = new HashSet<string>();
        if (s.TryGetProperty("required", out var req))
        {
            if (req.ValueKind != JsonValueKind.Array) throw Refuse(where, "'required' must be an array of strings");
            foreach (var n in req.EnumerateArray())
            {
                if (n.ValueKind != JsonValueKind.String) throw Refuse(where, "'required' must be an array of strings");
                if (!hasProps || !props.TryGetProperty(n.GetString()!, out _))
                    throw Refuse(where, $"'required' names '{n.GetString()}', which is not in 'properties' (only declared properties are generated)");
                required.Add(n.GetString()!);
            }
        }
        bool hasAdditional = s.TryGetProperty("additionalProperties", out var additional);
        if (hasAdditional && additional.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Object))
            throw Refuse(where, "'additionalProperties' must be a boolean or a schema");

        int ws = Ws();
        if (!hasProps || !props.EnumerateObject().Any())
        {
            if (hasAdditional && additional.ValueKind == JsonValueKind.False) return Sequence(Lit("{"), [GrammarBuilder.Ref(ws)], Lit("}"));
            if (hasAdditional && additional.ValueKind == JsonValueKind.Object)
                return Members(Schema(additional, where + "/additionalProperties"));
            return AnyObjectRule();
        }

        var names = new List<string>();
        var values = new List<int>();
        foreach (var p in props.EnumerateObject())
        {
            names.Add(p.Name);
            values.Add(Schema(p.Value, $"{where}/properties/{p.Name}"));
        }
        int n2 = names.Count;
        // rest[i, first]: the members from property i on, when nothing (first) or something was written before.
        var rest = new int[n2 + 1, 2];
        int empty = _b.NewRule();
        _b.Alt(empty);
        rest[n2, 0] = rest[n2, 1] = empty;
        for (int i = n2 - 1; i >= 0; i--)
        {
            int[] member = [.. Lit(JsonString(names[i])), GrammarBuilder.Ref(ws), .. Lit(":"), GrammarBuilder.Ref(ws), GrammarBuilder.Ref(values[i])];
            for (int first = 0; first < 2; first++)
            {
                int rule = _b.NewRule();
                int[] sep = first == 1 ? [] : [GrammarBuilder.Ref(ws), .. Lit(","), GrammarBuilder.Ref(ws)];
                _b.Alt(rule, [.. sep, .. member, GrammarBuilder.Ref(rest[i + 1, 0])]);
                if (!required.Contains(names[i])) _b.Alt(rule, GrammarBuilder.Ref(rest[i + 1, first]));
                rest[i, first] = rule;
            }
        }
        return Sequence(Lit("{"), [GrammarBuilder.Ref(ws), GrammarBuilder.Ref(rest[0, 1]), GrammarBuilder.Ref(ws)], Lit("}"));
    }

    /// <summary>An object with any string keys, each value matching <paramref name="value"/>.</summary>
    private int Members(int value)
    {
        int ws = Ws();
        int[] member = [GrammarBuilder.Ref(String()), GrammarBuilder.Ref(ws), .. Lit(":"), GrammarBuilder.Ref(ws), GrammarBuilder.Ref(value)];
        return Delimited("{", "}", member, 0, -1);
    }

    /// <summary>open ws (item (ws "," ws item){min-1..max-1})? ws close, with the count of items in [min, max] (max &lt; 0: no limit).</summary>
    private int Delimited(string open, string close, int[] item, int min, int max)
    {
        int ws = Ws();
        int[] end = [GrammarBuilder.Ref(ws), .. Lit(close)];
        int rule = _b.NewRule();
        if (max == 0)
        {
            _b.Alt(rule, [.. Lit(open), .. end]);
            return rule;
        }
        // tail[c]: what may follow after c items.
        int Tail(int c)
        {
            int t = _b.NewRule();
            if (c >= min && max < 0)
            {
                _b.Alt(t, end);
                _b.Alt(t, [GrammarBuilder.Ref(ws), .. Lit(","), GrammarBuilder.Ref(ws), .. item, GrammarBuilder.Ref(t)]);
                return t;
            }
            if (c >= min) _b.Alt(t, end);
            if (max < 0 || c < max) _b.Alt(t, [GrammarBuilder.Ref(ws), .. Lit(","), GrammarBuilder.Ref(ws), .. item, GrammarBuilder.Ref(Tail(c + 1))]);
            return t;
        }
        _b.Alt(rule, [.. Lit(open), GrammarBuilder.Ref(ws), .. item, GrammarBuilder.Ref(Tail(1))]);
        if (min == 0) _b.Alt(rule, [.. Lit(open), .. end]);
        return rule;
    }

    private int Array(JsonElement s, string where)
    {
        int min = Count(s, "minItems", where, 0), max = Count(s, "maxItems", where, -1);
        if (max >= 0 && max < min) throw Refuse(where, $"'maxItems' {max} is below 'minItems' {min}");
        int item;
        if (s.TryGetProperty("items", out var items))
        {
            if (items.ValueKind == JsonValueKind.Array) throw Refuse(where, "'items' as an array (tuple validation) is not supported; use one schema");
            item = Schema(items, where + "/items");
        }
        else item = Value();
        return Delimited("[", "]", [GrammarBuilder.Ref(item)], min, max);
    }

    private int String(JsonElement s, string where)
    {
        int min = Count(s, "minLength", where, 0), max = Count(s, "maxLength", where, -1);
        if (max >= 0 && max < min) throw Refuse(where, $"'maxLength' {max} is below 'minLength' {min}");
        if (min == 0 && max < 0) return String();
        int chars = _b.Repeat([GrammarBuilder.Ref(Char())], min, max);
        return Sequence(Lit("\""), [GrammarBuilder.Ref(chars)], Lit("\""));
    }

    private int Sequence(int[] a, int[] b, int[] c)
    {
        int rule = _b.NewRule();
        _b.Alt(rule, [.. a, .. b, .. c]);
        return rule;
    }

    private int[] Lit(string ascii) => _b.Lit(ascii);

    private int Literal(params string[] alternatives)
    {
        int rule = _b.NewRule();
        foreach (string a in alternatives) _b.Alt(rule, Lit(a));
        return rule;
    }

    /// <summary>A rule for exactly the compact JSON text of <paramref name="value"/>.</summary>
    private int Literal(JsonElement value)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = Encoder })) value.WriteTo(w);
        int rule = _b.NewRule();
        _b.Alt(rule, _b.Lit(ms.ToArray()));
        return rule;
    }

    private static string JsonString(string s) => "\"" + JsonEncodedText.Encode(s, Encoder).Value + "\"";

    /// <summary>Nothing, one space, or a newline and up to 16 spaces.</summary>
    private int Ws()
    {
        if (_ws >= 0) return _ws;
        _ws = _b.NewRule();
        int indent = _b.Repeat([_b.Byte(' ')], 0, 16);
        _b.Alt(_ws);
        _b.Alt(_ws, _b.Byte(' '));
        _b.Alt(_ws, _b.Byte('\n'), GrammarBuilder.Ref(indent));
        return _ws;
    }

    private int Value()
    {
        if (_value >= 0) return _value;
        _value = _b.NewRule();
        _b.Alt(_value, GrammarBuilder.Ref(AnyObjectRule()));
        _b.Alt(_value, GrammarBuilder.Ref(AnyArray()));
        _b.Alt(_value, GrammarBuilder.Ref(String()));
        _b.Alt(_value, GrammarBuilder.Ref(Number()));
        _b.Alt(_value, Lit("true"));
        _b.Alt(_value, Lit("false"));
        _b.Alt(_value, Lit("null"));
        return _value;
    }

    private int AnyObjectRule()
    {
        if (_object >= 0) return _object;
        _object = _b.NewRule(); // reserved first: values nest objects
        int body = Members(Value());
        _b.Alt(_object, GrammarBuilder.Ref(body));
        return _object;
    }

    private int AnyArray()
    {
        if (_array >= 0) return _array;
        _array = _b.NewRule();
        _b.Alt(_array, GrammarBuilder.Ref(Delimited("[", "]", [GrammarBuilder.Ref(Value())], 0, -1)));
        return _array;
    }

    private int String()
    {
        if (_string >= 0) return _string;
        int chars = _b.Repeat([GrammarBuilder.Ref(Char())], 0, -1);
        _string = Sequence(Lit("\""), [GrammarBuilder.Ref(chars)], Lit("\""));
        return _string;
    }

    /// <summary>One JSON string character: unescaped printable ASCII or a well-formed UTF-8 sequence, or an escape.</summary>
    private int Char()
    {
        if (_char >= 0) return _char;
        _char = _b.NewRule();
        int cont = _b.Set((0x80, 0xBF));
        _b.Alt(_char, _b.Set((0x20, 0x21), (0x23, 0x5B), (0x5D, 0x7E)));
        _b.Alt(_char, _b.Set((0xC2, 0xDF)), cont);
        _b.Alt(_char, _b.Byte(0xE0), _b.Set((0xA0, 0xBF)), cont);
        _b.Alt(_char, _b.Set((0xE1, 0xEC), (0xEE, 0xEF)), cont, cont);
        _b.Alt(_char, _b.Byte(0xED), _b.Set((0x80, 0x9F)), cont);
        _b.Alt(_char, _b.Byte(0xF0), _b.Set((0x90, 0xBF)), cont, cont);
        _b.Alt(_char, _b.Set((0xF1, 0xF3)), cont, cont, cont);
        _b.Alt(_char, _b.Byte(0xF4), _b.Set((0x80, 0x8F)), cont, cont);
        int hex = _b.Set(('0', '9'), ('a', 'f'), ('A', 'F'));
        _b.Alt(_char, _b.Byte('\\'), _b.Set(('"', '"'), ('\\', '\\'), ('/', '/'), ('b', 'b'), ('f', 'f'), ('n', 'n'), ('r', 'r'), ('t', 't')));
        // \uXXXX outside D800-DFFF: a lone surrogate is not text.
        _b.Alt(_char, _b.Byte('\\'), _b.Byte('u'), _b.Set(('0', '9'), ('a', 'c'), ('A', 'C'), ('e', 'f'), ('E', 'F')), hex, hex, hex);
        _b.Alt(_char, _b.Byte('\\'), _b.Byte('u'), _b.Set(('d', 'd'), ('D', 'D')), _b.Set(('0', '7')), hex, hex);
        return _char;
    }

    /// <summary>-? (0 | [1-9] [0-9]{0,15}).</summary>
    private int Integer()
    {
        if (_integer >= 0) return _integer;
        int digits = _b.Repeat([_b.Set(('0', '9'))], 0, 15);
        int magnitude = _b.NewRule();
        _b.Alt(magnitude, _b.Byte('0'));
        _b.Alt(magnitude, _b.Set(('1', '9')), GrammarBuilder.Ref(digits));
        _integer = _b.NewRule();
        _b.Alt(_integer, GrammarBuilder.Ref(magnitude));
        _b.Alt(_integer, _b.Byte('-'), GrammarBuilder.Ref(magnitude));
        return _integer;
    }

    /// <summary>integer ("." [0-9]{1,16})? ([eE] [+-]? [0-9]{1,2})?.</summary>
    private int Number()
    {
        if (_number >= 0) return _number;
        int digit = _b.Set(('0', '9'));
        int frac = _b.NewRule();
        _b.Alt(frac);
        _b.Alt(frac, _b.Byte('.'), GrammarBuilder.Ref(_b.Repeat([digit], 1, 16)));
        int exp = _b.NewRule();
        _b.Alt(exp);
        int sign = _b.NewRule();
        _b.Alt(sign);
        _b.Alt(sign, _b.Set(('+', '+'), ('-', '-')));
        _b.Alt(exp, _b.Set(('e', 'e'), ('E', 'E')), GrammarBuilder.Ref(sign), GrammarBuilder.Ref(_b.Repeat([digit], 1, 2)));
        _number = _b.NewRule();
        _b.Alt(_number, GrammarBuilder.Ref(Integer()), GrammarBuilder.Ref(frac), GrammarBuilder.Ref(exp));
        return _number;
    }
}
