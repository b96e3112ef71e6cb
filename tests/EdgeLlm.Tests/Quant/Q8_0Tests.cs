using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Quant;

public unsafe class Q8_0Tests
{
    private static float[] Dequantize(byte[] blocks, int n)
    {
        var y = new float[n];
        fixed (byte* s = blocks) fixed (float* d = y) Q8_0.Dequantize(s, d, n);
        return y;
    }

    private static byte[] Quantize(float[] x)
    {
        var q = new byte[x.Length / 32 * 34];
        fixed (float* s = x) fixed (byte* d = q) Q8_0.Quantize(s, d, x.Length);
        return q;
    }

    [Fact]
    public void DequantizesHandBuiltBlocks()
    {
        var raw = new byte[68];
        // Block 0: d = 0.5 (fp16 0x3800), q = 127, -128, 0, 1, -1, 2, -3, 100, then zeros.
        raw[0] = 0x00; raw[1] = 0x38;
        sbyte[] q0 = { 127, -128, 0, 1, -1, 2, -3, 100 };
        for (int i = 0; i < q0.Length; i++) raw[2 + i] = (byte)q0[i];
        // Block 1: d = -0.25 (fp16 0xB400), q = 4, -4, 127, then zeros.
        raw[34] = 0x00; raw[35] = 0xB4;
        raw[36] = 4; raw[37] = unchecked((byte)-4); raw[38] = 127;

        float[] y = Dequantize(raw, 64);

        float[] expected0 = { 63.5f, -64f, 0f, 0.5f, -0.5f, 1f, -1.5f, 50f };
        for (int i = 0; i < 8; i++) Assert.Equal(expected0[i], y[i]);
        for (int i = 8; i < 32; i++) Assert.Equal(0f, y[i]);
        Assert.Equal(-1f, y[32]);
        Assert.Equal(1f, y[33]);
        Assert.Equal(-31.75f, y[34]);
        for (int i = 35; i < 64; i++) Assert.Equal(0f, y[i]);
    }

    [Fact]
    public void QuantizesHandMadeRowsLikeGgml()
    {
        var x = new float[96];
        // Block 0: the largest |x| is negative (-127) so d = 127/127 = 1; ties round half away from zero.
        float[] b0 = { -127f, 2.5f, -2.5f, 0.5f, -0.5f, 1.4999f, 126.5f, 3f };
        Array.Copy(b0, 0, x, 0, b0.Length);
        // Block 1: all zero -> d = 0 and every q = 0.
        // Block 2: amax 63.5 -> d = 0.5, 1/d = 2: x = 0.25 is a tie (0.5 -> 1), -0.75 is a tie (-1.5 -> -2).
        float[] b2 = { 63.5f, 0.25f, -0.75f, 0.2f, -63.5f };
        Array.Copy(b2, 0, x, 64, b2.Length);

        byte[] q = Quantize(x);

        var expected = new byte[102];
        expected[0] = 0x00; expected[1] = 0x3C; // d = 1.0
        sbyte[] e0 = { -127, 3, -3, 1, -1, 1, 127, 3 };
        for (int i = 0; i < e0.Length; i++) expected[2 + i] = (byte)e0[i];
        // block 1: 34 zero bytes
        expected[68] = 0x00; expected[69] = 0x38; // d = 0.5
        sbyte[] e2 = { 127, 1, -2, 0, -127 };
        for (int i = 0; i < e2.Length; i++) expected[70 + i] = (byte)e2[i];
        Assert.Equal(expected, q);
    }

    [Fact]
    public void QuantizeMatchesGgmlReferenceBytes()
    {
        float[] x = QuantTestData.GoldenInput();
        byte[] expected = QuantTestData.GoldenOutput("q8_0.bin");
        byte[] actual = Quantize(x);
        Assert.Equal(-1, QuantTestData.FirstDifference(expected, actual));
    }

    [Fact]
    public void QuantizeRoundTripErrorIsWithinHalfAStep()
    {
        // |x - d·q| <= d/2 per element, plus the fp16 rounding of d (relative 2^-11) times |q| <= 127.
        float[] x = QuantTestData.Gaussian(32 * 8, seed: 8);
        float[] y = Dequantize(Quantize(x), x.Length);
        for (int b = 0; b < 8; b++)
        {
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = Math.Max(amax, Math.Abs(x[32 * b + i]));
            float d = amax / 127;
            for (int i = 0; i < 32; i++)
                Assert.True(Math.Abs(x[32 * b + i] - y[32 * b + i]) <= d / 2 + amax * MathF.Pow(2, -11), $"element {32 * b + i}");
        }
    }

    [Fact]
    public void RejectsRowsThatAreNotWholeBlocks()
    {
        var buf = new byte[64];
        var f = new float[64];
        fixed (byte* b = buf) fixed (float* p = f)
        {
            byte* bb = b; float* pp = p;
            var e = Assert.Throws<ArgumentException>(() => Q8_0.Dequantize(bb, pp, 33));
            Assert.Contains("Q8_0", e.Message);
            Assert.Contains("33", e.Message);
            Assert.Throws<ArgumentException>(() => Q8_0.Dot(bb, pp, 31));
            Assert.Throws<ArgumentException>(() => Q8_0.Quantize(pp, bb, 40));
        }
    }
}
