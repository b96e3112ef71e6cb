using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Quant;

public unsafe class Q6_KTests
{
    private static float[] Dequantize(byte[] blocks, int n)
    {
        var y = new float[n];
        fixed (byte* s = blocks) fixed (float* d = y) Q6_K.Dequantize(s, d, n);
        return y;
    }

    private static byte[] Quantize(float[] x)
    {
        var q = new byte[x.Length / 256 * 210];
        fixed (float* s = x) fixed (byte* d = q) Q6_K.Quantize(s, d, x.Length);
        return q;
    }

    [Fact]
    public void DequantizesHandBuiltBlock()
    {
        // Layout: ql[128] at 0, qh[64] at 128, int8 scales[16] at 192, fp16 d at 208 (last). w = d·sc·(q − 32).
        var raw = new byte[210];
        raw[208] = 0x00; raw[209] = 0x38; // d = 0.5
        sbyte[] sc = { 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 127, -128 };
        for (int i = 0; i < 16; i++) raw[192 + i] = (byte)sc[i];
        const int qh = 128;
        // First half, l = 0 (scales 0, 2, 4, 6): q1 = 63, q2 = 0, q3 = 32, q4 = 45.
        raw[0] = 0x0F; raw[32] = 0xD0; raw[qh + 0] = 0xA3;
        // First half, l = 17 (scales 1, 3, 5, 7): q1 = 1, q2 = 33, q3 = 16, q4 = 62.
        raw[17] = 0x01; raw[49] = 0xE1; raw[qh + 17] = 0xD8;
        // Second half (ql + 64, qh + 32, scales + 8), l = 31 (scales 9, 11, 13, 15): q1 = 0, q2 = 63, q3 = 31, q4 = 33.
        raw[64 + 31] = 0xF0; raw[64 + 63] = 0x1F; raw[qh + 32 + 31] = 0x9C;

        float[] y = Dequantize(raw, 256);

        Assert.Equal(15.5f, y[0]);    // 0.5·1·31
        Assert.Equal(-32f, y[32]);    // 0.5·2·(−32)
        Assert.Equal(0f, y[64]);      // 0.5·3·0
        Assert.Equal(26f, y[96]);     // 0.5·4·13
        Assert.Equal(15.5f, y[17]);   // 0.5·(−1)·(−31)
        Assert.Equal(-1f, y[49]);     // 0.5·(−2)·1
        Assert.Equal(24f, y[81]);     // 0.5·(−3)·(−16)
        Assert.Equal(-60f, y[113]);   // 0.5·(−4)·30
        Assert.Equal(80f, y[159]);    // 0.5·(−5)·(−32)
        Assert.Equal(-93f, y[191]);   // 0.5·(−6)·31
        Assert.Equal(3.5f, y[223]);   // 0.5·(−7)·(−1)
        Assert.Equal(-64f, y[255]);   // 0.5·(−128)·1
        // All other bits zero: q = 0 -> w = −16·sc.
        Assert.Equal(-16f, y[1]);     // scale 0 = 1
        Assert.Equal(-80f, y[128]);   // scale 8 = 5
        Assert.Equal(-96f, y[160]);   // scale 10 = 6
        Assert.Equal(-112f, y[192]);  // scale 12 = 7
        Assert.Equal(-2032f, y[224]); // scale 14 = 127
        Assert.Equal(16f, y[20]);     // scale 1 = −1
    }

    [Fact]
    public void QuantizeMatchesGgmlReferenceBytes()
    {
        float[] x = QuantTestData.GoldenInput();
        byte[] expected = QuantTestData.GoldenOutput("q6_k.bin");
        byte[] actual = Quantize(x);
        Assert.Equal(-1, QuantTestData.FirstDifference(expected, actual));
    }

    [Fact]
    public void ValuesOnTheGridComeBackExactly()
    {
        // Sub-block s holds D·k[s]·l with D = 2^-10 and l over −32..31, the −32 end being its largest |x|.
        // ggml makes the largest sub-block scale −128 with d = −max_scale/128: here k = 128 gives d = −2^-10
        // (exact fp16), every other k is an integer multiple of |d|, so each stored scale is −k and all is exact.
        int[] k = { 128, 1, -3, 64, 100, -127, 7, 50, 2, -64, 127, 33, 16, -5, 99, 120 };
        var x = new float[256];
        for (int s = 0; s < 16; s++)
            for (int i = 0; i < 16; i++)
                x[16 * s + i] = MathF.Pow(2, -10) * k[s] * (i == 0 ? -32 : (i * 5) % 64 - 32);

        byte[] q = Quantize(x);

        Assert.Equal(0x9400, q[208] | (q[209] << 8)); // d = −2^-10
        Assert.Equal(unchecked((byte)-128), q[192]);  // sub-block 0 carries the largest scale
        Assert.Equal(unchecked((byte)-1), q[193]);
        Assert.Equal((byte)3, q[194]);
        Assert.Equal(x, Dequantize(q, 256));
    }

    [Fact]
    public void AllZeroBlockIsAllZeroBytes()
    {
        byte[] q = Quantize(new float[256]);
        Assert.All(q, b => Assert.Equal(0, b));
    }

    [Fact]
    public void GaussianRowsStayWithinTheStepBound()
    {
        // A 16-weight sub-block's largest |x| is about 2σ (expected max of 16 |normals| ≈ 1.9σ) and maps to 32
        // steps, so step ≈ 0.06σ and the rounding error is step/√12 ≈ 0.017σ; the 8-bit sub-block scales add
        // almost nothing (0.0171 for this seed). Assert the relative RMS error is below 0.025 (roughly 1.5/2^6).
        float[] x = QuantTestData.Gaussian(256 * 16, seed: 66);
        double rel = QuantTestData.RelativeRmsError(x, Dequantize(Quantize(x), x.Length));
        Assert.InRange(rel, 0.005, 0.025);
    }

    [Fact]
    public void RejectsRowsThatAreNotWholeBlocks()
    {
        var e = Assert.Throws<ArgumentException>(() => Quantize(new float[257]));
        Assert.Contains("Q6_K", e.Message);
        Assert.Contains("257", e.Message);
        Assert.Throws<ArgumentException>(() => Dequantize(new byte[210], 255));
    }
}
