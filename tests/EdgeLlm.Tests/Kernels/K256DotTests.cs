using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using static EdgeLlm.Tests.Kernels.K256TestData;
using static EdgeLlm.Tests.Kernels.KernelVariants;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The integer dot kernels of the 256-weight types added for issue 12 (Q5_K, IQ4_XS, Q3_K, Q2_K) with Q8_K
/// activations: every rung this CPU runs against the scalar rung, and the scalar rung against <see cref="QuantRef.Dot"/>
/// of the weights with the Q8_K-dequantized activations, on 1, 3 and 17 blocks (256, 768, 4096 + 256 values) of
/// random ("raw": every bit pattern, random finite fp16 scales), quantized-Gaussian, half-zero and extreme weights
/// (blocks of all-ones and all-zero bytes: largest q, scales and mins; most negative IQ4_XS values and scales), with
/// Gaussian activations (zero, tiny and outlier blocks) or all-equal ones (every q8 = −127). Tolerance as in
/// <see cref="QuantDotTests"/>: 1e-5·M with M = Σ|x'|(|w'| + 2μ), μ the sub-block's dmin·m where the type has mins.
/// </summary>
public unsafe class K256DotTests
{
    private static GgmlType[] Types => K256TestData.Types;
    private static string[] Kinds => K256TestData.Kinds;
    private static int[] BlockCounts => K256TestData.BlockCounts;

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

    public static IEnumerable<object[]> TypeCases() => Types.Select(t => new object[] { t });

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
        Assert.True(c.M > 0, "the test data must not be all zero");
        Assert.True(Math.Abs(scalar - reference) <= tol, $"{t} {nb} blocks {kind}: {scalar} vs reference {reference} (tol {tol:G3})");
    }

    [Theory]
    [MemberData(nameof(TypeCases))]
    public void ZeroWeightsOrZeroActivationsGiveZeroOnEveryRung(GgmlType t)
    {
        const int n = 768;
        byte[] zeroW = new byte[GgmlTypes.RowBytes(t, n)];
        byte[] w = Weights(t, n, "raw", 7);
        byte[] xq = QuantizeQ8_K(Activations(n, 8, ones: false));
        byte[] zeroXq = QuantizeQ8_K(new float[n]);
        fixed (byte* pzw = zeroW) fixed (byte* pw = w) fixed (byte* pxq = xq) fixed (byte* pzx = zeroXq)
            foreach (Variant v in SupportedVariants())
            {
                Assert.Equal(0f, Run(t, v, pzw, pxq, n));
                Assert.Equal(0f, Run(t, v, pw, pzx, n));
            }
    }

    [Theory]
    [MemberData(nameof(TypeCases))]
    public void DotUsesTheSelectedRung(GgmlType t)
    {
        Variant selected = KernelRung.Selected switch
        {
            Rung.Avx512 => Variant.Avx512NoVbmi,
            Rung.Avx2 => KernelRung.UseAvxVnni ? Variant.Avx2Vnni : Variant.Avx2,
            Rung.Neon => Variant.Neon,
            _ => Variant.Scalar,
        };
        Case c = Make(t, 3, "raw");
        fixed (byte* w = c.W) fixed (byte* xq = c.Xq)
            Assert.Equal(Run(t, selected, w, xq, c.N), RunSelected(t, w, xq, c.N));
    }

    [Theory]
    [MemberData(nameof(TypeCases))]
    public void BadLengthsThrow(GgmlType t)
    {
        byte[] buf = new byte[1024];
        var e = Assert.Throws<ArgumentException>(() =>
        {
            fixed (byte* p = buf) RunSelected(t, p, p, 300);
        });
        Assert.Contains("300", e.Message);
        Assert.Throws<ArgumentException>(() =>
        {
            fixed (byte* p = buf) Run(t, Variant.Scalar, p, p, -256);
        });
    }

    public enum Way { Selected, Avx2, Avx2Vnni, Avx512 }

    public static IEnumerable<object[]> FourTokenCases()
    {
        var ways = new List<Way> { Way.Selected };
        if (KernelRung.IsSupported(Rung.Avx2)) ways.Add(Way.Avx2);
        if (KernelRung.IsSupported(Rung.Avx2) && AvxVnni.IsSupported) ways.Add(Way.Avx2Vnni);
        if (KernelRung.IsSupported(Rung.Avx512)) ways.Add(Way.Avx512);
        foreach (GgmlType t in Types)
            foreach (Way way in ways)
                foreach (int nb in new[] { 1, 3, 17 })
                    foreach (string kind in Kinds)
                        yield return new object[] { t, way, nb, kind };
    }

    private static void Four(GgmlType t, Way way, byte* w, byte* x, long stride, int n, float* dst, long dstStride)
    {
        switch (t, way)
        {
            case (GgmlType.Q5_K, Way.Selected): DotQ5_K.Dot4(w, x, stride, n, dst, dstStride); break;
            case (GgmlType.Q5_K, Way.Avx2): DotQ5_K.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: false); break;
            case (GgmlType.Q5_K, Way.Avx2Vnni): DotQ5_K.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: true); break;
            case (GgmlType.Q5_K, Way.Avx512): DotQ5_K.Dot4Avx512(w, x, stride, n, dst, dstStride); break;
            case (GgmlType.IQ4_XS, Way.Selected): DotIQ4_XS.Dot4(w, x, stride, n, dst, dstStride); break;
            case (GgmlType.IQ4_XS, Way.Avx2): DotIQ4_XS.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: false); break;
            case (GgmlType.IQ4_XS, Way.Avx2Vnni): DotIQ4_XS.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: true); break;
            case (GgmlType.IQ4_XS, Way.Avx512): DotIQ4_XS.Dot4Avx512(w, x, stride, n, dst, dstStride); break;
            case (GgmlType.Q3_K, Way.Selected): DotQ3_K.Dot4(w, x, stride, n, dst, dstStride); break;
            case (GgmlType.Q3_K, Way.Avx2): DotQ3_K.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: false); break;
            case (GgmlType.Q3_K, Way.Avx2Vnni): DotQ3_K.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: true); break;
            case (GgmlType.Q3_K, Way.Avx512): DotQ3_K.Dot4Avx512(w, x, stride, n, dst, dstStride); break;
            case (_, Way.Selected): DotQ2_K.Dot4(w, x, stride, n, dst, dstStride); break;
            case (_, Way.Avx2): DotQ2_K.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: false); break;
            case (_, Way.Avx2Vnni): DotQ2_K.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: true); break;
            default: DotQ2_K.Dot4Avx512(w, x, stride, n, dst, dstStride); break;
        }
    }

    private static bool Accelerated(GgmlType t) => t switch
    {
        GgmlType.Q5_K => DotQ5_K.Dot4Accelerated,
        GgmlType.IQ4_XS => DotIQ4_XS.Dot4Accelerated,
        GgmlType.Q3_K => DotQ3_K.Dot4Accelerated,
        _ => DotQ2_K.Dot4Accelerated,
    };

    private static float One(GgmlType t, Way way, byte* w, byte* x, int n) => way switch
    {
        Way.Selected => RunSelected(t, w, x, n),
        Way.Avx2 => Run(t, Variant.Avx2, w, x, n),
        Way.Avx2Vnni => Run(t, Variant.Avx2Vnni, w, x, n),
        _ => Run(t, Variant.Avx512NoVbmi, w, x, n),
    };

    /// <summary>The four-token loops: bit-identical to the same rung's one-token loop per token, within tolerance of the scalar rung.</summary>
    [Theory]
    [MemberData(nameof(FourTokenCases))]
    public void FourTokensEqualTheOneTokenLoop(GgmlType t, Way way, int nb, string kind)
    {
        var cases = new Case[4];
        for (int k = 0; k < 4; k++) cases[k] = Make(t, nb, kind, seedOffset: k);
        int n = nb * 256;
        long stride = cases[0].Xq.Length;
        var xs = new byte[4 * stride];
        for (int k = 0; k < 4; k++) cases[k].Xq.CopyTo(xs, k * stride);
        const int dstStride = 3;
        var dst = new float[4 * dstStride];
        fixed (byte* pw = cases[0].W) fixed (byte* px = xs) fixed (float* pd = dst)
        {
            Four(t, way, pw, px, stride, n, pd, dstStride);
            for (int k = 0; k < 4; k++)
            {
                byte* x = px + k * stride;
                float one = One(t, way, pw, x, n);
                Assert.Equal(one, dst[k * dstStride]);
                float scalar = Run(t, Variant.Scalar, pw, x, n);
                Assert.True(Math.Abs(dst[k * dstStride] - scalar) <= 1e-5 * Magnitude(t, cases[0].W, cases[0].WDeq, cases[k].XDeq),
                    $"{t} {way} {nb} blocks {kind} token {k}: {dst[k * dstStride]} vs scalar {scalar}");
            }
            for (int i = 0; i < dst.Length; i++)
                if (i % dstStride != 0) Assert.Equal(0f, dst[i]);
        }
        Assert.Equal(KernelRung.Selected is Rung.Avx512 or Rung.Avx2, Accelerated(t));
    }
}
