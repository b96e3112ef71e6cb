namespace EdgeLlm.Quant;

/// <summary>
/// IQ4_NL (ggml type 20): blocks of 32 weights in 18 bytes, <c>fp16 d; uint8 qs[16]</c>, weight = d·K[q] with the
/// non-linear 16-entry int8 grid <see cref="Values"/>. Element j (0..15) is the low nibble of qs[j], element j+16 its
/// high nibble (the Q4_0 layout). The quantizer reproduces ggml's <c>quantize_iq4_nl</c> without an importance matrix
/// (what llama-quantize runs without --imatrix) byte for byte.
/// </summary>
public static unsafe class IQ4_NL
{
    public const int BlockSize = 32;
    public const int BlockBytes = 18;

    /// <summary>The grid (ggml's <c>kvalues_iq4nl</c>), ascending.</summary>
    public static ReadOnlySpan<sbyte> Values => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    /// <summary>The search of the quantizer: 7 scale candidates either side of the first guess.</summary>
    private const int Tries = 7;

    /// <summary>Expands <paramref name="n"/> weights (a multiple of 32) to floats.</summary>
    public static void Dequantize(byte* src, float* dst, long n)
    {
        QuantMath.CheckRow(nameof(IQ4_NL), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            DequantizeBlock(src + b * BlockBytes, dst + b * BlockSize);
    }

    /// <summary>Σ w[i]·x[i] over a row: each block is dequantized to float, products summed in double.</summary>
    public static float Dot(byte* row, float* x, long n) =>
        QuantMath.ReferenceDot(nameof(IQ4_NL), row, x, n, BlockSize, BlockBytes, &DequantizeBlock);

    /// <summary>
    /// Quantizes like ggml (no importance matrix, so each element's weight is x²): a block whose largest |x| is below
    /// 1e-15 gets scale 0. Otherwise, with max the signed value of the first largest |x|, the first guess maps max to
    /// K[0] = −127 (d = max/127); every element takes the nearest grid value at x/d, and the scale becomes the
    /// weighted least-squares fit Σwqx/Σwq². Then the guesses id = (t − 127)/max, t = −7..7, are tried the same way
    /// and a fit replaces the scale when it explains more (Σwqx)²/Σwq². The scale is stored as fp16 and the indices
    /// are chosen once more against 1/scale (the float scale, not the fp16 one); scale 0 gives index 8 (K = 1)
    /// everywhere.
    /// </summary>
    public static void Quantize(float* src, byte* dst, long n)
    {
        QuantMath.CheckRow(nameof(IQ4_NL), n, BlockSize);
        for (long b = 0; b < n / BlockSize; b++)
            QuantizeBlock(src + b * BlockSize, dst + b * BlockBytes);
    }

    private static void QuantizeBlock(float* x, byte* y)
    {
        ReadOnlySpan<sbyte> k = Values;
        float amax = 0f, max = 0f;
        for (int j = 0; j < BlockSize; j++)
        {
            float a = MathF.Abs(x[j]);
            if (a > amax) { amax = a; max = x[j]; }
        }
        float scale = 0f;
        if (amax >= 1e-15f)
        {
            float d = -max / k[0];
            float id = 1f / d;
            Fit(x, id, out float sumqx, out float sumq2);
            d = sumq2 > 0f ? sumqx / sumq2 : 0f;
            float best = d * sumqx;
            for (int t = -Tries; t <= Tries; t++)
            {
                id = (t + k[0]) / max;
                Fit(x, id, out sumqx, out sumq2);
                if (sumq2 > 0f && sumqx * sumqx > best * sumq2)
                {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
            scale = d;
        }
        QuantMath.WriteHalf(y, scale);
        float inv = scale != 0f ? 1f / scale : 0f;
        for (int j = 0; j < BlockSize / 2; j++)
        {
            int l0 = BestIndex(inv * x[j]);
            int l1 = BestIndex(inv * x[j + BlockSize / 2]);
            y[2 + j] = (byte)(l0 | (l1 << 4));
        }
    }

    /// <summary>Σ w·q·x and Σ w·q² over the block (w = x², q = K[nearest index of id·x]), float, ggml's operation order.</summary>
    private static void Fit(float* x, float id, out float sumqx, out float sumq2)
    {
        ReadOnlySpan<sbyte> k = Values;
        sumqx = 0f;
        sumq2 = 0f;
        for (int j = 0; j < BlockSize; j++)
        {
            float q = k[BestIndex(id * x[j])];
            float w = x[j] * x[j];
            sumqx += w * q * x[j];
            sumq2 += w * q * q;
        }
    }

    /// <summary>
    /// ggml's <c>best_index_int8</c> over the grid: the end indices outside it, else a bisection to the bracketing
    /// pair and the nearer of the two (the upper one on a tie).
    /// </summary>
    internal static int BestIndex(float v)
    {
        ReadOnlySpan<sbyte> k = Values;
        if (v <= k[0]) return 0;
        if (v >= k[15]) return 15;
        int lo = 0, hi = 15;
        while (hi - lo > 1)
        {
            int mid = (lo + hi) / 2;
            if (v < k[mid]) hi = mid; else lo = mid;
        }
        return v - k[hi - 1] < k[hi] - v ? hi - 1 : hi;
    }

    private static void DequantizeBlock(byte* block, float* y)
    {
        ReadOnlySpan<sbyte> k = Values;
        float d = QuantMath.ReadHalf(block);
        byte* qs = block + 2;
        for (int j = 0; j < BlockSize / 2; j++)
        {
            y[j] = d * k[qs[j] & 0x0F];
            y[j + BlockSize / 2] = d * k[qs[j] >> 4];
        }
    }
}
