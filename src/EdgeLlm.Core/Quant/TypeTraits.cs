using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// The format facts of one tensor type EdgeLlm computes with, in one row (ggml-cpu's <c>type_traits</c> is the
/// model): block geometry, the activation format its integer kernels take, and its scalar reference code. Every
/// other table keys on these rows: <see cref="GgmlTypes"/> takes the geometry of a computable type from here,
/// <see cref="QuantRef"/> calls the reference functions, the CPU backend's kernel table
/// (<c>Backends/Cpu/Kernels/KernelTable.cs</c>) adds the kernels per rung, the CUDA backend the kernel name.
/// Adding a type is: its row here, its reference block code (<c>Quant/TYPE.cs</c>), its kernels.
/// </summary>
public sealed unsafe class TypeTraits
{
    public readonly GgmlType Type;
    /// <summary>Elements per block (1 for the float types).</summary>
    public readonly int BlockSize;
    /// <summary>Bytes per block.</summary>
    public readonly int BlockBytes;
    /// <summary>
    /// Format the activations are quantized to before the integer dot products (Q8_0, Q8_1 or Q8_K, as llama.cpp's
    /// <c>vec_dot_type</c>), or F32 for the float types, whose rows are dotted with the float activations.
    /// </summary>
    public readonly GgmlType Activation;
    /// <summary>
    /// llama.cpp's <c>general.file_type</c> (llama_ftype) of a file whose matrices are all this type: ALL_F32 0,
    /// MOSTLY_F16 1, MOSTLY_Q4_0 2, ...; for the K-quants the "_S" label, the nearest for a file without a mix.
    /// </summary>
    public readonly uint FileType;
    /// <summary>Row of blocks → n floats (n a multiple of <see cref="BlockSize"/>).</summary>
    public readonly delegate*<byte*, float*, long, void> Dequantize;
    /// <summary>Row of blocks · n floats, the float reference (accumulated in double or in ggml's order).</summary>
    public readonly delegate*<byte*, float*, long, float> Dot;
    /// <summary>n floats → row of blocks (ggml's reference quantizer).</summary>
    public readonly delegate*<float*, byte*, long, void> Quantize;

    private TypeTraits(GgmlType type, int blockSize, int blockBytes, GgmlType activation, uint fileType,
        delegate*<byte*, float*, long, void> dequantize, delegate*<byte*, float*, long, float> dot,
        delegate*<float*, byte*, long, void> quantize)
    {
        Type = type;
        BlockSize = blockSize;
        BlockBytes = blockBytes;
        Activation = activation;
        FileType = fileType;
        Dequantize = dequantize;
        Dot = dot;
        Quantize = quantize;
    }

    /// <summary>The name llama.cpp prints (Q4_K, F16, ...).</summary>
    public string Name => Type.ToString();

    /// <summary>
    /// The suffix its CUDA kernels carry in kernels/*.cu (<c>matvec_{KernelName}_t1</c>, <c>_t8</c>,
    /// <c>get_rows_{KernelName}</c>): the type's name in lower case. Every row has CUDA kernels.
    /// </summary>
    public string KernelName => Name.ToLowerInvariant();

    /// <summary>True for the block-quantized types (dotted in integers against quantized activations).</summary>
    public bool IsQuantized => Activation != GgmlType.F32;

    private static readonly TypeTraits[] Rows =
    [
        new(GgmlType.F32, 1, 4, GgmlType.F32, 0, &FloatRows.DequantizeF32, &FloatRows.DotF32, &FloatRows.QuantizeF32),
        new(GgmlType.F16, 1, 2, GgmlType.F32, 1, &FloatRows.DequantizeF16, &FloatRows.DotF16, &FloatRows.QuantizeF16),
        new(GgmlType.BF16, 1, 2, GgmlType.F32, 32, &FloatRows.DequantizeBF16, &FloatRows.DotBF16, &FloatRows.QuantizeBF16),
        new(GgmlType.Q8_0, Q8_0.BlockSize, Q8_0.BlockBytes, GgmlType.Q8_0, 7, &Q8_0.Dequantize, &Q8_0.Dot, &Q8_0.Quantize),
        new(GgmlType.Q4_0, Q4_0.BlockSize, Q4_0.BlockBytes, GgmlType.Q8_0, 2, &Q4_0.Dequantize, &Q4_0.Dot, &Q4_0.Quantize),
        new(GgmlType.Q4_1, Q4_1.BlockSize, Q4_1.BlockBytes, GgmlType.Q8_1, 3, &Q4_1.Dequantize, &Q4_1.Dot, &Q4_1.Quantize),
        new(GgmlType.Q5_0, Q5_0.BlockSize, Q5_0.BlockBytes, GgmlType.Q8_0, 8, &Q5_0.Dequantize, &Q5_0.Dot, &Q5_0.Quantize),
        new(GgmlType.Q5_1, Q5_1.BlockSize, Q5_1.BlockBytes, GgmlType.Q8_1, 9, &Q5_1.Dequantize, &Q5_1.Dot, &Q5_1.Quantize),
        new(GgmlType.IQ4_NL, IQ4_NL.BlockSize, IQ4_NL.BlockBytes, GgmlType.Q8_0, 25, &IQ4_NL.Dequantize, &IQ4_NL.Dot, &IQ4_NL.Quantize),
        new(GgmlType.Q2_K, Q2_K.BlockSize, Q2_K.BlockBytes, GgmlType.Q8_K, 10, &Q2_K.Dequantize, &Q2_K.Dot, &Q2_K.Quantize),
        new(GgmlType.Q3_K, Q3_K.BlockSize, Q3_K.BlockBytes, GgmlType.Q8_K, 11, &Q3_K.Dequantize, &Q3_K.Dot, &Q3_K.Quantize),
        new(GgmlType.Q4_K, Q4_K.BlockSize, Q4_K.BlockBytes, GgmlType.Q8_K, 14, &Q4_K.Dequantize, &Q4_K.Dot, &Q4_K.Quantize),
        new(GgmlType.Q5_K, Q5_K.BlockSize, Q5_K.BlockBytes, GgmlType.Q8_K, 16, &Q5_K.Dequantize, &Q5_K.Dot, &Q5_K.Quantize),
        new(GgmlType.Q6_K, Q6_K.BlockSize, Q6_K.BlockBytes, GgmlType.Q8_K, 18, &Q6_K.Dequantize, &Q6_K.Dot, &Q6_K.Quantize),
        new(GgmlType.IQ4_XS, IQ4_XS.BlockSize, IQ4_XS.BlockBytes, GgmlType.Q8_K, 30, &IQ4_XS.Dequantize, &IQ4_XS.Dot, &IQ4_XS.Quantize),
    ];

    /// <summary>Largest ggml type id (exclusive) the lookup covers.</summary>
    private const int MaxId = 64;

    private static readonly TypeTraits?[] ById = BuildIndex();

    private static TypeTraits?[] BuildIndex()
    {
        var byId = new TypeTraits?[MaxId];
        foreach (var r in Rows)
        {
            if (byId[(int)r.Type] is not null) throw new InvalidOperationException($"TypeTraits: {r.Type} has two rows");
            byId[(int)r.Type] = r;
        }
        return byId;
    }

    /// <summary>Every type EdgeLlm computes with, in table order (float types first).</summary>
    public static IReadOnlyList<TypeTraits> All => Rows;

    /// <summary>The row of <paramref name="type"/>, or null when EdgeLlm does not compute with it.</summary>
    public static TypeTraits? Of(GgmlType type) => (uint)type < MaxId ? ById[(int)type] : null;

    /// <summary>True for the types EdgeLlm computes with (those with a row).</summary>
    public static bool IsComputable(GgmlType type) => Of(type) is not null;

    /// <summary>The row of <paramref name="type"/>; a type without one throws <see cref="NotSupportedException"/> naming <paramref name="what"/>.</summary>
    public static TypeTraits Require(GgmlType type, string what) =>
        Of(type) ?? throw new NotSupportedException($"{what} {GgmlTypes.Name(type)}");

    /// <summary>The computable types' names, comma separated, for error messages.</summary>
    public static string Names => string.Join(", ", Array.ConvertAll(Rows, r => r.Name));
}
