using EdgeLlm.Gguf;

namespace EdgeLlm.Quant;

/// <summary>
/// Reference scalar code for every computable tensor type: dequantize a row, dot a row with a float
/// vector, quantize a row. These define the numerics; the fast kernels in Backends are tested against
/// them. <c>n</c> is the row length in elements and must be a non-negative multiple of the type's block size
/// (else <see cref="ArgumentException"/>); other types throw <see cref="NotSupportedException"/>. The block
/// formats live in Q8_0.cs, Q4_0.cs, Q4_1.cs, Q5_0.cs, Q5_1.cs, IQ4_NL.cs, Q2_K.cs, Q3_K.cs, Q4_K.cs, Q5_K.cs,
/// Q6_K.cs and IQ4_XS.cs.
/// </summary>
public static unsafe class QuantRef
{
    public static void DequantizeRow(GgmlType type, byte* src, float* dst, long n)
    {
        switch (type)
        {
            case GgmlType.F32: CheckScalarRow(type, n); for (long i = 0; i < n; i++) dst[i] = ((float*)src)[i]; break;
            case GgmlType.F16: CheckScalarRow(type, n); for (long i = 0; i < n; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(((ushort*)src)[i]); break;
            case GgmlType.BF16: CheckScalarRow(type, n); for (long i = 0; i < n; i++) dst[i] = BitConverter.UInt32BitsToSingle((uint)((ushort*)src)[i] << 16); break;
            case GgmlType.Q8_0: Q8_0.Dequantize(src, dst, n); break;
            case GgmlType.Q4_0: Q4_0.Dequantize(src, dst, n); break;
            case GgmlType.Q4_K: Q4_K.Dequantize(src, dst, n); break;
            case GgmlType.Q6_K: Q6_K.Dequantize(src, dst, n); break;
            case GgmlType.Q5_K: Q5_K.Dequantize(src, dst, n); break;
            case GgmlType.IQ4_XS: IQ4_XS.Dequantize(src, dst, n); break;
            case GgmlType.Q4_1: Q4_1.Dequantize(src, dst, n); break;
            case GgmlType.Q5_0: Q5_0.Dequantize(src, dst, n); break;
            case GgmlType.Q5_1: Q5_1.Dequantize(src, dst, n); break;
            case GgmlType.IQ4_NL: IQ4_NL.Dequantize(src, dst, n); break;
            case GgmlType.Q3_K: Q3_K.Dequantize(src, dst, n); break;
            case GgmlType.Q2_K: Q2_K.Dequantize(src, dst, n); break;
            default: throw new NotSupportedException($"dequantize {GgmlTypes.Name(type)}");
        }
    }

    /// <summary>Dot product of a row of weights with float activations, accumulated in double.</summary>
    public static float Dot(GgmlType type, byte* row, float* x, long n)
    {
        double sum = 0;
        switch (type)
        {
            case GgmlType.F32: CheckScalarRow(type, n); for (long i = 0; i < n; i++) sum += (double)((float*)row)[i] * x[i]; break;
            case GgmlType.F16: CheckScalarRow(type, n); for (long i = 0; i < n; i++) sum += (double)(float)BitConverter.UInt16BitsToHalf(((ushort*)row)[i]) * x[i]; break;
            case GgmlType.BF16: CheckScalarRow(type, n); for (long i = 0; i < n; i++) sum += (double)BitConverter.UInt32BitsToSingle((uint)((ushort*)row)[i] << 16) * x[i]; break;
            case GgmlType.Q8_0: return Q8_0.Dot(row, x, n);
            case GgmlType.Q4_0: return Q4_0.Dot(row, x, n);
            case GgmlType.Q4_K: return Q4_K.Dot(row, x, n);
            case GgmlType.Q6_K: return Q6_K.Dot(row, x, n);
            case GgmlType.Q5_K: return Q5_K.Dot(row, x, n);
            case GgmlType.IQ4_XS: return IQ4_XS.Dot(row, x, n);
            case GgmlType.Q4_1: return Q4_1.Dot(row, x, n);
            case GgmlType.Q5_0: return Q5_0.Dot(row, x, n);
            case GgmlType.Q5_1: return Q5_1.Dot(row, x, n);
            case GgmlType.IQ4_NL: return IQ4_NL.Dot(row, x, n);
            case GgmlType.Q3_K: return Q3_K.Dot(row, x, n);
            case GgmlType.Q2_K: return Q2_K.Dot(row, x, n);
            default: throw new NotSupportedException($"dot {GgmlTypes.Name(type)}");
        }
        return (float)sum;
    }

    public static void QuantizeRow(GgmlType type, float* src, byte* dst, long n)
    {
        switch (type)
        {
            case GgmlType.F32: CheckScalarRow(type, n); for (long i = 0; i < n; i++) ((float*)dst)[i] = src[i]; break;
            case GgmlType.F16: CheckScalarRow(type, n); for (long i = 0; i < n; i++) ((ushort*)dst)[i] = BitConverter.HalfToUInt16Bits((Half)src[i]); break;
            case GgmlType.BF16: CheckScalarRow(type, n); for (long i = 0; i < n; i++) ((ushort*)dst)[i] = FloatToBF16(src[i]); break;
            case GgmlType.Q8_0: Q8_0.Quantize(src, dst, n); break;
            case GgmlType.Q4_0: Q4_0.Quantize(src, dst, n); break;
            case GgmlType.Q4_K: Q4_K.Quantize(src, dst, n); break;
            case GgmlType.Q6_K: Q6_K.Quantize(src, dst, n); break;
            case GgmlType.Q5_K: Q5_K.Quantize(src, dst, n); break;
            case GgmlType.IQ4_XS: IQ4_XS.Quantize(src, dst, n); break;
            case GgmlType.Q4_1: Q4_1.Quantize(src, dst, n); break;
            case GgmlType.Q5_0: Q5_0.Quantize(src, dst, n); break;
            case GgmlType.Q5_1: Q5_1.Quantize(src, dst, n); break;
            case GgmlType.IQ4_NL: IQ4_NL.Quantize(src, dst, n); break;
            case GgmlType.Q3_K: Q3_K.Quantize(src, dst, n); break;
            case GgmlType.Q2_K: Q2_K.Quantize(src, dst, n); break;
            default: throw new NotSupportedException($"quantize {GgmlTypes.Name(type)}");
        }
    }

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

    private static void CheckScalarRow(GgmlType type, long n) => QuantMath.CheckRow(GgmlTypes.Name(type), n, 1);

    /// <summary>A row of <paramref name="n"/> elements must fit in the given bytes (and n must be whole blocks).</summary>
    private static void CheckBytes(GgmlType type, int bytes, int n, string what)
    {
        long need = GgmlTypes.RowBytes(type, n);
        if (bytes < need)
            throw new ArgumentException($"{GgmlTypes.Name(type)}: {what} has {bytes} bytes, a row of {n} elements needs {need}", what);
    }
}
