using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// <see cref="DotQ8_0.Dot4Avx512"/> (one Q8_0 row · four tokens, sign-applied activations · |q| in vpmaddubsw) against
/// the integer scalar rung per token, within 1e-5·M (M = Σ|x'||w'|, <see cref="KernelTestData.Magnitude"/>): block
/// counts around the eight-block step, every weight kind ("raw" has q = −128, whose |q| is 128 as an unsigned byte),
/// padded activation rows and a strided destination. Skipped without AVX-512.
/// </summary>
public sealed unsafe class Q8_0FourTokenTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (int nb in new[] { 1, 7, 8, 9, 16, 17, 33 })
            foreach (string kind in new[] { "gaussian", "raw", "zeros" })
                yield return new object[] { nb, kind };
    }

    [VariantTheory(Variant.Avx512NoVbmi)]
    [MemberData(nameof(Cases))]
    public void FourTokensMatchTheScalarRung(int nb, string kind)
    {
        int n = nb * 32;
        int seed = 8800 + nb * 10 + kind.Length;
        byte[] w = Weights(GgmlType.Q8_0, n, kind, seed);
        if (kind == "raw") w[2] = 0x80; // q = −128 in the first block
        float[] wDeq = DequantizeWeights(GgmlType.Q8_0, w, n);
        long stride = ActivationQuant.BytesFor(GgmlType.Q8_0, n) + 36;
        var xs = new byte[4 * stride];
        var xqs = new byte[4][];
        for (int t = 0; t < 4; t++)
        {
            xqs[t] = QuantizeActivations(GgmlType.Q8_0, Activations(n, 32, seed + 1 + t));
            xqs[t].CopyTo(xs, t * stride);
        }
        const int dstStride = 3;
        var dst = new float[4 * dstStride];
        fixed (byte* pw = w) fixed (byte* px = xs) fixed (float* pd = dst)
        {
            DotQ8_0.Dot4Avx512(pw, px, stride, n, pd, dstStride);
            for (int t = 0; t < 4; t++)
            {
                float scalar = DotQ8_0.DotScalar(pw, px + t * stride, n);
                double m = Magnitude(GgmlType.Q8_0, w, wDeq, DequantizeActivations(GgmlType.Q8_0, xqs[t], n));
                Assert.True(Math.Abs(dst[t * dstStride] - scalar) <= 1e-5 * m, $"{nb} blocks {kind} token {t}: {dst[t * dstStride]} vs scalar {scalar} (tol {1e-5 * m:G3})");
            }
            for (int i = 0; i < dst.Length; i++)
                if (i % dstStride != 0) Assert.Equal(0f, dst[i]);
        }
    }
}
