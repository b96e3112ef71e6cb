using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Quant;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.X64KDecode;

/// <summary>
/// The SIMD block-header unpack of the x64 Q4_K / Q5_K loops (<c>DotQ4_K.UnpackScalesMins</c>, <c>DotQ4_K.DAndDmin</c>)
/// against independent references: the 12-byte 6-bit layout as ggml's <c>get_scale_min_k4</c> states it (written out
/// here) and an encoder of that layout, .NET's own fp16 conversion for every half; and the one-token loops of every
/// x64 rung the host has (AVX2 with AVX-VNNI off and on, AVX-512) against a float64 dot of the reference dequantized
/// weights and activations, on blocks with extreme scales and mins (all 0, all 63, alternating) and subnormal d / dmin,
/// with the four-token loops bit-identical to the one-token loop on the same blocks. Rows of 9 and 17 blocks cross the
/// AVX-512 loop's groups of eight (d·d_x and dmin·d_x gathered once per group), so a group that reused another's
/// scales fails.
/// </summary>
public sealed unsafe class KQuantX64UnpackTests
{
    /// <summary>ggml's get_scale_min_k4 for sub-block j of the 12 bytes s.</summary>
    private static (int Scale, int Min) GgmlScaleMin(byte[] s, int j) => j < 4
        ? (s[j] & 63, s[j + 4] & 63)
        : ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4));

    /// <summary>Packs eight 6-bit scales and mins into ggml's 12-byte layout (the inverse of <see cref="GgmlScaleMin"/>).</summary>
    private static byte[] Encode(int[] sc, int[] mn)
    {
        var s = new byte[12];
        for (int j = 0; j < 4; j++)
        {
            s[j] = (byte)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
            s[j + 4] = (byte)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
            s[j + 8] = (byte)((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
        }
        return s;
    }

    private static Vector128<byte> Unpack(byte[] twelve, byte tail)
    {
        var buf = new byte[16];
        twelve.CopyTo(buf, 0);
        for (int i = 12; i < 16; i++) buf[i] = tail;
        fixed (byte* p = buf) return DotQ4_K.UnpackScalesMins(p);
    }

    [Fact]
    public void UnpackScalesMinsMatchesGgmlLayoutForRandomAndExtremeBytes()
    {
        if (!Avx2.IsSupported) return; // the x64 loops that call it need AVX2; nothing to check elsewhere
        var rng = new Random(1401);
        var inputs = new List<byte[]>
        {
            new byte[12], Enumerable.Repeat((byte)0xFF, 12).ToArray(), Enumerable.Repeat((byte)0x3F, 12).ToArray(),
            Enumerable.Repeat((byte)0xC0, 12).ToArray(), Enumerable.Repeat((byte)0xF0, 12).ToArray(), Enumerable.Repeat((byte)0x0F, 12).ToArray(),
        };
        for (int i = 0; i < 4000; i++)
        {
            var s = new byte[12];
            rng.NextBytes(s);
            inputs.Add(s);
        }
        foreach (byte[] s in inputs)
        {
            Vector128<byte> v = Unpack(s, (byte)rng.Next(256));
            for (int j = 0; j < 8; j++)
            {
                (int sc, int m) = GgmlScaleMin(s, j);
                Assert.Equal(sc, v.GetElement(j));
                Assert.Equal(m, v.GetElement(8 + j));
            }
        }
    }

    public static IEnumerable<object[]> ScalePatterns() => new[]
    {
        new object[] { "all 0" }, new object[] { "all 63" }, new object[] { "scales 63, mins 0" }, new object[] { "scales 0, mins 63" },
        new object[] { "alternating" }, new object[] { "random" },
    };

    private static (int[] Sc, int[] Mn) Pattern(string name, Random rng)
    {
        var sc = new int[8];
        var mn = new int[8];
        for (int j = 0; j < 8; j++)
        {
            (sc[j], mn[j]) = name switch
            {
                "all 0" => (0, 0),
                "all 63" => (63, 63),
                "scales 63, mins 0" => (63, 0),
                "scales 0, mins 63" => (0, 63),
                "alternating" => (j % 2 == 0 ? 63 : 0, j % 2 == 0 ? 0 : 63),
                _ => (rng.Next(64), rng.Next(64)),
            };
        }
        return (sc, mn);
    }

    [Theory]
    [MemberData(nameof(ScalePatterns))]
    public void UnpackScalesMinsRecoversEncodedScalesAndMins(string pattern)
    {
        if (!Avx2.IsSupported) return;
        var rng = new Random(pattern.Length * 31);
        for (int rep = 0; rep < 50; rep++)
        {
            (int[] sc, int[] mn) = Pattern(pattern, rng);
            Vector128<byte> v = Unpack(Encode(sc, mn), 0xFF);
            for (int j = 0; j < 8; j++)
            {
                Assert.Equal(sc[j], v.GetElement(j));
                Assert.Equal(mn[j], v.GetElement(8 + j));
            }
        }
    }

    [Fact]
    public void DAndDminConvertEveryHalfExactly()
    {
        if (!Avx2.IsSupported) return;
        var buf = new byte[8];
        fixed (byte* p = buf)
        {
            for (int h = 0; h < 65536; h++)
            {
                ushort other = (ushort)(h ^ 0x83FF); // a different pattern in the dmin lane: other sign, exponent class kept
                buf[0] = (byte)h; buf[1] = (byte)(h >> 8);
                buf[2] = (byte)other; buf[3] = (byte)(other >> 8);
                buf[4] = 0xAB; buf[5] = 0xCD; buf[6] = 0xEF; buf[7] = 0x01;
                Vector128<float> v = DotQ4_K.DAndDmin(p);
                AssertSameFloat((float)BitConverter.UInt16BitsToHalf((ushort)h), v.GetElement(0), h);
                AssertSameFloat((float)BitConverter.UInt16BitsToHalf(other), v.GetElement(1), other);
            }
        }
    }

    private static void AssertSameFloat(float expected, float actual, int h)
    {
        if (float.IsNaN(expected)) Assert.True(float.IsNaN(actual), $"half 0x{h:X4}: {actual}, expected NaN");
        else Assert.True(BitConverter.SingleToUInt32Bits(expected) == BitConverter.SingleToUInt32Bits(actual), $"half 0x{h:X4}: {actual} vs {expected}");
    }

    public enum Way { Avx2, Avx2Vnni, Avx512 }

    public static IEnumerable<object[]> KernelCases()
    {
        var ways = new List<Way>();
        if (KernelRung.IsSupported(Rung.Avx2)) ways.Add(Way.Avx2);
        if (KernelRung.IsSupported(Rung.Avx2) && AvxVnni.IsSupported) ways.Add(Way.Avx2Vnni);
        if (KernelRung.IsSupported(Rung.Avx512)) ways.Add(Way.Avx512);
        foreach (GgmlType t in new[] { GgmlType.Q4_K, GgmlType.Q5_K })
            foreach (Way way in ways)
                foreach (string header in new[] { "normal", "subnormal d and dmin", "subnormal d, normal dmin", "smallest subnormals" })
                    foreach (object[] pattern in ScalePatterns())
                        foreach (int nb in new[] { 1, 3, 5, 9, 17 })
                            yield return new object[] { t, way, header, (string)pattern[0], nb };
    }

    /// <summary>
    /// A row of <paramref name="nb"/> blocks: scales and mins from <paramref name="pattern"/>, d and dmin from
    /// <paramref name="header"/>, random quant bytes (and qh for Q5_K).
    /// </summary>
    private static byte[] Row(GgmlType t, int nb, string header, string pattern, Random rng)
    {
        int bb = t == GgmlType.Q4_K ? DotQ4_K.BlockBytes : DotQ5_K.BlockBytes;
        var row = new byte[nb * bb];
        rng.NextBytes(row);
        for (int b = 0; b < nb; b++)
        {
            int o = b * bb;
            ushort Normal() => (ushort)((rng.Next(1, 16) << 10) | rng.Next(1024));
            ushort Subnormal() => (ushort)rng.Next(1, 1024);
            (ushort d, ushort dmin) = header switch
            {
                "normal" => (Normal(), Normal()),
                "subnormal d and dmin" => (Subnormal(), Subnormal()),
                "subnormal d, normal dmin" => (Subnormal(), Normal()),
                _ => ((ushort)1, (ushort)1),
            };
            if (rng.Next(2) == 0) d |= 0x8000; // either sign for d (dmin is a positive scale in practice, either is valid)
            row[o] = (byte)d; row[o + 1] = (byte)(d >> 8);
            row[o + 2] = (byte)dmin; row[o + 3] = (byte)(dmin >> 8);
            (int[] sc, int[] mn) = Pattern(pattern, rng);
            Encode(sc, mn).CopyTo(row, o + 4);
        }
        return row;
    }

    [Theory]
    [MemberData(nameof(KernelCases))]
    public void OneTokenLoopMatchesFloat64ReferenceAndFourTokenLoop(GgmlType t, Way way, string header, string pattern, int nb)
    {
        int n = nb * 256;
        var rng = new Random(HashCode.Combine((int)t, (int)way, header.Length, pattern.Length, nb) & 0x7fffffff);
        byte[] w = Row(t, nb, header, pattern, rng);
        float[] wDeq = DequantizeWeights(t, w, n);
        long stride = ActivationQuant.BytesFor(t, n);
        var xs = new byte[4 * stride];
        var xDeq = new float[4][];
        for (int k = 0; k < 4; k++)
        {
            float[] x = QuantTestData.Gaussian(n, 900 + k + nb);
            byte[] xq = QuantizeActivations(t, x);
            xq.CopyTo(xs, k * stride);
            xDeq[k] = DequantizeActivations(t, xq, n);
        }
        var four = new float[4];
        fixed (byte* pw = w) fixed (byte* px = xs) fixed (float* pf = four)
        {
            switch ((t, way))
            {
                case (GgmlType.Q4_K, Way.Avx512): DotQ4_K.Dot4Avx512(pw, px, stride, n, pf, 1); break;
                case (GgmlType.Q4_K, _): DotQ4_K.Dot4Avx2(pw, px, stride, n, pf, 1, way == Way.Avx2Vnni); break;
                case (_, Way.Avx512): DotQ5_K.Dot4Avx512(pw, px, stride, n, pf, 1); break;
                default: DotQ5_K.Dot4Avx2(pw, px, stride, n, pf, 1, way == Way.Avx2Vnni); break;
            }
            for (int k = 0; k < 4; k++)
            {
                byte* x = px + k * stride;
                float got = (t, way) switch
                {
                    (GgmlType.Q4_K, Way.Avx512) => DotQ4_K.DotAvx512(pw, x, n),
                    (GgmlType.Q4_K, _) => DotQ4_K.DotAvx2(pw, x, n, way == Way.Avx2Vnni),
                    (_, Way.Avx512) => DotQ5_K.DotAvx512(pw, x, n),
                    _ => DotQ5_K.DotAvx2(pw, x, n, way == Way.Avx2Vnni),
                };
                double reference = 0, magnitude = 0;
                for (int i = 0; i < n; i++)
                {
                    reference += (double)wDeq[i] * xDeq[k][i];
                    magnitude += Math.Abs((double)xDeq[k][i]) * (Math.Abs((double)wDeq[i]) + 2 * MinTerm(t, w, i));
                }
                if (pattern == "all 0") Assert.Equal(0f, got); // every scale and min 0: every term is exactly 0
                Assert.True(Math.Abs(got - reference) <= 1e-5 * magnitude + 1e-30,
                    $"{t} {way} {header} {pattern} {nb} blocks token {k}: {got} vs float64 {reference} (magnitude {magnitude})");
                Assert.Equal(got, four[k]);
            }
        }
    }

    /// <summary>|dmin·m| of the sub-block of weight i (the mins term's share of the float error bound).</summary>
    private static double MinTerm(GgmlType t, byte[] w, int i)
    {
        int bb = t == GgmlType.Q4_K ? DotQ4_K.BlockBytes : DotQ5_K.BlockBytes;
        int o = i / 256 * bb;
        var s = new byte[12];
        Array.Copy(w, o + 4, s, 0, 12);
        (_, int m) = GgmlScaleMin(s, i % 256 / 32);
        return Math.Abs((double)(float)BitConverter.UInt16BitsToHalf((ushort)(w[o + 2] | (w[o + 3] << 8)))) * m;
    }
}
