namespace EdgeLlm.Quant;

/// <summary>
/// Q5_K (ggml type 13): super-blocks of 256 weights in 176 bytes,
/// <c>fp16 d; fp16 dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]</c>. Eight sub-blocks of 32 weights with a
/// 6-bit scale sc and a 6-bit min m packed as in Q4_K; weight = d·sc·q − dmin·m with a 5-bit q. Each 64-weight
/// chunk c uses 32 bytes of qs (low nibbles: sub-block 2c, high nibbles: sub-block 2c+1); the fifth bit of weight
/// l of sub-block k is bit k of qh[l]. The quantizer follows ggml's <c>quantize_row_q5_K_ref</c>
/// (<c>make_qkx2_quants</c> with nmax 31, rmin −0.5, 16 steps of 0.1) in the same single-precision order.
/// </summary>
public static unsafe class Q5_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 176;

    private const int ScalesOffset = 4;
    private const int QhOffset = 16;
    private const int QsOffset = 48;

    /// <summary>Expands <paramref name="n"/> weights (a multiple of 256) to floats.</summary>
    public static void Dequantize(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q5_K), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            DequantizeBlock(src + b * BlockBytes, dst + b * BlockSize);
    }

    /// <summary>Σ w[i]·x[i] over a row: each block is dequantized to float, products summed in double.</summary>
    public static float Dot(byte* row, float* x, long n) =>
        QuantMath.ReferenceDot(nameof(Q5_K), row, x, n, BlockSize, BlockBytes, &DequantizeBlock);

    /// <summary>Quantizes <paramref name="n"/> floats (a multiple of 256), byte-identical to ggml's reference.</summary>
    public static void Quantize(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow(nameof(Q5_K), n, BlockSize);
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
        byte* qh = block + QhOffset;
        byte* q = block + QsOffset;
        for (int chunk = 0; chunk < 4; chunk++)
        {
            Q4_K.GetScaleMin(2 * chunk, s, out int sc1, out int m1i);
            Q4_K.GetScaleMin(2 * chunk + 1, s, out int sc2, out int m2i);
            float d1 = d * sc1, m1 = dmin * m1i;
            float d2 = d * sc2, m2 = dmin * m2i;
            int lo = 2 * chunk, hi = 2 * chunk + 1;
            for (int l = 0; l < 32; l++) y[l] = d1 * ((q[l] & 0xF) | (((qh[l] >> lo) & 1) << 4)) - m1;
            for (int l = 0; l < 32; l++) y[32 + l] = d2 * ((q[l] >> 4) | (((qh[l] >> hi) & 1) << 4)) - m2;
            y += 64;
            q += 32;
        }
    }

    private static void QuantizeBlock(float* x, byte* y, byte* L, float* weights, float* mins, float* scales)
    {
        // 1.-2. Scales and mins as in Q4_K (codes 0..31, llama.cpp's search parameters for Q5_K).
        Q4_K.FitScalesAndMins(x, y, L, weights, mins, scales, 31, -0.5f, 0.1f, 15);
        byte* s = y + ScalesOffset;

        // 3. Re-quantize against the stored scales; a sub-block whose scale is 0 keeps its search result.
        float d = QuantMath.ReadHalf(y);
        float dmin = QuantMath.ReadHalf(y + 2);
        for (int j = 0; j < 8; j++)
        {
            Q4_K.GetScaleMin(j, s, out int sc, out int m);
            float dj = d * sc;
            if (dj == 0f) continue;
            float dm = dmin * m;
            for (int i = 0; i < 32; i++)
            {
                int l = QuantMath.NearestInt((x[32 * j + i] + dm) / dj);
                L[32 * j + i] = (byte)Math.Clamp(l, 0, 31);
            }
        }

        // 4. Pack: low four bits as in Q4_K, the fifth bit of sub-block k into bit k of qh.
        byte* qh = y + QhOffset;
        byte* q = y + QsOffset;
        new Span<byte>(qh, 32).Clear();
        for (int c = 0; c < 4; c++)
        {
            for (int l = 0; l < 32; l++)
            {
                int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
                qh[l] |= (byte)(((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1)));
                q[l] = (byte)((l1 & 0xF) | ((l2 & 0xF) << 4));
            }
            q += 32;
        }
    }
}
