namespace EdgeLlm.Gguf;

/// <summary>One entry of the tensor-info table. <see cref="Dims"/> is innermost-first (ggml ne[0] = row length).</summary>
public sealed class GgufTensorInfo
{
    public required string Name { get; init; }
    public required long[] Dims { get; init; }
    public required GgmlType Type { get; init; }

    /// <summary>Offset of the data relative to the start of the data section.</summary>
    public required long Offset { get; init; }

    /// <summary>Offset of the tensor-info entry itself in the file (for error messages).</summary>
    public long InfoOffset { get; init; }

    public long ElementCount
    {
        get { long n = 1; foreach (long d in Dims) n *= d; return n; }
    }

    /// <summary>Row length (ne[0]).</summary>
    public long Ne0 => Dims[0];

    /// <summary>Number of rows (product of ne[1..]).</summary>
    public long Rows => ElementCount / Dims[0];

    public long ByteSize => GgmlTypes.RowBytes(Type, Dims[0]) * Rows;

    public string ShapeString => "[" + string.Join(", ", Dims) + "]";
}
