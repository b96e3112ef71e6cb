using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Quant;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.X64KDecode;

/// <summary>
/// The x64 Q6_K loops on rows whose block count is not a multiple of eight, rows mixing subnormal, normal, zero and
/// negative fp16 d from block to block, and extreme int8 group scales (−128, 127, 0), for every x64 variant the host
/// has (AVX2 with AVX-VNNI and GFNI each off and on, AVX-512 with GFNI off and on), against a float64 dot of the
/// reference dequantized weights and activations; the four-token loops stay bit-identical to the one-token loop.
/// (A version that converted d eight blocks at a time by a masked gather was measured 10% slower on the 8-block rows
/// of output.weight and dropped; these cases stay as the guard for any such change.)
/// </summary>
public sealed unsafe class Q6_KX64BlockScaleTests
{
    public enum Way { Avx2, Avx2Vnni, Avx2Gfni, Avx2VnniGfni, Avx512, Avx512Gfni }

    public static IEnumerable<object[]> Cases()
    {
        var ways = new List<Way>();
        if (KernelRung.IsSupported(Rung.Avx2))
        {
            ways.Add(Way.Avx2);
            if (AvxVnni.IsSupported) ways.Add(Way.Avx2Vnni);
            if (Gfni.V256.IsSupported) ways.Add(Way.Avx2Gfni);
            if (AvxVnni.IsSupported && Gfni.V256.IsSupported) ways.Add(Way.Avx2VnniGfni);
        }
        if (KernelRung.IsSupported(Rung.Avx512))
        {
            ways.Add(Way.Avx512);
            if (Gfni.V512.IsSupported) ways.Add(Way.Avx512Gfni);
        }
        foreach (Way way in ways)
            foreach (string header in new[] { "mixed", "subnormal", "smallest" })
                foreach (string scales in new[] { "random", "extreme" })
                    foreach (int nb in new[] { 1, 7, 8, 9, 17, 22 })
                        yield return new object[] { way, header, scales, nb };
    }

    private static byte[] Row(int nb, string header, string scales, Random rng)
    {
        const int bb = DotQ6_K.BlockBytes;
        var row = new byte[nb * bb];
        rng.NextBytes(row);
        sbyte[] extreme = { -128, 127, 0, -1, 1, -128, 127, 64 };
        for (int b = 0; b < nb; b++)
        {
            int o = b * bb;
            if (scales == "extreme")
                for (int g = 0; g < 16; g++) row[o + 192 + g] = (byte)extreme[(g + b) % extreme.Length];
            ushort d = header switch
            {
                "subnormal" => (ushort)rng.Next(1, 1024),
                "smallest" => (ushort)1,
                _ => (b % 4) switch
                {
                    0 => (ushort)rng.Next(1, 1024),                           // subnormal
                    1 => (ushort)((rng.Next(1, 16) << 10) | rng.Next(1024)),  // normal, below 1
                    2 => (ushort)0,                                           // zero
                    _ => (ushort)(0x8000 | rng.Next(1, 1024)),                // negative subnormal
                },
            };
            row[o + 208] = (byte)d;
            row[o + 209] = (byte)(d >> 8);
        }
        return row;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void OneTokenLoopMatchesFloat64ReferenceAndFourTokenLoop(Way way, string header, string scales, int nb)
    {
        int n = nb * 256;
        var rng = new Random(HashCode.Combine((int)way, header.Length, scales.Length, nb) & 0x7fffffff);
        byte[] w = Row(nb, header, scales, rng);
        float[] wDeq = DequantizeWeights(GgmlType.Q6_K, w, n);
        long stride = ActivationQuant.BytesFor(GgmlType.Q6_K, n);
        var xs = new byte[4 * stride];
        var xDeq = new float[4][];
        for (int k = 0; k < 4; k++)
        {
            byte[] xq = QuantizeActivations(GgmlType.Q6_K, QuantTestData.Gaussian(n, 700 + k + nb));
            xq.CopyTo(xs, k * stride);
            xDeq[k] = DequantizeActivations(GgmlType.Q6_K, xq, n);
        }
        bool vnni = way is Way.Avx2Vnni or Way.Avx2VnniGfni, gfni = way is Way.Avx2Gfni or Way.Avx2VnniGfni or Way.Avx512Gfni;
        bool avx512 = way is Way.Avx512 or Way.Avx512Gfni;
        var four = new float[4];
        fixed (byte* pw = w) fixed (byte* px = xs) fixed (float* pf = four)
        {
            if (avx512) DotQ6_K.Dot4Avx512(pw, px, stride, n, pf, 1, gfni);
            else DotQ6_K.Dot4Avx2(pw, px, stride, n, pf, 1, vnni, gfni);
            for (int k = 0; k < 4; k++)
            {
                byte* x = px + k * stride;
                float got = avx512 ? DotQ6_K.DotAvx512(pw, x, n, gfni) : DotQ6_K.DotAvx2(pw, x, n, vnni, gfni);
                double reference = 0, magnitude = 0;
                for (int i = 0; i < n; i++)
                {
                    reference += (double)wDeq[i] * xDeq[k][i];
                    magnitude += Math.Abs((double)wDeq[i] * xDeq[k][i]);
                }
                Assert.True(Math.Abs(got - reference) <= 1e-5 * magnitude + 1e-30,
                    $"{way} {header} {scales} {nb} blocks token {k}: {got} vs float64 {reference} (magnitude {magnitude})");
                Assert.Equal(got, four[k]);
            }
        }
    }
}
