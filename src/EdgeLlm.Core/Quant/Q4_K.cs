namespace EdgeLlm.Quant;

/// <summary>
/// Q4_K (ggml type 12): super-blocks of 256 weights in 144 bytes,
/// <c>fp16 d; fp16 dmin; uint8 scales[12]; uint8 qs[128]</c>. Eight sub-blocks of 32 weights each have a 6-bit
/// scale sc and a 6-bit min m; weight = d·sc·q − dmin·m with a 4-bit q. Each 64-weight chunk uses 32 bytes of qs:
/// low nibbles are its first sub-block, high nibbles its second. The quantizer is a port of ggml's
/// <c>quantize_row_q4_K_ref</c> (the <c>make_qkx2_quants</c> search, <see cref="KQuantSearch.Qkx2"/>), in the same
/// single-precision order.
/// </summary>
public static unsafe class Q4_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 144;

    private const int ScalesOffset = 4;
    private const int QsOffset = 16;

    /// <summary>Expands <paramref name="n"/> weights (a multiple of 256) to floats.</summary>
    public static void Dequantize(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q4_K), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            DequantizeBlock(src + b * BlockBytes, dst + b * BlockSize);
    }

    /// <summary>Σ w[i]·x[i] over a row: each block is dequantized to float, products summed in double.</summary>
    public static float Dot(byte* row, float* x, long n) =>
        QuantMath.ReferenceDot(nameof(Q4_K), row, x, n, BlockSize, BlockBytes, &DequantizeBlock);

    /// <summary>
    /// Unpacks the 6-bit scale and min of sub-block <paramref name="j"/> (0..7) from the 12 packed bytes
    /// (ggml's <c>get_scale_min_k4</c>): j &lt; 4 keep them in the low 6 bits of bytes j and j+4; j ≥ 4 keep
    /// their low 4 bits in byte j+4 and their top 2 bits in the high bits of bytes j−4 and j.
    /// </summary>
    public static void GetScaleMin(int j, byte* s, out int scale, out int min)
    {
        if (j < 4)
        {
            scale = s[j] & 63;
            min = s[j + 4] & 63;
        }
        else
        {
            scale = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
            min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }

    /// <summary>Quantizes <paramref name="n"/> floats (a multiple of 256), byte-identical to ggml's reference.</summary>
    public static void Quantize(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q4_K), n, BlockSize);
        byte* L = stackalloc byte[BlockSize];
        float* weights = stackalloc float[BlockSize];
        float* mins = stackalloc float[8];
        float* scales = stackalloc float[8];
        for (long b = 0; b < n / BlockSize; b++)
            QuantizeBlock(src + b * BlockSize, dst + b * BlockBytes, L, weights, mins, scales);
    }

    private static void DequantizeBlock(byte* block, float* y)
    {
        float d = QuantMath.ReadHalf(block);
        float dmin = QuantMath.ReadHalf(block + 2);
        byte* s = block + ScalesOffset;
        byte* q = block + QsOffset;
        for (int chunk = 0; chunk < 4; chunk++)
        {
            GetScaleMin(2 * chunk, s, out int sc1, out int m1i);
            GetScaleMin(2 * chunk + 1, s, out int sc2, out int m2i);
            float d1 = d * sc1, m1 = dmin * m1i;
            float d2 = d * sc2, m2 = dmin * m2i;
            for (int l = 0; l < 32; l++) y[l] = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) y[32 + l] = d2 * (q[l] >> 4) - m2;
            y += 64;
            q += 32;
        }
    }

    /// <summary>
    /// Steps 1 and 2 of a Q4_K or Q5_K block (the same in both, llama.cpp's quantize_row_q4_K_ref / q5_K_ref):
    /// per 32-weight sub-block, fit a scale and a min with weights |x| + rms(x) (codes 0..<paramref name="nmax"/>,
    /// the search's rmin, rdelta and step count), then quantize the eight scales and mins to 6 bits relative to
    /// the super-block d and dmin, pack them at <see cref="ScalesOffset"/> and write d and dmin (fp16) at 0 and 2.
    /// </summary>
    internal static void FitScalesAndMins(float* x, byte* y, byte* L, float* weights, float* mins, float* scales,
        int nmax, float rmin, float rdelta, int nstep)
    {
        for (int j = 0; j < 8; j++)
        {
            float* xs = x + 32 * j;
            float sumX2 = 0f;
            for (int l = 0; l < 32; l++) sumX2 += xs[l] * xs[l];
            float avX = MathF.Sqrt(sumX2 / 32f);
            for (int l = 0; l < 32; l++) weights[32 * j + l] = avX + MathF.Abs(xs[l]);
        }
        KQuantSearch.Qkx2(8, 32, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, useMad: false);
        float maxScale = 0f, maxMin = 0f;
        for (int j = 0; j < 8; j++)
        {
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }

        byte* s = y + ScalesOffset;
        float invScale = maxScale > 0f ? 63f / maxScale : 0f;
        float invMin = maxMin > 0f ? 63f / maxMin : 0f;
        for (int j = 0; j < 8; j++)
        {
            byte ls = Math.Min((byte)63, (byte)QuantMath.NearestInt(invScale * scales[j]));
            byte lm = Math.Min((byte)63, (byte)QuantMath.NearestInt(invMin * mins[j]));
            if (j < 4)
            {
                s[j] = ls;
                s[j + 4] = lm;
            }
            else
            {
                s[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                s[j - 4] |= (byte)((ls >> 4) << 6);
                s[j] |= (byte)((lm >> 4) << 6);
            }
        }
        QuantMath.WriteHalf(y, maxScale / 63f);
        QuantMath.WriteHalf(y + 2, maxMin / 63f);
    }

    private static void QuantizeBlock(float* x, byte* y, byte* L, float* weights, float* mins, float* scales)
    {
        // 1.-2. Scales and mins of the eight sub-blocks, stored as 6-bit values and d, dmin.
        FitScalesAndMins(x, y, L, weights, mins, scales, 15, -1f, 0.1f, 20);
        byte* s = y + ScalesOffset;

        // 3. Re-quantize against the stored (rounded) scales; a sub-block whose scale is 0 keeps its search result.
        float d = QuantMath.ReadHalf(y);
        float dmin = QuantMath.ReadHalf(y + 2);
        for (int j = 0; j < 8; j++)
        {
            GetScaleMin(j, s, out int sc, out int m);
            float dj = d * sc;
            if (dj == 0f) continue;
            float dm = dmin * m;
            KQuantSearch.Requantize(x + 32 * j, L + 32 * j, 32, true, dm, dj, 0, 15, 0);
        }

        // 4. Pack nibbles: each 64-weight chunk -> 32 bytes, low nibble first sub-block, high nibble second.
        byte* q = y + QsOffset;
        for (int j = 0; j < BlockSize; j += 64)
        {
            for (int l = 0; l < 32; l++) q[l] = (byte)(L[j + l] | (L[j + l + 32] << 4));
            q += 32;
        }
    }
}
