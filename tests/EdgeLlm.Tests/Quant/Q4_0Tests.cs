using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Quant;

public unsafe class Q4_0Tests
{
    private static float[] Dequantize(byte[] blocks, int n)
    {
        var y = new float[n];
        fixed (byte* s = blocks) fixed (float* d = y) Q4_0.Dequantize(s, d, n);
        return y;
    }

    private static byte[] Quantize(float[] x)
    {
        var q = new byte[x.Length / 32 * 18];
        fixed (float* s = x) fixed (byte* d = q) Q4_0.Quantize(s, d, x.Length);
        return q;
    }

    [Fact]
    public void DequantizesHandBuiltBlock()
    {
        // d = 0.5 (fp16 0x3800); qs[j] low nibble -> element j, high nibble -> element j+16; w = d·(q-8).
        var raw = new byte[18];
        raw[0] = 0x00; raw[1] = 0x38;
        for (int j = 0; j < 16; j++) raw[2 + j] = 0x88;
        raw[2] = 0xF0;  // q0 = 0 -> -4,   q16 = 15 -> 3.5
        raw[3] = 0x18;  // q1 = 8 -> 0,    q17 = 1 -> -3.5
        raw[4] = 0x9A;  // q2 = 10 -> 1,   q18 = 9 -> 0.5
        raw[17] = 0x7F; // q15 = 15 -> 3.5, q31 = 7 -> -0.5

        float[] y = Dequantize(raw, 32);

        var expected = new float[32];
        expected[0] = -4f; expected[16] = 3.5f;
        expected[1] = 0f; expected[17] = -3.5f;
        expected[2] = 1f; expected[18] = 0.5f;
        expected[15] = 3.5f; expected[31] = -0.5f;
        Assert.Equal(expected, y);
    }

    [Fact]
    public void QuantizesHandMadeRowsLikeGgml()
    {
        var x = new float[96];
        // Block 0: the largest |x| is -8, so d = -8/-8 = 1 and 1/d = 1; q = min(15, trunc(x + 8.5)).
        // Ties go up: 2.5 -> 11 (value 3), -2.5 -> 6 (value -2); 7.9 -> 16 clamps to 15.
        x[0] = 2.5f; x[1] = -2.5f; x[2] = 0.5f; x[3] = -0.5f; x[4] = 7.9f; x[5] = -8f;
        x[16] = 3.2f; x[17] = -7.5f; x[31] = 1.5f;
        // Block 1: the largest |x| is +4 (first of the two ±4), so d = 4/-8 = -0.5 and 1/d = -2:
        // 4 -> trunc(0.5) = 0, -4 -> trunc(16.5) = 16 -> 15, 1.25 -> 6, -1.25 -> 11.
        x[32] = 4f; x[33] = -4f; x[34] = 1.25f; x[35] = -1.25f;
        // Block 2: all zero: d = 0/-8 = -0 (fp16 0x8000), 1/d is replaced by 0, every q = trunc(8.5) = 8.

        byte[] q = Quantize(x);

        byte[] expected =
        {
            0x00, 0x3C, 0xBB, 0x16, 0x89, 0x88, 0x8F, 0x80, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0xA8,
            0x00, 0xB8, 0x80, 0x8F, 0x86, 0x8B, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
            0x00, 0x80, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
        };
        Assert.Equal(expected, q);

        float[] y = Dequantize(q, 96);
        Assert.Equal(3f, y[0]);
        Assert.Equal(-2f, y[1]);
        Assert.Equal(-8f, y[5]);
        Assert.Equal(4f, y[32]);
        Assert.Equal(-3.5f, y[33]);
        Assert.Equal(0f, y[64]);
    }

    [Fact]
    public void QuantizeMatchesGgmlReferenceBytes()
    {
        float[] x = QuantTestData.GoldenInput();
        byte[] expected = QuantTestData.GoldenOutput("q4_0.bin");
        byte[] actual = Quantize(x);
        Assert.Equal(-1, QuantTestData.FirstDifference(expected, actual));
    }

    [Fact]
    public void RejectsRowsThatAreNotWholeBlocks()
    {
        var e = Assert.Throws<ArgumentException>(() => Quantize(new float[48]));
        Assert.Contains("Q4_0", e.Message);
        Assert.Contains("48", e.Message);
        Assert.Throws<ArgumentException>(() => Dequantize(new byte[36], 40));
    }
}
