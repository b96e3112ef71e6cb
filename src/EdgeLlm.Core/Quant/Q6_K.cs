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
    public static float Dot(byte* row, float* x, long n) =>
        QuantMath.ReferenceDot(nameof(Q6_K), row, x, n, BlockSize, BlockBytes, &DequantizeBlock);

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
        KQuantSearch.Qx(16, 16, 32, x, L, scales);
        float maxScale = 0f, maxAbsScale = 0f;
        for (int s = 0; s < 16; s++)
        {
            float scale = scales[s];
            float abs = MathF.Abs(scale);
            if (abs > maxAbsScale)
            {
                maxAbsScale = abs;
                maxScale = scale;
            }
        }

        if (maxAbsScale < KQuantSearch.GroupMaxEps)
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
            KQuantSearch.Requantize(x + 16 * s, (byte*)(L + 16 * s), 16, false, 0f, ds, -32, 31, 32);
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
}
