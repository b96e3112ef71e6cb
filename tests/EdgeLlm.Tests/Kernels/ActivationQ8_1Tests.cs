using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Quant;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// ActivationQuant's Q8_1 blocks (the activations of Q4_1 / Q5_1 weights) against ggml's bytes for the golden row and
/// against a reference written here from <c>quantize_row_q8_1_ref</c>; the activation formats of the 32-blocks.
/// </summary>
public unsafe class ActivationQ8_1Tests
{
    private static byte[] Quantize(float[] x)
    {
        var y = new byte[x.Length / 32 * ActivationQuant.Q8_1BlockBytes];
        fixed (float* px = x) fixed (byte* py = y) ActivationQuant.QuantizeQ8_1(px, py, x.Length);
        return y;
    }

    [Fact]
    public void MatchesGgmlReferenceBytes()
    {
        byte[] expected = QuantTestData.GoldenOutput("q8_1.bin");
        byte[] actual = Quantize(QuantTestData.GoldenInput());
        Assert.Equal(-1, QuantTestData.FirstDifference(expected, actual));
    }

    [Theory]
    [MemberData(nameof(ActivationQuantTests.Inputs), MemberType = typeof(ActivationQuantTests))]
    public void IsByteIdenticalToReference(string name, float[] x)
    {
        byte[] expected = Reference(x);
        byte[] actual = Quantize(x);
        int diff = QuantTestData.FirstDifference(expected, actual);
        Assert.True(diff < 0, $"{name}: first difference at byte {diff} (block {diff / 36}, offset {diff % 36})");
        Assert.Equal(actual, KernelTestData.QuantizeActivations(GgmlType.Q4_1, x));
        Assert.Equal(actual, KernelTestData.QuantizeActivations(GgmlType.Q5_1, x));
    }

    [Fact]
    public void KnownBlock()
    {
        // amax 127 -> d = 1; q = round half away from zero: 2.5 -> 3, −2.5 -> −3, 0.49 -> 0; Σq = 127 + 3 − 3 + 0 + 5 = 132,
        // s = 132·1.
        var x = new float[32];
        x[0] = 127f; x[1] = 2.5f; x[2] = -2.5f; x[3] = 0.49f; x[31] = 5f;
        byte[] q = Quantize(x);
        Assert.Equal(1f, (float)BitConverter.ToHalf(q, 0));
        Assert.Equal(132f, (float)BitConverter.ToHalf(q, 2));
        Assert.Equal(new sbyte[] { 127, 3, -3, 0 }, q.AsSpan(4, 4).ToArray().Select(b => (sbyte)b));
        Assert.Equal(5, (sbyte)q[4 + 31]);
        // All zero: d = s = 0, q = 0.
        Assert.All(Quantize(new float[64]), b => Assert.Equal(0, b));
    }

    [Fact]
    public void DequantizeIsDTimesQ()
    {
        float[] x = QuantTestData.Gaussian(96, 31);
        byte[] q = Quantize(x);
        var back = new float[96];
        fixed (byte* pq = q) fixed (float* pb = back) ActivationQuant.DequantizeQ8_1(pq, pb, 96);
        for (int i = 0; i < 96; i++)
        {
            int o = i / 32 * 36;
            float d = (float)BitConverter.ToHalf(q, o);
            Assert.Equal(d * (sbyte)q[o + 4 + i % 32], back[i]);
            Assert.True(Math.Abs(back[i] - x[i]) <= Math.Abs(d) / 2 * 1.01, $"element {i}");
        }
    }

    [Fact]
    public void FormatsAndSizesOfThe32Blocks()
    {
        Assert.Equal(GgmlType.Q8_1, ActivationQuant.FormatFor(GgmlType.Q4_1));
        Assert.Equal(GgmlType.Q8_1, ActivationQuant.FormatFor(GgmlType.Q5_1));
        Assert.Equal(GgmlType.Q8_0, ActivationQuant.FormatFor(GgmlType.Q5_0));
        Assert.Equal(GgmlType.Q8_0, ActivationQuant.FormatFor(GgmlType.IQ4_NL));
        Assert.Equal(GgmlTypes.Geometry(GgmlType.Q8_1), (ActivationQuant.Q8_1BlockSize, ActivationQuant.Q8_1BlockBytes));
        Assert.Equal(4096 / 32 * 36, ActivationQuant.BytesFor(GgmlType.Q4_1, 4096));
        Assert.Equal(4096 / 32 * 36, ActivationQuant.BytesFor(GgmlType.Q5_1, 4096));
        Assert.Equal(4096 / 32 * 34, ActivationQuant.BytesFor(GgmlType.Q5_0, 4096));
        Assert.Equal(4096 / 32 * 34, ActivationQuant.BytesFor(GgmlType.IQ4_NL, 4096));
        float[] x = QuantTestData.Gaussian(64, 5);
        Assert.Equal(QuantRef.QuantizeRow(GgmlType.Q8_0, x), KernelTestData.QuantizeActivations(GgmlType.Q5_0, x));
        Assert.Equal(QuantRef.QuantizeRow(GgmlType.Q8_0, x), KernelTestData.QuantizeActivations(GgmlType.IQ4_NL, x));
        var buf = new byte[400];
        fixed (float* px = x) fixed (byte* pb = buf)
        {
            float* a = px;
            byte* b = pb;
            Assert.Throws<ArgumentException>(() => ActivationQuant.QuantizeQ8_1(a, b, 48));
            Assert.Throws<ArgumentException>(() => ActivationQuant.DequantizeQ8_1(b, a, 40));
        }
    }

    /// <summary>ggml's quantize_row_q8_1_ref step by step: d, q as in Q8_0 (roundf), then s = fp16(Σq·d).</summary>
    private static byte[] Reference(float[] x)
    {
        var y = new byte[x.Length / 32 * 36];
        for (int i = 0; i < x.Length / 32; i++)
        {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = Math.Max(amax, Math.Abs(x[32 * i + j]));
            float d = amax / 127f;
            float id = d != 0f ? 1f / d : 0f;
            int sum = 0;
            for (int j = 0; j < 32; j++)
            {
                sbyte q = (sbyte)MathF.Round(x[32 * i + j] * id, MidpointRounding.AwayFromZero);
                y[36 * i + 4 + j] = (byte)q;
                sum += q;
            }
            BitConverter.TryWriteBytes(y.AsSpan(36 * i, 2), (Half)d);
            BitConverter.TryWriteBytes(y.AsSpan(36 * i + 2, 2), (Half)(sum * d));
        }
        return y;
    }
}
