using System.Runtime.CompilerServices;

namespace EdgeLlm.Quant;

/// <summary>
/// Small helpers shared by the reference block formats: fp16 fields, ggml's <c>nearest_int</c>, and the
/// row-length check. All arithmetic is IEEE single precision, as in ggml's C code.
/// </summary>
internal static unsafe class QuantMath
{
    /// <summary>Reads a little-endian IEEE fp16 field at <paramref name="p"/> (no alignment needed).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ReadHalf(byte* p) => (float)BitConverter.UInt16BitsToHalf(Unsafe.ReadUnaligned<ushort>(p));

    /// <summary>Writes <paramref name="value"/> as fp16, rounding to nearest even (what GGML_FP32_TO_FP16 does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WriteHalf(byte* p, float value) => Unsafe.WriteUnaligned(p, BitConverter.HalfToUInt16Bits((Half)value));

    /// <summary>
    /// ggml's <c>nearest_int</c>: adds 1.5·2^23 so the float adder rounds to an integer (half to even), then reads
    /// the low mantissa bits. Valid for |v| ≤ 2^22 - 1; kept bit-for-bit so quantizers match ggml even on ties.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NearestInt(float v)
    {
        float shifted = v + 12582912f;
        return (BitConverter.SingleToInt32Bits(shifted) & 0x007fffff) - 0x00400000;
    }

    /// <summary>
    /// The smallest and largest of <paramref name="count"/> values, scanned from FLT_MAX / −FLT_MAX in order (ggml's
    /// Q4_1/Q5_1 reference loop; a NaN never replaces either).
    /// </summary>
    public static void MinMax(float* x, int count, out float min, out float max)
    {
        min = float.MaxValue;
        max = -float.MaxValue;
        for (int j = 0; j < count; j++)
        {
            float v = x[j];
            if (v < min) min = v;
            if (v > max) max = v;
        }
    }

    /// <summary>
    /// The reference dot product of every block format: Σ w[i]·x[i] over a row of <paramref name="n"/> weights, each
    /// block dequantized to float by <paramref name="dequantizeBlock"/>, products summed in double.
    /// </summary>
    public static float ReferenceDot(string type, byte* row, float* x, long n, int blockSize, int blockBytes,
        delegate*<byte*, float*, void> dequantizeBlock)
    {
        CheckRow(type, n, blockSize);
        float* w = stackalloc float[blockSize];
        double sum = 0;
        for (long b = 0; b < n / blockSize; b++)
        {
            dequantizeBlock(row + b * blockBytes, w);
            float* xb = x + b * blockSize;
            for (int i = 0; i < blockSize; i++) sum += (double)w[i] * xb[i];
        }
        return (float)sum;
    }

    /// <summary>Throws unless <paramref name="n"/> is a non-negative multiple of <paramref name="blockSize"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void CheckRow(string type, long n, int blockSize)
    {
        if (n < 0 || n % blockSize != 0) ThrowBadRow(type, n, blockSize);
    }

    private static void ThrowBadRow(string type, long n, int blockSize) =>
        throw new ArgumentException($"{type}: n = {n} is not a non-negative multiple of the block size {blockSize}", "n");
}
