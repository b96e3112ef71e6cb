using System.Buffers.Binary;
using System.Text;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Gguf;

/// <summary>
/// Builds GGUF bytes field by field with any values, valid or not, for hostile-input tests. <see cref="Mark"/>
/// records the current offset under a name so a test can assert the offset an error reports.
/// </summary>
internal sealed class GgufBytes
{
    private readonly MemoryStream _s = new();

    public Dictionary<string, long> Marks { get; } = new();

    public long Length => _s.Length;

    public long this[string mark] => Marks[mark];

    public GgufBytes Mark(string name) { Marks[name] = _s.Length; return this; }

    public GgufBytes U8(byte v) { _s.WriteByte(v); return this; }

    public GgufBytes U16(ushort v) { Span<byte> b = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, v); _s.Write(b); return this; }

    public GgufBytes U32(uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); _s.Write(b); return this; }

    public GgufBytes U64(ulong v) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); _s.Write(b); return this; }

    public GgufBytes Raw(ReadOnlySpan<byte> bytes) { _s.Write(bytes); return this; }

    public GgufBytes Zeros(long n) { for (long i = 0; i < n; i++) _s.WriteByte(0); return this; }

    /// <summary>A GGUF string: u64 byte length then the UTF-8 bytes.</summary>
    public GgufBytes Str(string s) { byte[] b = Encoding.UTF8.GetBytes(s); U64((ulong)b.Length); return Raw(b); }

    public GgufBytes Header(ulong tensorCount, ulong kvCount, uint version = 3, uint magic = GgufFile.Magic) =>
        U32(magic).U32(version).U64(tensorCount).U64(kvCount);

    /// <summary>Key string and value type; the caller writes the value.</summary>
    public GgufBytes Key(string key, GgufValueType type) => Str(key).U32((uint)type);

    public GgufBytes KvU32(string key, uint v) => Key(key, GgufValueType.UInt32).U32(v);

    public GgufBytes KvString(string key, string v) => Key(key, GgufValueType.String).Str(v);

    /// <summary>
    /// A tensor-info entry; marks "NAME.info", "NAME.n_dims", "NAME.dims[d]", "NAME.type", "NAME.offset".
    /// <paramref name="nDims"/> overrides the written dimension count (dims.Length by default).
    /// </summary>
    public GgufBytes TensorInfo(string name, ulong[] dims, uint type, ulong offset, uint? nDims = null)
    {
        Mark(name + ".info").Str(name);
        Mark(name + ".n_dims").U32(nDims ?? (uint)dims.Length);
        for (int d = 0; d < dims.Length; d++) Mark($"{name}.dims[{d}]").U64(dims[d]);
        Mark(name + ".type").U32(type);
        return Mark(name + ".offset").U64(offset);
    }

    /// <summary>Zero padding up to the next multiple of <paramref name="alignment"/>.</summary>
    public GgufBytes Pad(long alignment = 32) => Zeros(GgufFile.AlignUp(_s.Length, alignment) - _s.Length);

    public byte[] ToArray() => _s.ToArray();

    /// <summary>Writes the bytes to a fresh temporary file and returns its path.</summary>
    public string Save(string name = "hostile.gguf")
    {
        string path = TestPaths.TempFile(name);
        File.WriteAllBytes(path, ToArray());
        return path;
    }
}
