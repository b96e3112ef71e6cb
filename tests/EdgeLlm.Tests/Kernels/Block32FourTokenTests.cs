using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The four-token loops (Dot4: one row · four tokens, prefill's register block) of Q4_1, Q5_0, Q5_1 and IQ4_NL against
/// the one-token loop of the same rung: bit-identical per token (same integer sums, same float order), for every x64
/// rung this CPU has, block counts around the loops' structure (eight-block steps, pairs, an odd block), every weight
/// kind, padded activation rows and a strided destination; and within the usual tolerance of the scalar rung.
/// </summary>
public sealed unsafe class Block32FourTokenTests
{
    public enum Way { Selected, Avx2, Avx2Vnni, Avx512 }

    private static readonly GgmlType[] Types = { GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL };

    public static IEnumerable<object[]> Cases()
    {
        var ways = new List<Way> { Way.Selected };
        if (KernelRung.IsSupported(Rung.Avx2)) ways.Add(Way.Avx2);
        if (KernelRung.IsSupported(Rung.Avx2) && AvxVnni.IsSupported) ways.Add(Way.Avx2Vnni);
        if (KernelRung.IsSupported(Rung.Avx512)) ways.Add(Way.Avx512);
        foreach (GgmlType t in Types)
            foreach (var way in ways)
                foreach (int nb in new[] { 1, 2, 3, 8, 11, 17, 127 })
                    foreach (string kind in new[] { "gaussian", "raw", "extreme" })
                        yield return new object[] { t, way, nb, kind };
    }

    private static void Dot4(GgmlType t, Way way, byte* w, byte* x, long stride, int n, float* dst, long dstStride)
    {
        switch (t, way)
        {
            case (GgmlType.Q4_1, Way.Selected): DotQ4_1.Dot4(w, x, stride, n, dst, dstStride); break;
            case (GgmlType.Q4_1, Way.Avx2): DotQ4_1.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: false); break;
            case (GgmlType.Q4_1, Way.Avx2Vnni): DotQ4_1.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: true); break;
            case (GgmlType.Q4_1, Way.Avx512): DotQ4_1.Dot4Avx512(w, x, stride, n, dst, dstStride); break;
            case (GgmlType.Q5_0, Way.Selected): DotQ5_0.Dot4(w, x, stride, n, dst, dstStride); break;
            case (GgmlType.Q5_0, Way.Avx2): DotQ5_0.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: false); break;
            case (GgmlType.Q5_0, Way.Avx2Vnni): DotQ5_0.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: true); break;
            case (GgmlType.Q5_0, Way.Avx512): DotQ5_0.Dot4Avx512(w, x, stride, n, dst, dstStride); break;
            case (GgmlType.Q5_1, Way.Selected): DotQ5_1.Dot4(w, x, stride, n, dst, dstStride); break;
            case (GgmlType.Q5_1, Way.Avx2): DotQ5_1.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: false); break;
            case (GgmlType.Q5_1, Way.Avx2Vnni): DotQ5_1.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: true); break;
            case (GgmlType.Q5_1, Way.Avx512): DotQ5_1.Dot4Avx512(w, x, stride, n, dst, dstStride); break;
            case (GgmlType.IQ4_NL, Way.Selected): DotIQ4_NL.Dot4(w, x, stride, n, dst, dstStride); break;
            case (GgmlType.IQ4_NL, Way.Avx2): DotIQ4_NL.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: false); break;
            case (GgmlType.IQ4_NL, Way.Avx2Vnni): DotIQ4_NL.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: true); break;
            default: DotIQ4_NL.Dot4Avx512(w, x, stride, n, dst, dstStride); break;
        }
    }

    private static float One(GgmlType t, Way way, byte* w, byte* x, int n) => way switch
    {
        Way.Selected => KernelVariants.RunSelected(t, w, x, n),
        Way.Avx2 => KernelVariants.Run(t, Variant.Avx2, w, x, n),
        Way.Avx2Vnni => KernelVariants.Run(t, Variant.Avx2Vnni, w, x, n),
        _ => KernelVariants.Run(t, Variant.Avx512, w, x, n),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FourTokensEqualTheOneTokenLoop(GgmlType t, Way way, int nb, string kind)
    {
        int n = nb * 32;
        int seed = 9000 + (int)t * 100 + nb * 10 + kind.Length;
        byte[] w = Block32DotTests.Weights(t, n, kind, seed);
        float[] wDeq = KernelTestData.DequantizeWeights(t, w, n);
        long stride = ActivationQuant.BytesFor(t, n) + 40; // padded rows
        var xs = new byte[4 * stride];
        var m = new double[4];
        for (int k = 0; k < 4; k++)
        {
            byte[] xq = KernelTestData.QuantizeActivations(t, Block32DotTests.Activations(kind, n, seed + 1 + k));
            xq.CopyTo(xs, k * stride);
            m[k] = Block32DotTests.Magnitude(t, w, xq, wDeq, KernelTestData.DequantizeActivations(t, xq, n));
        }
        const int dstStride = 3;
        var dst = new float[4 * dstStride];
        fixed (byte* pw = w) fixed (byte* px = xs) fixed (float* pd = dst)
        {
            Dot4(t, way, pw, px, stride, n, pd, dstStride);
            for (int k = 0; k < 4; k++)
            {
                float four = dst[k * dstStride];
                float one = One(t, way, pw, px + k * stride, n);
                Assert.True(BitConverter.SingleToInt32Bits(one) == BitConverter.SingleToInt32Bits(four),
                    $"{t} {way} {nb} blocks {kind} token {k}: Dot4 {four} vs Dot {one}");
                float scalar = KernelVariants.Run(t, Variant.Scalar, pw, px + k * stride, n);
                double tol = 1e-5 * m[k];
                Assert.True(Math.Abs(four - scalar) <= tol, $"{t} {way} {nb} blocks {kind} token {k}: {four} vs scalar {scalar} (tol {tol:G3})");
            }
            for (int i = 0; i < dst.Length; i++)
                if (i % dstStride != 0) Assert.Equal(0f, dst[i]);
        }
    }

    [Fact]
    public void Dot4AcceleratedOnTheX64Rungs()
    {
        bool x64 = KernelRung.Selected is Rung.Avx512 or Rung.Avx2;
        Assert.Equal(x64, DotQ4_1.Dot4Accelerated);
        Assert.Equal(x64, DotQ5_0.Dot4Accelerated);
        Assert.Equal(x64, DotQ5_1.Dot4Accelerated);
        Assert.Equal(x64, DotIQ4_NL.Dot4Accelerated);
    }
}
