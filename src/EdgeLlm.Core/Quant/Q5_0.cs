using System.Runtime.CompilerServices;

namespace EdgeLlm.Quant;

/// <summary>
/// Q5_0 (ggml type 6): blocks of 32 weights in 22 bytes, <c>fp16 d; uint8 qh[4]; uint8 qs[16]</c>, weight = d·(q − 16)
/// with the 5-bit q = nibble | (bit j of qh) &lt;&lt; 4. Element j (0..15) is the low nibble of qs[j] and bit j of the
/// little-endian 32-bit qh; element j+16 the high nibble of qs[j] and bit j+16. The quantizer reproduces ggml's
/// <c>quantize_row_q5_0_ref</c> byte for byte.
/// </summary>
public static unsafe class Q5_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 22;

    /// <summary>Expands <paramref name="n"/> weights (a multiple of 32) to floats.</summary>
    public static void Dequantize(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q5_0), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            DequantizeBlock(src + b * BlockBytes, dst + b * BlockSize);
    }

    /// <summary>Σ w[i]·x[i] over a row: each block is dequantized to float, products summed in double.</summary>
    public static float Dot(byte* row, float* x, long n) =>
        QuantMath.ReferenceDot(nameof(Q5_0), row, x, n, BlockSize, BlockBytes, &DequantizeBlock);

    /// <summary>
    /// Quantizes like ggml's reference: max = the signed value of the first largest |x|, d = max/−16,
    /// id = d ≠ 0 ? 1/d : 0, q = min(31, trunc(x·id + 16.5)). The extreme value maps to q = 0 and ties round up; an
    /// all-zero block stores d = −0 (fp16 0x8000) and every q = 16.
    /// </summary>
    public static void Quantize(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q5_0), n, BlockSize);
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
            float d = max / -16f;
            float id = d != 0f ? 1f / d : 0f;
            QuantMath.WriteHalf(y, d);
            uint qh = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int q0 = Math.Min(31, (int)(x[j] * id + 16.5f));
                int q1 = Math.Min(31, (int)(x[j + BlockSize / 2] * id + 16.5f));
                y[6 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
                qh |= (uint)((q0 >> 4) & 1) << j;
                qh |= (uint)((q1 >> 4) & 1) << (j + 16);
            }
            Unsafe.WriteUnaligned(y + 2, qh);
        }
    }

    private static void DequantizeBlock(byte* block, float* y)
    {
        float d = QuantMath.ReadHalf(block);
        uint qh = Unsafe.ReadUnaligned<uint>(block + 2);
        byte* qs = block + 6;
        for (int j = 0; j < BlockSize / 2; j++)
        {
            int q0 = (qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            int q1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = (q0 - 16) * d;
            y[j + BlockSize / 2] = (q1 - 16) * d;
        }
    }
}
