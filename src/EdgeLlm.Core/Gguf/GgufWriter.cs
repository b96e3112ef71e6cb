using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace EdgeLlm.Gguf;

/// <summary>
/// Writes GGUF v3 files in the layout llama.cpp's gguf-py converter writes: header, metadata in insertion
/// order, tensor infos, padding to the alignment, then each tensor's data padded to the alignment (the last
/// one too). A file with no tensors (vocab-only) ends right after the metadata with no padding, as gguf-py
/// writes it (ggml's gguf.cpp would pad; both readers accept either). Tensor data can be streamed (a callback
/// per tensor) so a converter never holds the whole model in memory. <see cref="Write(string)"/> goes
/// through <c>NAME.partial</c> and renames only when complete.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<(string Key, GgufValue Value)> _kv = new();
    private readonly List<PendingTensor> _tensors = new();
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);

    public uint Alignment { get; }

    public GgufWriter(uint alignment = GgufFile.DefaultAlignment)
    {
        if (alignment == 0 || (alignment & (alignment - 1)) != 0) throw new ArgumentException("alignment must be a power of two", nameof(alignment));
        Alignment = alignment;
        if (alignment != GgufFile.DefaultAlignment) Set("general.alignment", GgufValue.Of(alignment));
    }

    /// <summary>
    /// Sets a metadata value; a key set twice keeps its first position and takes the new value (as gguf-py;
    /// ggml's gguf_set_val moves it to the end). <c>general.alignment</c> can only be set to this writer's
    /// <see cref="Alignment"/> as a u32: the alignment is chosen in the constructor.
    /// </summary>
    public GgufWriter Set(string key, GgufValue value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        int keyBytes = Encoding.UTF8.GetByteCount(key);
        if (keyBytes == 0 || keyBytes > GgufFile.MaxKeyBytes)
            throw new ArgumentException($"metadata key must be 1 to {GgufFile.MaxKeyBytes} UTF-8 bytes, got {keyBytes}", nameof(key));
        if (value.Validate() is { } why) throw new ArgumentException($"metadata '{key}': {why}", nameof(value));
        if (key == AlignmentKey && !(value.Type == GgufValueType.UInt32 && (uint)value.Value == Alignment))
            throw new ArgumentException($"{AlignmentKey} must be the u32 {Alignment} this writer was created with (pass the alignment to the constructor)", nameof(value));
        int i = _kv.FindIndex(p => p.Key == key);
        if (i >= 0) _kv[i] = (key, value); else _kv.Add((key, value));
        return this;
    }

    private const string AlignmentKey = "general.alignment";

    public GgufWriter Set(string key, string value) => Set(key, GgufValue.Of(value));
    public GgufWriter Set(string key, uint value) => Set(key, GgufValue.Of(value));
    public GgufWriter Set(string key, int value) => Set(key, GgufValue.Of(value));
    public GgufWriter Set(string key, float value) => Set(key, GgufValue.Of(value));
    public GgufWriter Set(string key, bool value) => Set(key, GgufValue.Of(value));
    public GgufWriter Set(string key, string[] value) => Set(key, GgufValue.Of(value));
    public GgufWriter Set(string key, float[] value) => Set(key, GgufValue.Of(value));
    public GgufWriter Set(string key, int[] value) => Set(key, GgufValue.Of(value));

    /// <summary>
    /// Copies every metadata pair of an open file (for re-quantizing or rewriting), in the file's order.
    /// <c>general.alignment</c> is copied, at its position in the source, only when it equals this writer's
    /// alignment; otherwise this writer's own alignment stands. A fresh writer with the file's alignment
    /// therefore reproduces the file's metadata bytes exactly.
    /// </summary>
    public GgufWriter CopyMetadataFrom(GgufFile file)
    {
        foreach (string key in file.Keys)
        {
            var value = file.Get(key)!;
            if (key == AlignmentKey)
            {
                if (value.Type != GgufValueType.UInt32 || (uint)value.Value != Alignment) continue;
                _kv.RemoveAll(p => p.Key == AlignmentKey); // take the source's position
            }
            Set(key, value);
        }
        return this;
    }

    /// <summary>Adds a tensor whose bytes are already in memory.</summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] dims, ReadOnlyMemory<byte> data)
    {
        long expected = ByteSize(type, dims);
        if (data.Length != expected) throw new ArgumentException($"tensor '{name}': {data.Length} bytes given, {expected} expected");
        return AddTensor(name, type, dims, s => s.Write(data.Span));
    }

    /// <summary>
    /// Adds a tensor whose bytes a callback writes later, in order, at <see cref="Write(Stream)"/> time. The
    /// callback must write exactly <see cref="ByteSize"/> bytes, or the write fails.
    /// </summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] dims, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(dims);
        ArgumentNullException.ThrowIfNull(writeData);
        if (name.Length == 0 || Encoding.UTF8.GetByteCount(name) > GgufFile.MaxTensorNameBytes)
            throw new ArgumentException($"tensor name '{name}' is empty or longer than {GgufFile.MaxTensorNameBytes} bytes");
        if (_tensorNames.Contains(name)) throw new ArgumentException($"duplicate tensor '{name}'");
        if (dims.Length is 0 or > GgufFile.MaxDims) throw new ArgumentException($"tensor '{name}': {dims.Length} dimensions (1 to {GgufFile.MaxDims} allowed)");
        long size;
        try { size = ByteSize(type, dims); }
        catch (ArgumentException e) { throw new ArgumentException($"tensor '{name}': {e.Message}"); }
        _tensorNames.Add(name);
        _tensors.Add(new PendingTensor(name, type, (long[])dims.Clone(), size, writeData));
        return this;
    }

    /// <summary>Bytes of a tensor of this type and shape (dims innermost-first); ArgumentException if invalid.</summary>
    public static long ByteSize(GgmlType type, long[] dims)
    {
        if (!GgmlTypes.IsKnown(type)) throw new ArgumentException($"unknown ggml type id {(uint)type}");
        if (dims.Length == 0) throw new ArgumentException("no dimensions");
        foreach (long d in dims)
            if (d <= 0) throw new ArgumentException($"invalid dimension {d} in [{string.Join(", ", dims)}]");
        try
        {
            long rows = 1;
            for (int i = 1; i < dims.Length; i++) rows = checked(rows * dims[i]);
            checked { _ = dims[0] * rows; } // the element count must fit too
            return checked(GgmlTypes.RowBytes(type, dims[0]) * rows);
        }
        catch (OverflowException)
        {
            throw new ArgumentException($"shape [{string.Join(", ", dims)}] of {GgmlTypes.Name(type)} overflows 63 bits");
        }
    }

    /// <summary>
    /// Writes the file to <c>path.partial</c>, flushes it to disk and renames it to <paramref name="path"/>
    /// (<see cref="EdgeLlm.IO.OutputFile"/>: a path that is not a regular file is refused, a stale partial is never
    /// followed). On any failure the partial file is deleted, so no file that looks valid is left behind.
    /// </summary>
    public void Write(string path)
    {
        using var output = EdgeLlm.IO.OutputFile.Create(path);
        Write(output.Stream);
        output.Commit();
    }

    /// <summary>Writes the whole file to a stream (which need not be seekable).</summary>
    public void Write(Stream stream)
    {
        var header = new MemoryStream();
        WriteU32(header, GgufFile.Magic);
        WriteU32(header, 3);
        WriteU64(header, (ulong)_tensors.Count);
        WriteU64(header, (ulong)_kv.Count);
        foreach (var (key, value) in _kv)
        {
            WriteString(header, key);
            WriteU32(header, (uint)value.Type);
            WriteValue(header, value);
        }
        long offset = 0;
        foreach (var t in _tensors)
        {
            WriteString(header, t.Name);
            WriteU32(header, (uint)t.Dims.Length);
            foreach (long d in t.Dims) WriteU64(header, (ulong)d);
            WriteU32(header, (uint)t.Type);
            WriteU64(header, (ulong)offset);
            offset = GgufFile.AlignUp(offset + t.Size, Alignment);
        }
        if (_tensors.Count > 0) Pad(header, header.Length); // gguf-py writes no padding when there are no tensors
        header.Position = 0;
        header.CopyTo(stream);

        foreach (var t in _tensors)
        {
            var counting = new CountingStream(stream);
            t.WriteData(counting);
            if (counting.Count != t.Size)
                throw new InvalidOperationException($"tensor '{t.Name}': {counting.Count} bytes written, {t.Size} expected");
            Pad(stream, t.Size);
        }
    }

    private void Pad(Stream s, long written)
    {
        long pad = GgufFile.AlignUp(written, Alignment) - written;
        if (pad > 0) s.Write(new byte[pad]);
    }

    private static void WriteValue(Stream s, GgufValue v)
    {
        switch (v.Type)
        {
            case GgufValueType.UInt8: s.WriteByte((byte)v.Value); break;
            case GgufValueType.Int8: s.WriteByte((byte)(sbyte)v.Value); break;
            case GgufValueType.UInt16: WriteU16(s, (ushort)v.Value); break;
            case GgufValueType.Int16: WriteU16(s, (ushort)(short)v.Value); break;
            case GgufValueType.UInt32: WriteU32(s, (uint)v.Value); break;
            case GgufValueType.Int32: WriteU32(s, (uint)(int)v.Value); break;
            case GgufValueType.Float32: WriteU32(s, BitConverter.SingleToUInt32Bits((float)v.Value)); break;
            case GgufValueType.Bool: s.WriteByte((bool)v.Value ? (byte)1 : (byte)0); break;
            case GgufValueType.String: WriteString(s, (string)v.Value); break;
            case GgufValueType.UInt64: WriteU64(s, (ulong)v.Value); break;
            case GgufValueType.Int64: WriteU64(s, (ulong)(long)v.Value); break;
            case GgufValueType.Float64: WriteU64(s, BitConverter.DoubleToUInt64Bits((double)v.Value)); break;
            case GgufValueType.Array: WriteArray(s, v.ElementType, (Array)v.Value); break;
            default: throw new ArgumentException($"unknown value type {v.Type}");
        }
    }

    private static void WriteArray(Stream s, GgufValueType elemType, Array a)
    {
        WriteU32(s, (uint)elemType);
        WriteU64(s, (ulong)a.LongLength);
        switch (a)
        {
            case byte[] x: s.Write(x); break;
            case sbyte[] x: s.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case ushort[] x: s.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case short[] x: s.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case uint[] x: s.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case int[] x: s.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case float[] x: s.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case ulong[] x: s.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case long[] x: s.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case double[] x: s.Write(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case bool[] x: foreach (bool b in x) s.WriteByte(b ? (byte)1 : (byte)0); break;
            case string[] x: foreach (string str in x) WriteString(s, str); break;
            case GgufValue[] x:
                foreach (var inner in x) WriteArray(s, inner.ElementType, (Array)inner.Value);
                break;
            default: throw new ArgumentException($"unsupported array type {a.GetType().Name}");
        }
    }

    private static void WriteString(Stream s, string str)
    {
        byte[] b = Encoding.UTF8.GetBytes(str);
        WriteU64(s, (ulong)b.Length);
        s.Write(b);
    }

    private static void WriteU16(Stream s, ushort v) { Span<byte> b = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, v); s.Write(b); }
    private static void WriteU32(Stream s, uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); s.Write(b); }
    private static void WriteU64(Stream s, ulong v) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); s.Write(b); }

    private sealed record PendingTensor(string Name, GgmlType Type, long[] Dims, long Size, Action<Stream> WriteData);

    /// <summary>Pass-through stream that counts bytes, so a callback that writes the wrong amount is caught.</summary>
    private sealed class CountingStream(Stream inner) : Stream
    {
        public long Count { get; private set; }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => Count;
        public override long Position { get => Count; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) { inner.Write(buffer, offset, count); Count += count; }
        public override void Write(ReadOnlySpan<byte> buffer) { inner.Write(buffer); Count += buffer.Length; }
        public override void WriteByte(byte value) { inner.WriteByte(value); Count++; }
    }
}
