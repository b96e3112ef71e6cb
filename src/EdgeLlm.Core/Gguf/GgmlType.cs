namespace EdgeLlm.Gguf;

/// <summary>Tensor element types, with the numeric ids ggml writes into GGUF files.</summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
}

/// <summary>Block geometry of every ggml type (elements per block, bytes per block).</summary>
public static class GgmlTypes
{
    /// <summary>
    /// Elements per block and bytes per block (ggml's type_traits), or (0, 0) for an id ggml does not define: the types
    /// EdgeLlm computes with and those a file may hold that a loader must still skip over or name. The file format
    /// below the quantization code, so the block structs in Quant are checked against this table (TypeTraitsTests).
    /// </summary>
    public static (int BlockSize, int BlockBytes) Geometry(GgmlType type)
    {
        return type switch
        {
            GgmlType.F32 => (1, 4),
            GgmlType.F16 => (1, 2),
            GgmlType.BF16 => (1, 2),
            GgmlType.Q4_0 => (32, 18),
            GgmlType.Q4_1 => (32, 20),
            GgmlType.Q5_0 => (32, 22),
            GgmlType.Q5_1 => (32, 24),
            GgmlType.Q8_0 => (32, 34),
            GgmlType.IQ4_NL => (32, 18),
            GgmlType.Q2_K => (256, 84),
            GgmlType.Q3_K => (256, 110),
            GgmlType.Q4_K => (256, 144),
            GgmlType.Q5_K => (256, 176),
            GgmlType.Q6_K => (256, 210),
            GgmlType.IQ4_XS => (256, 136),
            GgmlType.F64 => (1, 8),
            GgmlType.I8 => (1, 1),
            GgmlType.I16 => (1, 2),
            GgmlType.I32 => (1, 4),
            GgmlType.I64 => (1, 8),
            GgmlType.Q8_1 => (32, 36),
            GgmlType.MXFP4 => (32, 17),
            GgmlType.Q8_K => (256, 292),
            GgmlType.IQ2_XXS => (256, 66),
            GgmlType.IQ2_XS => (256, 74),
            GgmlType.IQ3_XXS => (256, 98),
            GgmlType.IQ1_S => (256, 50),
            GgmlType.IQ3_S => (256, 110),
            GgmlType.IQ2_S => (256, 82),
            GgmlType.IQ1_M => (256, 56),
            GgmlType.TQ1_0 => (256, 54),
            GgmlType.TQ2_0 => (256, 66),
            _ => (0, 0),
        };
    }

    public static bool IsKnown(GgmlType type) => Geometry(type).BlockSize != 0;

    public static int BlockSize(GgmlType type) => Geometry(type).BlockSize;

    public static int BlockBytes(GgmlType type) => Geometry(type).BlockBytes;

    /// <summary>Bytes of one row of <paramref name="ne0"/> elements; ne0 must be a multiple of the block size.</summary>
    public static long RowBytes(GgmlType type, long ne0)
    {
        var (bs, bb) = Geometry(type);
        if (bs == 0) throw new ArgumentException($"unknown ggml type {(uint)type}");
        if (ne0 < 0) throw new ArgumentException($"negative row length {ne0}");
        if (ne0 % bs != 0) throw new ArgumentException($"row of {ne0} elements is not a multiple of the {type} block size {bs}");
        if (ne0 / bs > long.MaxValue / bb) throw new ArgumentException($"row of {ne0} {type} elements overflows 63 bits");
        return ne0 / bs * bb;
    }

    /// <summary>Name as llama.cpp prints it (F32, Q4_0, Q4_K, ...).</summary>
    public static string Name(GgmlType type) => IsKnown(type) ? type.ToString() : $"type{(uint)type}";

    /// <summary>Parses a type name, case-insensitive (f16, q4_0, Q6_K).</summary>
    public static bool TryParse(string name, out GgmlType type)
    {
        foreach (GgmlType t in Enum.GetValues<GgmlType>())
        {
            if (string.Equals(t.ToString(), name, StringComparison.OrdinalIgnoreCase)) { type = t; return true; }
        }
        type = default;
        return false;
    }
}
