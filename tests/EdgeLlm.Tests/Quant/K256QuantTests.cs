using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The 256-weight super-block types added for issue 12 (Q5_K, IQ4_XS, Q3_K, Q2_K) through <see cref="QuantRef"/>:
/// quantizer bytes against ggml's reference quantizer on the golden row, quantize→dequantize error bounds, the
/// and row-length checks (the reference dot is checked against the integer scalar kernels in Kernels/K256DotTests).
/// </summary>
public unsafe class K256QuantTests
{
    public static IEnumerable<object[]> Types() => new[]
    {
        new object[] { GgmlType.Q5_K },
        new object[] { GgmlType.IQ4_XS },
        new object[] { GgmlType.Q3_K },
        new object[] { GgmlType.Q2_K },
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
    [InlineData(GgmlType.Q3_K, 0.1, 0.2)]
    [InlineData(GgmlType.Q2_K, 0.23, 0.47)]
    public void GaussianRowsStayWithinTheStepBound(GgmlType t, double lo, double hi)
    {
        float[] x = QuantTestData.Gaussian(256 * 16, seed: 45);
        double rel = QuantTestData.RelativeRmsError(x, RoundTrip(t, x));
        Assert.InRange(rel, lo, hi);
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

    [Fact]
    public void IQ4_XSDequantizesHandBuiltBlock()
    {
        // d = 0.5; 6-bit scales ls: sub-block 0 → 33, 1 → 0, 2..6 → 32, 7 → 63 (w = d·(ls − 32)·K[q]).
        // scales_l = [ls0 | ls1 << 4, …] = 01 00 00 F0; scales_h = Σ (ls_ib >> 4) << 2·ib = 0xEAA2.
        var raw = new byte[136];
        raw[1] = 0x38;
        raw[2] = 0xA2; raw[3] = 0xEA;
        raw[4] = 0x01; raw[7] = 0xF0;
        const int qs = 8;
        raw[qs + 0] = 0xF0;       // element 0: K[0] = −127; element 16: K[15] = 113
        raw[qs + 16] = 0x08;      // element 32: K[8] = 1;    element 48: K[0] = −127
        raw[qs + 112 + 5] = 0x3C; // element 229: K[12] = 53; element 245: K[3] = −65
        var y = new float[256];
        QuantRef.DequantizeRow(GgmlType.IQ4_XS, raw, y);
        Assert.Equal(-63.5f, y[0]);     // 0.5·1·(−127)
        Assert.Equal(56.5f, y[16]);     // 0.5·1·113
        Assert.Equal(-63.5f, y[1]);     // byte 0x00: K[0]
        Assert.Equal(-16f, y[32]);      // 0.5·(−32)·1
        Assert.Equal(2032f, y[48]);     // 0.5·(−32)·(−127)
        Assert.Equal(821.5f, y[229]);   // 0.5·31·53
        Assert.Equal(-1007.5f, y[245]); // 0.5·31·(−65)
        Assert.Equal(0f, Math.Abs(y[100])); // sub-block 3: ls 32, scale 0
    }

    [Fact]
    public void Q3_KDequantizesHandBuiltBlock()
    {
        // d = 0.5; stored scales (sc + 32): group 0 → 33, 1 → 0, 9 → 63, 15 → 40, others 32. Low nibbles in bytes 0..7
        // (groups 8..15 in their high nibbles): 01 F0 00 00 00 00 00 80; top bit pairs (bytes 8..11, pair j / 4 of byte
        // 8 + j % 4): AA B8 AA AA. w = d·sc·(q2 + 4·hbit − 4).
        var raw = new byte[110];
        raw[109] = 0x38;
        byte[] scales = { 0x01, 0xF0, 0, 0, 0, 0, 0, 0x80, 0xAA, 0xB8, 0xAA, 0xAA };
        Array.Copy(scales, 0, raw, 96, 12);
        const int qs = 32;
        raw[qs + 0] = 0x03; raw[0] = 0x01;       // element 0 (group 0): q2 3, hmask[0] bit 0 set → 3
        raw[qs + 16] = 0x01;                     // element 16 (group 1): q2 1, bit clear → −3
        raw[qs + 32 + 22] = 0x02; raw[22] = 0x10; // element 150 (half 1, quarter 0, group 9): q2 2, hmask[22] bit 4 → 2
        raw[qs + 32 + 31] = 0xC0;                // element 255 (half 1, quarter 3, group 15): q2 3, hmask[31] bit 7 clear → −1
        var y = new float[256];
        QuantRef.DequantizeRow(GgmlType.Q3_K, raw, y);
        Assert.Equal(1.5f, y[0]);    // 0.5·1·3
        Assert.Equal(-2f, y[1]);     // 0.5·1·(−4)
        Assert.Equal(48f, y[16]);    // 0.5·(−32)·(−3)
        Assert.Equal(31f, y[150]);   // 0.5·31·2
        Assert.Equal(-4f, y[255]);   // 0.5·8·(−1)
        Assert.Equal(0f, Math.Abs(y[32])); // group 2: scale 0
        fixed (byte* s = scales)
        {
            Assert.Equal(1, Q3_K.GetScale(0, s));
            Assert.Equal(-32, Q3_K.GetScale(1, s));
            Assert.Equal(31, Q3_K.GetScale(9, s));
            Assert.Equal(8, Q3_K.GetScale(15, s));
            Assert.Equal(0, Q3_K.GetScale(12, s));
        }
    }

    [Fact]
    public void Q2_KDequantizesHandBuiltBlock()
    {
        // d = 0.5, dmin = 0.25; scales[g] = sc | m << 4: group 0 → sc 1, m 2; group 1 → sc 3, m 15; group 15 → sc 15, m 0.
        // w = d·sc·q2 − dmin·m.
        var raw = new byte[84];
        raw[81] = 0x38; raw[83] = 0x34;
        raw[0] = 0x21; raw[1] = 0xF3; raw[15] = 0x0F;
        const int qs = 16;
        raw[qs + 0] = 0x03;      // element 0: q 3
        raw[qs + 16] = 0x02;     // element 16: q 2
        raw[qs + 32 + 31] = 0x40; // element 255 (half 1, quarter 3): q 1
        var y = new float[256];
        QuantRef.DequantizeRow(GgmlType.Q2_K, raw, y);
        Assert.Equal(1f, y[0]);      // 0.5·1·3 − 0.25·2
        Assert.Equal(-0.5f, y[1]);   // −0.25·2
        Assert.Equal(-0.75f, y[16]); // 0.5·3·2 − 0.25·15
        Assert.Equal(-3.75f, y[17]); // −0.25·15
        Assert.Equal(7.5f, y[255]);  // 0.5·15·1
    }
}
