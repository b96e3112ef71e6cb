using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// <see cref="DotQ6_K.Dot4"/> (one Q6_K row · four tokens, prefill's register block) against the one-token loop of the
/// same rung and flags: bit-identical per token (exact integer block sums, the same float steps), for every x64 way the
/// CPU runs (AVX-512 with and without GFNI, AVX2 with each of AVX-VNNI and GFNI on and off), block counts 1 to 22, every
/// weight kind, padded activation rows and a strided destination; and within 1e-5·M of the integer scalar rung.
/// (<see cref="BatchedMatMulTests"/> holds the same loops, driven by the matmul, to the float64 reference.)
/// </summary>
public sealed unsafe class Q6_KFourTokenTests
{
    public enum Way { Selected, Avx2, Avx2Vnni, Avx2Gfni, Avx2VnniGfni, Avx512, Avx512Gfni }

    private static bool Supported(Way way) => way switch
    {
        Way.Selected => true,
        Way.Avx2 => KernelRung.IsSupported(Rung.Avx2),
        Way.Avx2Vnni => KernelRung.IsSupported(Rung.Avx2) && AvxVnni.IsSupported,
        Way.Avx2Gfni => KernelRung.IsSupported(Rung.Avx2) && Gfni.V256.IsSupported,
        Way.Avx2VnniGfni => KernelRung.IsSupported(Rung.Avx2) && AvxVnni.IsSupported && Gfni.V256.IsSupported,
        Way.Avx512 => KernelRung.IsSupported(Rung.Avx512),
        _ => KernelRung.IsSupported(Rung.Avx512) && Gfni.V512.IsSupported,
    };

    public static IEnumerable<object[]> Cases()
    {
        foreach (Way way in Enum.GetValues<Way>())
            foreach (int nb in new[] { 1, 2, 3, 8, 11, 22 })
                foreach (string kind in new[] { "gaussian", "raw", "zeros" })
                    yield return new object[] { way, nb, kind };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FourTokensEqualTheOneTokenLoop(Way way, int nb, string kind)
    {
        if (!Supported(way))
        {
            // Reported through the batched-matmul tests' skipped variants; nothing of this way can run here.
            Assert.Throws<PlatformNotSupportedException>(() => Run4(way, null, null, 0, 256, null, 1));
            return;
        }
        int n = nb * 256;
        int seed = 7700 + nb * 10 + kind.Length;
        byte[] w = Weights(GgmlType.Q6_K, n, kind, seed);
        float[] wDeq = DequantizeWeights(GgmlType.Q6_K, w, n);
        long stride = ActivationQuant.BytesFor(GgmlType.Q6_K, n) + 64;
        var xs = new byte[4 * stride];
        var xqs = new byte[4][];
        for (int t = 0; t < 4; t++)
        {
            xqs[t] = QuantizeActivations(GgmlType.Q6_K, Activations(n, 256, seed + 1 + t));
            xqs[t].CopyTo(xs, t * stride);
        }
        const int dstStride = 5;
        var dst = new float[4 * dstStride];
        fixed (byte* pw = w) fixed (byte* px = xs) fixed (float* pd = dst)
        {
            Run4(way, pw, px, stride, n, pd, dstStride);
            for (int t = 0; t < 4; t++)
            {
                byte* x = px + t * stride;
                float one = way switch
                {
                    Way.Selected => DotQ6_K.Dot(pw, x, n),
                    Way.Avx2 => DotQ6_K.DotAvx2(pw, x, n, vnni: false, gfni: false),
                    Way.Avx2Vnni => DotQ6_K.DotAvx2(pw, x, n, vnni: true, gfni: false),
                    Way.Avx2Gfni => DotQ6_K.DotAvx2(pw, x, n, vnni: false, gfni: true),
                    Way.Avx2VnniGfni => DotQ6_K.DotAvx2(pw, x, n, vnni: true, gfni: true),
                    Way.Avx512 => DotQ6_K.DotAvx512(pw, x, n, gfni: false),
                    _ => DotQ6_K.DotAvx512(pw, x, n, gfni: true),
                };
                Assert.True(BitConverter.SingleToInt32Bits(one) == BitConverter.SingleToInt32Bits(dst[t * dstStride]),
                    $"{way} {nb} blocks {kind} token {t}: Dot4 {dst[t * dstStride]} vs Dot {one}");
                float scalar = DotQ6_K.DotScalar(pw, x, n);
                double m = Magnitude(GgmlType.Q6_K, w, wDeq, DequantizeActivations(GgmlType.Q6_K, xqs[t], n));
                Assert.True(Math.Abs(dst[t * dstStride] - scalar) <= 1e-5 * m, $"{way} {nb} blocks {kind} token {t}: {dst[t * dstStride]} vs scalar {scalar}");
            }
            for (int i = 0; i < dst.Length; i++)
                if (i % dstStride != 0) Assert.Equal(0f, dst[i]);
        }
    }

    private static void Run4(Way way, byte* w, byte* x, long stride, int n, float* dst, long dstStride)
    {
        switch (way)
        {
            case Way.Selected: DotQ6_K.Dot4(w, x, stride, n, dst, dstStride); break;
            case Way.Avx2: DotQ6_K.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: false, gfni: false); break;
            case Way.Avx2Vnni: DotQ6_K.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: true, gfni: false); break;
            case Way.Avx2Gfni: DotQ6_K.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: false, gfni: true); break;
            case Way.Avx2VnniGfni: DotQ6_K.Dot4Avx2(w, x, stride, n, dst, dstStride, vnni: true, gfni: true); break;
            case Way.Avx512: DotQ6_K.Dot4Avx512(w, x, stride, n, dst, dstStride, gfni: false); break;
            default: DotQ6_K.Dot4Avx512(w, x, stride, n, dst, dstStride, gfni: true); break;
        }
    }

    [Fact]
    public void RejectsALengthThatIsNotWholeBlocks()
    {
        var ex = Assert.ThrowsAny<ArgumentException>(() =>
        {
            fixed (byte* p = new byte[4096]) fixed (float* d = new float[4]) DotQ6_K.Dot4(p, p, 0, 300, d, 1);
        });
        Assert.Contains("DotQ6_K", ex.Message);
    }
}
