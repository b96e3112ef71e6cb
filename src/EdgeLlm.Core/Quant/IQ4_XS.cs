namespace EdgeLlm.Quant;

/// <summary>
/// IQ4_XS (ggml type 23): super-blocks of 256 weights in 136 bytes,
/// <c>fp16 d; uint16 scales_h; uint8 scales_l[4]; uint8 qs[128]</c>. Eight sub-blocks of 32 weights with a 6-bit
/// scale ls (low nibble in scales_l[ib/2], nibble ib%2; top two bits at bit 2·ib of scales_h); weight =
/// d·(ls − 32)·K[q] with a 4-bit index q into the fixed non-linear grid K = <see cref="Values"/>. Sub-block ib uses
/// 16 bytes of qs: low nibbles are its weights 0..15, high nibbles 16..31. The quantizer follows ggml's
/// <c>quantize_iq4_xs</c> without an importance matrix (weights x², 15 trial scales per sub-block), in the same
/// single-precision order.
/// </summary>
public static unsafe class IQ4_XS
{
    public const int BlockSize = 256;
    public const int BlockBytes = 136;

    private const int ScalesHOffset = 2;
    private const int ScalesLOffset = 4;
    private const int QsOffset = 8;
    private const float GroupMaxEps = 1e-15f;

    /// <summary>The 16 grid values (ggml's <c>kvalues_iq4nl</c>).</summary>
    public static ReadOnlySpan<sbyte> Values => new sbyte[] { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };

    /// <summary>The 6-bit scale ls (0..63) of sub-block <paramref name="ib"/> of a block.</summary>
    public static int SubScale(byte* block, int ib)
    {
        int sh = block[ScalesHOffset] | (block[ScalesHOffset + 1] << 8);
        return ((block[ScalesLOffset + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4);
    }

    /// <summary>Expands <paramref name="n"/> weights (a multiple of 256) to floats.</summary>
    public static void Dequantize(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow(nameof(IQ4_XS), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            DequantizeBlock(src + b * BlockBytes, dst + b * BlockSize);
    }

    /// <summary>Σ w[i]·x[i] over a row: each block is dequantized to float, products summed in double.</summary>
    public static float Dot(byte* row, float* x, long n) =>
        QuantMath.ReferenceDot(nameof(IQ4_XS), row, x, n, BlockSize, BlockBytes, &DequantizeBlock);

    /// <summary>Quantizes <paramref name="n"/> floats (a multiple of 256), byte-identical to ggml's quantize_iq4_xs without importance weights.</summary>
    public static void Quantize(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow(nameof(IQ4_XS), n, BlockSize);
        byte* L = stackalloc byte[BlockSize];
        float* scales = stackalloc float[8];
        sbyte* values = stackalloc sbyte[16];
        Values.CopyTo(new Span<sbyte>(values, 16));
        for (long b = 0; b < n / BlockSize; b++)
            QuantizeBlock(src + b * BlockSize, dst + b * BlockBytes, L, scales, values);
    }

    private static void DequantizeBlock(byte* block, float* y)
    {
        float d = QuantMath.ReadHalf(block);
        ReadOnlySpan<sbyte> k = Values;
        byte* q = block + QsOffset;
        for (int ib = 0; ib < 8; ib++)
        {
            float dl = d * (SubScale(block, ib) - 32);
            for (int j = 0; j < 16; j++)
            {
                y[j] = dl * k[q[j] & 0xF];
                y[j + 16] = dl * k[q[j] >> 4];
            }
            y += 32;
            q += 16;
        }
    }

    /// <summary>ggml's <c>best_index_int8</c>: the index of the grid value nearest x (ties to the upper one only when strictly nearer).</summary>
    private static int BestIndex(sbyte* values, float x)
    {
        if (x <= values[0]) return 0;
        if (x >= values[15]) return 15;
        int lo = 0, hi = 15;
        while (hi - lo > 1)
        {
            int mid = (lo + hi) / 2;
            if (x < values[mid]) hi = mid; else lo = mid;
        }
        return x - values[hi - 1] < values[hi] - x ? hi - 1 : hi;
    }

    private static void QuantizeBlock(float* x, byte* y, byte* L, float* scales, sbyte* values)
    {
        const int ntry = 7;
        // 1. Per sub-block: the best scale for the grid, weights x².
        float maxScale = 0f, amaxScale = 0f;
        if (KQuantSearch.IQ4Scales(8, 32, x, values, ntry, scales))
        {
            // The eight searches ran side by side (lanes); pick the largest |scale| in ggml's order.
            for (int ib = 0; ib < 8; ib++)
            {
                float absD = MathF.Abs(scales[ib]);
                if (absD > amaxScale) { amaxScale = absD; maxScale = scales[ib]; }
            }
        }
        else for (int ib = 0; ib < 8; ib++)
        {
            float* xb = x + 32 * ib;
            float amax = 0f, max = 0f;
            for (int j = 0; j < 32; j++)
            {
                float ax = MathF.Abs(xb[j]);
                if (ax > amax) { amax = ax; max = xb[j]; }
            }
            if (amax < GroupMaxEps)
            {
                scales[ib] = 0f;
                continue;
            }
            float d = -max / values[0];
            float id = 1f / d;
            float sumQX = 0f, sumQ2 = 0f;
            for (int j = 0; j < 32; j++)
            {
                float q = values[BestIndex(values, id * xb[j])];
                float w = xb[j] * xb[j];
                sumQX += w * q * xb[j];
                sumQ2 += w * q * q;
            }
            d = sumQ2 > 0f ? sumQX / sumQ2 : 0f;
            float best = d * sumQX;
            for (int itry = -ntry; itry <= ntry; itry++)
            {
                id = (itry + values[0]) / max;
                sumQX = 0f;
                sumQ2 = 0f;
                for (int j = 0; j < 32; j++)
                {
                    float q = values[BestIndex(values, id * xb[j])];
                    float w = xb[j] * xb[j];
                    sumQX += w * q * xb[j];
                    sumQ2 += w * q * q;
                }
                if (sumQ2 > 0f && sumQX * sumQX > best * sumQ2)
                {
                    d = sumQX / sumQ2;
                    best = d * sumQX;
                }
            }
            scales[ib] = d;
            float absD = MathF.Abs(d);
            if (absD > amaxScale) { amaxScale = absD; maxScale = d; }
        }

        // 2. 6-bit sub-block scales relative to d = −max/32 (the float d, not its fp16 copy), and the indices against them.
        byte* scalesL = y + ScalesLOffset;
        int scalesH = 0;
        float dAll = -maxScale / 32f;
        QuantMath.WriteHalf(y, dAll);
        float idAll = dAll != 0f ? 1f / dAll : 0f;
        for (int ib = 0; ib < 8; ib++)
        {
            int l = QuantMath.NearestInt(idAll * scales[ib]);
            l = Math.Max(-32, Math.Min(31, l));
            float dl = dAll * l;
            float idl = dl != 0f ? 1f / dl : 0f;
            float* xb = x + 32 * ib;
            for (int j = 0; j < 32; j++) L[32 * ib + j] = (byte)BestIndex(values, idl * xb[j]);
            l += 32;
            if (ib % 2 == 0) scalesL[ib / 2] = (byte)(l & 0xF);
            else scalesL[ib / 2] |= (byte)((l & 0xF) << 4);
            scalesH |= (l >> 4) << (2 * ib);
        }
        y[ScalesHOffset] = (byte)scalesH;
        y[ScalesHOffset + 1] = (byte)(scalesH >> 8);

        // 3. Pack: sub-block ib's weights j and j+16 share byte 16·ib + j.
        byte* q4 = y + QsOffset;
        for (int ib = 0; ib < 8; ib++)
            for (int j = 0; j < 16; j++)
                q4[16 * ib + j] = (byte)(L[32 * ib + j] | (L[32 * ib + 16 + j] << 4));
    }
}
