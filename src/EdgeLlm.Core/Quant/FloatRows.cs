namespace EdgeLlm.Quant;

/// <summary>
/// The reference rows of the float types (F32, F16, BF16), in the shape of the block formats' Dequantize / Dot /
/// Quantize so <see cref="TypeTraits"/> holds them alike. Dot accumulates in double.
/// </summary>
internal static unsafe class FloatRows
{
    public static void DequantizeF32(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow("F32", n, 1);
        for (long i = 0; i < n; i++) dst[i] = ((float*)src)[i];
    }

    public static float DotF32(byte* row, float* x, long n)
    {
        QuantMath.CheckRow("F32", n, 1);
        double sum = 0;
        for (long i = 0; i < n; i++) sum += (double)((float*)row)[i] * x[i];
        return (float)sum;
    }

    public static void QuantizeF32(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow("F32", n, 1);
        for (long i = 0; i < n; i++) ((float*)dst)[i] = src[i];
    }

    public static void DequantizeF16(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow("F16", n, 1);
        for (long i = 0; i < n; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(((ushort*)src)[i]);
    }

    public static float DotF16(byte* row, float* x, long n)
    {
        QuantMath.CheckRow("F16", n, 1);
        double sum = 0;
        for (long i = 0; i < n; i++) sum += (double)(float)BitConverter.UInt16BitsToHalf(((ushort*)row)[i]) * x[i];
        return (float)sum;
    }

    public static void QuantizeF16(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow("F16", n, 1);
        for (long i = 0; i < n; i++) ((ushort*)dst)[i] = BitConverter.HalfToUInt16Bits((Half)src[i]);
    }

    public static void DequantizeBF16(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow("BF16", n, 1);
        for (long i = 0; i < n; i++) dst[i] = BitConverter.UInt32BitsToSingle((uint)((ushort*)src)[i] << 16);
    }

    public static float DotBF16(byte* row, float* x, long n)
    {
        QuantMath.CheckRow("BF16", n, 1);
        double sum = 0;
        for (long i = 0; i < n; i++) sum += (double)BitConverter.UInt32BitsToSingle((uint)((ushort*)row)[i] << 16) * x[i];
        return (float)sum;
    }

    public static void QuantizeBF16(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow("BF16", n, 1);
        for (long i = 0; i < n; i++) ((ushort*)dst)[i] = QuantRef.FloatToBF16(src[i]);
    }
}
