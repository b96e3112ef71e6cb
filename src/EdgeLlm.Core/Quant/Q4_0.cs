namespace EdgeLlm.Quant;

/// <summary>
/// Q4_0 (ggml type 2): blocks of 32 weights in 18 bytes, <c>fp16 d; uint8 qs[16]</c>, weight = d·(q − 8).
/// Element j (0..15) is the low nibble of qs[j], element j+16 its high nibble. The quantizer reproduces
/// ggml's <c>quantize_row_q4_0_ref</c> byte for byte.
/// </summary>
public static unsafe class Q4_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 18;

    /// <summary>Expands <paramref name="n"/> weights (a multiple of 32) to floats.</summary>
    public static void Dequantize(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q4_0), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            DequantizeBlock(src + b * BlockBytes, dst + b * BlockSize);
    }

    /// <summary>Σ w[i]·x[i] over a row: each block is dequantized to float, products summed in double.</summary>
    public static float Dot(byte* row, float* x, long n) =>
        QuantMath.ReferenceDot(nameof(Q4_0), row, x, n, BlockSize, BlockBytes, &DequantizeBlock);

    /// <summary>
    /// Quantizes like ggml's reference: max = the signed value of largest |x| (first one on ties), d = max/−8,
    /// id = d ≠ 0 ? 1/d : 0, q = min(15, trunc(x·id + 8.5)). So the extreme value maps to q = 0 and ties round up;
    /// an all-zero block stores d = −0 (fp16 0x8000) and every nibble 8.
    /// </summary>
    public static void Quantize(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q4_0), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
        {
            float* x = src + b * BlockSize;
            byte* y = dst + b * BlockBytes;
            float amax = 0f, max = 0f;
            for (int j = 0; j < BlockSize; j++)
            {
                float a = MathF.Abs(x[j]);
                if (amax < a) { amax = a; max = x[j]; }
            }
            float d = max / -8f;
            float id = d != 0f ? 1f / d : 0f;
            QuantMath.WriteHalf(y, d);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int q0 = Math.Min(15, (int)(x[j] * id + 8.5f));
                int q1 = Math.Min(15, (int)(x[j + BlockSize / 2] * id + 8.5f));
                y[2 + j] = (byte)(q0 | (q1 << 4));
            }
        }
    }

    private static void DequantizeBlock(byte* block, float* y)
    {
        float d = QuantMath.ReadHalf(block);
        byte* qs = block + 2;
        for (int j = 0; j < BlockSize / 2; j++)
        {
            y[j] = ((qs[j] & 0x0F) - 8) * d;
            y[j + BlockSize / 2] = ((qs[j] >> 4) - 8) * d;
        }
    }
}
