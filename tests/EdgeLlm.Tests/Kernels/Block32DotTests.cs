using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Quant;
using static EdgeLlm.Tests.Kernels.KernelVariants;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The integer dot kernels of the 32-weight types Q4_1, Q5_1 (· Q8_1 activations) and Q5_0, IQ4_NL (· Q8_0), every
/// rung this CPU runs, odd block counts (1 … 127 blocks, so every remainder path of the 8-block and pair loops),
/// weights quantized by the reference quantizer, raw random bytes (every code, random fp16 scales and offsets),
/// every-other-block zero, and the extreme codes against ±127 activations. Tolerance: the same integer sums in a
/// different float order, |Δ| ≤ 1e-5·M with M = Σ|x'|(|w'| + 2|m|) + Σ_blocks |m·s| (m the weight block's offset,
/// s the activation block's stored d·Σq; 0 for the Q8_0 types), as in <see cref="QuantDotTests"/>.
/// </summary>
public unsafe class Block32DotTests
{
    private static readonly GgmlType[] Types = { GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL };
    private static readonly string[] Kinds = { "gaussian", "raw", "zeros", "extreme" };
    private static readonly int[] BlockCounts = { 1, 3, 7, 9, 33, 127 };

    private static bool HasMin(GgmlType t) => t is GgmlType.Q4_1 or GgmlType.Q5_1;
    private static int XBlockBytes(GgmlType t) => HasMin(t) ? ActivationQuant.Q8_1BlockBytes : ActivationQuant.Q8_0BlockBytes;

    public static IEnumerable<object[]> SimdCases()
    {
        foreach (GgmlType t in Types)
            foreach (Variant v in SupportedVariants())
                if (v != Variant.Scalar)
                    foreach (int nb in BlockCounts)
                        foreach (string kind in Kinds)
                            yield return new object[] { t, v, nb, kind };
    }

    public static IEnumerable<object[]> ScalarCases()
    {
        foreach (GgmlType t in Types)
            foreach (int nb in BlockCounts)
                foreach (string kind in Kinds)
                    yield return new object[] { t, nb, kind };
    }

    public static IEnumerable<object[]> TypeVariants()
    {
        foreach (GgmlType t in Types)
            foreach (Variant v in SupportedVariants())
                yield return new object[] { t, v };
    }

    internal sealed record Case(int N, byte[] W, byte[] Xq, float[] WDeq, float[] XDeq, double M);

    /// <summary>Weights of <paramref name="kind"/> (see the class summary).</summary>
    internal static byte[] Weights(GgmlType t, int n, string kind, int seed)
    {
        var rng = new Random(seed);
        int bb = GgmlTypes.Geometry(t).BlockBytes, nb = n / 32;
        if (kind is "raw" or "extreme")
        {
            var raw = new byte[nb * bb];
            rng.NextBytes(raw);
            for (int b = 0; b < nb; b++)
            {
                int o = b * bb;
                SetHalf(raw, o, rng);
                if (HasMin(t)) SetHalf(raw, o + 2, rng);
                if (kind == "extreme")
                {
                    // The largest codes (Q4_1 15, Q5_x 31) or IQ4_NL's −127 (index 0), alternating with random blocks.
                    if (b % 2 == 0)
                        Array.Fill(raw, t == GgmlType.IQ4_NL ? (byte)0x00 : (byte)0xFF, o + (HasMin(t) ? 4 : 2), bb - (HasMin(t) ? 4 : 2));
                }
            }
            return raw;
        }
        float[] f = QuantTestData.Gaussian(n, seed, 0.02);
        for (int i = 0; i < n; i += 97) f[i] = (i & 1) == 0 ? 0.5f : -0.5f;
        byte[] q = QuantRef.QuantizeRow(t, f);
        if (kind == "zeros")
            for (int b = 1; b < nb; b += 2) Array.Clear(q, b * bb, bb);
        return q;
    }

    /// <summary>A random finite fp16 with magnitude in [2^-14, 2^1), either sign.</summary>
    private static void SetHalf(byte[] a, int o, Random rng)
    {
        ushort h = (ushort)((rng.Next(1, 17) << 10) | rng.Next(1024) | (rng.Next(2) << 15));
        a[o] = (byte)h;
        a[o + 1] = (byte)(h >> 8);
    }

    internal static Case Make(GgmlType t, int nb, string kind, int seedOffset = 0)
    {
        int n = nb * 32;
        int seed = (int)t * 1000 + nb * 10 + kind.Length + seedOffset;
        byte[] w = Weights(t, n, kind, seed);
        float[] x;
        if (kind == "extreme")
        {
            // ±127·d activations with d = 1: every q is ±127 (Q8 never holds −128).
            x = new float[n];
            var rng = new Random(seed + 1);
            for (int i = 0; i < n; i++) x[i] = rng.Next(2) == 0 ? 127f : -127f;
        }
        else x = KernelTestData.Activations(n, 32, seed + 1);
        byte[] xq = KernelTestData.QuantizeActivations(t, x);
        float[] wDeq = KernelTestData.DequantizeWeights(t, w, n);
        float[] xDeq = KernelTestData.DequantizeActivations(t, xq, n);
        double m = 0;
        for (int i = 0; i < n; i++) m += Math.Abs((double)xDeq[i]) * (Math.Abs((double)wDeq[i]) + 2 * Math.Abs(Min(t, w, i / 32)));
        if (HasMin(t))
            for (int b = 0; b < nb; b++) m += Math.Abs(Min(t, w, b) * (double)BitConverter.ToHalf(xq, b * 36 + 2));
        return new Case(n, w, xq, wDeq, xDeq, m);
    }

    /// <summary>The weight block's offset m (Q4_1/Q5_1), else 0.</summary>
    private static double Min(GgmlType t, byte[] w, int b) =>
        HasMin(t) ? (double)BitConverter.ToHalf(w, b * GgmlTypes.Geometry(t).BlockBytes + 2) : 0;

    private static float Dot(GgmlType t, Variant v, Case c)
    {
        fixed (byte* w = c.W) fixed (byte* xq = c.Xq) return Run(t, v, w, xq, c.N);
    }

    [Theory]
    [MemberData(nameof(SimdCases))]
    public void RungMatchesScalarRung(GgmlType t, Variant v, int nb, string kind)
    {
        Case c = Make(t, nb, kind);
        float scalar = Dot(t, Variant.Scalar, c);
        float simd = Dot(t, v, c);
        double tol = 1e-5 * c.M;
        Assert.True(Math.Abs(simd - scalar) <= tol, $"{t} {v} {nb} blocks {kind}: {simd} vs scalar {scalar} (tol {tol:G3})");
        Assert.True(c.M > 0, "the test data must not be all zero");
    }

    /// <summary>
    /// The scalar kernel against the double-accumulated reference over the dequantized weights and activations. With
    /// an offset m the kernels use the stored s = fp16(d_x·Σq) where the float dot has m·d_x·Σq: that difference,
    /// Σ_blocks m·(s − d_x·Σq), is added to the reference exactly (in double).
    /// </summary>
    [Theory]
    [MemberData(nameof(ScalarCases))]
    public void ScalarRungMatchesFloatReferenceOverQuantizedActivations(GgmlType t, int nb, string kind)
    {
        Case c = Make(t, nb, kind);
        float scalar = Dot(t, Variant.Scalar, c);
        double reference = QuantRef.Dot(t, c.W, c.XDeq);
        if (HasMin(t))
            for (int b = 0; b < nb; b++)
            {
                double d = (double)BitConverter.ToHalf(c.Xq, b * 36), s = (double)BitConverter.ToHalf(c.Xq, b * 36 + 2);
                int qsum = 0;
                for (int j = 0; j < 32; j++) qsum += (sbyte)c.Xq[b * 36 + 4 + j];
                reference += Min(t, c.W, b) * (s - d * qsum);
            }
        double tol = 1e-5 * c.M;
        Assert.True(Math.Abs(scalar - reference) <= tol, $"{t} {nb} blocks {kind}: {scalar} vs reference {reference} (tol {tol:G3})");
    }

    [Theory]
    [MemberData(nameof(TypeVariants))]
    public void ZeroWeightsOrZeroActivationsGiveZero(GgmlType t, Variant v)
    {
        int n = 9 * 32;
        byte[] zeroW = new byte[GgmlTypes.RowBytes(t, n)];
        byte[] w = Weights(t, n, "raw", 7);
        byte[] xq = KernelTestData.QuantizeActivations(t, KernelTestData.Activations(n, 32, 8));
        byte[] zeroXq = KernelTestData.QuantizeActivations(t, new float[n]);
        fixed (byte* pzw = zeroW) fixed (byte* pw = w) fixed (byte* pxq = xq) fixed (byte* pzx = zeroXq)
        {
            Assert.Equal(0f, Run(t, v, pzw, pxq, n));
            Assert.Equal(0f, Run(t, v, pw, pzx, n));
        }
    }

    public static IEnumerable<object[]> AllVariants() => SupportedVariants().Select(v => new object[] { v });

    /// <summary>One hand-computed block per type (values worked out in the comments), on every rung.</summary>
    [Theory]
    [MemberData(nameof(AllVariants))]
    public void HandComputedBlocks(Variant v)
    {
        foreach ((GgmlType t, byte[] w, byte[] x, float want) in HandBlocks())
            fixed (byte* pw = w) fixed (byte* px = x)
                Assert.Equal(want, Run(t, v, pw, px, 32));
    }

    internal static IEnumerable<(GgmlType, byte[], byte[], float)> HandBlocks()
    {
        // Q4_1: d = 1, m = 2, qs all 0x31 (lo 1, hi 3). Q8_1 x: d = 0.5, q all 2, s = 32.
        // isum = 16·1·2 + 16·3·2 = 128; result = 1·0.5·128 + 2·32 = 128.
        byte[] w41 = new byte[20];
        w41[1] = 0x3C; w41[3] = 0x40;
        Array.Fill(w41, (byte)0x31, 4, 16);
        yield return (GgmlType.Q4_1, w41, Q8Block(true, 0x3800, 0x5000, _ => 2), 128f);

        // Q5_0: d = 1, qh = 0x0000FFFF (elements 0..15 get bit 4), qs all 0x21: q = 1|16 = 17 -> 1 for j < 16,
        // q = 2 -> −14 for j ≥ 16. Q8_0 x: d = 0.5, q all 2. isum = 16·1·2 + 16·(−14)·2 = −416; result = −208.
        byte[] w50 = new byte[22];
        w50[1] = 0x3C; w50[2] = 0xFF; w50[3] = 0xFF;
        Array.Fill(w50, (byte)0x21, 6, 16);
        yield return (GgmlType.Q5_0, w50, Q8Block(false, 0x3800, 0, _ => 2), -208f);

        // Q5_1: d = 0.5, m = −1, qh = 0xFFFF0000 (elements 16..31), qs all 0x10: q = 0 for j < 16, 1|16 = 17 above.
        // Q8_1 x: d = 1, q all 1, s = 32. isum = 16·17 = 272; result = 0.5·1·272 + (−1)·32 = 104.
        byte[] w51 = new byte[24];
        w51[1] = 0x38; w51[3] = 0xBC; w51[6] = 0xFF; w51[7] = 0xFF;
        Array.Fill(w51, (byte)0x10, 8, 16);
        yield return (GgmlType.Q5_1, w51, Q8Block(true, 0x3C00, 0x5000, _ => 1), 104f);

        // IQ4_NL: d = 1, qs all 0xF0: K[0] = −127 for j < 16, K[15] = 113 above. Q8_0 x: d = 0.5, q = 1 for j < 16,
        // −1 above. isum = 16·(−127) + 16·113·(−1) = −3840; result = 0.5·(−3840) = −1920.
        byte[] wnl = new byte[18];
        wnl[1] = 0x3C;
        Array.Fill(wnl, (byte)0xF0, 2, 16);
        yield return (GgmlType.IQ4_NL, wnl, Q8Block(false, 0x3800, 0, j => (sbyte)(j < 16 ? 1 : -1)), -1920f);
    }

    private static byte[] Q8Block(bool q8_1, ushort d, ushort s, Func<int, sbyte> q)
    {
        int off = q8_1 ? 4 : 2;
        var b = new byte[off + 32];
        b[0] = (byte)d; b[1] = (byte)(d >> 8);
        if (q8_1) { b[2] = (byte)s; b[3] = (byte)(s >> 8); }
        for (int j = 0; j < 32; j++) b[off + j] = (byte)q(j);
        return b;
    }

    [Fact]
    public void DotUsesTheSelectedRung()
    {
        Variant selected = KernelRung.Selected switch
        {
            Rung.Avx512 => KernelRung.UseAvx512Vbmi ? Variant.Avx512 : Variant.Avx512NoVbmi,
            Rung.Avx2 => KernelRung.UseAvxVnni ? Variant.Avx2Vnni : Variant.Avx2,
            Rung.Neon => Variant.Neon,
            _ => Variant.Scalar,
        };
        foreach (GgmlType t in Types)
        {
            Case c = Make(t, 9, "raw");
            fixed (byte* w = c.W) fixed (byte* xq = c.Xq)
                Assert.Equal(Run(t, selected, w, xq, c.N), RunSelected(t, w, xq, c.N));
        }
    }

    [Fact]
    public void BadLengthsAndUnsupportedRungsThrow()
    {
        byte[] buf = new byte[1024];
        fixed (byte* pinned = buf)
        {
            byte* p = pinned;
            Assert.Contains("DotQ4_1", Assert.Throws<ArgumentException>(() => DotQ4_1.Dot(p, p, 33)).Message);
            Assert.Contains("DotQ5_0", Assert.Throws<ArgumentException>(() => DotQ5_0.DotScalar(p, p, -32)).Message);
            Assert.Contains("DotQ5_1", Assert.Throws<ArgumentException>(() => DotQ5_1.Dot(p, p, 16)).Message);
            Assert.Contains("DotIQ4_NL", Assert.Throws<ArgumentException>(() => DotIQ4_NL.Dot(p, p, 48)).Message);
            if (!KernelRung.IsSupported(Rung.Neon))
            {
                Assert.Throws<PlatformNotSupportedException>(() => DotQ4_1.DotNeon(p, p, 32));
                Assert.Throws<PlatformNotSupportedException>(() => DotIQ4_NL.DotNeon(p, p, 32));
            }
            if (!KernelRung.IsSupported(Rung.Avx512))
            {
                Assert.Throws<PlatformNotSupportedException>(() => DotQ5_0.DotAvx512(p, p, 32));
                Assert.Throws<PlatformNotSupportedException>(() => DotQ5_1.DotAvx512(p, p, 32));
            }
        }
    }
}
