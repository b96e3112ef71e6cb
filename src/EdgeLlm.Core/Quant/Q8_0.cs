namespace EdgeLlm.Quant;

/// <summary>
/// Q8_0 (ggml type 8): blocks of 32 weights in 34 bytes, <c>fp16 d; int8 qs[32]</c>, weight = d·q.
/// Byte-compatible with ggml's <c>block_q8_0</c>; the quantizer reproduces <c>quantize_row_q8_0_ref</c>.
/// </summary>
public static unsafe class Q8_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 34;

    /// <summary>Expands <paramref name="n"/> weights (a multiple of 32) to floats.</summary>
    public static void Dequantize(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q8_0), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            DequantizeBlock(src + b * BlockBytes, dst + b * BlockSize);
    }

    /// <summary>Σ w[i]·x[i] over a row: each block is dequantized to float, products summed in double.</summary>
    public static float Dot(byte* row, float* x, long n) =>
        QuantMath.ReferenceDot(nameof(Q8_0), row, x, n, BlockSize, BlockBytes, &DequantizeBlock);

    /// <summary>
    /// Quantizes like ggml's reference: d = amax/127, q = roundf(x·(1/d)) (half away from zero), d stored as fp16.
    /// An all-zero block gives d = 0 and q = 0.
    /// </summary>
    public static void Quantize(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q8_0), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
        {
            float* x = src + b * BlockSize;
            byte* y = dst + b * BlockBytes;
            float amax = 0f;
            for (int j = 0; j < BlockSize; j++)
            {
                float a = MathF.Abs(x[j]);
                amax = amax > a ? amax : a;
            }
            float d = amax / 127f;
            float id = d != 0f ? 1f / d : 0f;
            QuantMath.WriteHalf(y, d);
            sbyte* qs = (sbyte*)(y + 2);
            for (int j = 0; j < BlockSize; j++)
                qs[j] = (sbyte)(int)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    private static void DequantizeBlock(byte* block, float* y)
    {
        float d = QuantMath.ReadHalf(block);
        sbyte* qs = (sbyte*)(block + 2);
        for (int j = 0; j < BlockSize; j++) y[j] = qs[j] * d;
    }
}
