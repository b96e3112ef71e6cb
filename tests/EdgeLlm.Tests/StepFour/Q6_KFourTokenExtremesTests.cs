using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.StepFour;

/// <summary>
/// The four-token Q6_K loops (<see cref="DotQ6_K.Dot4"/>: the output layer of a 4-stream server step) at the ends of
/// the integer ranges, where folding the −32 offset into the scales (−32·sc as int16, Σ bsums·(−32·sc) as int32) would
/// overflow if it were formed in a narrower type or with saturation: scales −128 and 127, 6-bit values 0 and 63,
/// activations −128 and 127 (block sums ±2048). Each token's result is checked against a float64 dot of the
/// dequantized row and activations (the reference block code, <see cref="Quant.Q6_K"/> and the Q8_K layout), and must
/// be the bits of the one-token loop of the same rung and flags.
/// </summary>
public sealed unsafe class Q6_KFourTokenExtremesTests
{
    public enum Way { Selected, Avx2, Avx2Vnni, Avx2Gfni, Avx512, Avx512Gfni }

    private static bool Supported(Way way) => way switch
    {
        Way.Selected => true,
        Way.Avx2 => KernelRung.IsSupported(Rung.Avx2),
        Way.Avx2Vnni => KernelRung.IsSupported(Rung.Avx2) && AvxVnni.IsSupported,
        Way.Avx2Gfni => KernelRung.IsSupported(Rung.Avx2) && Gfni.V256.IsSupported,
        Way.Avx512 => KernelRung.IsSupported(Rung.Avx512),
        _ => KernelRung.IsSupported(Rung.Avx512) && Gfni.V512.IsSupported,
    };

    public static TheoryData<Way, string> Cases()
    {
        var d = new TheoryData<Way, string>();
        foreach (Way way in Enum.GetValues<Way>())
            foreach (string pattern in new[] { "min-scales-zero-q-min-y", "max-scales-max-q-max-y", "mixed" })
                d.Add(way, pattern);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ExtremeBlocksMatchFloat64AndTheOneTokenLoop(Way way, string pattern)
    {
        if (!Supported(way)) return; // this CPU has no such loop (the kernel-table tests cover the selection)
        const int nb = 4, n = nb * 256;
        var rng = new Random(pattern.Length * 31 + (int)way);
        byte[] w = new byte[nb * DotQ6_K.BlockBytes];
        for (int b = 0; b < nb; b++)
        {
            int o = b * DotQ6_K.BlockBytes;
            for (int i = 0; i < 192; i++) // ql (128 bytes) and qh (64 bytes): 6-bit values 0 or 63, or a mix
                w[o + i] = pattern switch { "min-scales-zero-q-min-y" => (byte)0x00, "max-scales-max-q-max-y" => (byte)0xFF, _ => rng.Next(2) == 0 ? (byte)0x00 : (byte)0xFF };
            for (int g = 0; g < 16; g++)
                w[o + 192 + g] = (byte)(sbyte)(pattern switch { "min-scales-zero-q-min-y" => -128, "max-scales-max-q-max-y" => 127, _ => rng.Next(2) == 0 ? -128 : 127 });
            ushort d = pattern == "mixed" ? (ushort)(0x3000 + rng.Next(0x800)) : (ushort)0x3C00; // fp16 0.125..0.25 or 1.0
            w[o + 208] = (byte)d;
            w[o + 209] = (byte)(d >> 8);
        }
        long stride = ActivationQuant.BytesFor(GgmlType.Q6_K, n) + 32;
        var xs = new byte[4 * stride];
        var xDeq = new float[4][];
        for (int t = 0; t < 4; t++)
        {
            xDeq[t] = new float[n];
            for (int b = 0; b < nb; b++)
            {
                long o = t * stride + (long)b * ActivationQuant.Q8_KBlockBytes;
                float dx = (t + 1) / 128f;
                BitConverter.TryWriteBytes(xs.AsSpan((int)o, 4), dx);
                for (int g = 0; g < 16; g++)
                {
                    int sum = 0;
                    for (int i = 0; i < 16; i++)
                    {
                        // Token 0 and 2: all at the pattern's end; tokens 1 and 3: the other end, or random ends for "mixed".
                        sbyte y = pattern switch
                        {
                            "min-scales-zero-q-min-y" => t % 2 == 0 ? (sbyte)-128 : (sbyte)127,
                            "max-scales-max-q-max-y" => t % 2 == 0 ? (sbyte)127 : (sbyte)-128,
                            _ => rng.Next(2) == 0 ? (sbyte)-128 : (sbyte)127,
                        };
                        xs[o + ActivationQuant.Q8_KQsOffset + g * 16 + i] = (byte)y;
                        xDeq[t][b * 256 + g * 16 + i] = dx * y;
                        sum += y;
                    }
                    BitConverter.TryWriteBytes(xs.AsSpan((int)(o + ActivationQuant.Q8_KBsumsOffset + 2 * g), 2), (short)sum);
                }
            }
        }
        float[] wDeq = DequantizeWeights(GgmlType.Q6_K, w, n);
        var dst = new float[4 * 3];
        fixed (byte* pw = w) fixed (byte* px = xs) fixed (float* pd = dst)
        {
            switch (way)
            {
                case Way.Selected: DotQ6_K.Dot4(pw, px, stride, n, pd, 3); break;
                case Way.Avx2: DotQ6_K.Dot4Avx2(pw, px, stride, n, pd, 3, vnni: false, gfni: false); break;
                case Way.Avx2Vnni: DotQ6_K.Dot4Avx2(pw, px, stride, n, pd, 3, vnni: true, gfni: false); break;
                case Way.Avx2Gfni: DotQ6_K.Dot4Avx2(pw, px, stride, n, pd, 3, vnni: false, gfni: true); break;
                case Way.Avx512: DotQ6_K.Dot4Avx512(pw, px, stride, n, pd, 3, gfni: false); break;
                default: DotQ6_K.Dot4Avx512(pw, px, stride, n, pd, 3, gfni: true); break;
            }
            for (int t = 0; t < 4; t++)
            {
                double want = 0, magnitude = 0;
                for (int i = 0; i < n; i++)
                {
                    want += (double)wDeq[i] * xDeq[t][i];
                    magnitude += Math.Abs((double)wDeq[i] * xDeq[t][i]);
                }
                float got = dst[t * 3];
                Assert.True(Math.Abs(got - want) <= 1e-6 * magnitude + 1e-30, $"{way} {pattern} token {t}: Dot4 {got} vs float64 {want} (magnitude {magnitude})");
                byte* x = px + t * stride;
                float one = way switch
                {
                    Way.Selected => DotQ6_K.Dot(pw, x, n),
                    Way.Avx2 => DotQ6_K.DotAvx2(pw, x, n, vnni: false, gfni: false),
                    Way.Avx2Vnni => DotQ6_K.DotAvx2(pw, x, n, vnni: true, gfni: false),
                    Way.Avx2Gfni => DotQ6_K.DotAvx2(pw, x, n, vnni: false, gfni: true),
                    Way.Avx512 => DotQ6_K.DotAvx512(pw, x, n, gfni: false),
                    _ => DotQ6_K.DotAvx512(pw, x, n, gfni: true),
                };
                Assert.True(BitConverter.SingleToInt32Bits(one) == BitConverter.SingleToInt32Bits(got), $"{way} {pattern} token {t}: Dot4 {got} vs one-token loop {one}");
            }
        }
    }
}
