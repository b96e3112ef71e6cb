using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.X64Decode;

/// <summary>The x64 one-token loops these tests drive directly (the AVX-512 Q4_0 panel loop's three variants, Q8_0's AVX-512 loop).</summary>
public enum X64Loop { Q4_0PanelNoVbmi, Q4_0PanelVbmi, Q4_0PanelVbmiGfni, Q8_0Avx512, Q8_0Avx512Vnni }

/// <summary>A theory skipped (not missing) on a CPU that cannot run <see cref="X64Loop"/>.</summary>
public sealed class X64LoopTheoryAttribute : TheoryAttribute
{
    public X64LoopTheoryAttribute(X64Loop loop)
    {
        if (!X64DecodeLoopTests.Supported(loop)) Skip = $"this CPU cannot run the {loop} loop";
    }
}

/// <summary>
/// The x64 decode loops: <see cref="DotQ4_0.DotPanelAvx512(byte*, byte*, int, bool, bool)"/> (sixteen blocks a step,
/// the sixteen fp16 weight scales converted in one zmm, from two vpermt2w with VBMI or two gathers without, GFNI's
/// vgf2p8affineqb taking the nibbles out with VBMI) and <see cref="DotQ8_0.DotAvx512"/> (eight weight and eight
/// activation scales converted in one zmm, <see cref="BlockScales.Products8Wide"/>), against the integer scalar rung
/// (<see cref="DotQ4_0.DotScalar"/>, <see cref="DotQ8_0.DotScalar"/>) on the same Q8_0 activations. Block counts
/// around the sixteen- and eight-block steps (nb mod 16 = 0, 1, 7, 8, 9, 15), weight scales that are normal, fp16
/// subnormal, ±0, or all zero. Tolerances as in <c>PanelDotTests</c> (Q4_0 panel: 2e-6·M', M' with the offset term)
/// and <c>QuantDotTests</c> (Q8_0: 1e-5·M); a scale applied to the wrong block is off by about the result itself.
/// </summary>
public unsafe class X64DecodeLoopTests
{
    private static readonly int[] BlockCounts = { 1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 40, 47, 64 };
    private static readonly string[] Kinds = { "gaussian", "raw", "subnormal", "zero-scales" };

    public static bool Supported(X64Loop loop) => loop switch
    {
        X64Loop.Q4_0PanelNoVbmi or X64Loop.Q8_0Avx512 => KernelRung.IsSupported(Rung.Avx512),
        X64Loop.Q4_0PanelVbmi => KernelRung.IsSupported(Rung.Avx512) && Avx512Vbmi.IsSupported,
        X64Loop.Q8_0Avx512Vnni => KernelRung.IsSupported(Rung.Avx512) && AvxVnni.IsSupported,
        _ => KernelRung.IsSupported(Rung.Avx512) && Avx512Vbmi.IsSupported && Gfni.V512.IsSupported,
    };

    public static TheoryData<int, string> Cases()
    {
        var d = new TheoryData<int, string>();
        foreach (int nb in BlockCounts)
            foreach (string kind in Kinds)
                d.Add(nb, kind);
        return d;
    }

    /// <summary>
    /// Weights of <paramref name="t"/> (Q4_0 or Q8_0) for <paramref name="kind"/>: the shared kinds, or "raw" bytes
    /// with every scale an fp16 subnormal (0x0001..0x03FF, either sign) except every fourth block's ±0 and every
    /// fifth block's normal scale ("subnormal"), or with every scale ±0 ("zero-scales").
    /// </summary>
    internal static byte[] MakeWeights(GgmlType t, int n, string kind, int seed)
    {
        if (kind is not ("subnormal" or "zero-scales")) return Weights(t, n, kind, seed);
        byte[] w = Weights(t, n, "raw", seed);
        int bb = GgmlTypes.Geometry(t).BlockBytes;
        var rng = new Random(seed + 7);
        for (int b = 0; b < n / 32; b++)
        {
            ushort sign = (ushort)(rng.Next(2) << 15);
            ushort h = kind == "zero-scales" || b % 4 == 3 ? sign
                : b % 5 == 4 ? (ushort)(sign | (rng.Next(1, 31) << 10) | rng.Next(1024))
                : (ushort)(sign | rng.Next(1, 1024));
            w[b * bb] = (byte)h;
            w[b * bb + 1] = (byte)(h >> 8);
        }
        return w;
    }

    internal static byte[] Panel(byte[] xq, int n)
    {
        byte[] p = new byte[Q8_0Panel.BytesFor(n)];
        fixed (byte* px = xq) fixed (byte* pp = p) Q8_0Panel.FromBlocks(px, pp, n);
        return p;
    }

    /// <summary>M' of the panel loops: Σ|x'|(|w'| + 16·|d_w|) (the offset 8·d_w·y they add and take off in float).</summary>
    internal static double PanelMagnitude(byte[] w, float[] wDeq, float[] xDeq)
    {
        double m = Magnitude(GgmlType.Q4_0, w, wDeq, xDeq);
        for (int i = 0; i < xDeq.Length; i++)
            m += Math.Abs((double)xDeq[i]) * 16 * Math.Abs((double)BitConverter.ToHalf(w, i / 32 * DotQ4_0.BlockBytes));
        return m;
    }

    private static float Q4_0Panel(X64Loop loop, byte* w, byte* panel, int n) => loop switch
    {
        X64Loop.Q4_0PanelNoVbmi => DotQ4_0.DotPanelAvx512(w, panel, n, vbmi: false, gfni: false),
        X64Loop.Q4_0PanelVbmi => DotQ4_0.DotPanelAvx512(w, panel, n, vbmi: true, gfni: false),
        _ => DotQ4_0.DotPanelAvx512(w, panel, n, vbmi: true, gfni: true),
    };

    private static void CheckQ4_0Panel(X64Loop loop, int nb, string kind)
    {
        int n = nb * 32;
        int seed = 1400 + nb * 10 + kind.Length;
        byte[] w = MakeWeights(GgmlType.Q4_0, n, kind, seed);
        byte[] xq = QuantizeActivations(GgmlType.Q4_0, Activations(n, 32, seed + 1));
        byte[] p = Panel(xq, n);
        double m = PanelMagnitude(w, DequantizeWeights(GgmlType.Q4_0, w, n), DequantizeActivations(GgmlType.Q4_0, xq, n));
        fixed (byte* pw = w) fixed (byte* pxq = xq) fixed (byte* pp = p)
        {
            float expected = DotQ4_0.DotScalar(pw, pxq, n);
            float got = Q4_0Panel(loop, pw, pp, n);
            Assert.True(Math.Abs(got - expected) <= 2e-6 * m, $"{loop} {nb} blocks {kind}: {got} vs scalar {expected} (tol {2e-6 * m:G3})");
            if (kind == "zero-scales") Assert.Equal(0f, Math.Abs(got));
        }
    }

    [X64LoopTheory(X64Loop.Q4_0PanelNoVbmi)]
    [MemberData(nameof(Cases))]
    public void Q4_0PanelNoVbmiMatchesScalarRung(int nb, string kind) => CheckQ4_0Panel(X64Loop.Q4_0PanelNoVbmi, nb, kind);

    [X64LoopTheory(X64Loop.Q4_0PanelVbmi)]
    [MemberData(nameof(Cases))]
    public void Q4_0PanelVbmiMatchesScalarRung(int nb, string kind) => CheckQ4_0Panel(X64Loop.Q4_0PanelVbmi, nb, kind);

    [X64LoopTheory(X64Loop.Q4_0PanelVbmiGfni)]
    [MemberData(nameof(Cases))]
    public void Q4_0PanelVbmiGfniMatchesScalarRung(int nb, string kind) => CheckQ4_0Panel(X64Loop.Q4_0PanelVbmiGfni, nb, kind);

    /// <summary>
    /// One live block at a time: 40 blocks (two sixteen-block steps and an eight-block group) and 43 (a tail of three),
    /// activations zero outside block k, every weight scale a different subnormal: the loop must give
    /// d_w[k]·d_x[k]·Σ(q−8)·y of that block alone (double reference), for every k, so a scale or nibbles taken from
    /// the wrong block or the wrong half of a block fail.
    /// </summary>
    [X64LoopTheory(X64Loop.Q4_0PanelNoVbmi)]
    [InlineData(40)]
    [InlineData(43)]
    public void Q4_0PanelNoVbmiTakesEachBlocksOwnScaleAndNibbles(int nb) => CheckOneLiveBlock(X64Loop.Q4_0PanelNoVbmi, nb);

    [X64LoopTheory(X64Loop.Q4_0PanelVbmi)]
    [InlineData(40)]
    [InlineData(43)]
    public void Q4_0PanelVbmiTakesEachBlocksOwnScaleAndNibbles(int nb) => CheckOneLiveBlock(X64Loop.Q4_0PanelVbmi, nb);

    [X64LoopTheory(X64Loop.Q4_0PanelVbmiGfni)]
    [InlineData(40)]
    [InlineData(43)]
    public void Q4_0PanelVbmiGfniTakesEachBlocksOwnScaleAndNibbles(int nb) => CheckOneLiveBlock(X64Loop.Q4_0PanelVbmiGfni, nb);

    private static void CheckOneLiveBlock(X64Loop loop, int nb)
    {
        int n = nb * 32;
        byte[] w = Weights(GgmlType.Q4_0, n, "raw", 77);
        for (int b = 0; b < nb; b++)
        {
            ushort h = (ushort)(((b & 1) << 15) | (1 + 25 * b)); // distinct subnormals, alternating sign
            w[b * 18] = (byte)h;
            w[b * 18 + 1] = (byte)(h >> 8);
        }
        float[] x = Activations(n, 32, 78);
        for (int k = 0; k < nb; k++)
        {
            float[] xk = new float[n];
            Array.Copy(x, k * 32, xk, k * 32, 32);
            xk[k * 32 + 5] = 3f; // a nonzero block even where Activations zeroed it
            byte[] xq = QuantizeActivations(GgmlType.Q4_0, xk);
            byte[] p = Panel(xq, n);
            double dw = (double)BitConverter.ToHalf(w, k * 18), dx = (double)BitConverter.ToHalf(xq, k * 34);
            long isum = 0;
            for (int j = 0; j < 16; j++)
                isum += ((w[k * 18 + 2 + j] & 0x0F) - 8) * (sbyte)xq[k * 34 + 2 + j] + ((w[k * 18 + 2 + j] >> 4) - 8) * (sbyte)xq[k * 34 + 18 + j];
            double want = dw * dx * isum;
            double mag = Math.Abs(dw * dx) * 16 * 15 * 127 * 2;
            fixed (byte* pw = w) fixed (byte* pp = p)
            {
                float got = Q4_0Panel(loop, pw, pp, n);
                Assert.True(Math.Abs(got - want) <= 1e-6 * mag, $"{loop} block {k} of {nb}: {got} vs {want}");
            }
        }
    }

    [X64LoopTheory(X64Loop.Q8_0Avx512)]
    [MemberData(nameof(Cases))]
    public void Q8_0Avx512MatchesScalarRung(int nb, string kind) => CheckQ8_0(nb, kind, vnni: false);

    [X64LoopTheory(X64Loop.Q8_0Avx512Vnni)]
    [MemberData(nameof(Cases))]
    public void Q8_0Avx512VnniMatchesScalarRung(int nb, string kind) => CheckQ8_0(nb, kind, vnni: true);

    /// <summary>
    /// The AVX-512 Q8_0 one-token loop (scales picked out of the blocks by vpermt2w, no gathers), AVX-VNNI off or on,
    /// against the integer scalar rung within 1e-5·M; the same loop with the activation scales prepared once
    /// (<see cref="DotQ8_0.PrepareScalesAvx512"/>, <see cref="DotQ8_0.DotAvx512Prepared"/>, what decode's row driver
    /// runs) must give the same bits, and the prepared scales must be the halves' exact floats.
    /// </summary>
    private static void CheckQ8_0(int nb, string kind, bool vnni)
    {
        int n = nb * 32;
        int seed = 2400 + nb * 10 + kind.Length;
        byte[] w = MakeWeights(GgmlType.Q8_0, n, kind, seed);
        byte[] xq = QuantizeActivations(GgmlType.Q8_0, Activations(n, 32, seed + 1));
        // Activation scales of every kind too (subnormal, ±0): the quantizer's own are all normal.
        if (kind is "subnormal" or "zero-scales")
        {
            byte[] ws = MakeWeights(GgmlType.Q8_0, n, kind, seed + 2);
            for (int b = 0; b < nb; b++) { xq[b * 34] = ws[b * 34]; xq[b * 34 + 1] = ws[b * 34 + 1]; }
        }
        double m = Magnitude(GgmlType.Q8_0, w, DequantizeWeights(GgmlType.Q8_0, w, n), DequantizeActivations(GgmlType.Q8_0, xq, n));
        var xs = new float[nb];
        fixed (byte* pw = w) fixed (byte* pxq = xq) fixed (float* pxs = xs)
        {
            float expected = DotQ8_0.DotScalar(pw, pxq, n);
            float got = DotQ8_0.DotAvx512(pw, pxq, n, vnni);
            Assert.True(Math.Abs(got - expected) <= 1e-5 * m, $"Q8_0 AVX-512 (vnni {vnni}) {nb} blocks {kind}: {got} vs scalar {expected} (tol {1e-5 * m:G3})");
            if (kind == "zero-scales") Assert.Equal(0f, Math.Abs(got));
            DotQ8_0.PrepareScalesAvx512(pxq, n, pxs);
            for (int b = 0; b < nb; b++)
                Assert.Equal(BitConverter.SingleToUInt32Bits((float)BitConverter.ToHalf(xq, b * 34)), BitConverter.SingleToUInt32Bits(xs[b]));
            float prepared = DotQ8_0.DotAvx512Prepared(pw, pxq, pxs, n, vnni);
            Assert.Equal(BitConverter.SingleToUInt32Bits(got), BitConverter.SingleToUInt32Bits(prepared));
        }
    }

    /// <summary>
    /// Each block's own scales, one live block at a time: every block's quants zero but block k's, every scale a
    /// different fp16 (subnormal weight scales, normal activation scales), 40 and 43 blocks: the loop must equal
    /// d_w[k]·d_x[k]·Σ q·y (double reference) for every k, with AVX-VNNI off and on, the activation scales from the
    /// blocks and prepared. A scale picked from the wrong block (the vpermt2w index, the blend of the two halves)
    /// is off by a factor, not a rounding.
    /// </summary>
    [X64LoopTheory(X64Loop.Q8_0Avx512)]
    [InlineData(40)]
    [InlineData(43)]
    public void Q8_0Avx512TakesEachBlocksOwnScales(int nb)
    {
        int n = nb * 32;
        var rng = new Random(77 + nb);
        byte[] w = new byte[nb * 34], xq = new byte[nb * 34];
        for (int b = 0; b < nb; b++)
        {
            ushort hw = (ushort)((b % 2 == 0 ? 0x8000 : 0) | (1 + b * 23)), hx = (ushort)(0x3000 + b * 37);
            w[b * 34] = (byte)hw; w[b * 34 + 1] = (byte)(hw >> 8);
            xq[b * 34] = (byte)hx; xq[b * 34 + 1] = (byte)(hx >> 8);
        }
        var xs = new float[nb];
        bool[] vnnis = AvxVnni.IsSupported ? new[] { false, true } : new[] { false };
        for (int k = 0; k < nb; k++)
        {
            byte[] wk = (byte[])w.Clone(), xk = (byte[])xq.Clone();
            long s = 0, sAbs = 0;
            for (int i = 0; i < 32; i++)
            {
                sbyte a = (sbyte)rng.Next(-128, 128), y = (sbyte)rng.Next(-127, 128);
                wk[k * 34 + 2 + i] = (byte)a; xk[k * 34 + 2 + i] = (byte)y;
                s += a * y;
                sAbs += Math.Abs(a * y);
            }
            double d = (double)(float)BitConverter.ToHalf(wk, k * 34) * (float)BitConverter.ToHalf(xk, k * 34);
            double want = d * s, tol = 1e-6 * Math.Abs(d) * sAbs; // the lanes' partial sums cancel: rounding scales with Σ|q·y|
            fixed (byte* pw = wk) fixed (byte* px = xk) fixed (float* pxs = xs)
            {
                DotQ8_0.PrepareScalesAvx512(px, n, pxs);
                foreach (bool vnni in vnnis)
                {
                    float a = DotQ8_0.DotAvx512(pw, px, n, vnni), p = DotQ8_0.DotAvx512Prepared(pw, px, pxs, n, vnni);
                    Assert.True(Math.Abs(a - want) <= tol, $"block {k} of {nb}, vnni {vnni}: {a} vs {want}");
                    Assert.True(Math.Abs(p - want) <= tol, $"block {k} of {nb}, vnni {vnni}, prepared: {p} vs {want}");
                }
            }
        }
    }

    /// <summary>
    /// <see cref="BlockScales.Products8Wide"/> lane k = (float)w-half_k · (float)x-half_k exactly (.NET's Half
    /// conversion as the reference), for every one of the 65,536 fp16 patterns as a weight scale (two halves of the
    /// range), each paired with a pattern from another part of the range (subnormals, ±0, inf and NaN included), in
    /// Q8_0-spaced blocks whose quant bytes after the scale are not zero (the conversion must ignore them).
    /// </summary>
    [X64LoopTheory(X64Loop.Q8_0Avx512)]
    [InlineData(0)]
    [InlineData(32768)]
    public void Products8WideIsExactForEveryHalf(int start)
    {
        const int bb = DotQ8_0.BlockBytes;
        byte[] w = new byte[8 * bb], x = new byte[8 * bb];
        var offsets = BlockScales.Offsets(bb);
        for (int h0 = start; h0 < start + 32768; h0 += 8)
        {
            for (int k = 0; k < 8; k++)
            {
                ushort hw = (ushort)(h0 + k), hx = (ushort)((h0 + k) * 40503 + 12345);
                w[k * bb] = (byte)hw; w[k * bb + 1] = (byte)(hw >> 8); w[k * bb + 2] = 0xA5; w[k * bb + 3] = 0x5A;
                x[k * bb] = (byte)hx; x[k * bb + 1] = (byte)(hx >> 8); x[k * bb + 2] = 0xFF; x[k * bb + 3] = 0x81;
            }
            fixed (byte* pw = w) fixed (byte* px = x)
            {
                var d = BlockScales.Products8Wide(pw, offsets, px, offsets);
                for (int k = 0; k < 8; k++)
                {
                    float want = (float)BitConverter.ToHalf(w, k * bb) * (float)BitConverter.ToHalf(x, k * bb);
                    Assert.True(float.IsNaN(want) ? float.IsNaN(d[k]) : BitConverter.SingleToUInt32Bits(want) == BitConverter.SingleToUInt32Bits(d[k]),
                        $"0x{h0 + k:X4} lane {k}: {d[k]} vs {want}");
                }
            }
        }
    }
}
