using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Quant;
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
    public static readonly GgmlType[] Types = { GgmlType.Q5_K, GgmlType.IQ4_XS };
    private static readonly string[] Kinds = { "gaussian", "raw", "zeros", "extreme" };
    private static readonly int[] BlockCounts = { 1, 3, 17 };

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

    internal sealed record Case(int N, byte[] W, byte[] Xq, float[] WDeq, float[] XDeq, double M);

    /// <summary>Weights of one kind; the fp16 fields of "raw" and "extreme" blocks are set per type.</summary>
    internal static byte[] Weights(GgmlType t, int n, string kind, int seed)
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
        float[] f = QuantTestData.Gaussian(n, seed, 0.02);
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

    /// <summary>dmin·m of element i's sub-block (0 for types without mins).</summary>
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

    internal static byte[] QuantizeQ8_K(float[] x)
    {
        var xq = new byte[x.Length / 256 * ActivationQuant.Q8_KBlockBytes];
        fixed (float* px = x) fixed (byte* pq = xq) ActivationQuant.QuantizeQ8_K(px, pq, x.Length);
        return xq;
    }

    internal static float[] DequantizeQ8_K(byte[] xq, int n)
    {
        var x = new float[n];
        fixed (byte* pq = xq) fixed (float* px = x) ActivationQuant.DequantizeQ8_K(pq, px, n);
        return x;
    }

    internal static Case Make(GgmlType t, int nb, string kind, int seedOffset = 0)
    {
        int n = nb * 256;
        int seed = (int)t * 1000 + nb * 10 + kind.Length + seedOffset;
        byte[] w = Weights(t, n, kind, seed);
        float[] x = kind == "extreme" && seedOffset == 0 ? Enumerable.Repeat(1f, n).ToArray() : KernelTestData.Activations(n, 256, seed + 1);
        byte[] xq = QuantizeQ8_K(x);
        var wDeq = new float[n];
        QuantRef.DequantizeRow(t, w, wDeq);
        float[] xDeq = DequantizeQ8_K(xq, n);
        return new Case(n, w, xq, wDeq, xDeq, Magnitude(t, w, wDeq, xDeq));
    }

    /// <summary>Σ|x'|(|w'| + 2μ): bounds Σ_blocks of |each float term| the kernels add up.</summary>
    internal static double Magnitude(GgmlType t, byte[] w, float[] wDeq, float[] xDeq)
    {
        double m = 0;
        for (int i = 0; i < xDeq.Length; i++) m += Math.Abs((double)xDeq[i]) * (Math.Abs((double)wDeq[i]) + 2 * MinTerm(t, w, i));
        return m;
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
        byte[] xq = QuantizeQ8_K(KernelTestData.Activations(n, 256, 8));
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
        foreach (Way way in ways)
            foreach (int nb in new[] { 1, 3, 17 })
                foreach (string kind in Kinds)
                    yield return new object[] { way, nb, kind };
    }

    /// <summary>Q5_K's four-token loop: bit-identical to the same rung's one-token loop per token, within tolerance of the scalar rung.</summary>
    [Theory]
    [MemberData(nameof(FourTokenCases))]
    public void Q5_KFourTokensEqualTheOneTokenLoop(Way way, int nb, string kind)
    {
        const GgmlType t = GgmlType.Q5_K;
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
            switch (way)
            {
                case Way.Selected: DotQ5_K.Dot4(pw, px, stride, n, pd, dstStride); break;
                case Way.Avx2: DotQ5_K.Dot4Avx2(pw, px, stride, n, pd, dstStride, vnni: false); break;
                case Way.Avx2Vnni: DotQ5_K.Dot4Avx2(pw, px, stride, n, pd, dstStride, vnni: true); break;
                case Way.Avx512: DotQ5_K.Dot4Avx512(pw, px, stride, n, pd, dstStride); break;
            }
            for (int k = 0; k < 4; k++)
            {
                byte* x = px + k * stride;
                float one = way switch
                {
                    Way.Selected => DotQ5_K.Dot(pw, x, n),
                    Way.Avx2 => DotQ5_K.DotAvx2(pw, x, n, vnni: false),
                    Way.Avx2Vnni => DotQ5_K.DotAvx2(pw, x, n, vnni: true),
                    _ => DotQ5_K.DotAvx512(pw, x, n),
                };
                Assert.Equal(one, dst[k * dstStride]);
                float scalar = DotQ5_K.DotScalar(pw, x, n);
                Assert.True(Math.Abs(dst[k * dstStride] - scalar) <= 1e-5 * Magnitude(t, cases[0].W, cases[0].WDeq, cases[k].XDeq),
                    $"{way} {nb} blocks {kind} token {k}: {dst[k * dstStride]} vs scalar {scalar}");
            }
            for (int i = 0; i < dst.Length; i++)
                if (i % dstStride != 0) Assert.Equal(0f, dst[i]);
        }
        Assert.Equal(KernelRung.Selected is Rung.Avx512 or Rung.Avx2, DotQ5_K.Dot4Accelerated);
    }
}
