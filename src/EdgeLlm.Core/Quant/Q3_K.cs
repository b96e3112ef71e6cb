namespace EdgeLlm.Quant;

/// <summary>
/// Q3_K (ggml type 11): super-blocks of 256 weights in 110 bytes,
/// <c>uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; fp16 d</c> (d is last). Sixteen sub-blocks of 16 weights
/// with a 6-bit scale stored as sc + 32; weight = d·sc·(q − 4) with a 3-bit q. Within each 128-weight half h,
/// weight 32j + l (j = 0..3, l = 0..31) has its low two bits at bits 2j..2j+1 of qs[32h + l] and its high bit at
/// bit 4h + j of hmask[l]. Scale j keeps its low nibble in scales[j] (j &lt; 8) or the high nibble of scales[j − 8],
/// and its top two bits at bit 2·(j / 4) of scales[8 + j % 4]. The quantizer follows ggml's
/// <c>quantize_row_q3_K_ref</c> (<c>make_q3_quants</c> with rmse) in the same single-precision order.
/// </summary>
public static unsafe class Q3_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 110;

    private const int QsOffset = 32;
    private const int ScalesOffset = 96;
    private const int DOffset = 108;

    /// <summary>The signed scale (−32..31) of sub-block <paramref name="j"/> (0..15) from the 12 packed bytes.</summary>
    public static int GetScale(int j, byte* s)
    {
        int low = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
        int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        return (low | (high << 4)) - 32;
    }

    /// <summary>Expands <paramref name="n"/> weights (a multiple of 256) to floats.</summary>
    public static void Dequantize(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q3_K), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            DequantizeBlock(src + b * BlockBytes, dst + b * BlockSize);
    }

    /// <summary>Σ w[i]·x[i] over a row: each block is dequantized to float, products summed in double.</summary>
    public static float Dot(byte* row, float* x, long n) =>
        QuantMath.ReferenceDot(nameof(Q3_K), row, x, n, BlockSize, BlockBytes, &DequantizeBlock);

    /// <summary>Quantizes <paramref name="n"/> floats (a multiple of 256), byte-identical to ggml's reference.</summary>
    public static void Quantize(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q3_K), n, BlockSize);
        sbyte* L = stackalloc sbyte[BlockSize];
        float* scales = stackalloc float[16];
        for (long b = 0; b < n / BlockSize; b++)
            QuantizeBlock(src + b * BlockSize, dst + b * BlockBytes, L, scales);
    }

    private static void DequantizeBlock(byte* block, float* y)
    {
        float d = QuantMath.ReadHalf(block + DOffset);
        byte* hm = block;
        byte* s = block + ScalesOffset;
        for (int h = 0; h < 2; h++)
        {
            byte* q = block + QsOffset + 32 * h;
            for (int j = 0; j < 4; j++)
            {
                float d1 = d * GetScale(8 * h + 2 * j, s);
                float d2 = d * GetScale(8 * h + 2 * j + 1, s);
                int bit = 4 * h + j;
                for (int l = 0; l < 16; l++)
                    y[l] = d1 * (((q[l] >> (2 * j)) & 3) - (((hm[l] >> bit) & 1) != 0 ? 0 : 4));
                for (int l = 16; l < 32; l++)
                    y[l] = d2 * (((q[l] >> (2 * j)) & 3) - (((hm[l] >> bit) & 1) != 0 ? 0 : 4));
                y += 32;
            }
        }
    }

    private static void QuantizeBlock(float* x, byte* y, sbyte* L, float* scales)
    {
        // 1. Per 16-weight sub-block: signed scale by make_q3_quants (L in 0..7).
        KQuantSearch.Q3(16, 16, 4, x, L, scales);
        float maxScale = 0f, amax = 0f;
        for (int j = 0; j < 16; j++)
        {
            float a = MathF.Abs(scales[j]);
            if (a > amax) { amax = a; maxScale = scales[j]; }
        }

        // 2. 6-bit scales relative to d: the largest becomes −32.
        byte* s = y + ScalesOffset;
        new Span<byte>(s, 12).Clear();
        if (maxScale != 0f)
        {
            float iscale = -32f / maxScale;
            for (int j = 0; j < 16; j++)
            {
                int l = Math.Max(-32, Math.Min(31, QuantMath.NearestInt(iscale * scales[j]))) + 32;
                if (j < 8) s[j] = (byte)(l & 0xF);
                else s[j - 8] |= (byte)((l & 0xF) << 4);
                s[8 + j % 4] |= (byte)((l >> 4) << (2 * (j / 4)));
            }
            QuantMath.WriteHalf(y + DOffset, 1f / iscale);
        }
        else
        {
            QuantMath.WriteHalf(y + DOffset, 0f);
        }

        // 3. Re-quantize against the stored scales; a sub-block whose scale is 0 keeps its search result.
        float d = QuantMath.ReadHalf(y + DOffset);
        for (int j = 0; j < 16; j++)
        {
            float dj = d * GetScale(j, s);
            if (dj == 0f) continue;
            for (int i = 0; i < 16; i++)
            {
                int l = QuantMath.NearestInt(x[16 * j + i] / dj);
                L[16 * j + i] = (sbyte)(Math.Max(-4, Math.Min(3, l)) + 4);
            }
        }

        // 4. High bits: weight i's into bit i / 32 of hmask[i % 32]; low two bits into qs, four weights 32 apart per byte.
        byte* hm = y;
        new Span<byte>(hm, 32).Clear();
        for (int i = 0; i < BlockSize; i++)
        {
            if (L[i] > 3)
            {
                hm[i % 32] |= (byte)(1 << (i / 32));
                L[i] -= 4;
            }
        }
        byte* q = y + QsOffset;
        for (int j = 0; j < BlockSize; j += 128)
        {
            for (int l = 0; l < 32; l++)
                q[l] = (byte)((byte)L[j + l] | ((byte)L[j + l + 32] << 2) | ((byte)L[j + l + 64] << 4) | ((byte)L[j + l + 96] << 6));
            q += 32;
        }
    }
}
