using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The Q4_0 panel path (<see cref="Q8_0Panel"/>, <see cref="DotQ4_0.DotPanel"/>, <see cref="DotQ4_0.DotPanel4"/>)
/// against the integer scalar rung <see cref="DotQ4_0.DotScalar"/> on the same Q8_0 activations. The panel loops sum
/// float(Σq·y)·d_w·d_x over the unsigned nibbles and subtract Σ d_w·c (c = d_x·8·Σy) in float instead of taking the
/// exact integer Σ(q−8)·y per block, so every rung (the scalar panel loop included) is held to Tolerance·M' with
/// M' = <see cref="PanelMagnitude"/> (the float terms these loops add, offset term included); the scalar panel loop is
/// also held bit-exact to its documented float order. Block counts around the eight-block step, every weight kind.
/// </summary>
public unsafe class PanelDotTests
{
    private static readonly int[] BlockCounts = { 1, 3, 7, 8, 9, 16, 17, 33, 64 };
    private static readonly string[] Kinds = { "gaussian", "raw", "zeros" };

    public enum PanelVariant { Scalar, Selected, Avx2, Avx2Vnni, Avx512, Avx512NoVbmi }

    public static IEnumerable<object[]> Cases()
    {
        var variants = new List<PanelVariant> { PanelVariant.Scalar, PanelVariant.Selected };
        if (KernelRung.IsSupported(Rung.Avx2)) variants.Add(PanelVariant.Avx2);
        if (KernelRung.IsSupported(Rung.Avx2) && System.Runtime.Intrinsics.X86.AvxVnni.IsSupported) variants.Add(PanelVariant.Avx2Vnni);
        if (KernelRung.IsSupported(Rung.Avx512)) variants.Add(PanelVariant.Avx512NoVbmi);
        if (KernelRung.IsSupported(Rung.Avx512) && System.Runtime.Intrinsics.X86.Avx512Vbmi.IsSupported) variants.Add(PanelVariant.Avx512);
        foreach (PanelVariant v in variants)
            foreach (int nb in BlockCounts)
                foreach (string kind in Kinds)
                    yield return new object[] { v, nb, kind };
    }

    private static float DotPanel(PanelVariant v, byte* w, byte* panel, int n) => v switch
    {
        PanelVariant.Scalar => DotQ4_0.DotPanelScalar(w, panel, n),
        PanelVariant.Selected => DotQ4_0.DotPanel(w, panel, n),
        PanelVariant.Avx2 => DotQ4_0.DotPanelAvx2(w, panel, n, vnni: false),
        PanelVariant.Avx2Vnni => DotQ4_0.DotPanelAvx2(w, panel, n, vnni: true),
        PanelVariant.Avx512 => DotQ4_0.DotPanelAvx512(w, panel, n, vbmi: true),
        _ => DotQ4_0.DotPanelAvx512(w, panel, n, vbmi: false),
    };

    private static void DotPanel4(PanelVariant v, byte* w, byte* panel, long panelBytes, int n, float* dst, long stride)
    {
        switch (v)
        {
            case PanelVariant.Avx2: DotQ4_0.DotPanel4Avx2(w, panel, panelBytes, n, dst, stride, vnni: false); break;
            case PanelVariant.Avx2Vnni: DotQ4_0.DotPanel4Avx2(w, panel, panelBytes, n, dst, stride, vnni: true); break;
            case PanelVariant.Avx512: DotQ4_0.DotPanel4Avx512(w, panel, panelBytes, n, dst, stride, vbmi: true); break;
            case PanelVariant.Avx512NoVbmi: DotQ4_0.DotPanel4Avx512(w, panel, panelBytes, n, dst, stride, vbmi: false); break;
            case PanelVariant.Selected: DotQ4_0.DotPanel4(w, panel, panelBytes, n, dst, stride); break;
            default: for (int t = 0; t < 4; t++) dst[t * stride] = DotQ4_0.DotPanelScalar(w, panel + t * panelBytes, n); break;
        }
    }

    /// <summary>
    /// Relative tolerance against <see cref="PanelMagnitude"/>: float rounding only (largest observed 2.3e-7·M', the
    /// scalar rung's own rounding included). Against the narrower M = Σ|d_w·d_x·(q−8)·y| the same results reach
    /// 4e-5·M (16 blocks, the 1e3 activation outlier on q = 8 weights), so M alone cannot bound these loops.
    /// </summary>
    private const double Tolerance = 2e-6;

    /// <summary>
    /// Σ_i |x'_i|·(|w'_i| + 16·|d_w|): bounds Σ of |each float term| the panel loops add, d_w·d_x·q·y with |q| ≤ |q−8| + 8
    /// and the offset d_w·d_x·8·y (the Q4_K min term of <see cref="KernelTestData.Magnitude"/> with μ = 8·d_w). The
    /// offset term matters: an activation outlier meeting a weight with q = 8 adds two large float terms that cancel,
    /// where the integer Σ(q−8)·y of <see cref="DotQ4_0.Dot"/> had an exact zero.
    /// </summary>
    private static double PanelMagnitude(byte[] w, float[] wDeq, float[] xDeq)
    {
        double m = Magnitude(GgmlType.Q4_0, w, wDeq, xDeq);
        for (int i = 0; i < xDeq.Length; i++)
            m += Math.Abs((double)xDeq[i]) * 16 * Math.Abs((double)BitConverter.ToHalf(w, i / 32 * DotQ4_0.BlockBytes));
        return m;
    }

    private static byte[] Panel(byte[] xq, int n)
    {
        byte[] p = new byte[Q8_0Panel.BytesFor(n)];
        fixed (byte* px = xq) fixed (byte* pp = p) Q8_0Panel.FromBlocks(px, pp, n);
        return p;
    }

    [Fact]
    public void PanelHoldsTheQ8_0BlocksQuantsScalesAndOffsets()
    {
        const int nb = 5, n = nb * 32;
        byte[] xq = QuantizeActivations(GgmlType.Q4_0, Activations(n, 32, 11));
        byte[] p = Panel(xq, n);
        Assert.Equal(nb * 40, p.Length);
        for (int b = 0; b < nb; b++)
        {
            for (int j = 0; j < 32; j++) Assert.Equal(xq[b * 34 + 2 + j], p[b * 32 + j]);
            float dx = (float)BitConverter.ToHalf(xq, b * 34);
            Assert.Equal(dx, BitConverter.ToSingle(p, nb * 32 + 4 * b));
            int s = 0;
            for (int j = 0; j < 32; j++) s += (sbyte)xq[b * 34 + 2 + j];
            Assert.Equal(dx * (8 * s), BitConverter.ToSingle(p, nb * 36 + 4 * b));
        }
        Assert.NotEqual(0f, BitConverter.ToSingle(p, nb * 36)); // block 0 (the outlier block) has a nonzero sum
    }

    /// <summary>The scalar panel loop's documented float order: s = Σ_b (d_w·d_x)·Σq·y, k = Σ_b d_w·c[b], s − k.</summary>
    [Theory]
    [InlineData(1, "raw")]
    [InlineData(9, "gaussian")]
    [InlineData(33, "raw")]
    public void ScalarPanelFollowsItsFloatOrder(int nb, string kind)
    {
        int n = nb * 32;
        byte[] w = Weights(GgmlType.Q4_0, n, kind, 77 + nb);
        byte[] xq = QuantizeActivations(GgmlType.Q4_0, Activations(n, 32, 78 + nb));
        byte[] p = Panel(xq, n);
        float sum = 0f, corr = 0f;
        for (int b = 0; b < nb; b++)
        {
            float dw = (float)BitConverter.ToHalf(w, b * 18);
            int isum = 0;
            for (int j = 0; j < 16; j++)
                isum += (w[b * 18 + 2 + j] & 0x0F) * (sbyte)xq[b * 34 + 2 + j] + (w[b * 18 + 2 + j] >> 4) * (sbyte)xq[b * 34 + 18 + j];
            sum += dw * BitConverter.ToSingle(p, nb * 32 + 4 * b) * isum;
            corr += dw * BitConverter.ToSingle(p, nb * 36 + 4 * b);
        }
        fixed (byte* pw = w) fixed (byte* pp = p) Assert.Equal(sum - corr, DotQ4_0.DotPanelScalar(pw, pp, n));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void PanelDotMatchesScalarRung(PanelVariant v, int nb, string kind)
    {
        int n = nb * 32;
        int seed = 500 + nb * 10 + kind.Length;
        byte[] w = Weights(GgmlType.Q4_0, n, kind, seed);
        byte[] xq = QuantizeActivations(GgmlType.Q4_0, Activations(n, 32, seed + 1));
        byte[] p = Panel(xq, n);
        double m = PanelMagnitude(w, DequantizeWeights(GgmlType.Q4_0, w, n), DequantizeActivations(GgmlType.Q4_0, xq, n));
        fixed (byte* pw = w) fixed (byte* pxq = xq) fixed (byte* pp = p)
        {
            float expected = DotQ4_0.DotScalar(pw, pxq, n);
            float got = DotPanel(v, pw, pp, n);
            Assert.True(Math.Abs(got - expected) <= Tolerance * m, $"{v} {nb} blocks {kind}: {got} vs scalar {expected} (tol {Tolerance * m:G3})");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FourTokenPanelDotMatchesScalarRungPerToken(PanelVariant v, int nb, string kind)
    {
        int n = nb * 32;
        int seed = 900 + nb * 10 + kind.Length;
        byte[] w = Weights(GgmlType.Q4_0, n, kind, seed);
        float[] wDeq = DequantizeWeights(GgmlType.Q4_0, w, n);
        var xqs = new byte[4][];
        long panelBytes = Q8_0Panel.BytesFor(n);
        byte[] panels = new byte[4 * panelBytes];
        for (int t = 0; t < 4; t++)
        {
            xqs[t] = QuantizeActivations(GgmlType.Q4_0, Activations(n, 32, seed + 1 + t));
            Panel(xqs[t], n).CopyTo(panels, t * panelBytes);
        }
        const int stride = 3;
        float[] dst = new float[4 * stride];
        fixed (byte* pw = w) fixed (byte* pp = panels) fixed (float* pd = dst)
        {
            DotPanel4(v, pw, pp, panelBytes, n, pd, stride);
            for (int t = 0; t < 4; t++)
            {
                fixed (byte* pxq = xqs[t])
                {
                    float expected = DotQ4_0.DotScalar(pw, pxq, n);
                    double m = PanelMagnitude(w, wDeq, DequantizeActivations(GgmlType.Q4_0, xqs[t], n));
                    Assert.True(Math.Abs(dst[t * stride] - expected) <= Tolerance * m,
                        $"{v} {nb} blocks {kind} token {t}: {dst[t * stride]} vs scalar {expected} (tol {Tolerance * m:G3})");
                }
                for (int g = 1; g < stride; g++) Assert.Equal(0f, dst[t * stride + g]);
            }
        }
    }
}
