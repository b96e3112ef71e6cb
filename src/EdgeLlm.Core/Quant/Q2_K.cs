namespace EdgeLlm.Quant;

/// <summary>
/// Q2_K (ggml type 10): super-blocks of 256 weights in 84 bytes,
/// <c>uint8 scales[16]; uint8 qs[64]; fp16 d; fp16 dmin</c>. Sixteen sub-blocks of 16 weights; scales[s] holds a
/// 4-bit scale (low nibble) and a 4-bit min (high nibble); weight = d·sc·q − dmin·m with a 2-bit q. Within each
/// 128-weight half h, weight 32j + l (j = 0..3, l = 0..31) is bits 2j..2j+1 of qs[32h + l]. The quantizer follows
/// ggml's <c>quantize_row_q2_K_ref</c> (<c>make_qkx2_quants</c> with nmax 3, weights |x|, absolute error) in the
/// same single-precision order.
/// </summary>
public static unsafe class Q2_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 84;

    private const int QsOffset = 16;
    private const int DOffset = 80;
    private const int DminOffset = 82;

    /// <summary>Expands <paramref name="n"/> weights (a multiple of 256) to floats.</summary>
    public static void Dequantize(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q2_K), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            DequantizeBlock(src + b * BlockBytes, dst + b * BlockSize);
    }

    /// <summary>Σ w[i]·x[i] over a row: each block is dequantized to float, products summed in double.</summary>
    public static float Dot(byte* row, float* x, long n) =>
        QuantMath.ReferenceDot(nameof(Q2_K), row, x, n, BlockSize, BlockBytes, &DequantizeBlock);

    /// <summary>Quantizes <paramref name="n"/> floats (a multiple of 256), byte-identical to ggml's reference built without FMA contraction.</summary>
    public static void Quantize(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q2_K), n, BlockSize);
        byte* L = stackalloc byte[BlockSize];
        byte* laux = stackalloc byte[16];
        float* weights = stackalloc float[16];
        float* mins = stackalloc float[16];
        float* scales = stackalloc float[16];
        for (long b = 0; b < n / BlockSize; b++)
            QuantizeBlock(src + b * BlockSize, dst + b * BlockBytes, L, laux, weights, mins, scales);
    }

    private static void DequantizeBlock(byte* block, float* y)
    {
        float d = QuantMath.ReadHalf(block + DOffset);
        float dmin = QuantMath.ReadHalf(block + DminOffset);
        for (int h = 0; h < 2; h++)
        {
            byte* q = block + QsOffset + 32 * h;
            for (int j = 0; j < 4; j++)
            {
                for (int half = 0; half < 2; half++)
                {
                    byte sc = block[8 * h + 2 * j + half];
                    float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
                    for (int l = 16 * half; l < 16 * half + 16; l++) y[l] = dl * ((q[l] >> (2 * j)) & 3) - ml;
                }
                y += 32;
            }
        }
    }

    private static void QuantizeBlock(float* x, byte* y, byte* L, byte* laux, float* weights, float* mins, float* scales)
    {
        const float q4scale = 15f;
        // 1. Per 16-weight sub-block: scale and min, weights |x|, absolute-error search.
        float maxScale = 0f, maxMin = 0f;
        for (int j = 0; j < 16; j++)
        {
            for (int l = 0; l < 16; l++) weights[l] = MathF.Abs(x[16 * j + l]);
            scales[j] = KQuantSearch.MakeQkx2Quants(16, 3, x + 16 * j, weights, L + 16 * j, out mins[j], laux, -0.5f, 0.1f, 15, useMad: true);
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }

        // 2. 4-bit scales and mins relative to d = maxScale/15 and dmin = maxMin/15.
        if (maxScale > 0f)
        {
            float iscale = q4scale / maxScale;
            for (int j = 0; j < 16; j++) y[j] = (byte)QuantMath.NearestInt(iscale * scales[j]);
            QuantMath.WriteHalf(y + DOffset, maxScale / q4scale);
        }
        else
        {
            for (int j = 0; j < 16; j++) y[j] = 0;
            QuantMath.WriteHalf(y + DOffset, 0f);
        }
        if (maxMin > 0f)
        {
            float iscale = q4scale / maxMin;
            for (int j = 0; j < 16; j++) y[j] |= (byte)(QuantMath.NearestInt(iscale * mins[j]) << 4);
            QuantMath.WriteHalf(y + DminOffset, maxMin / q4scale);
        }
        else
        {
            QuantMath.WriteHalf(y + DminOffset, 0f);
        }

        // 3. Re-quantize against the stored scales; a sub-block whose scale is 0 keeps its search result.
        float d = QuantMath.ReadHalf(y + DOffset);
        float dmin = QuantMath.ReadHalf(y + DminOffset);
        for (int j = 0; j < 16; j++)
        {
            float dj = d * (y[j] & 0xF);
            if (dj == 0f) continue;
            float dm = dmin * (y[j] >> 4);
            for (int i = 0; i < 16; i++)
            {
                int l = QuantMath.NearestInt((x[16 * j + i] + dm) / dj);
                L[16 * j + i] = (byte)Math.Max(0, Math.Min(3, l));
            }
        }

        // 4. Pack: four weights 32 apart per byte.
        byte* q = y + QsOffset;
        for (int j = 0; j < BlockSize; j += 128)
        {
            for (int l = 0; l < 32; l++)
                q[l] = (byte)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
            q += 32;
        }
    }
}
