using System.Buffers.Binary;
using System.Text.Json;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// One <c>.safetensors</c> file, mapped: an 8-byte little-endian header length, a JSON header
/// (<c>{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}</c>), then the raw
/// row-major data, offsets relative to the end of the header. Every entry is checked to lie inside the file and
/// to have exactly numel x element-size bytes.
/// </summary>
internal sealed class SafetensorsFile : IDisposable
{
    public const long MaxHeaderBytes = 100L << 20;

    public sealed record Entry(string Name, string DType, long[] Shape, long Begin, long End);

    public MappedFile File { get; }
    public long DataStart { get; }
    public IReadOnlyList<Entry> Entries { get; }

    private SafetensorsFile(MappedFile file, long dataStart, List<Entry> entries)
    {
        File = file;
        DataStart = dataStart;
        Entries = entries;
    }

    /// <summary>Element size of a safetensors dtype, or 0 when the converter cannot read it.</summary>
    public static int ElementBytes(string dtype) => dtype switch { "F32" => 4, "F16" or "BF16" => 2, _ => 0 };

    public static SourceDType? ToSourceDType(string dtype) => dtype switch
    {
        "F32" => SourceDType.F32,
        "F16" => SourceDType.F16,
        "BF16" => SourceDType.BF16,
        _ => null,
    };

    public static unsafe SafetensorsFile Open(string path)
    {
        var f = MappedFile.Open(path);
        try
        {
            if (f.Length < 8) throw Bad(path, $"truncated: {f.Length} bytes, too short for the 8-byte header length");
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(f.Base, 8));
            if (n < 2 || n > (ulong)MaxHeaderBytes) throw Bad(path, $"header length {n} is not in [2, {MaxHeaderBytes}]");
            if (8 + (long)n > f.Length) throw Bad(path, $"truncated: the {n}-byte JSON header runs past the end of the file ({f.Length} bytes)");
            long dataStart = 8 + (long)n;
            long dataBytes = f.Length - dataStart;
            var entries = new List<Entry>();
            JsonDocument doc;
            var header = new ReadOnlySpan<byte>(f.Base + 8, (int)n);
            if (!System.Text.Unicode.Utf8.IsValid(header)) throw Bad(path, "the header is not valid UTF-8");
            try { doc = JsonDocument.Parse(new ReadOnlyMemory<byte>(header.ToArray())); }
            catch (JsonException e) { throw Bad(path, $"the header is not valid JSON ({e.Message.ReplaceLineEndings(" ")})"); }
            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad(path, "the header is not a JSON object");
                foreach (var p in doc.RootElement.EnumerateObject())
                {
                    if (p.Name == "__metadata__") continue;
                    entries.Add(ParseEntry(path, p, dataBytes));
                }
            }
            return new SafetensorsFile(f, dataStart, entries);
        }
        catch
        {
            f.Dispose();
            throw;
        }
    }

    private static Entry ParseEntry(string path, JsonProperty p, long dataBytes)
    {
        string what = $"tensor '{p.Name}'";
        var v = p.Value;
        if (v.ValueKind != JsonValueKind.Object) throw Bad(path, $"{what}: entry is not an object");
        string dtype = v.TryGetProperty("dtype", out var dt) && dt.ValueKind == JsonValueKind.String ? dt.GetString()! : throw Bad(path, $"{what}: no dtype");
        if (!v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array) throw Bad(path, $"{what}: no shape");
        var shape = new long[sh.GetArrayLength()];
        int i = 0;
        long numel = 1;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long x) || x < 0) throw Bad(path, $"{what}: bad shape {sh}");
            shape[i++] = x;
            numel = x == 0 ? 0 : numel > long.MaxValue / x ? throw Bad(path, $"{what}: shape {sh} overflows") : numel * x;
        }
        if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Bad(path, $"{what}: no data_offsets [begin, end]");
        long b = off[0].ValueKind == JsonValueKind.Number && off[0].TryGetInt64(out long b0) ? b0 : -1;
        long e = off[1].ValueKind == JsonValueKind.Number && off[1].TryGetInt64(out long e0) ? e0 : -1;
        if (b < 0 || e < b || e > dataBytes)
            throw Bad(path, $"{what}: data_offsets [{off[0]}, {off[1]}] outside the {dataBytes} data bytes (truncated file?)");
        int eb = ElementBytes(dtype);
        if (eb != 0 && e - b != numel * eb)
            throw Bad(path, $"{what}: {e - b} bytes for {dtype} shape [{string.Join(", ", shape)}], expected {numel * eb}");
        return new Entry(p.Name, dtype, shape, b, e);
    }

    private static EdgeLlmException Bad(string path, string problem) => new($"{path}: safetensors: {problem}");

    public void Dispose() => File.Dispose();
}
