using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Reference scalar code for every computable tensor type: dequantize a row, dot a row with a float
/// vector, quantize a row. These define the numerics; the fast kernels in Backends are tested against
/// them. <c>n</c> is the row length in elements and must be a non-negative multiple of the type's block size
/// (else <see cref="ArgumentException"/>); other types throw <see cref="NotSupportedException"/>. Each call goes
/// through the type's <see cref="TypeTraits"/> row; the block formats live in Quant/TYPE.cs.
/// </summary>
public static unsafe class QuantRef
{
    public static void DequantizeRow(GgmlType type, byte* src, float* dst, long n) =>
        TypeTraits.Require(type, "dequantize").Dequantize(src, dst, n);

    /// <summary>Dot product of a row of weights with float activations (the type's reference order; float types in double).</summary>
    public static float Dot(GgmlType type, byte* row, float* x, long n) => TypeTraits.Require(type, "dot").Dot(row, x, n);

    public static void QuantizeRow(GgmlType type, float* src, byte* dst, long n) =>
        TypeTraits.Require(type, "quantize").Quantize(src, dst, n);

    /// <summary>float -> bf16 with round-to-nearest-even; NaN stays a quiet NaN (as ggml does).</summary>
    public static ushort FloatToBF16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffff) > 0x7f800000) return (ushort)((u >> 16) | 64);
        return (ushort)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
    }

    // Span conveniences for tests and tools (not for the hot path). They also check the buffer sizes.
    public static void DequantizeRow(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        CheckBytes(type, src.Length, dst.Length, "src");
        fixed (byte* s = src) fixed (float* d = dst) DequantizeRow(type, s, d, dst.Length);
    }

    public static float Dot(GgmlType type, ReadOnlySpan<byte> row, ReadOnlySpan<float> x)
    {
        CheckBytes(type, row.Length, x.Length, "row");
        fixed (byte* r = row) fixed (float* px = x) return Dot(type, r, px, x.Length);
    }

    public static byte[] QuantizeRow(GgmlType type, ReadOnlySpan<float> src)
    {
        var dst = new byte[GgmlTypes.RowBytes(type, src.Length)];
        fixed (float* s = src) fixed (byte* d = dst) QuantizeRow(type, s, d, src.Length);
        return dst;
    }

    /// <summary>A row of <paramref name="n"/> elements must fit in the given bytes (and n must be whole blocks).</summary>
    private static void CheckBytes(GgmlType type, int bytes, int n, string what)
    {
        long need = GgmlTypes.RowBytes(type, n);
        if (bytes < need)
            throw new ArgumentException($"{GgmlTypes.Name(type)}: {what} has {bytes} bytes, a row of {n} elements needs {need}", what);
    }
}
