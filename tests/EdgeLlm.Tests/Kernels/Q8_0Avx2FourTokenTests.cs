using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// <see cref="DotQ8_0.Dot4Avx2"/> (one Q8_0 row · four tokens on AVX2, |q| once per block for the four tokens) with
/// AVX-VNNI off and on, against the integer scalar rung per token within 1e-5·M (M = Σ|x'||w'|,
/// <see cref="KernelTestData.Magnitude"/>): block counts around the eight-block step, every weight kind ("raw" with
/// q = −128 in the first block), padded activation rows (so a token read at the wrong stride is off) and a strided
/// destination whose gaps must stay untouched. Variants the CPU lacks are skipped.
/// </summary>
public sealed unsafe class Q8_0Avx2FourTokenTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (int nb in new[] { 1, 7, 8, 9, 16, 17, 33 })
            foreach (string kind in new[] { "gaussian", "raw", "zeros" })
                yield return new object[] { nb, kind };
    }

    [VariantTheory(Variant.Avx2)]
    [MemberData(nameof(Cases))]
    public void Avx2MatchesTheScalarRung(int nb, string kind) => Check(nb, kind, vnni: false);

    [VariantTheory(Variant.Avx2Vnni)]
    [MemberData(nameof(Cases))]
    public void Avx2VnniMatchesTheScalarRung(int nb, string kind) => Check(nb, kind, vnni: true);

    private static void Check(int nb, string kind, bool vnni)
    {
        int n = nb * 32;
        int seed = 9100 + nb * 10 + kind.Length;
        byte[] w = Weights(GgmlType.Q8_0, n, kind, seed);
        if (kind == "raw") w[2] = 0x80;
        float[] wDeq = DequantizeWeights(GgmlType.Q8_0, w, n);
        long stride = ActivationQuant.BytesFor(GgmlType.Q8_0, n) + 36;
        var xs = new byte[4 * stride];
        var xqs = new byte[4][];
        for (int t = 0; t < 4; t++)
        {
            // Each token scaled differently, so one read in place of another is far outside the tolerance.
            float[] a = Activations(n, 32, seed + 1 + t);
            for (int i = 0; i < n; i++) a[i] *= 1 + 2 * t;
            xqs[t] = QuantizeActivations(GgmlType.Q8_0, a);
            xqs[t].CopyTo(xs, t * stride);
        }
        const int dstStride = 3;
        var dst = new float[4 * dstStride];
        fixed (byte* pw = w) fixed (byte* px = xs) fixed (float* pd = dst)
        {
            DotQ8_0.Dot4Avx2(pw, px, stride, n, pd, dstStride, vnni);
            for (int t = 0; t < 4; t++)
            {
                float scalar = DotQ8_0.DotScalar(pw, px + t * stride, n);
                double m = Magnitude(GgmlType.Q8_0, w, wDeq, DequantizeActivations(GgmlType.Q8_0, xqs[t], n));
                Assert.True(Math.Abs(dst[t * dstStride] - scalar) <= 1e-5 * m,
                    $"vnni {vnni} {nb} blocks {kind} token {t}: {dst[t * dstStride]} vs scalar {scalar} (tol {1e-5 * m:G3})");
            }
            for (int i = 0; i < dst.Length; i++)
                if (i % dstStride != 0) Assert.Equal(0f, dst[i]);
        }
    }
}
