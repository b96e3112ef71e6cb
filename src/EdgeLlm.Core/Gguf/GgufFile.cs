using System.IO.MemoryMappedFiles;
using System.Text;

namespace EdgeLlm.Gguf;

/// <summary>
/// A GGUF (v2/v3) file opened over a read-only memory map. The header, metadata and tensor-info table are
/// parsed and validated up front; tensor data is never copied: <see cref="GetTensor"/> returns a view
/// into the mapping. Every count, length, offset and dimension is checked against the file size before it
/// is used, so a truncated or hostile file fails with a <see cref="GgufFormatException"/>.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const uint DefaultAlignment = 32;
    public const int MaxDims = 4;
    public const int MaxTensorNameBytes = 63; // ggml GGML_MAX_NAME (64) including the NUL
    private const int MaxArrayNesting = 8;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _base;
    private readonly long _length;
    private readonly Dictionary<string, GgufValue> _metadata = new(StringComparer.Ordinal);
    private readonly List<string> _keyOrder = new();
    private readonly List<GgufTensorInfo> _tensors = new();
    private readonly Dictionary<string, GgufTensorInfo> _tensorByName = new(StringComparer.Ordinal);

    public string Path { get; }
    public uint Version { get; }
    public uint Alignment { get; }

    /// <summary>Absolute file offset of the tensor data section.</summary>
    public long DataOffset { get; }

    public long FileSize => _length;

    public IReadOnlyList<string> Keys => _keyOrder;
    public IReadOnlyList<GgufTensorInfo> Tensors => _tensors;

    private GgufFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr, long length)
    {
        Path = path;
        _map = map;
        _view = view;
        _base = basePtr;
        _length = length;
        try
        {
            var c = new Cursor(this, 0);
            uint magic = c.U32("magic");
            if (magic != Magic) throw Error("magic", 0, $"expected \"GGUF\", found 0x{magic:X8}");
            Version = c.U32("version");
            if (Version != 2 && Version != 3)
                throw Error("version", 4, $"unsupported GGUF version {Version} (EdgeLlm reads versions 2 and 3)");
            long tensorCountAt = c.Pos;
            ulong tensorCount = c.U64("tensor_count");
            long kvCountAt = c.Pos;
            ulong kvCount = c.U64("metadata_kv_count");
            // Every KV needs at least a key length (8) and a type (4); every tensor info at least 8+4+8+4+8.
            if (kvCount > (ulong)(_length - c.Pos) / 12)
                throw Error("metadata_kv_count", kvCountAt, $"count {kvCount} cannot fit in the {_length - c.Pos} bytes left in the file");
            if (tensorCount > (ulong)(_length - c.Pos) / 32)
                throw Error("tensor_count", tensorCountAt, $"count {tensorCount} cannot fit in the {_length - c.Pos} bytes left in the file");

            for (ulong i = 0; i < kvCount; i++)
            {
                long at = c.Pos;
                string key = c.String($"metadata[{i}].key");
                if (key.Length == 0) throw Error($"metadata[{i}].key", at, "empty key");
                long typeAt = c.Pos;
                var type = (GgufValueType)c.U32($"metadata '{key}' type");
                var value = ReadValue(ref c, type, $"metadata '{key}'", typeAt, 0);
                if (!_metadata.TryAdd(key, value)) throw Error($"metadata '{key}'", at, "duplicate key");
                _keyOrder.Add(key);
            }

            uint alignment = DefaultAlignment;
            if (_metadata.TryGetValue("general.alignment", out var alignValue))
            {
                if (alignValue.Type != GgufValueType.UInt32 || (uint)alignValue.Value == 0 ||
                    ((uint)alignValue.Value & ((uint)alignValue.Value - 1)) != 0)
                    throw Error("general.alignment", 0, $"must be a power-of-two uint32, found {alignValue}");
                alignment = (uint)alignValue.Value;
            }
            Alignment = alignment;

            for (ulong i = 0; i < tensorCount; i++)
            {
                long at = c.Pos;
                string field = $"tensor_info[{i}]";
                string name = c.String(field + ".name");
                if (Encoding.UTF8.GetByteCount(name) > MaxTensorNameBytes)
                    throw Error(field + ".name", at, $"name longer than {MaxTensorNameBytes} bytes");
                field = $"tensor '{name}'";
                long nDimsAt = c.Pos;
                uint nDims = c.U32(field + " n_dims");
                if (nDims == 0 || nDims > MaxDims) throw Error(field + " n_dims", nDimsAt, $"{nDims} dimensions (1 to {MaxDims} allowed)");
                var dims = new long[nDims];
                long elements = 1;
                for (int d = 0; d < nDims; d++)
                {
                    long dimAt = c.Pos;
                    ulong dim = c.U64($"{field} dims[{d}]");
                    if (dim == 0 || dim > long.MaxValue) throw Error($"{field} dims[{d}]", dimAt, $"invalid dimension {dim}");
                    dims[d] = (long)dim;
                    if (elements > long.MaxValue / (long)dim) throw Error($"{field} dims[{d}]", dimAt, "element count overflows 64 bits");
                    elements *= (long)dim;
                }
                long typeAt = c.Pos;
                uint typeId = c.U32(field + " type");
                var type = (GgmlType)typeId;
                if (!GgmlTypes.IsKnown(type)) throw Error(field + " type", typeAt, $"unknown ggml type id {typeId}");
                int bs = GgmlTypes.BlockSize(type);
                if (dims[0] % bs != 0)
                    throw Error(field + " dims[0]", nDimsAt + 4, $"row length {dims[0]} is not a multiple of the {GgmlTypes.Name(type)} block size {bs}");
                long offAt = c.Pos;
                ulong offset = c.U64(field + " offset");
                if (offset % alignment != 0) throw Error(field + " offset", offAt, $"offset {offset} is not a multiple of the alignment {alignment}");
                if (offset > long.MaxValue) throw Error(field + " offset", offAt, $"offset {offset} is out of range");
                var info = new GgufTensorInfo { Name = name, Dims = dims, Type = type, Offset = (long)offset, InfoOffset = at };
                if (!_tensorByName.TryAdd(name, info)) throw Error(field, at, "duplicate tensor name");
                _tensors.Add(info);
            }

            long dataOffset = AlignUp(c.Pos, alignment);
            DataOffset = dataOffset;
            long dataBytes = Math.Max(0, _length - dataOffset);
            foreach (var t in _tensors)
            {
                long rows = t.ElementCount / t.Dims[0];
                long rowBytes = GgmlTypes.RowBytes(t.Type, t.Dims[0]);
                if (rows > 0 && rowBytes > long.MaxValue / rows)
                    throw Error($"tensor '{t.Name}' size", t.InfoOffset, "byte size overflows 64 bits");
                long size = rowBytes * rows;
                if (t.Offset > dataBytes || size > dataBytes - t.Offset)
                    throw Error($"tensor '{t.Name}' data", dataOffset + t.Offset,
                        $"{size} bytes at data offset {t.Offset} run past the end of the file ({_length} bytes, data section starts at {dataOffset})");
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Opens and validates a GGUF file. Throws <see cref="GgufFormatException"/> or <see cref="IOException"/>.</summary>
    public static GgufFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: model file not found", path);
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.RandomAccess);
        long length = fs.Length;
        if (length < 24)
        {
            fs.Dispose();
            throw new GgufFormatException(path, "header", length, $"file is {length} bytes, shorter than the 24-byte GGUF header");
        }
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            map = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            p += view.PointerOffset;
            return new GgufFile(path, map, view, p, length);
        }
        catch (GgufFormatException)
        {
            throw; // the constructor already released the mapping
        }
        catch
        {
            view?.Dispose();
            map?.Dispose();
            fs.Dispose();
            throw;
        }
    }

    public static long AlignUp(long x, long alignment) => (x + alignment - 1) / alignment * alignment;

    // ---------------------------------------------------------------- metadata access

    public bool ContainsKey(string key) => _metadata.ContainsKey(key);

    public GgufValue? Get(string key) => _metadata.TryGetValue(key, out var v) ? v : null;

    public string? GetString(string key) => Get(key)?.Value as string;

    public string RequireString(string key) =>
        GetString(key) ?? throw MissingKey(key, "string");

    public long? GetInt(string key) => Get(key) is { } v && v.TryGetInt64(out long l) ? l : null;

    public long RequireInt(string key) => GetInt(key) ?? throw MissingKey(key, "integer");

    public double? GetDouble(string key) => Get(key) is { } v && v.TryGetDouble(out double d) ? d : null;

    public bool? GetBool(string key) => Get(key)?.Value as bool?;

    public T[]? GetArray<T>(string key) => Get(key)?.Value as T[];

    /// <summary>An integer array of any integer element type, widened to int (values out of int range fail).</summary>
    public int[]? GetIntArray(string key)
    {
        var v = Get(key);
        if (v is null || v.Type != GgufValueType.Array) return null;
        switch (v.Value)
        {
            case int[] a: return a;
            case uint[] u: return Array.ConvertAll(u, x => x > int.MaxValue ? throw MissingKey(key, "int32 array") : (int)x);
            case short[] s: return Array.ConvertAll(s, x => (int)x);
            case sbyte[] sb: return Array.ConvertAll(sb, x => (int)x);
            case byte[] b: return Array.ConvertAll(b, x => (int)x);
            case ushort[] us: return Array.ConvertAll(us, x => (int)x);
            default: return null;
        }
    }

    private GgufFormatException MissingKey(string key, string what) =>
        new(Path, $"metadata '{key}'", 0, Get(key) is null ? $"required {what} key is missing" : $"expected {what}, found {Get(key)!.Type}");

    // ---------------------------------------------------------------- tensors

    public GgufTensorInfo? FindTensor(string name) => _tensorByName.TryGetValue(name, out var t) ? t : null;

    /// <summary>A zero-copy view of a tensor's bytes inside the memory map.</summary>
    public TensorView GetTensor(GgufTensorInfo info)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        return new TensorView(info.Name, info.Type, info.Dims, _base + DataOffset + info.Offset, info.ByteSize);
    }

    public TensorView? GetTensor(string name) => FindTensor(name) is { } t ? GetTensor(t) : null;

    /// <summary>Pointer to the first byte of the mapping (for hashing or prefetching whole regions).</summary>
    public byte* BasePointer => _base;

    public void Dispose()
    {
        if (_view is not null && _base != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _base = null;
        }
        _view?.Dispose();
        _map?.Dispose();
    }

    // ---------------------------------------------------------------- parsing

    private GgufFormatException Error(string field, long offset, string problem) => new(Path, field, offset, problem);

    private GgufValue ReadValue(ref Cursor c, GgufValueType type, string field, long typeAt, int depth)
    {
        switch (type)
        {
            case GgufValueType.UInt8: return new GgufValue(type, c.U8(field));
            case GgufValueType.Int8: return new GgufValue(type, (sbyte)c.U8(field));
            case GgufValueType.UInt16: return new GgufValue(type, c.U16(field));
            case GgufValueType.Int16: return new GgufValue(type, (short)c.U16(field));
            case GgufValueType.UInt32: return new GgufValue(type, c.U32(field));
            case GgufValueType.Int32: return new GgufValue(type, (int)c.U32(field));
            case GgufValueType.Float32: return new GgufValue(type, BitConverter.UInt32BitsToSingle(c.U32(field)));
            case GgufValueType.UInt64: return new GgufValue(type, c.U64(field));
            case GgufValueType.Int64: return new GgufValue(type, (long)c.U64(field));
            case GgufValueType.Float64: return new GgufValue(type, BitConverter.UInt64BitsToDouble(c.U64(field)));
            case GgufValueType.Bool:
            {
                long at = c.Pos;
                byte b = c.U8(field);
                if (b > 1) throw Error(field, at, $"bool value {b} is neither 0 nor 1");
                return new GgufValue(type, b == 1);
            }
            case GgufValueType.String: return new GgufValue(type, c.String(field));
            case GgufValueType.Array:
            {
                if (depth >= MaxArrayNesting) throw Error(field, typeAt, $"arrays nested deeper than {MaxArrayNesting}");
                long elemTypeAt = c.Pos;
                var elemType = (GgufValueType)c.U32(field + " element type");
                long countAt = c.Pos;
                ulong count = c.U64(field + " count");
                int minSize = elemType switch
                {
                    GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                    GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                    GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                    GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
                    GgufValueType.Array => 12,
                    _ => throw Error(field + " element type", elemTypeAt, $"unknown value type {(uint)elemType}"),
                };
                if (count > (ulong)(_length - c.Pos) / (ulong)minSize || count > int.MaxValue)
                    throw Error(field + " count", countAt, $"array of {count} elements cannot fit in the {_length - c.Pos} bytes left in the file");
                int n = (int)count;
                return new GgufValue(type, ReadArray(ref c, elemType, n, field, depth), elemType);
            }
            default:
                throw Error(field + " type", typeAt, $"unknown value type {(uint)type}");
        }
    }

    private Array ReadArray(ref Cursor c, GgufValueType elemType, int n, string field, int depth)
    {
        switch (elemType)
        {
            case GgufValueType.UInt8: { var a = new byte[n]; c.Bytes(a.AsSpan(), field); return a; }
            case GgufValueType.Int8: { var a = new sbyte[n]; c.Bytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.UInt16: { var a = new ushort[n]; c.Bytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.Int16: { var a = new short[n]; c.Bytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.UInt32: { var a = new uint[n]; c.Bytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.Int32: { var a = new int[n]; c.Bytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.Float32: { var a = new float[n]; c.Bytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.UInt64: { var a = new ulong[n]; c.Bytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.Int64: { var a = new long[n]; c.Bytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.Float64: { var a = new double[n]; c.Bytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.Bool:
            {
                var a = new bool[n];
                for (int i = 0; i < n; i++)
                {
                    long at = c.Pos;
                    byte b = c.U8(field);
                    if (b > 1) throw Error($"{field}[{i}]", at, $"bool value {b} is neither 0 nor 1");
                    a[i] = b == 1;
                }
                return a;
            }
            case GgufValueType.String:
            {
                var a = new string[n];
                for (int i = 0; i < n; i++) a[i] = c.String($"{field}[{i}]");
                return a;
            }
            default: // nested array
            {
                var a = new GgufValue[n];
                for (int i = 0; i < n; i++) a[i] = ReadValue(ref c, GgufValueType.Array, $"{field}[{i}]", c.Pos, depth + 1);
                return a;
            }
        }
    }

    /// <summary>Bounds-checked little-endian reader over the mapping.</summary>
    private struct Cursor
    {
        private readonly GgufFile _f;
        public long Pos;

        public Cursor(GgufFile f, long pos) { _f = f; Pos = pos; }

        private void Need(long n, string field)
        {
            if (n < 0 || n > _f._length - Pos)
                throw _f.Error(field, Pos, $"needs {n} bytes but the file ends after {_f._length - Pos} (truncated file?)");
        }

        public byte U8(string field) { Need(1, field); return _f._base[Pos++]; }

        public ushort U16(string field)
        {
            Need(2, field);
            ushort v = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(_f._base + Pos, 2));
            Pos += 2;
            return v;
        }

        public uint U32(string field)
        {
            Need(4, field);
            uint v = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(_f._base + Pos, 4));
            Pos += 4;
            return v;
        }

        public ulong U64(string field)
        {
            Need(8, field);
            ulong v = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(_f._base + Pos, 8));
            Pos += 8;
            return v;
        }

        public void Bytes(Span<byte> dst, string field)
        {
            Need(dst.Length, field);
            new ReadOnlySpan<byte>(_f._base + Pos, dst.Length).CopyTo(dst);
            Pos += dst.Length;
        }

        public string String(string field)
        {
            long at = Pos;
            ulong len = U64(field + " length");
            if (len > (ulong)(_f._length - Pos) || len > int.MaxValue)
                throw _f.Error(field, at, $"string length {len} runs past the end of the file ({_f._length - Pos} bytes left)");
            string s = Encoding.UTF8.GetString(_f._base + Pos, (int)len);
            Pos += (long)len;
            return s;
        }
    }
}
