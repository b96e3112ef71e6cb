using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Quant;

public unsafe class Q4_KTests
{
    private static float[] Dequantize(byte[] blocks, int n)
    {
        var y = new float[n];
        fixed (byte* s = blocks) fixed (float* d = y) Q4_K.Dequantize(s, d, n);
        return y;
    }

    private static byte[] Quantize(float[] x)
    {
        var q = new byte[x.Length / 256 * 144];
        fixed (float* s = x) fixed (byte* d = q) Q4_K.Quantize(s, d, x.Length);
        return q;
    }

    // Sub-block scales sc = {1, 2, 3, 63, 17, 33, 48, 5} and mins m = {0, 4, 63, 1, 16, 2, 35, 63}, packed by hand:
    // bytes 0-3 = sc[0..3] | (sc[4..7] >> 4) << 6, bytes 4-7 = m[0..3] | (m[4..7] >> 4) << 6,
    // bytes 8-11 = (sc[4..7] & 15) | (m[4..7] & 15) << 4.
    private static readonly byte[] PackedScales = { 0x41, 0x82, 0xC3, 0x3F, 0x40, 0x04, 0xBF, 0xC1, 0x01, 0x21, 0x30, 0xF5 };

    [Fact]
    public void UnpacksSixBitScalesAndMins()
    {
        int[] sc = { 1, 2, 3, 63, 17, 33, 48, 5 };
        int[] m = { 0, 4, 63, 1, 16, 2, 35, 63 };
        fixed (byte* s = PackedScales)
        {
            for (int j = 0; j < 8; j++)
            {
                Q4_K.GetScaleMin(j, s, out int scale, out int min);
                Assert.Equal(sc[j], scale);
                Assert.Equal(m[j], min);
            }
        }
    }

    [Fact]
    public void DequantizesHandBuiltBlock()
    {
        // d = 0.5 (0x3800), dmin = 0.25 (0x3400); w = d·sc·q − dmin·m.
        var raw = new byte[144];
        raw[0] = 0x00; raw[1] = 0x38; raw[2] = 0x00; raw[3] = 0x34;
        Array.Copy(PackedScales, 0, raw, 4, 12);
        const int qs = 16;
        raw[qs + 0] = 0x3A;       // element 0 (sub 0): q 10;      element 32 (sub 1): q 3
        raw[qs + 31] = 0xF1;      // element 31 (sub 0): q 1;      element 63 (sub 1): q 15
        raw[qs + 32] = 0x27;      // element 64 (sub 2): q 7;      element 96 (sub 3): q 2
        raw[qs + 64] = 0x5F;      // element 128 (sub 4): q 15;    element 160 (sub 5): q 5
        raw[qs + 96 + 10] = 0xC4; // element 202 (sub 6): q 4;    element 234 (sub 7): q 12

        float[] y = Dequantize(raw, 256);

        Assert.Equal(5f, y[0]);        // 0.5·1·10 − 0.25·0
        Assert.Equal(2f, y[32]);       // 0.5·2·3 − 0.25·4
        Assert.Equal(0.5f, y[31]);     // 0.5·1·1
        Assert.Equal(14f, y[63]);      // 0.5·2·15 − 1
        Assert.Equal(-5.25f, y[64]);   // 0.5·3·7 − 0.25·63
        Assert.Equal(62.75f, y[96]);   // 0.5·63·2 − 0.25·1
        Assert.Equal(123.5f, y[128]);  // 0.5·17·15 − 0.25·16
        Assert.Equal(82f, y[160]);     // 0.5·33·5 − 0.25·2
        Assert.Equal(87.25f, y[202]);  // 0.5·48·4 − 0.25·35
        Assert.Equal(14.25f, y[234]);  // 0.5·5·12 − 0.25·63
        // q = 0 elsewhere gives −dmin·m of the sub-block.
        float[] zeroQ = { 0f, -1f, -15.75f, -0.25f, -4f, -0.5f, -8.75f, -15.75f };
        for (int sub = 0; sub < 8; sub++) Assert.Equal(zeroQ[sub], y[32 * sub + 5]);
    }

    [Fact]
    public void QuantizeMatchesGgmlReferenceBytes()
    {
        float[] x = QuantTestData.GoldenInput();
        byte[] expected = QuantTestData.GoldenOutput("q4_k.bin");
        byte[] actual = Quantize(x);
        Assert.Equal(-1, QuantTestData.FirstDifference(expected, actual));
    }

    [Fact]
    public void ValuesOnTheGridComeBackExactly()
    {
        // Sub-block j holds q·sc[j]·2^-12 with q running over 0..15, so min = 0 and d = 63·2^-12 / 63 = 2^-12 is an
        // exact fp16; every 6-bit scale is exact and the round trip must be lossless.
        int[] sc = { 63, 1, 17, 40, 5, 32, 62, 9 };
        var x = new float[256];
        for (int j = 0; j < 8; j++)
            for (int l = 0; l < 32; l++)
                x[32 * j + l] = ((l * 7 + j) % 16) * sc[j] * MathF.Pow(2, -12);

        byte[] q = Quantize(x);

        Assert.Equal(0x0C00, q[0] | (q[1] << 8)); // d = 2^-12
        Assert.Equal(x, Dequantize(q, 256));
    }

    [Fact]
    public void GaussianRowsStayWithinTheStepBound()
    {
        // A 32-weight sub-block spans about ±2.1σ (expected extremes of 32 normals), i.e. 15 steps of ≈ 0.28σ;
        // uniform rounding error is step/√12 ≈ 0.081σ, and the 6-bit scales and mins add a little. The weighted
        // min/scale search (which may clip the extremes) does a bit better: 0.072 for this seed. Assert below 0.1.
        float[] x = QuantTestData.Gaussian(256 * 16, seed: 44);
        double rel = QuantTestData.RelativeRmsError(x, Dequantize(Quantize(x), x.Length));
        Assert.InRange(rel, 0.05, 0.1);
    }

    [Fact]
    public void RejectsRowsThatAreNotWholeBlocks()
    {
        var e = Assert.Throws<ArgumentException>(() => Dequantize(new byte[144], 128));
        Assert.Contains("Q4_K", e.Message);
        Assert.Contains("128", e.Message);
        Assert.Throws<ArgumentException>(() => Quantize(new float[300]));
    }
}
