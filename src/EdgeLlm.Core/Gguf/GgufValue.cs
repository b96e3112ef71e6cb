namespace EdgeLlm.Gguf;

/// <summary>GGUF metadata value type codes.</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>
/// One metadata value. Scalars hold the boxed CLR value (byte, sbyte, ushort, short, uint, int, float,
/// bool, string, ulong, long, double). Arrays hold a typed CLR array (byte[], ..., string[], bool[]) or,
/// for arrays of arrays, <see cref="GgufValue"/>[].
/// </summary>
public sealed class GgufValue
{
    public GgufValueType Type { get; }

    /// <summary>Element type when <see cref="Type"/> is Array.</summary>
    public GgufValueType ElementType { get; }

    public object Value { get; }

    public GgufValue(GgufValueType type, object value, GgufValueType elementType = default)
    {
        Type = type;
        Value = value;
        ElementType = elementType;
    }

    public static GgufValue Of(string v) => new(GgufValueType.String, v);
    public static GgufValue Of(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue Of(int v) => new(GgufValueType.Int32, v);
    public static GgufValue Of(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue Of(long v) => new(GgufValueType.Int64, v);
    public static GgufValue Of(float v) => new(GgufValueType.Float32, v);
    public static GgufValue Of(double v) => new(GgufValueType.Float64, v);
    public static GgufValue Of(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue Of(string[] v) => new(GgufValueType.Array, v, GgufValueType.String);
    public static GgufValue Of(float[] v) => new(GgufValueType.Array, v, GgufValueType.Float32);
    public static GgufValue Of(int[] v) => new(GgufValueType.Array, v, GgufValueType.Int32);
    public static GgufValue Of(uint[] v) => new(GgufValueType.Array, v, GgufValueType.UInt32);
    public static GgufValue Of(byte v) => new(GgufValueType.UInt8, v);
    public static GgufValue Of(sbyte v) => new(GgufValueType.Int8, v);
    public static GgufValue Of(ushort v) => new(GgufValueType.UInt16, v);
    public static GgufValue Of(short v) => new(GgufValueType.Int16, v);
    public static GgufValue Of(byte[] v) => new(GgufValueType.Array, v, GgufValueType.UInt8);
    public static GgufValue Of(sbyte[] v) => new(GgufValueType.Array, v, GgufValueType.Int8);
    public static GgufValue Of(ushort[] v) => new(GgufValueType.Array, v, GgufValueType.UInt16);
    public static GgufValue Of(short[] v) => new(GgufValueType.Array, v, GgufValueType.Int16);
    public static GgufValue Of(ulong[] v) => new(GgufValueType.Array, v, GgufValueType.UInt64);
    public static GgufValue Of(long[] v) => new(GgufValueType.Array, v, GgufValueType.Int64);
    public static GgufValue Of(double[] v) => new(GgufValueType.Array, v, GgufValueType.Float64);
    public static GgufValue Of(bool[] v) => new(GgufValueType.Array, v, GgufValueType.Bool);

    /// <summary>
    /// An array of arrays; every element must itself be an array value. Valid GGUF, but llama.cpp's reader
    /// rejects arrays of arrays, so a file meant for llama.cpp should not contain them.
    /// </summary>
    public static GgufValue Of(GgufValue[] arrays) => new(GgufValueType.Array, arrays, GgufValueType.Array);

    /// <summary>
    /// Checks that <see cref="Value"/> holds the CLR type <see cref="Type"/> (and, for arrays,
    /// <see cref="ElementType"/>) calls for; returns null when it does, else what is wrong.
    /// </summary>
    public string? Validate(int depth = 0)
    {
        if (Value is null) return $"{Type} value is null";
        if (Type != GgufValueType.Array) return Matches(Type, Value) ? null : $"{Type} value holds a {Value.GetType().Name}";
        if (depth >= GgufFile.MaxArrayNesting) return $"arrays nested deeper than {GgufFile.MaxArrayNesting} levels";
        if (ElementType == GgufValueType.Array)
        {
            if (Value is not GgufValue[] inner) return $"array of arrays holds a {Value.GetType().Name}";
            foreach (var v in inner)
            {
                if (v is null || v.Type != GgufValueType.Array) return "array of arrays has an element that is not an array";
                if (v.Validate(depth + 1) is { } why) return why;
            }
            return null;
        }
        // compare exact CLR types: the runtime lets a uint[] pass as an int[] and an sbyte[] as a byte[]
        Type? expected = ElementType switch
        {
            GgufValueType.UInt8 => typeof(byte[]), GgufValueType.Int8 => typeof(sbyte[]),
            GgufValueType.UInt16 => typeof(ushort[]), GgufValueType.Int16 => typeof(short[]),
            GgufValueType.UInt32 => typeof(uint[]), GgufValueType.Int32 => typeof(int[]),
            GgufValueType.Float32 => typeof(float[]), GgufValueType.Bool => typeof(bool[]),
            GgufValueType.String => typeof(string[]), GgufValueType.UInt64 => typeof(ulong[]),
            GgufValueType.Int64 => typeof(long[]), GgufValueType.Float64 => typeof(double[]),
            _ => null,
        };
        if (expected is null) return $"unknown array element type {(uint)ElementType}";
        if (Value.GetType() != expected) return $"{ElementType} array holds a {Value.GetType().Name}";
        if (Value is string[] strings && Array.IndexOf(strings, null) >= 0) return "string array holds a null";
        return null;
    }

    private static bool Matches(GgufValueType type, object value) => (type, value) switch
    {
        (GgufValueType.UInt8, byte) or (GgufValueType.Int8, sbyte) or (GgufValueType.UInt16, ushort)
            or (GgufValueType.Int16, short) or (GgufValueType.UInt32, uint) or (GgufValueType.Int32, int)
            or (GgufValueType.Float32, float) or (GgufValueType.Bool, bool) or (GgufValueType.String, string)
            or (GgufValueType.UInt64, ulong) or (GgufValueType.Int64, long) or (GgufValueType.Float64, double) => true,
        _ => false,
    };

    /// <summary>Number of elements when this is an array, else 1.</summary>
    public long Count => Value is Array a ? a.LongLength : 1;

    /// <summary>The value as a signed 64-bit integer if it is any integer type that fits.</summary>
    public bool TryGetInt64(out long result)
    {
        switch (Value)
        {
            case byte b: result = b; return true;
            case sbyte sb: result = sb; return true;
            case ushort us: result = us; return true;
            case short s: result = s; return true;
            case uint ui: result = ui; return true;
            case int i: result = i; return true;
            case long l: result = l; return true;
            case ulong ul when ul <= long.MaxValue: result = (long)ul; return true;
            default: result = 0; return false;
        }
    }

    /// <summary>The value as a double if it is any numeric type.</summary>
    public bool TryGetDouble(out double result)
    {
        switch (Value)
        {
            case float f: result = f; return true;
            case double d: result = d; return true;
            default:
                if (TryGetInt64(out long l)) { result = l; return true; }
                if (Value is ulong ul) { result = ul; return true; }
                result = 0;
                return false;
        }
    }

    /// <summary>A short human-readable rendering (arrays are summarised).</summary>
    public override string ToString()
    {
        if (Type != GgufValueType.Array)
        {
            return Value switch
            {
                string s => "\"" + Escape(s, 80) + "\"",
                bool b => b ? "true" : "false",
                float f => f.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
                double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
                _ => Convert.ToString(Value, System.Globalization.CultureInfo.InvariantCulture) ?? "",
            };
        }
        var arr = (Array)Value;
        var sb = new System.Text.StringBuilder();
        sb.Append(ElementType.ToString().ToLowerInvariant()).Append('[').Append(arr.LongLength).Append("] [");
        int shown = (int)Math.Min(arr.LongLength, 6);
        for (int i = 0; i < shown; i++)
        {
            if (i > 0) sb.Append(", ");
            object? e = arr.GetValue(i);
            sb.Append(e switch
            {
                string s => "\"" + Escape(s, 20) + "\"",
                GgufValue v => v.ToString(),
                float f => f.ToString("G6", System.Globalization.CultureInfo.InvariantCulture),
                _ => Convert.ToString(e, System.Globalization.CultureInfo.InvariantCulture),
            });
        }
        if (arr.LongLength > shown) sb.Append(", ...");
        sb.Append(']');
        return sb.ToString();
    }

    private static string Escape(string s, int max)
    {
        var sb = new System.Text.StringBuilder();
        foreach (char c in s)
        {
            if (sb.Length >= max) { sb.Append("..."); break; }
            sb.Append(c switch { '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", '"' => "\\\"", _ => c.ToString() });
        }
        return sb.ToString();
    }
}
