using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;

namespace EdgeLlm.Gguf;

/// <summary>
/// A GGUF (v2/v3) file opened over a read-only memory map. The header, metadata and tensor-info table are
/// parsed and validated up front; tensor data is never copied: <see cref="GetTensor(GgufTensorInfo)"/> returns
/// a view into the mapping.
/// </summary>
/// <remarks>
/// Model files are untrusted input. Every count, length, offset and dimension is checked before it is used,
/// and every problem is a <see cref="GgufFormatException"/> naming the file, the field and its byte offset.
/// The rules, and where they differ from llama.cpp's <c>gguf.cpp</c>:
/// <list type="bullet">
/// <item>Counts are checked against the bytes left in the file before anything is allocated (a KV pair takes
/// at least 14 bytes, a tensor info 33, an array element 1 to 12), so parsing time is linear in the file size
/// and memory is bounded by it: array elements decode to at most about 6 bytes of memory per file byte (the
/// worst case is arrays of empty arrays), plus a fixed cost per key and per tensor, whose counts are capped at
/// <see cref="MaxMetadataEntries"/> and <see cref="MaxTensors"/>. Strings are capped at
/// <see cref="MaxStringBytes"/>, keys at <see cref="MaxKeyBytes"/> (the spec's limit), arrays at
/// <see cref="MaxArrayElements"/>.</item>
/// <item>Arrays of arrays are accepted (the spec allows them; llama.cpp rejects them) up to
/// <see cref="MaxArrayNesting"/> levels.</item>
/// <item>A bool must be 0 or 1 (llama.cpp reads any non-zero byte as true). Keys must be non-empty
/// (llama.cpp aborts on an empty key) and unique.</item>
/// <item><c>general.alignment</c> must be a power-of-two u32 (as llama.cpp).</item>
/// <item>A tensor has 1 to 4 dimensions, each at least 1 (llama.cpp also accepts 0 dimensions, a scalar, and
/// zero-length dimensions; no Llama tensor is either, and row length <c>Dims[0]</c> is used everywhere), a
/// known ggml type, a row length that is a multiple of the block size, an element count and byte size that fit
/// in 63 bits, and a non-empty name of at most 63 bytes, unique in the file (llama.cpp allows an empty name).</item>
/// <item>Tensor offsets must be exactly the running sum of the padded sizes of the tensors before it, in table
/// order, as llama.cpp requires. This rules out overlapping tensors, gaps and out-of-order data, and makes
/// "offset + size overflows" impossible. Each tensor's bytes (not its trailing padding) must lie inside the
/// file.</item>
/// <item>With no tensors the data section starts right after the tensor-info table (no padding is required),
/// as in llama.cpp.</item>
/// </list>
/// </remarks>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const uint DefaultAlignment = 32;
    public const int MaxDims = 4;
    public const int MaxTensorNameBytes = 63; // ggml GGML_MAX_NAME (64) including the NUL

    /// <summary>Longest metadata key in UTF-8 bytes (GGUF spec: keys are at most 65535 bytes).</summary>
    public const int MaxKeyBytes = 65535;

    /// <summary>Longest metadata string value in bytes (llama.cpp allows 1 GiB; .NET strings stop near 1 G chars).</summary>
    public const int MaxStringBytes = 256 << 20;

    /// <summary>Most elements in one metadata array (llama.cpp's GGUF_MAX_ARRAY_ELEMENTS).</summary>
    public const int MaxArrayElements = 1 << 30;

    /// <summary>Most metadata key/value pairs in one file (real models have tens to a few hundred).</summary>
    public const int MaxMetadataEntries = 1 << 20;

    /// <summary>Most tensors in one file (real models have hundreds to tens of thousands).</summary>
    public const int MaxTensors = 1 << 20;

    /// <summary>Deepest nesting of arrays of arrays.</summary>
    public const int MaxArrayNesting = 8;

    /// <summary>Bytes of the fixed header: magic, version, tensor_count, metadata_kv_count.</summary>
    public const int HeaderBytes = 24;

    private const int MinKvBytes = 8 + 1 + 4 + 1;        // key length, one key byte, type, one value byte
    private const int MinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8; // name length, one name byte, n_dims, one dim, type, offset

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _base;
    private byte* _owned; // the buffer of a file read into memory (GgufLoadMode.Read), freed on Dispose
    private nuint _lockedBytes;
    private readonly long _length;
    private readonly Dictionary<string, GgufValue> _metadata = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _keyOffsets = new(StringComparer.Ordinal);
    private readonly List<string> _keyOrder = new();
    private readonly List<GgufTensorInfo> _tensors = new();
    private readonly Dictionary<string, GgufTensorInfo> _tensorByName = new(StringComparer.Ordinal);

    public string Path { get; }
    public uint Version { get; }
    public uint Alignment { get; }

    /// <summary>Absolute file offset of the tensor data section.</summary>
    public long DataOffset { get; }

    public long FileSize => _length;

    /// <summary>True when the file was read into process memory instead of mapped (<see cref="GgufLoadMode"/>).</summary>
    public bool InMemory => _owned != null;

    /// <summary>True when the file's bytes are locked in RAM (<see cref="GgufLoadOptions.LockInMemory"/> and the system agreed).</summary>
    public bool Locked => _lockedBytes != 0;

    /// <summary>Why <see cref="GgufLoadOptions.LockInMemory"/> could not be honoured (null when it was, or was not asked).</summary>
    public string? LockError { get; private set; }

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
            ReadHeader(ref c, out uint version, out ulong tensorCount, out ulong kvCount);
            Version = version;
            ReadMetadata(ref c, kvCount);
            Alignment = ReadAlignment();
            var offsetFieldAt = ReadTensorInfos(ref c, tensorCount);
            DataOffset = tensorCount > 0 ? AlignUp(c.Pos, Alignment) : c.Pos;
            CheckTensorsInsideFile(offsetFieldAt);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Opens and validates a GGUF file, mapped. Throws <see cref="GgufFormatException"/> or <see cref="IOException"/>.</summary>
    public static GgufFile Open(string path) => Open(path, new GgufLoadOptions { Mode = GgufLoadMode.Map });

    /// <summary>
    /// Opens and validates a GGUF file, read into memory or mapped (<see cref="GgufLoadMode"/>), optionally locked in RAM (see
    /// <see cref="GgufLoadOptions"/>). Throws <see cref="GgufFormatException"/>, <see cref="IOException"/>, or
    /// <see cref="EdgeLlmException"/> when there is not enough memory to read the file in.
    /// </summary>
    public static GgufFile Open(string path, GgufLoadOptions options)
    {
        bool readIn = options.Mode != GgufLoadMode.Map && File.Exists(path) && options.ReadsIn(new FileInfo(path).Length);
        var file = readIn ? ReadIn(path, options.Progress) : OpenMapped(path);
        if (options.LockInMemory) file.Lock();
        return file;
    }

    private static GgufFile OpenMapped(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: model file not found", path);
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.RandomAccess);
        long length = fs.Length;
        if (length == 0)
        {
            fs.Dispose();
            throw new GgufFormatException(path, "magic", 0, "the file is empty (0 bytes)");
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

    /// <summary>
    /// Parses GGUF bytes already in memory (no file, no mapping); <paramref name="name"/> stands in for the path
    /// in messages. The memory must stay valid and unchanged while the result is used. For tests and sweeps.
    /// </summary>
    internal static GgufFile FromMemory(string name, byte* data, long length)
    {
        if (length == 0) throw new GgufFormatException(name, "magic", 0, "the file is empty (0 bytes)");
        return new GgufFile(name, null, null, data, length);
    }

    public static long AlignUp(long x, long alignment) => (x + alignment - 1) / alignment * alignment;

    /// <summary>
    /// Reads GGUF bytes from a stream of known length (e.g. a resource embedded in the executable) into 2 MiB-aligned
    /// memory the result owns, and parses them with the same checks as a file; <paramref name="name"/> stands in for
    /// the path in messages. A stream shorter than <paramref name="length"/> is an <see cref="IOException"/>.
    /// </summary>
    public static GgufFile FromStream(string name, Stream stream, long length, bool lockInMemory = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (length <= 0) throw new GgufFormatException(name, "magic", 0, "the file is empty (0 bytes)");
        long padded = (length + HugePage - 1) / HugePage * HugePage;
        byte* buffer = (byte*)NativeMemory.AlignedAlloc((nuint)padded, (nuint)HugePage);
        GgufFile file;
        try
        {
            long done = 0;
            while (done < length)
            {
                int got = stream.Read(new Span<byte>(buffer + done, (int)Math.Min(length - done, 1 << 20)));
                if (got <= 0) throw new IOException($"{name}: the data ended at byte {done} of {length}");
                done += got;
            }
            file = new GgufFile(name, null, null, buffer, length);
        }
        catch
        {
            NativeMemory.AlignedFree(buffer);
            throw;
        }
        file._owned = buffer;
        if (lockInMemory) file.Lock();
        return file;
    }

    // ---------------------------------------------------------------- metadata access

    public bool ContainsKey(string key) => _metadata.ContainsKey(key);

    public GgufValue? Get(string key) => _metadata.TryGetValue(key, out var v) ? v : null;

    /// <summary>File offset of the metadata entry for <paramref name="key"/> (where its key string starts), or -1.</summary>
    public long GetKeyOffset(string key) => _keyOffsets.TryGetValue(key, out long at) ? at : -1;

    public string? GetString(string key) => Get(key)?.Value as string;

    public string RequireString(string key) =>
        GetString(key) ?? throw MissingKey(key, "string");

    public long? GetInt(string key) => Get(key) is { } v && v.TryGetInt64(out long l) ? l : null;

    public long RequireInt(string key) => GetInt(key) ?? throw MissingKey(key, "integer");

    public double? GetDouble(string key) => Get(key) is { } v && v.TryGetDouble(out double d) ? d : null;

    public bool? GetBool(string key) => Get(key)?.Value as bool?;

    /// <summary>
    /// The array if its element type is exactly <typeparamref name="T"/> (the CLR would otherwise let a uint[]
    /// pass as an int[], or an sbyte[] as a byte[]).
    /// </summary>
    public T[]? GetArray<T>(string key) => Get(key)?.Value is T[] a && a.GetType() == typeof(T[]) ? a : null;

    /// <summary>An integer array of any integer element type, widened to int (a value out of int range fails).</summary>
    public int[]? GetIntArray(string key)
    {
        var v = Get(key);
        if (v is null || v.Type != GgufValueType.Array) return null;
        switch (v.ElementType) // not the CLR type: a uint[] also passes as an int[]
        {
            case GgufValueType.Int32: return (int[])v.Value;
            case GgufValueType.Int16: return Array.ConvertAll((short[])v.Value, x => (int)x);
            case GgufValueType.Int8: return Array.ConvertAll((sbyte[])v.Value, x => (int)x);
            case GgufValueType.UInt8: return Array.ConvertAll((byte[])v.Value, x => (int)x);
            case GgufValueType.UInt16: return Array.ConvertAll((ushort[])v.Value, x => (int)x);
            case GgufValueType.UInt32:
            {
                var u = (uint[])v.Value;
                var r = new int[u.Length];
                for (int i = 0; i < u.Length; i++) r[i] = u[i] <= int.MaxValue ? (int)u[i] : throw OutOfIntRange(key, i, u[i]);
                return r;
            }
            case GgufValueType.Int64:
            {
                var l = (long[])v.Value;
                var r = new int[l.Length];
                for (int i = 0; i < l.Length; i++) r[i] = l[i] is >= int.MinValue and <= int.MaxValue ? (int)l[i] : throw OutOfIntRange(key, i, l[i]);
                return r;
            }
            case GgufValueType.UInt64:
            {
                var ul = (ulong[])v.Value;
                var r = new int[ul.Length];
                for (int i = 0; i < ul.Length; i++) r[i] = ul[i] <= int.MaxValue ? (int)ul[i] : throw OutOfIntRange(key, i, ul[i]);
                return r;
            }
            default: return null;
        }
    }

    private GgufFormatException OutOfIntRange(string key, int index, object value) =>
        new(Path, $"metadata {Quote(key)}[{index}]", GetKeyOffset(key), $"value {value} does not fit in int32");

    private GgufFormatException MissingKey(string key, string what) => Get(key) is { } v
        ? new(Path, $"metadata {Quote(key)}", GetKeyOffset(key), $"expected {what}, found {v.Type}")
        : new(Path, $"metadata {Quote(key)}", HeaderBytes, $"required {what} key is missing");

    // ---------------------------------------------------------------- tensors

    public GgufTensorInfo? FindTensor(string name) => _tensorByName.TryGetValue(name, out var t) ? t : null;

    /// <summary>A zero-copy view of a tensor's bytes inside the memory map.</summary>
    public TensorView GetTensor(GgufTensorInfo info)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (!_tensorByName.TryGetValue(info.Name, out var own) || !ReferenceEquals(own, info))
            throw new ArgumentException($"tensor '{info.Name}' does not belong to {Path}", nameof(info));
        return new TensorView(info.Name, info.Type, info.Dims, _base + DataOffset + info.Offset, info.ByteSize);
    }

    public TensorView? GetTensor(string name) => FindTensor(name) is { } t ? GetTensor(t) : null;

    /// <summary>Pointer to the first byte of the mapping (for hashing or prefetching whole regions).</summary>
    public byte* BasePointer => _base;

    public void Dispose()
    {
        if (_lockedBytes != 0)
        {
            MemoryLock.Unlock(_owned != null ? _owned : _base, _lockedBytes);
            _lockedBytes = 0;
        }
        if (_view is not null && _base != null) _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _base = null;
        _view?.Dispose();
        _map?.Dispose();
        if (_owned != null)
        {
            NativeMemory.AlignedFree(_owned);
            _owned = null;
        }
    }

    /// <summary>Bytes a file read into memory is aligned to and padded to: one transparent huge page.</summary>
    private const long HugePage = 2L << 20;

    /// <summary>
    /// Reads the whole file into 2 MiB-aligned anonymous memory (advised for transparent huge pages on Linux) and
    /// parses it there: the weights then cannot be dropped from the page cache under memory pressure (no swap: they
    /// stay), and the decode's page walks cover 2 MiB each instead of 4 KiB.
    /// </summary>
    private static GgufFile ReadIn(string path, Action<long, long>? progress = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: model file not found", path);
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        long length = RandomAccess.GetLength(handle);
        if (length == 0) throw new GgufFormatException(path, "magic", 0, "the file is empty (0 bytes)");
        long padded = (length + HugePage - 1) / HugePage * HugePage;
        byte* buffer;
        try
        {
            buffer = (byte*)NativeMemory.AlignedAlloc((nuint)padded, (nuint)HugePage);
        }
        catch (OutOfMemoryException)
        {
            throw new EdgeLlmException($"{path}: not enough memory to read {length / (double)(1L << 30):F2} GiB into RAM (--no-mmap); without it the file is mapped instead");
        }
        try
        {
            MemoryLock.AdviseHugePages(buffer, (nuint)padded);
            long done = 0;
            while (done < length)
            {
                int chunk = (int)Math.Min(length - done, 64L << 20);
                int got = RandomAccess.Read(handle, new Span<byte>(buffer + done, chunk), done);
                if (got <= 0) throw new IOException($"{path}: the file ended at byte {done} while reading {length} bytes into memory");
                done += got;
                progress?.Invoke(done, length);
            }
        }
        catch
        {
            NativeMemory.AlignedFree(buffer);
            throw;
        }
        GgufFile file;
        try
        {
            file = new GgufFile(path, null, null, buffer, length);
        }
        catch
        {
            NativeMemory.AlignedFree(buffer);
            throw;
        }
        file._owned = buffer;
        return file;
    }

    /// <summary>Locks the file's bytes in RAM (mlock); on refusal records <see cref="LockError"/> and carries on.</summary>
    private void Lock()
    {
        var len = (nuint)_length;
        string? error = MemoryLock.Lock(_base, len);
        if (error is null) _lockedBytes = len;
        else LockError = $"{Path}: could not lock {_length / (double)(1L << 30):F2} GiB in RAM ({error}); running unlocked";
    }

    // ---------------------------------------------------------------- parsing

    private GgufFormatException Error(string field, long offset, string problem) => new(Path, field, offset, problem);

    /// <summary>A name from the file made safe for a one-line message: quoted, control characters escaped, cut at 64 chars.</summary>
    internal static string Quote(string s)
    {
        var sb = new StringBuilder(s.Length + 2).Append('\'');
        for (int i = 0; i < s.Length; i++)
        {
            if (i == 64) { sb.Append("..."); break; }
            char ch = s[i];
            if (ch < 0x20 || ch == 0x7F || ch == '\'' || ch == '\\' || char.IsSurrogate(ch) || ch is '\u2028' or '\u2029' or '\u0085')
                sb.Append("\\u").Append(((int)ch).ToString("x4", System.Globalization.CultureInfo.InvariantCulture));
            else
                sb.Append(ch);
        }
        return sb.Append('\'').ToString();
    }

    private void ReadHeader(ref Cursor c, out uint version, out ulong tensorCount, out ulong kvCount)
    {
        if (_length < 4) c.U32("magic"); // reports the truncation
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(_base, 4));
        if (magic != Magic)
            throw Error("magic", 0, $"expected \"GGUF\" (47 47 55 46), found {_base[0]:X2} {_base[1]:X2} {_base[2]:X2} {_base[3]:X2}: not a GGUF file");
        c.Pos = 4;
        version = c.U32("version");
        if (version != 2 && version != 3)
        {
            string why = version == 1 ? "GGUF v1 is obsolete; re-convert the model"
                : version != 0 && (version & 0xFFFF) == 0 ? "the bytes look swapped: big-endian GGUF files are not supported"
                : "EdgeLlm reads versions 2 and 3";
            throw Error("version", 4, $"unsupported GGUF version {version} ({why})");
        }
        tensorCount = c.U64("tensor_count");
        kvCount = c.U64("metadata_kv_count");
        ulong left = (ulong)(_length - c.Pos);
        if (tensorCount > left / MinTensorInfoBytes)
            throw Error("tensor_count", 8, $"{tensorCount} tensor infos cannot fit in the {left} bytes after the header");
        if (tensorCount > MaxTensors)
            throw Error("tensor_count", 8, $"{tensorCount} tensors is more than the limit of {MaxTensors}");
        if (kvCount > left / MinKvBytes)
            throw Error("metadata_kv_count", 16, $"{kvCount} entries cannot fit in the {left} bytes after the header");
        if (kvCount > MaxMetadataEntries)
            throw Error("metadata_kv_count", 16, $"{kvCount} entries is more than the limit of {MaxMetadataEntries}");
    }

    private void ReadMetadata(ref Cursor c, ulong kvCount)
    {
        for (ulong i = 0; i < kvCount; i++)
        {
            long at = c.Pos;
            string key = c.String($"metadata[{i}].key", -1, MaxKeyBytes, "key");
            if (key.Length == 0) throw Error($"metadata[{i}].key", at, "empty key");
            string field = $"metadata {Quote(key)}";
            if (_keyOffsets.TryGetValue(key, out long firstAt))
                throw Error(field, at, $"duplicate key (first defined at offset {firstAt})");
            long typeAt = c.Pos;
            var type = (GgufValueType)c.U32(field + " type");
            var value = ReadValue(ref c, type, field, typeAt, 0);
            _metadata.Add(key, value);
            _keyOffsets.Add(key, at);
            _keyOrder.Add(key);
        }
    }

    private uint ReadAlignment()
    {
        const string key = "general.alignment";
        if (!_metadata.TryGetValue(key, out var v)) return DefaultAlignment;
        string field = $"metadata '{key}'";
        long at = _keyOffsets[key];
        if (v.Type != GgufValueType.UInt32)
            throw Error(field, at, $"must be of type UInt32, found {(v.Type == GgufValueType.Array ? "an array" : v.Type.ToString())} {v}");
        uint a = (uint)v.Value;
        if (a == 0 || (a & (a - 1)) != 0) throw Error(field, at, $"alignment {a} is not a power of two");
        return a;
    }

    /// <summary>Reads the tensor-info table; returns the file offset of each tensor's offset field.</summary>
    private long[] ReadTensorInfos(ref Cursor c, ulong tensorCount)
    {
        var offsetFieldAt = new long[(int)tensorCount];
        long expectedOffset = 0; // running sum of padded sizes, relative to the data section
        for (ulong i = 0; i < tensorCount; i++)
        {
            long at = c.Pos;
            string name = c.String($"tensor_info[{i}].name", -1, MaxTensorNameBytes, "tensor name");
            if (name.Length == 0) throw Error($"tensor_info[{i}].name", at, "empty tensor name");
            string field = $"tensor {Quote(name)}";
            if (_tensorByName.TryGetValue(name, out var first))
                throw Error(field + " name", at, $"duplicate tensor name (first defined at offset {first.InfoOffset})");

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
                if (elements > long.MaxValue / (long)dim)
                    throw Error($"{field} dims[{d}]", dimAt, $"element count of shape [{string.Join(", ", dims[..d])}, {dim}, ...] overflows 63 bits");
                dims[d] = (long)dim;
                elements *= (long)dim;
            }

            long typeAt = c.Pos;
            uint typeId = c.U32(field + " type");
            var type = (GgmlType)typeId;
            if (!GgmlTypes.IsKnown(type)) throw Error(field + " type", typeAt, $"unknown or retired ggml type id {typeId}");
            var (bs, bb) = GgmlTypes.Geometry(type);
            if (dims[0] % bs != 0)
                throw Error(field + " dims[0]", nDimsAt + 4, $"row length {dims[0]} is not a multiple of the {GgmlTypes.Name(type)} block size {bs}");
            long blocks = elements / bs;
            if (blocks > long.MaxValue / bb)
                throw Error(field + " type", typeAt, $"byte size of {elements} {GgmlTypes.Name(type)} elements overflows 63 bits");
            long size = blocks * bb;

            long offAt = c.Pos;
            ulong offset = c.U64(field + " offset");
            if (offset % Alignment != 0)
                throw Error(field + " offset", offAt, $"offset {offset} is not a multiple of the alignment {Alignment}");
            if (offset != (ulong)expectedOffset)
                throw Error(field + " offset", offAt, $"offset {offset}, expected {expectedOffset}: tensor data must follow table order, each tensor padded to the alignment (overlapping, gapped or reordered data)");
            if (size > _length || expectedOffset > _length - size)
                throw Error(field + " offset", offAt, $"{size} bytes at data offset {offset} cannot fit in a file of {_length} bytes");
            expectedOffset = AlignUp(expectedOffset + size, Alignment);

            var info = new GgufTensorInfo { Name = name, Dims = dims, Type = type, Offset = (long)offset, InfoOffset = at };
            _tensorByName.Add(name, info);
            _tensors.Add(info);
            offsetFieldAt[i] = offAt;
        }
        return offsetFieldAt;
    }

    private void CheckTensorsInsideFile(long[] offsetFieldAt)
    {
        long dataBytes = _length - DataOffset; // may be negative when the padding itself is cut off
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            long size = t.ByteSize;
            if (dataBytes < 0 || t.Offset > dataBytes || size > dataBytes - t.Offset)
                throw Error($"tensor {Quote(t.Name)} offset", offsetFieldAt[i],
                    $"{size} bytes at data offset {t.Offset} (file offset {DataOffset + t.Offset}) run past the end of the file ({_length} bytes; truncated file?)");
        }
    }

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
            case GgufValueType.Bool: return new GgufValue(type, c.Bool(field, -1));
            case GgufValueType.String: return new GgufValue(type, c.String(field, -1, MaxStringBytes, "string"));
            case GgufValueType.Array:
            {
                if (depth >= MaxArrayNesting) throw Error(field, typeAt, $"arrays nested deeper than {MaxArrayNesting} levels");
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
                    GgufValueType.Array => 12, // element type + count
                    _ => throw Error(field + " element type", elemTypeAt, $"unknown value type {(uint)elemType}"),
                };
                ulong left = (ulong)(_length - c.Pos);
                if (count > left / (ulong)minSize)
                    throw Error(field + " count", countAt, $"{count} {elemType} elements cannot fit in the {left} bytes left in the file");
                if (count > MaxArrayElements)
                    throw Error(field + " count", countAt, $"{count} elements is more than the limit of {MaxArrayElements}");
                return new GgufValue(type, ReadArray(ref c, elemType, (int)count, field, depth), elemType);
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
            case GgufValueType.Int8: { var a = new sbyte[n]; c.Bytes(MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.UInt16: { var a = new ushort[n]; c.Bytes(MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.Int16: { var a = new short[n]; c.Bytes(MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.UInt32: { var a = new uint[n]; c.Bytes(MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.Int32: { var a = new int[n]; c.Bytes(MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.Float32: { var a = new float[n]; c.Bytes(MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.UInt64: { var a = new ulong[n]; c.Bytes(MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.Int64: { var a = new long[n]; c.Bytes(MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.Float64: { var a = new double[n]; c.Bytes(MemoryMarshal.AsBytes(a.AsSpan()), field); return a; }
            case GgufValueType.Bool:
            {
                var a = new bool[n];
                for (int i = 0; i < n; i++) a[i] = c.Bool(field, i);
                return a;
            }
            case GgufValueType.String:
            {
                var a = new string[n];
                for (int i = 0; i < n; i++) a[i] = c.String(field, i, MaxStringBytes, "string");
                return a;
            }
            default: // arrays of arrays
            {
                var a = new GgufValue[n];
                for (int i = 0; i < n; i++) a[i] = ReadValue(ref c, GgufValueType.Array, $"{field}[{i}]", c.Pos, depth + 1);
                return a;
            }
        }
    }

    /// <summary>
    /// Bounds-checked little-endian reader over the mapping. Field names for error messages are passed as a
    /// base name plus an optional element index, and only formatted when something is wrong.
    /// </summary>
    private struct Cursor
    {
        private readonly GgufFile _f;
        public long Pos;

        public Cursor(GgufFile f, long pos) { _f = f; Pos = pos; }

        private static string Name(string field, long index, string? suffix = null) =>
            (index >= 0 ? $"{field}[{index}]" : field) + suffix;

        private void Need(long n, string field, long index = -1, string? suffix = null)
        {
            if (n > _f._length - Pos)
                throw _f.Error(Name(field, index, suffix), Pos, $"needs {n} bytes but the file ends after {_f._length - Pos} (truncated file?)");
        }

        public byte U8(string field) { Need(1, field); return _f._base[Pos++]; }

        public ushort U16(string field)
        {
            Need(2, field);
            ushort v = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(_f._base + Pos, 2));
            Pos += 2;
            return v;
        }

        public uint U32(string field)
        {
            Need(4, field);
            uint v = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(_f._base + Pos, 4));
            Pos += 4;
            return v;
        }

        public ulong U64(string field, long index = -1, string? suffix = null)
        {
            Need(8, field, index, suffix);
            ulong v = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(_f._base + Pos, 8));
            Pos += 8;
            return v;
        }

        public bool Bool(string field, long index)
        {
            Need(1, field, index);
            byte b = _f._base[Pos];
            if (b > 1) throw _f.Error(Name(field, index), Pos, $"bool value {b} is neither 0 nor 1");
            Pos++;
            return b == 1;
        }

        public void Bytes(Span<byte> dst, string field)
        {
            Need(dst.Length, field);
            new ReadOnlySpan<byte>(_f._base + Pos, dst.Length).CopyTo(dst);
            Pos += dst.Length;
        }

        /// <summary>A length-prefixed UTF-8 string of at most <paramref name="maxBytes"/> bytes.</summary>
        public string String(string field, long index, int maxBytes, string what)
        {
            long at = Pos;
            ulong len = U64(field, index, " length");
            ulong left = (ulong)(_f._length - Pos);
            if (len > left)
                throw _f.Error(Name(field, index), at, $"{what} length {len} runs past the end of the file ({left} bytes left)");
            if (len > (ulong)maxBytes)
                throw _f.Error(Name(field, index), at, $"{what} length {len} is over the limit of {maxBytes} bytes");
            string s = len == 0 ? "" : Encoding.UTF8.GetString(_f._base + Pos, (int)len);
            Pos += (long)len;
            return s;
        }
    }
}
