namespace EdgeLlm.Quant;

/// <summary>
/// Q6_K (ggml type 14): super-blocks of 256 weights in 210 bytes,
/// <c>uint8 ql[128]; uint8 qh[64]; int8 scales[16]; fp16 d</c> (d is last). Sixteen sub-blocks of 16 weights,
/// weight = d·scales[s]·(q − 32) with a 6-bit q: low 4 bits in ql, high 2 bits in qh. Within each 128-weight half,
/// position l (0..31) packs the weights l, l+32, l+64, l+96. The quantizer is a port of ggml's
/// <c>quantize_row_q6_K_ref</c> (<c>make_qx_quants</c> with rmse_type 1), in the same single-precision order.
/// </summary>
public static unsafe class Q6_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 210;

    private const int QhOffset = 128;
    private const int ScalesOffset = 192;
    private const int DOffset = 208;

    /// <summary>Expands <paramref name="n"/> weights (a multiple of 256) to floats.</summary>
    public static void Dequantize(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q6_K), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            DequantizeBlock(src + b * BlockBytes, dst + b * BlockSize);
    }

    /// <summary>Σ w[i]·x[i] over a row: each block is dequantized to float, products summed in double.</summary>
    public static float Dot(byte* row, float* x, long n)
    {
        QuantMath.CheckRow(nameof(Q6_K), n, BlockSize);
        float* w = stackalloc float[BlockSize];
        double sum = 0;
        for (long b = 0; b < n / BlockSize; b++)
        {
            DequantizeBlock(row + b * BlockBytes, w);
            float* xb = x + b * BlockSize;
            for (int i = 0; i < BlockSize; i++) sum += (double)w[i] * xb[i];
        }
        return (float)sum;
    }

    /// <summary>Quantizes <paramref name="n"/> floats (a multiple of 256), byte-identical to ggml's reference.</summary>
    public static void Quantize(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q6_K), n, BlockSize);
        sbyte* L = stackalloc sbyte[BlockSize];
        float* scales = stackalloc float[16];
        for (long b = 0; b < n / BlockSize; b++)
            QuantizeBlock(src + b * BlockSize, dst + b * BlockBytes, L, scales);
    }

    private static void DequantizeBlock(byte* block, float* y)
    {
        float d = QuantMath.ReadHalf(block + DOffset);
        byte* ql = block;
        byte* qh = block + QhOffset;
        sbyte* sc = (sbyte*)(block + ScalesOffset);
        for (int half = 0; half < 2; half++)
        {
            for (int l = 0; l < 32; l++)
            {
                int s = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[s] * q1;
                y[l + 32] = d * sc[s + 2] * q2;
                y[l + 64] = d * sc[s + 4] * q3;
                y[l + 96] = d * sc[s + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }

    private static void QuantizeBlock(float* x, byte* y, sbyte* L, float* scales)
    {
        // 1. Per 16-weight sub-block: best signed scale (the largest |x| maps to −32).
        float maxScale = 0f, maxAbsScale = 0f;
        for (int s = 0; s < 16; s++)
        {
            float scale = MakeQxQuants(16, 32, x + 16 * s, L + 16 * s);
            scales[s] = scale;
            float abs = MathF.Abs(scale);
            if (abs > maxAbsScale)
            {
                maxAbsScale = abs;
                maxScale = scale;
            }
        }

        if (maxAbsScale < GroupMaxEps)
        {
            new Span<byte>(y, BlockBytes).Clear();
            return;
        }

        // 2. 8-bit signed sub-block scales relative to d; the largest one becomes −128.
        float iscale = -128f / maxScale;
        QuantMath.WriteHalf(y + DOffset, 1f / iscale);
        sbyte* sc = (sbyte*)(y + ScalesOffset);
        for (int s = 0; s < 16; s++) sc[s] = (sbyte)Math.Min(127, QuantMath.NearestInt(iscale * scales[s]));

        // 3. Re-quantize against the stored scales; a sub-block whose scale is 0 keeps its search result.
        float d = QuantMath.ReadHalf(y + DOffset);
        for (int s = 0; s < 16; s++)
        {
            float ds = d * sc[s];
            if (ds == 0f) continue;
            for (int i = 0; i < 16; i++)
            {
                int l = QuantMath.NearestInt(x[16 * s + i] / ds);
                L[16 * s + i] = (sbyte)(Math.Clamp(l, -32, 31) + 32);
            }
        }

        // 4. Pack: low nibbles into ql, top two bits into qh, four weights 32 apart per position.
        byte* ql = y;
        byte* qh = y + QhOffset;
        for (int j = 0; j < BlockSize; j += 128)
        {
            for (int l = 0; l < 32; l++)
            {
                int a = L[j + l], b = L[j + l + 32], c = L[j + l + 64], e = L[j + l + 96];
                ql[l] = (byte)((a & 0xF) | ((c & 0xF) << 4));
                ql[l + 32] = (byte)((b & 0xF) | ((e & 0xF) << 4));
                qh[l] = (byte)((a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }

    private const float GroupMaxEps = 1e-15f;

    /// <summary>
    /// ggml's <c>make_qx_quants</c> with rmse_type 1 and no importance weights: symmetric quantization to
    /// −nmax..nmax−1 (stored offset by nmax), trying 19 inverse scales around −nmax/max and keeping the one with the
    /// best x²-weighted least-squares fit. Returns the scale (negative when the largest |x| is positive).
    /// </summary>
    private static float MakeQxQuants(int n, int nmax, float* x, sbyte* L)
    {
        float max = 0f, amax = 0f;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            for (int i = 0; i < n; i++) L[i] = 0;
            return 0f;
        }

        float iscale = -nmax / max;
        float sumLX = 0f, sumL2 = 0f;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Max(-nmax, Math.Min(nmax - 1, QuantMath.NearestInt(iscale * x[i])));
            L[i] = (sbyte)(l + nmax);
            float w = x[i] * x[i];
            sumLX += w * x[i] * l;
            sumL2 += w * l * l;
        }
        float scale = sumL2 != 0f ? sumLX / sumL2 : 0f;
        float best = scale * sumLX;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumLX = 0f;
            sumL2 = 0f;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Max(-nmax, Math.Min(nmax - 1, QuantMath.NearestInt(iscale * x[i])));
                float w = x[i] * x[i];
                sumLX += w * x[i] * l;
                sumL2 += w * l * l;
            }
            if (sumL2 > 0f && sumLX * sumLX > best * sumL2)
            {
                for (int i = 0; i < n; i++)
                {
                    int l = QuantMath.NearestInt(iscale * x[i]);
                    L[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, l)));
                }
                scale = sumLX / sumL2;
                best = scale * sumLX;
            }
        }
        return scale;
    }
}
