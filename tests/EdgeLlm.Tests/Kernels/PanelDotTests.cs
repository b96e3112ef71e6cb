using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The Q4_0 panel path (<see cref="Q8_0Panel"/>, <see cref="DotQ4_0.DotPanel"/>, <see cref="DotQ4_0.DotPanel4"/>)
/// against the integer scalar rung <see cref="DotQ4_0.DotScalar"/> on the same Q8_0 activations: the same exact integer
/// block sums (Σq·y − Σoff), so the scalar panel loop is bit-identical and the vector loops within 1e-5·M as in
/// <see cref="QuantDotTests"/>. Block counts around the eight-block step, every weight kind.
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

    private static byte[] Panel(byte[] xq, int n)
    {
        byte[] p = new byte[Q8_0Panel.BytesFor(n)];
        fixed (byte* px = xq) fixed (byte* pp = p) Q8_0Panel.FromBlocks(px, pp, n);
        return p;
    }

    [Fact]
    public void PanelHoldsTheQ8_0BlocksQuantsScalesAndSums()
    {
        const int nb = 5, n = nb * 32;
        byte[] xq = QuantizeActivations(GgmlType.Q4_0, Activations(n, 32, 11));
        byte[] p = Panel(xq, n);
        Assert.Equal(nb * 100, p.Length);
        for (int b = 0; b < nb; b++)
        {
            for (int j = 0; j < 32; j++) Assert.Equal(xq[b * 34 + 2 + j], p[b * 32 + j]);
            for (int j = 0; j < 16; j++)
                Assert.Equal(8 * ((sbyte)xq[b * 34 + 2 + 2 * j] + (sbyte)xq[b * 34 + 3 + 2 * j]), BitConverter.ToInt16(p, nb * 32 + 32 * b + 2 * j));
            Assert.Equal((float)BitConverter.ToHalf(xq, b * 34), BitConverter.ToSingle(p, nb * 64 + 4 * b));
            for (int i = 0; i < 8; i++)
            {
                int s4 = 0;
                for (int j = 4 * i; j < 4 * i + 4; j++) s4 += (sbyte)xq[b * 34 + 2 + j];
                Assert.Equal(-8 * s4, BitConverter.ToInt32(p, nb * 68 + 32 * b + 4 * i));
            }
        }
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
        double m = Magnitude(GgmlType.Q4_0, w, DequantizeWeights(GgmlType.Q4_0, w, n), DequantizeActivations(GgmlType.Q4_0, xq, n));
        fixed (byte* pw = w) fixed (byte* pxq = xq) fixed (byte* pp = p)
        {
            float expected = DotQ4_0.DotScalar(pw, pxq, n);
            float got = DotPanel(v, pw, pp, n);
            if (v == PanelVariant.Scalar) Assert.Equal(expected, got);
            Assert.True(Math.Abs(got - expected) <= 1e-5 * m, $"{v} {nb} blocks {kind}: {got} vs scalar {expected} (tol {1e-5 * m:G3})");
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
                    double m = Magnitude(GgmlType.Q4_0, w, wDeq, DequantizeActivations(GgmlType.Q4_0, xqs[t], n));
                    Assert.True(Math.Abs(dst[t * stride] - expected) <= 1e-5 * m,
                        $"{v} {nb} blocks {kind} token {t}: {dst[t * stride]} vs scalar {expected} (tol {1e-5 * m:G3})");
                }
                for (int g = 1; g < stride; g++) Assert.Equal(0f, dst[t * stride + g]);
            }
        }
    }
}
