using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using static EdgeLlm.Tests.Kernels.KernelTestData;
using static EdgeLlm.Tests.Kernels.KernelVariants;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The integer dot kernels, every type × every rung this CPU runs × odd block counts × weight kinds. Tolerances:
/// <list type="bullet">
/// <item>rung vs scalar rung, and scalar rung vs the float reference over the dequantized activations x': the same
/// integer sums in a different float order, so |Δ| ≤ 1e-5·M with M = Σ|x'|(|w'| + 2μ) (see
/// <see cref="KernelTestData.Magnitude"/>): at most ~40 float roundings of 2^-24 each per term, with margin.</item>
/// <item>scalar rung vs the float reference over the unquantized x: |Σ w'(x − x')| ≤ Σ_blocks ‖w'_b‖₁·e_b, where e_b
/// bounds the per-element activation error: rounding to the grid costs d/2 = amax_b/254; Q8_0 also stores d as fp16,
/// adding 127·|d − fp16(d)| (≤ amax_b·2^-11 in fp16's normal range, all of d when it underflows); Q8_K keeps d in
/// f32. Both ×(1 + 1e-5), plus the 1e-5·M float slack.</item>
/// </list>
/// </summary>
public unsafe class QuantDotTests
{
    private static readonly string[] Kinds = { "gaussian", "raw", "zeros" };

    public static IEnumerable<object[]> Cases(bool withScalar)
    {
        foreach (GgmlType t in QuantTypes)
            foreach (Variant v in SupportedVariants())
            {
                if (v == Variant.Scalar && !withScalar) continue;
                int[] blocks = BlockSize(t) == 32 ? new[] { 1, 3, 7, 33 } : new[] { 1, 3, 5 };
                foreach (int nb in blocks)
                    foreach (string kind in Kinds)
                        yield return new object[] { t, v, nb, kind };
            }
    }

    public static IEnumerable<object[]> SimdCases() => Cases(withScalar: false);

    public static IEnumerable<object[]> ScalarCases()
    {
        foreach (GgmlType t in QuantTypes)
        {
            int[] blocks = BlockSize(t) == 32 ? new[] { 1, 3, 7, 33 } : new[] { 1, 3, 5 };
            foreach (int nb in blocks)
                foreach (string kind in Kinds)
                    yield return new object[] { t, nb, kind };
        }
    }

    private sealed record Case(int N, byte[] W, float[] X, byte[] Xq, float[] WDeq, float[] XDeq, double M);

    private static Case Make(GgmlType t, int nb, string kind)
    {
        int n = nb * BlockSize(t);
        int seed = (int)t * 1000 + nb * 10 + kind.Length;
        byte[] w = Weights(t, n, kind, seed);
        float[] x = Activations(n, BlockSize(t) == 32 ? 32 : 256, seed + 1);
        byte[] xq = QuantizeActivations(t, x);
        float[] wDeq = DequantizeWeights(t, w, n);
        float[] xDeq = DequantizeActivations(t, xq, n);
        return new Case(n, w, x, xq, wDeq, xDeq, Magnitude(t, w, wDeq, xDeq));
    }

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
    }

    [Theory]
    [MemberData(nameof(ScalarCases))]
    public void ScalarRungMatchesFloatReferenceOverQuantizedActivations(GgmlType t, int nb, string kind)
    {
        Case c = Make(t, nb, kind);
        float scalar = Dot(t, Variant.Scalar, c);
        float reference = QuantRef.Dot(t, c.W, c.XDeq);
        double tol = 1e-5 * c.M;
        Assert.True(Math.Abs(scalar - reference) <= tol, $"{t} {nb} blocks {kind}: {scalar} vs reference {reference} (tol {tol:G3})");
        Assert.True(c.M > 0, "the test data must not be all zero");
    }

    [Theory]
    [MemberData(nameof(ScalarCases))]
    public void ScalarRungIsWithinActivationQuantErrorOfUnquantizedDot(GgmlType t, int nb, string kind)
    {
        Case c = Make(t, nb, kind);
        float scalar = Dot(t, Variant.Scalar, c);
        float reference = QuantRef.Dot(t, c.W, c.X);
        bool q8_0 = ActivationQuant.FormatFor(t) == GgmlType.Q8_0;
        int bs = q8_0 ? 32 : 256;
        double bound = 1e-5 * c.M;
        for (int b = 0; b < c.N / bs; b++)
        {
            double amax = 0, wl1 = 0;
            for (int i = b * bs; i < (b + 1) * bs; i++)
            {
                amax = Math.Max(amax, Math.Abs((double)c.X[i]));
                wl1 += Math.Abs((double)c.WDeq[i]);
            }
            // Rounding to the grid: d/2 = amax/254. Q8_0 also stores d as fp16: 127·|d − fp16(d)| more, which is
            // ≤ amax·2^-11 in fp16's normal range and the whole d when d underflows (a 1e-20-sized block reads as 0).
            double e = amax / 254;
            if (q8_0)
            {
                double d = (float)amax / 127f;
                double d16 = (double)BitConverter.ToHalf(c.Xq, b * 34);
                e += 127 * Math.Abs(d - d16);
            }
            bound += wl1 * e * (1 + 1e-5);
        }
        double err = Math.Abs((double)scalar - reference);
        Assert.True(err <= bound, $"{t} {nb} blocks {kind}: {scalar} vs unquantized {reference}, error {err:G3} > bound {bound:G3}");
    }

    [Theory]
    [MemberData(nameof(SimdCases))]
    public void ZeroWeightsOrZeroActivationsGiveZero(GgmlType t, Variant v, int nb, string kind)
    {
        _ = kind;
        int n = nb * BlockSize(t);
        byte[] zeroW = new byte[GgmlTypes.RowBytes(t, n)];
        byte[] w = Weights(t, n, "raw", 7);
        byte[] xq = QuantizeActivations(t, Activations(n, BlockSize(t), 8));
        byte[] zeroXq = QuantizeActivations(t, new float[n]);
        fixed (byte* pzw = zeroW) fixed (byte* pw = w) fixed (byte* pxq = xq) fixed (byte* pzx = zeroXq)
        {
            Assert.Equal(0f, Run(t, v, pzw, pxq, n));
            Assert.Equal(0f, Run(t, v, pw, pzx, n));
        }
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
        foreach (GgmlType t in QuantTypes)
        {
            Case c = Make(t, 3, "raw");
            fixed (byte* w = c.W) fixed (byte* xq = c.Xq)
                Assert.Equal(Run(t, selected, w, xq, c.N), RunSelected(t, w, xq, c.N));
        }
    }

    public static IEnumerable<object[]> AllVariants() => SupportedVariants().Select(v => new object[] { v });

    /// <summary>One hand-computed block per type (values worked out in the comments), on every rung.</summary>
    [Theory]
    [MemberData(nameof(AllVariants))]
    public void HandComputedBlocks(Variant v)
    {
        // Q4_0: d = 1, every byte 0x9A -> low nibble 10 (q−8 = 2), high 9 (1). Q8_0 x: d = 0.5, all q = 3.
        // isum = 16·2·3 + 16·1·3 = 144; result = 1·0.5·144 = 72.
        byte[] w40 = new byte[18];
        w40[1] = 0x3C;
        Array.Fill(w40, (byte)0x9A, 2, 16);
        byte[] x8 = Q8Block(0x3800, _ => 3);
        Assert.Equal(72f, Hand(GgmlType.Q4_0, v, w40, x8, 32));

        // Q8_0: d = 2, q_j = j − 16; x d = 0.5, all q = 1. isum = Σ(j − 16) = −16; result = 2·0.5·(−16) = −16.
        byte[] w80 = Q8Block(0x4000, j => (sbyte)(j - 16));
        Assert.Equal(-16f, Hand(GgmlType.Q8_0, v, w80, Q8Block(0x3800, _ => 1), 32));

        // Q4_K: d = dmin = 1; all sc_j = 1 and m_j = 1 (bytes 0..7 = 1, 8..11 = 0x11); qs all 0x31 -> low 1, high 3.
        // Q8_K x: d = 0.25, all q = 2, bsums 32. isum = 4·(32·1·2 + 32·3·2) = 1024; msum = 16·32·1 = 512;
        // result = 0.25·1024 − 0.25·512 = 128.
        byte[] w4k = new byte[144];
        w4k[1] = 0x3C; w4k[3] = 0x3C;
        for (int i = 4; i < 12; i++) w4k[i] = 1;
        for (int i = 12; i < 16; i++) w4k[i] = 0x11;
        Array.Fill(w4k, (byte)0x31, 16, 128);
        Assert.Equal(128f, Hand(GgmlType.Q4_K, v, w4k, Q8KBlock(0.25f, 2), 256));

        // Q6_K: ql all 0x21 (low 1, high 2), qh all 0xE4 (bit pairs 0, 1, 2, 3) -> q = 1, 17, 34, 50, minus 32:
        // −31, −15, 2, 18 for the weights l, l+32, l+64, l+96; scales all 2, d = 1. x: d = 0.5, all q = 1.
        // isum = 2 halves · 32 · 2·(−31 − 15 + 2 + 18) = −3328; result = 0.5·(−3328) = −1664.
        byte[] w6k = new byte[210];
        Array.Fill(w6k, (byte)0x21, 0, 128);
        Array.Fill(w6k, (byte)0xE4, 128, 64);
        Array.Fill(w6k, (byte)2, 192, 16);
        w6k[209] = 0x3C;
        Assert.Equal(-1664f, Hand(GgmlType.Q6_K, v, w6k, Q8KBlock(0.5f, 1), 256));
    }

    private static byte[] Q8Block(ushort d, Func<int, sbyte> q)
    {
        var b = new byte[34];
        b[0] = (byte)d;
        b[1] = (byte)(d >> 8);
        for (int j = 0; j < 32; j++) b[2 + j] = (byte)q(j);
        return b;
    }

    private static byte[] Q8KBlock(float d, sbyte q)
    {
        var b = new byte[ActivationQuant.Q8_KBlockBytes];
        BitConverter.TryWriteBytes(b.AsSpan(0, 4), d);
        Array.Fill(b, (byte)q, 4, 256);
        for (int g = 0; g < 16; g++) BitConverter.TryWriteBytes(b.AsSpan(260 + 2 * g, 2), (short)(16 * q));
        return b;
    }

    private static float Hand(GgmlType t, Variant v, byte[] w, byte[] xq, int n)
    {
        fixed (byte* pw = w) fixed (byte* px = xq) return Run(t, v, pw, px, n);
    }

    [Fact]
    public void BadLengthsThrow()
    {
        byte[] buf = new byte[1024];
        fixed (byte* pinned = buf)
        {
            byte* p = pinned;
            Assert.Throws<ArgumentException>(() => DotQ4_0.Dot(p, p, 33));
            Assert.Throws<ArgumentException>(() => DotQ8_0.DotScalar(p, p, -32));
            Assert.Throws<ArgumentException>(() => DotQ4_K.Dot(p, p, 128));
            var e = Assert.Throws<ArgumentException>(() => DotQ6_K.Dot(p, p, 300));
            Assert.Contains("DotQ6_K", e.Message);
        }
    }

    [Fact]
    public void UnsupportedRungThrows()
    {
        byte[] buf = new byte[64];
        fixed (byte* pinned = buf)
        {
            byte* p = pinned;
            if (!KernelRung.IsSupported(Rung.Neon))
                Assert.Throws<PlatformNotSupportedException>(() => DotQ4_0.DotNeon(p, p, 32));
            if (!KernelRung.IsSupported(Rung.Avx512))
                Assert.Throws<PlatformNotSupportedException>(() => DotQ4_0.DotAvx512(p, p, 32));
        }
    }
}
