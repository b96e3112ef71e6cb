using System.Runtime.CompilerServices;

namespace EdgeLlm.Quant;

/// <summary>
/// Q5_1 (ggml type 7): blocks of 32 weights in 24 bytes, <c>fp16 d; fp16 m; uint8 qh[4]; uint8 qs[16]</c>,
/// weight = d·q + m with the 5-bit q = nibble | (bit j of qh) &lt;&lt; 4 (0..31). Element order as Q5_0: j (0..15) is the low
/// nibble of qs[j] and bit j of the little-endian qh, j+16 the high nibble and bit j+16. The quantizer reproduces
/// ggml's <c>quantize_row_q5_1_ref</c> byte for byte.
/// </summary>
public static unsafe class Q5_1
{
    public const int BlockSize = 32;
    public const int BlockBytes = 24;

    /// <summary>Expands <paramref name="n"/> weights (a multiple of 32) to floats.</summary>
    public static void Dequantize(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q5_1), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            DequantizeBlock(src + b * BlockBytes, dst + b * BlockSize);
    }

    /// <summary>Σ w[i]·x[i] over a row: each block is dequantized to float, products summed in double.</summary>
    public static float Dot(byte* row, float* x, long n) =>
        QuantMath.ReferenceDot(nameof(Q5_1), row, x, n, BlockSize, BlockBytes, &DequantizeBlock);

    /// <summary>
    /// Quantizes like ggml's reference: min and max of the block, d = (max − min)/31, id = d ≠ 0 ? 1/d : 0,
    /// q = trunc((x − min)·id + 0.5) (at most 31, no clamp needed); d and min stored as fp16. A constant block stores
    /// d = 0, m = that value and every q = 0.
    /// </summary>
    public static void Quantize(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q5_1), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
        {
            float* x = src + b * BlockSize;
            byte* y = dst + b * BlockBytes;
            QuantMath.MinMax(x, BlockSize, out float min, out float max);
            float d = (max - min) / 31f;
            float id = d != 0f ? 1f / d : 0f;
            QuantMath.WriteHalf(y, d);
            QuantMath.WriteHalf(y + 2, min);
            uint qh = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int q0 = (byte)(int)((x[j] - min) * id + 0.5f);
                int q1 = (byte)(int)((x[j + BlockSize / 2] - min) * id + 0.5f);
                y[8 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
                qh |= (uint)((q0 >> 4) & 1) << j;
                qh |= (uint)((q1 >> 4) & 1) << (j + 16);
            }
            Unsafe.WriteUnaligned(y + 4, qh);
        }
    }

    private static void DequantizeBlock(byte* block, float* y)
    {
        float d = QuantMath.ReadHalf(block);
        float m = QuantMath.ReadHalf(block + 2);
        uint qh = Unsafe.ReadUnaligned<uint>(block + 4);
        byte* qs = block + 8;
        for (int j = 0; j < BlockSize / 2; j++)
        {
            int q0 = (qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            int q1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = q0 * d + m;
            y[j + BlockSize / 2] = q1 * d + m;
        }
    }
}
