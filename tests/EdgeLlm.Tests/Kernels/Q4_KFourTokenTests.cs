using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// <see cref="DotQ4_K.Dot4"/> (one Q4_K row · four tokens, prefill's register block) against the one-token loop of the
/// same rung: bit-identical per token (same integer sums, same float order), for every x64 rung the CPU has, block
/// counts around the loop's structure, every weight kind, a strided destination; and within the usual tolerance of
/// the scalar rung.
/// </summary>
public sealed unsafe class Q4_KFourTokenTests
{
    public enum Way { Selected, Avx2, Avx2Vnni, Avx512 }

    public static IEnumerable<object[]> Cases()
    {
        var ways = new List<Way> { Way.Selected };
        if (KernelRung.IsSupported(Rung.Avx2)) ways.Add(Way.Avx2);
        if (KernelRung.IsSupported(Rung.Avx2) && AvxVnni.IsSupported) ways.Add(Way.Avx2Vnni);
        if (KernelRung.IsSupported(Rung.Avx512)) ways.Add(Way.Avx512);
        foreach (var way in ways)
            foreach (int nb in new[] { 1, 2, 3, 8, 11, 22 })
                foreach (string kind in new[] { "gaussian", "raw", "zeros" })
                    yield return new object[] { way, nb, kind };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FourTokensEqualTheOneTokenLoop(Way way, int nb, string kind)
    {
        int n = nb * 256;
        int seed = 7000 + nb * 10 + kind.Length;
        byte[] w = Weights(GgmlType.Q4_K, n, kind, seed);
        float[] wDeq = DequantizeWeights(GgmlType.Q4_K, w, n);
        long stride = ActivationQuant.BytesFor(GgmlType.Q4_K, n);
        var xs = new byte[4 * stride];
        var xqs = new byte[4][];
        for (int t = 0; t < 4; t++)
        {
            xqs[t] = QuantizeActivations(GgmlType.Q4_K, Activations(n, 256, seed + 1 + t));
            xqs[t].CopyTo(xs, t * stride);
        }
        const int dstStride = 5;
        var dst = new float[4 * dstStride];
        fixed (byte* pw = w) fixed (byte* px = xs) fixed (float* pd = dst)
        {
            switch (way)
            {
                case Way.Selected: DotQ4_K.Dot4(pw, px, stride, n, pd, dstStride); break;
                case Way.Avx2: DotQ4_K.Dot4Avx2(pw, px, stride, n, pd, dstStride, vnni: false); break;
                case Way.Avx2Vnni: DotQ4_K.Dot4Avx2(pw, px, stride, n, pd, dstStride, vnni: true); break;
                case Way.Avx512: DotQ4_K.Dot4Avx512(pw, px, stride, n, pd, dstStride); break;
            }
            for (int t = 0; t < 4; t++)
            {
                byte* x = px + t * stride;
                float one = way switch
                {
                    Way.Selected => DotQ4_K.Dot(pw, x, n),
                    Way.Avx2 => DotQ4_K.DotAvx2(pw, x, n, vnni: false),
                    Way.Avx2Vnni => DotQ4_K.DotAvx2(pw, x, n, vnni: true),
                    _ => DotQ4_K.DotAvx512(pw, x, n),
                };
                Assert.Equal(one, dst[t * dstStride]);
                float scalar = DotQ4_K.DotScalar(pw, x, n);
                double m = Magnitude(GgmlType.Q4_K, w, wDeq, DequantizeActivations(GgmlType.Q4_K, xqs[t], n));
                Assert.True(Math.Abs(dst[t * dstStride] - scalar) <= 1e-5 * m, $"{way} {nb} blocks {kind} token {t}: {dst[t * dstStride]} vs scalar {scalar}");
            }
            for (int i = 0; i < dst.Length; i++)
                if (i % dstStride != 0) Assert.Equal(0f, dst[i]);
        }
    }

    [Fact]
    public void RejectsALengthThatIsNotWholeBlocks()
    {
        var ex = Assert.ThrowsAny<ArgumentException>(() =>
        {
            fixed (byte* p = new byte[4096]) fixed (float* d = new float[4]) DotQ4_K.Dot4(p, p, 0, 300, d, 1);
        });
        Assert.Contains("DotQ4_K", ex.Message);
    }
}
