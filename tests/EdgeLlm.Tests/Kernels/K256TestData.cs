using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Kernels;

// Compiled into both the xunit project and the AOT KernelCheck harness (tests/EdgeLlm.KernelCheck), so the NEON
// rung of these types is checked under qemu on the same data as the x64 rungs here.

/// <summary>
/// Test data for the 256-weight types with Q8_K activations added for issue 12 (Q5_K, IQ4_XS, Q3_K, Q2_K): seeded
/// weights of four kinds, activations, and the tolerance magnitude.
/// </summary>
internal static unsafe class K256TestData
{
    public static readonly GgmlType[] Types = { GgmlType.Q5_K, GgmlType.IQ4_XS, GgmlType.Q3_K, GgmlType.Q2_K };
    public static readonly string[] Kinds = { "gaussian", "raw", "zeros", "extreme" };
    /// <summary>256, 768 and 4096 + 256 values.</summary>
    public static readonly int[] BlockCounts = { 1, 3, 17 };

    public sealed record Case(int N, byte[] W, byte[] Xq, float[] WDeq, float[] XDeq, double M);

    /// <summary>
    /// Weights: "gaussian" (σ 0.02 with a few ±0.5 outliers, quantized by the reference quantizer), "raw" (random
    /// bytes: every q, scale and min pattern; random finite fp16 d/dmin of either sign), "zeros" (gaussian with
    /// blocks 1, 3, 5, … all-zero bytes), "extreme" (even blocks all 0xFF bytes, odd blocks all 0x00, d = dmin = 1:
    /// the largest q, scales and mins, and IQ4_XS's most negative grid value and scale).
    /// </summary>
    public static byte[] Weights(GgmlType t, int n, string kind, int seed)
    {
        var rng = new Random(seed);
        int bb = GgmlTypes.Geometry(t).BlockBytes, nb = n / 256;
        if (kind is "raw" or "extreme")
        {
            var raw = new byte[nb * bb];
            if (kind == "raw") rng.NextBytes(raw);
            for (int b = 0; b < nb; b++)
            {
                if (kind == "extreme") Array.Fill(raw, (byte)((b & 1) == 0 ? 0xFF : 0x00), b * bb, bb);
                foreach (int o in HalfOffsets(t))
                {
                    ushort h = kind == "raw"
                        ? (ushort)((rng.Next(1, 16) << 10) | rng.Next(1024) | (rng.Next(2) << 15))
                        : (ushort)0x3C00;
                    raw[b * bb + o] = (byte)h;
                    raw[b * bb + o + 1] = (byte)(h >> 8);
                }
            }
            return raw;
        }
        float[] f = Gaussian(n, seed, 0.02);
        for (int i = 0; i < n; i += 97) f[i] = (i & 1) == 0 ? 0.5f : -0.5f;
        byte[] q = QuantRef.QuantizeRow(t, f);
        if (kind == "zeros")
            for (int b = 1; b < nb; b += 2) Array.Clear(q, b * bb, bb);
        return q;
    }

    /// <summary>Byte offsets of a block's fp16 fields (d, and dmin where the type has one).</summary>
    private static int[] HalfOffsets(GgmlType t) => t switch
    {
        GgmlType.Q5_K => new[] { 0, 2 },
        GgmlType.IQ4_XS => new[] { 0 },
        GgmlType.Q3_K => new[] { 108 },
        _ => new[] { 80, 82 },
    };

    /// <summary>
    /// Activations: N(0, 1) with block 1 tiny (×1e-20), blocks 2, 7, 12, … zero and, with 4+ blocks, a 1e3 outlier
    /// in block 0; or ("ones") all 1, which Q8_K turns into q = −127 everywhere.
    /// </summary>
    public static float[] Activations(int n, int seed, bool ones)
    {
        var x = new float[n];
        if (ones) { Array.Fill(x, 1f); return x; }
        x = Gaussian(n, seed);
        int nb = n / 256;
        for (int b = 2; b < nb; b += 5) Array.Clear(x, b * 256, 256);
        if (nb >= 4) x[3] = 1000f;
        if (nb >= 2)
            for (int i = 256; i < 512; i++) x[i] *= 1e-20f;
        return x;
    }

    public static float[] Gaussian(int n, int seed, double sigma = 1.0)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            double u = 1.0 - rng.NextDouble(), v = rng.NextDouble();
            x[i] = (float)(sigma * Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * v));
        }
        return x;
    }

    public static byte[] QuantizeQ8_K(float[] x)
    {
        var xq = new byte[x.Length / 256 * ActivationQuant.Q8_KBlockBytes];
        fixed (float* px = x) fixed (byte* pq = xq) ActivationQuant.QuantizeQ8_K(px, pq, x.Length);
        return xq;
    }

    public static float[] DequantizeQ8_K(byte[] xq, int n)
    {
        var x = new float[n];
        fixed (byte* pq = xq) fixed (float* px = x) ActivationQuant.DequantizeQ8_K(pq, px, n);
        return x;
    }

    /// <summary>One case: "extreme" weights meet all-ones activations unless <paramref name="seedOffset"/> ≠ 0.</summary>
    public static Case Make(GgmlType t, int nb, string kind, int seedOffset = 0)
    {
        int n = nb * 256;
        int seed = (int)t * 1000 + nb * 10 + kind.Length + seedOffset;
        byte[] w = Weights(t, n, kind, seed);
        byte[] xq = QuantizeQ8_K(Activations(n, seed + 1, ones: kind == "extreme" && seedOffset == 0));
        var wDeq = new float[n];
        QuantRef.DequantizeRow(t, w, wDeq);
        float[] xDeq = DequantizeQ8_K(xq, n);
        return new Case(n, w, xq, wDeq, xDeq, Magnitude(t, w, wDeq, xDeq));
    }

    /// <summary>
    /// Σ|x'_i|(|w'_i| + 2μ_i), μ_i = dmin·m of the weight's sub-block for the types with mins (Q5_K, Q2_K), else 0:
    /// it bounds Σ_blocks of |each float term| the kernels add up, so rungs agree within 1e-5 of it.
    /// </summary>
    public static double Magnitude(GgmlType t, byte[] w, float[] wDeq, float[] xDeq)
    {
        double m = 0;
        for (int i = 0; i < xDeq.Length; i++) m += Math.Abs((double)xDeq[i]) * (Math.Abs((double)wDeq[i]) + 2 * MinTerm(t, w, i));
        return m;
    }

    private static double MinTerm(GgmlType t, byte[] w, int i)
    {
        int b = i / 256, j = i % 256;
        fixed (byte* p = w)
        {
            byte* blk = p + b * GgmlTypes.Geometry(t).BlockBytes;
            switch (t)
            {
                case GgmlType.Q5_K:
                    Q4_K.GetScaleMin(j / 32, blk + 4, out _, out int m);
                    return Math.Abs((double)Half(blk + 2)) * m;
                case GgmlType.Q2_K:
                    return Math.Abs((double)Half(blk + 82)) * (blk[j / 16] >> 4);
                default:
                    return 0;
            }
        }
    }

    private static float Half(byte* p) => (float)BitConverter.UInt16BitsToHalf((ushort)(p[0] | (p[1] << 8)));

    /// <summary>The dot of a case on one variant (pinned here so both harnesses call it the same way).</summary>
    public static float Dot(GgmlType t, Variant v, Case c)
    {
        fixed (byte* w = c.W) fixed (byte* xq = c.Xq) return KernelVariants.Run(t, v, w, xq, c.N);
    }
}
