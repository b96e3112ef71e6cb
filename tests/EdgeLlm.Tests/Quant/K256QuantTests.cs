using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The 256-weight super-block types added for issue 12 (Q5_K, IQ4_XS, Q3_K, Q2_K) through <see cref="QuantRef"/>:
/// quantizer bytes against ggml's reference quantizer on the golden row, quantize→dequantize error bounds, the
/// reference dot against the dequantized weights, and row-length checks.
/// </summary>
public unsafe class K256QuantTests
{
    public static IEnumerable<object[]> Types() => new[]
    {
        new object[] { GgmlType.Q5_K },
        new object[] { GgmlType.IQ4_XS },
    };

    private static string Golden(GgmlType t) => t switch
    {
        GgmlType.Q5_K => "q5_k.bin",
        GgmlType.IQ4_XS => "iq4_xs.bin",
        GgmlType.Q3_K => "q3_k.bin",
        _ => "q2_k.bin",
    };

    private static float[] RoundTrip(GgmlType t, float[] x)
    {
        byte[] q = QuantRef.QuantizeRow(t, x);
        var y = new float[x.Length];
        QuantRef.DequantizeRow(t, q, y);
        return y;
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void QuantizeMatchesGgmlReferenceBytes(GgmlType t)
    {
        float[] x = QuantTestData.GoldenInput();
        byte[] expected = QuantTestData.GoldenOutput(Golden(t));
        byte[] actual = QuantRef.QuantizeRow(t, x);
        Assert.Equal(GgmlTypes.RowBytes(t, x.Length), expected.Length);
        Assert.Equal(-1, QuantTestData.FirstDifference(expected, actual));
    }

    /// <summary>
    /// Relative RMS error of Gaussian rows. A sub-block of k normals spans about ±2σ (±2.1σ for 32, ±1.8σ for 16);
    /// with 2^b levels the step is that span / (2^b − 1) and uniform rounding costs step/√12, a little more for the
    /// quantized sub-block scales, a little less where the weighted search clips the extremes. The bands are
    /// those estimates ± about a third:
    /// Q5_K: 4.2σ/31/√12 ≈ 0.039; IQ4_XS: 16 non-uniform levels over ±2.1σ, ≈ 4-bit: ≈ 0.08 (a bit better: the grid is
    /// denser near 0); Q3_K: 3.6σ/7/√12 ≈ 0.15; Q2_K: 3.6σ/3/√12 ≈ 0.35 (the min/scale fit clips the tails).
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q5_K, 0.025, 0.05)]
    [InlineData(GgmlType.IQ4_XS, 0.05, 0.1)]
    public void GaussianRowsStayWithinTheStepBound(GgmlType t, double lo, double hi)
    {
        float[] x = QuantTestData.Gaussian(256 * 16, seed: 45);
        double rel = QuantTestData.RelativeRmsError(x, RoundTrip(t, x));
        Assert.InRange(rel, lo, hi);
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void DotEqualsDequantizedDot(GgmlType t)
    {
        foreach (int blocks in new[] { 1, 2, 5 })
        {
            int n = 256 * blocks;
            byte[] row = QuantRef.QuantizeRow(t, QuantTestData.Gaussian(n, seed: 700 + blocks));
            float[] x = QuantTestData.Gaussian(n, seed: 800 + blocks);
            var w = new float[n];
            QuantRef.DequantizeRow(t, row, w);
            Assert.Equal(QuantTestData.DotReference(w, x), QuantRef.Dot(t, row, x));
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void RejectsRowsThatAreNotWholeBlocks(GgmlType t)
    {
        byte[] row = new byte[GgmlTypes.RowBytes(t, 256)];
        var e = Assert.Throws<ArgumentException>(() =>
        {
            fixed (byte* p = row)
            {
                float* y = stackalloc float[256];
                QuantRef.DequantizeRow(t, p, y, 128);
            }
        });
        Assert.Contains("128", e.Message);
        Assert.Throws<ArgumentException>(() => QuantRef.QuantizeRow(t, new float[300]));
    }

    [Fact]
    public void Q5_KDequantizesHandBuiltBlock()
    {
        // d = 0.5, dmin = 0.25; scales/mins as Q4_K's packing: sc = {1, 2, 3, 63, 17, 33, 48, 5},
        // m = {0, 4, 63, 1, 16, 2, 35, 63}. w = d·sc·(nibble + 16·bit) − dmin·m.
        byte[] packed = { 0x41, 0x82, 0xC3, 0x3F, 0x40, 0x04, 0xBF, 0xC1, 0x01, 0x21, 0x30, 0xF5 };
        var raw = new byte[176];
        raw[1] = 0x38; raw[3] = 0x34;
        Array.Copy(packed, 0, raw, 4, 12);
        const int qh = 16, qs = 48;
        raw[qs + 0] = 0x3A; raw[qh + 0] = 0x01;        // element 0 (sub 0): 10 + 16 = 26; element 32 (sub 1): 3
        raw[qs + 31] = 0xF1; raw[qh + 31] = 0x02;      // element 31 (sub 0): 1; element 63 (sub 1): 15 + 16 = 31
        raw[qs + 96 + 10] = 0xC4; raw[qh + 10] = 0xC0; // element 202 (sub 6): 4 + 16 = 20; element 234 (sub 7): 12 + 16 = 28
        var y = new float[256];
        QuantRef.DequantizeRow(GgmlType.Q5_K, raw, y);
        Assert.Equal(13f, y[0]);       // 0.5·1·26
        Assert.Equal(2f, y[32]);       // 0.5·2·3 − 0.25·4
        Assert.Equal(0.5f, y[31]);     // 0.5·1·1
        Assert.Equal(30f, y[63]);      // 0.5·2·31 − 1
        Assert.Equal(471.25f, y[202]); // 0.5·48·20 − 0.25·35
        Assert.Equal(54.25f, y[234]);  // 0.5·5·28 − 0.25·63
        Assert.Equal(-15.75f, y[64]);  // q 0 in sub 2: −0.25·63
    }
}
