namespace EdgeLlm.Gguf;

/// <summary>
/// A tensor's bytes in place (inside a memory map or other pinned memory): no copy. Dims are ggml order,
/// innermost first, so a weight matrix of <c>Rows</c> output rows each <c>Ne0</c> long.
/// </summary>
public readonly unsafe struct TensorView
{
    public readonly string Name;
    public readonly GgmlType Type;
    public readonly long[] Dims;
    public readonly byte* Data;
    public readonly long ByteLength;

    public TensorView(string name, GgmlType type, long[] dims, byte* data, long byteLength)
    {
        Name = name;
        Type = type;
        Dims = dims;
        Data = data;
        ByteLength = byteLength;
    }

    public long Ne0 => Dims[0];

    public long Rows
    {
        get { long n = 1; for (int i = 1; i < Dims.Length; i++) n *= Dims[i]; return n; }
    }

    public long RowBytes => GgmlTypes.RowBytes(Type, Dims[0]);

    /// <summary>Pointer to row <paramref name="row"/>.</summary>
    public byte* Row(long row) => Data + row * RowBytes;

    /// <summary>
    /// Rows [<paramref name="firstRow"/>, firstRow + <paramref name="rowCount"/>) of a matrix as a matrix of their own,
    /// zero copy (a weight's output rows are contiguous): how fused tensors (Phi-3's attn_qkv, gate|up) are split.
    /// </summary>
    public TensorView RowSlice(string name, long firstRow, long rowCount)
    {
        if (firstRow < 0 || rowCount < 1 || firstRow + rowCount > Rows)
            throw new ArgumentOutOfRangeException(nameof(firstRow), $"rows {firstRow}..{firstRow + rowCount - 1} are outside tensor '{Name}' of {Rows} rows");
        long rowBytes = RowBytes;
        return new TensorView(name, Type, [Ne0, rowCount], Data + firstRow * rowBytes, rowCount * rowBytes);
    }

    /// <summary>The bytes as a span (only for tensors under 2 GiB; use <see cref="Data"/> and <see cref="Row"/> for larger ones).</summary>
    public ReadOnlySpan<byte> Span => ByteLength <= int.MaxValue
        ? new(Data, (int)ByteLength)
        : throw new InvalidOperationException($"tensor '{Name}' is {ByteLength} bytes, too large for a span");
}
