using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The 32-weight block formats Q4_1, Q5_0, Q5_1 and IQ4_NL: hand-built blocks, ggml's reference bytes for the golden
/// row, exact round trips of values on the grid and per-element error bounds (the reference dot is checked against the
/// integer scalar kernels in Kernels/Block32DotTests).
/// </summary>
public unsafe class Block32QuantTests
{
    public static TheoryData<GgmlType> Types => new() { GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL };

    private static float[] Dequantize(GgmlType t, byte[] q, int n)
    {
        var y = new float[n];
        QuantRef.DequantizeRow(t, q, y);
        return y;
    }

    private static byte[] Quantize(GgmlType t, float[] x)
    {
        var q = new byte[GgmlTypes.RowBytes(t, x.Length)];
        fixed (float* s = x) fixed (byte* d = q)
        {
            switch (t)
            {
                case GgmlType.Q4_1: Q4_1.Quantize(s, d, x.Length); break;
                case GgmlType.Q5_0: Q5_0.Quantize(s, d, x.Length); break;
                case GgmlType.Q5_1: Q5_1.Quantize(s, d, x.Length); break;
                default: IQ4_NL.Quantize(s, d, x.Length); break;
            }
        }
        return q;
    }

    private static float Half(byte[] b, int o) => (float)BitConverter.ToHalf(b, o);

    [Fact]
    public void BlockConstantsMatchTheGgufGeometry()
    {
        Assert.Equal((Q4_1.BlockSize, Q4_1.BlockBytes), GgmlTypes.Geometry(GgmlType.Q4_1));
        Assert.Equal((Q5_0.BlockSize, Q5_0.BlockBytes), GgmlTypes.Geometry(GgmlType.Q5_0));
        Assert.Equal((Q5_1.BlockSize, Q5_1.BlockBytes), GgmlTypes.Geometry(GgmlType.Q5_1));
        Assert.Equal((IQ4_NL.BlockSize, IQ4_NL.BlockBytes), GgmlTypes.Geometry(GgmlType.IQ4_NL));
    }

    [Fact]
    public void DequantizesHandBuiltQ4_1Block()
    {
        // d = 0.5 (0x3800), m = −1 (0xBC00); w = d·q + m. qs[0] = 0xF0: q0 = 0 -> −1, q16 = 15 -> 6.5;
        // qs[1] = 0x21: q1 = 1 -> −0.5, q17 = 2 -> 0; the rest 0x00 -> −1.
        var raw = new byte[20];
        raw[1] = 0x38; raw[3] = 0xBC; raw[4] = 0xF0; raw[5] = 0x21;
        float[] y = Dequantize(GgmlType.Q4_1, raw, 32);
        var expected = Enumerable.Repeat(-1f, 32).ToArray();
        expected[16] = 6.5f; expected[1] = -0.5f; expected[17] = 0f;
        Assert.Equal(expected, y);
    }

    [Fact]
    public void DequantizesHandBuiltQ5_0Block()
    {
        // d = 0.25 (0x3400); qh bits 0 and 17 set (bytes 01 00 02 00); w = d·(q − 16).
        // qs[0] = 0x3F: q0 = 15|16 = 31 -> 3.75, q16 = 3 -> −3.25; qs[1] = 0x00: q1 = 0 -> −4, q17 = 0|16 -> 0.
        var raw = new byte[22];
        raw[1] = 0x34; raw[2] = 0x01; raw[4] = 0x02; raw[6] = 0x3F;
        float[] y = Dequantize(GgmlType.Q5_0, raw, 32);
        var expected = Enumerable.Repeat(-4f, 32).ToArray();
        expected[0] = 3.75f; expected[16] = -3.25f; expected[17] = 0f;
        Assert.Equal(expected, y);
    }

    [Fact]
    public void DequantizesHandBuiltQ5_1Block()
    {
        // d = 0.5, m = 1 (0x3C00); qh bits 0 and 31 (bytes 01 00 00 80); w = d·q + m.
        // qs[0] = 0x0F: q0 = 15|16 = 31 -> 16.5, q16 = 0 -> 1; qs[15] = 0xA0: q15 = 0 -> 1, q31 = 10|16 = 26 -> 14.
        var raw = new byte[24];
        raw[1] = 0x38; raw[3] = 0x3C; raw[4] = 0x01; raw[7] = 0x80; raw[8] = 0x0F; raw[8 + 15] = 0xA0;
        float[] y = Dequantize(GgmlType.Q5_1, raw, 32);
        var expected = Enumerable.Repeat(1f, 32).ToArray();
        expected[0] = 16.5f; expected[31] = 14f;
        Assert.Equal(expected, y);
    }

    [Fact]
    public void DequantizesHandBuiltIQ4_NLBlock()
    {
        // d = 0.5; grid −127 −104 −83 −65 −49 −35 −22 −10 1 13 25 38 53 69 89 113.
        // qs[0] = 0xF0: K[0] -> −63.5, K[15] -> 56.5; qs[1] = 0x78: K[8] -> 0.5, K[7] -> −5; the rest 0x00 -> −63.5.
        var raw = new byte[18];
        raw[1] = 0x38; raw[2] = 0xF0; raw[3] = 0x78;
        float[] y = Dequantize(GgmlType.IQ4_NL, raw, 32);
        var expected = Enumerable.Repeat(-63.5f, 32).ToArray();
        expected[16] = 56.5f; expected[1] = 0.5f; expected[17] = -5f;
        Assert.Equal(expected, y);
    }

    [Theory]
    [InlineData(GgmlType.Q4_1, "q4_1.bin")]
    [InlineData(GgmlType.Q5_0, "q5_0.bin")]
    [InlineData(GgmlType.Q5_1, "q5_1.bin")]
    [InlineData(GgmlType.IQ4_NL, "iq4_nl.bin")]
    public void QuantizeMatchesGgmlReferenceBytes(GgmlType t, string file)
    {
        float[] x = QuantTestData.GoldenInput();
        byte[] expected = QuantTestData.GoldenOutput(file);
        byte[] actual = Quantize(t, x);
        Assert.Equal(-1, QuantTestData.FirstDifference(expected, actual));
        Assert.Equal(actual, QuantRef.QuantizeRow(t, x));
    }

    /// <summary>Values already on a block's grid (with fp16-exact scale and offset) come back exactly.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void GridValuesRoundTripExactly(GgmlType t)
    {
        var x = new float[96];
        var rng = new Random(17 + (int)t);
        for (int b = 0; b < 3; b++)
        {
            float scale = MathF.ScaleB(1f, -3 - 2 * b); // 2^-3, 2^-5, 2^-7
            // Each block holds every grid point at least once (the first 16 / 32 slots), the rest at random.
            for (int j = 0; j < 32; j++)
            {
                int levels = t is GgmlType.Q5_0 or GgmlType.Q5_1 ? 32 : 16;
                int q = j < levels ? (j * 7) % levels : rng.Next(levels);
                x[32 * b + j] = t switch
                {
                    GgmlType.Q4_1 or GgmlType.Q5_1 => scale * q - 3f * (b + 1) * scale,
                    GgmlType.Q5_0 => scale * (q - 16),
                    _ => scale * IQ4_NL.Values[q],
                };
            }
        }
        float[] y = Dequantize(t, Quantize(t, x), x.Length);
        Assert.Equal(x, y);
    }

    [Fact]
    public void ConstantAndZeroBlocks()
    {
        // A constant block: Q4_1/Q5_1 store d = 0, m = the value, q = 0; it dequantizes exactly when fp16-exact.
        float[] c = Enumerable.Repeat(0.75f, 32).ToArray();
        foreach (GgmlType t in new[] { GgmlType.Q4_1, GgmlType.Q5_1 })
        {
            byte[] q = Quantize(t, c);
            Assert.Equal(0f, Half(q, 0));
            Assert.Equal(0.75f, Half(q, 2));
            Assert.All(q.Skip(4), b => Assert.Equal(0, b));
            Assert.Equal(c, Dequantize(t, q, 32));
        }
        // All zero: Q5_0 d = 0/−16 = −0 (0x8000), every q = trunc(16.5) = 16: nibbles 0, all qh bits set.
        byte[] q50 = Quantize(GgmlType.Q5_0, new float[32]);
        Assert.Equal(new byte[] { 0x00, 0x80, 0xFF, 0xFF, 0xFF, 0xFF }, q50.Take(6).ToArray());
        Assert.All(q50.Skip(6), b => Assert.Equal(0, b));
        // IQ4_NL: a block below 1e-15 gets scale 0 and index 8 (K = 1, the grid point nearest 0) everywhere.
        float[] tiny = Enumerable.Repeat(1e-16f, 32).ToArray();
        byte[] qnl = Quantize(GgmlType.IQ4_NL, tiny);
        Assert.Equal(0, qnl[0]);
        Assert.Equal(0, qnl[1]);
        Assert.All(qnl.Skip(2), b => Assert.Equal(0x88, b));
    }

    /// <summary>
    /// Per element, for N(0,1) blocks (fp16 scales in the normal range, relative rounding ≤ 2^-11):
    /// Q4_1/Q5_1 round to the nearest of min + d·q, so |x − x'| ≤ d/2 plus the fp16 rounding of d (·q ≤ levels−1)
    /// and of m: ≤ d/2 + 2^-10·(|min| + |max|). Q5_0 rounds to d·(q − 16), except that +amax (when max is negative)
    /// clamps to q = 31, a full step: ≤ |d| + 2^-10·amax. IQ4_NL maps x/s to the nearest grid point: inside the grid's
    /// range [−127, 113]·s that is within half the widest gap (24), 12·|s|, plus the fp16 rounding of s (≤ 127·|s|·2^-11).
    /// Beyond the range the error grows, but the least-squares fit weights each element by x², so the largest elements
    /// sit near the grid's ends; we check ≤ 24·|s| + 2^-10·amax (the in-range bound with a factor 2 for them). The RMS
    /// error must stay within 1.5× the uniform-noise estimate step/√12 for a block range of about 4.5σ.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void ErrorIsWithinTheGridStep(GgmlType t)
    {
        const int n = 32 * 64;
        float[] x = QuantTestData.Gaussian(n, seed: 77 + (int)t);
        byte[] q = Quantize(t, x);
        float[] y = Dequantize(t, q, n);
        int bb = GgmlTypes.Geometry(t).BlockBytes;
        for (int b = 0; b < n / 32; b++)
        {
            float min = float.MaxValue, max = -float.MaxValue, amax = 0;
            for (int j = 32 * b; j < 32 * b + 32; j++)
            {
                min = Math.Min(min, x[j]); max = Math.Max(max, x[j]); amax = Math.Max(amax, Math.Abs(x[j]));
            }
            double bound = t switch
            {
                GgmlType.Q4_1 => (max - min) / 15.0 / 2 + Math.ScaleB(Math.Abs(min) + Math.Abs(max), -10),
                GgmlType.Q5_1 => (max - min) / 31.0 / 2 + Math.ScaleB(Math.Abs(min) + Math.Abs(max), -10),
                GgmlType.Q5_0 => amax / 16.0 + Math.ScaleB(amax, -10),
                _ => 24 * Math.Abs(Half(q, b * bb)) + Math.ScaleB(amax, -10),
            };
            for (int j = 32 * b; j < 32 * b + 32; j++)
                Assert.True(Math.Abs((double)x[j] - y[j]) <= bound * (1 + 1e-6), $"{t} element {j}: {x[j]} -> {y[j]}, bound {bound}");
        }
        double rms = QuantTestData.RelativeRmsError(x, y);
        // Uniform rounding noise is step/√12 of a step ≈ range/levels; for N(0,1) blocks of 32 the range is ≈ 4σ.
        double expected = t switch { GgmlType.Q5_0 or GgmlType.Q5_1 => 4.5 / 31 / Math.Sqrt(12), _ => 4.5 / 15 / Math.Sqrt(12) };
        Assert.True(rms <= 1.5 * expected, $"{t}: relative RMS error {rms:G3} > 1.5 × {expected:G3}");
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void RejectsRowsThatAreNotWholeBlocks(GgmlType t)
    {
        var e = Assert.Throws<ArgumentException>(() => Quantize(t, new float[48]));
        Assert.Contains(GgmlTypes.Name(t), e.Message);
        Assert.Contains("48", e.Message);
    }
}
