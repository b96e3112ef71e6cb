namespace EdgeLlm.Quant;

/// <summary>
/// Q4_1 (ggml type 3): blocks of 32 weights in 20 bytes, <c>fp16 d; fp16 m; uint8 qs[16]</c>, weight = d·q + m with
/// q = 0..15. Element j (0..15) is the low nibble of qs[j], element j+16 its high nibble. The quantizer reproduces
/// ggml's <c>quantize_row_q4_1_ref</c> byte for byte.
/// </summary>
public static unsafe class Q4_1
{
    public const int BlockSize = 32;
    public const int BlockBytes = 20;

    /// <summary>Expands <paramref name="n"/> weights (a multiple of 32) to floats.</summary>
    public static void Dequantize(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q4_1), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            DequantizeBlock(src + b * BlockBytes, dst + b * BlockSize);
    }

    /// <summary>Σ w[i]·x[i] over a row: each block is dequantized to float, products summed in double.</summary>
    public static float Dot(byte* row, float* x, long n) =>
        QuantMath.ReferenceDot(nameof(Q4_1), row, x, n, BlockSize, BlockBytes, &DequantizeBlock);

    /// <summary>
    /// Quantizes like ggml's reference: min and max of the block, d = (max − min)/15, id = d ≠ 0 ? 1/d : 0,
    /// q = min(15, trunc((x − min)·id + 0.5)); d and min are stored as fp16 (the rounding uses the float d and min).
    /// A constant block stores d = 0, m = that value and every nibble 0.
    /// </summary>
    public static void Quantize(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q4_1), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
        {
            float* x = src + b * BlockSize;
            byte* y = dst + b * BlockBytes;
            QuantMath.MinMax(x, BlockSize, out float min, out float max);
            float d = (max - min) / 15f;
            float id = d != 0f ? 1f / d : 0f;
            QuantMath.WriteHalf(y, d);
            QuantMath.WriteHalf(y + 2, min);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int q0 = Math.Min(15, (int)((x[j] - min) * id + 0.5f));
                int q1 = Math.Min(15, (int)((x[j + BlockSize / 2] - min) * id + 0.5f));
                y[4 + j] = (byte)(q0 | (q1 << 4));
            }
        }
    }

    private static void DequantizeBlock(byte* block, float* y)
    {
        float d = QuantMath.ReadHalf(block);
        float m = QuantMath.ReadHalf(block + 2);
        byte* qs = block + 4;
        for (int j = 0; j < BlockSize / 2; j++)
        {
            y[j] = (qs[j] & 0x0F) * d + m;
            y[j + BlockSize / 2] = (qs[j] >> 4) * d + m;
        }
    }
}
