using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Quant;

namespace EdgeLlm.Tests.Kernels;

/// <summary>ActivationQuant against the Q8_0 reference quantizer and a Q8_K reference written here from ggml's C.</summary>
public unsafe class ActivationQuantTests
{
    public static IEnumerable<object[]> Inputs()
    {
        yield return new object[] { "gaussian", QuantTestData.Gaussian(256 * 5, 11) };
        yield return new object[] { "zeros and outliers", KernelTestData.Activations(256 * 3, 256, 12) };
        // amax 127 -> d = 1 (Q8_0) and iscale = 1 (Q8_K, max is −127): the other values are exact .5 ties.
        var ties = new float[512];
        for (int i = 0; i < ties.Length; i++) ties[i] = (i % 64) - 31.5f;
        ties[0] = -127f;
        ties[256] = -127f;
        for (int b = 0; b < 16; b++) ties[32 * b + 1] = -127f;
        yield return new object[] { "ties", ties };
        var extremes = QuantTestData.Gaussian(512, 13);
        for (int i = 0; i < 256; i++) extremes[i] *= 1e30f;
        for (int i = 256; i < 512; i++) extremes[i] *= 1e-40f; // subnormal floats
        yield return new object[] { "huge and subnormal", extremes };
        var equalMagnitudes = new float[256];
        for (int i = 0; i < 256; i++) equalMagnitudes[i] = (i & 1) == 0 ? 0.25f : -0.25f * (i % 3);
        equalMagnitudes[40] = 3f;
        equalMagnitudes[10] = -3f; // the first of equal |x| decides the sign of max
        yield return new object[] { "first of equal magnitudes", equalMagnitudes };
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Q8_0IsByteIdenticalToReferenceQuantizer(string name, float[] x)
    {
        byte[] expected = QuantRef.QuantizeRow(GgmlType.Q8_0, x);
        byte[] actual = KernelTestData.QuantizeActivations(GgmlType.Q4_0, x);
        int diff = QuantTestData.FirstDifference(expected, actual);
        Assert.True(diff < 0, $"{name}: first difference at byte {diff}");
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Q8_KIsByteIdenticalToGgmlReference(string name, float[] x)
    {
        byte[] expected = ReferenceQ8_K(x);
        byte[] actual = KernelTestData.QuantizeActivations(GgmlType.Q6_K, x);
        int diff = QuantTestData.FirstDifference(expected, actual);
        Assert.True(diff < 0, $"{name}: first difference at byte {diff} (block {diff / 292}, offset {diff % 292})");
    }

    [Fact]
    public void Q8_KValuesOfKnownBlock()
    {
        // max = −127 -> iscale = 1, d = 1: q = nearest_int(x) with ties to even (2.5 -> 2, 3.5 -> 4, −0.5 -> 0).
        var x = new float[256];
        x[0] = -127f; x[1] = 2.5f; x[2] = 3.5f; x[3] = -0.5f; x[17] = 100.4f;
        byte[] q = KernelTestData.QuantizeActivations(GgmlType.Q4_K, x);
        Assert.Equal(1f, BitConverter.ToSingle(q, 0));
        Assert.Equal(new sbyte[] { -127, 2, 4, 0 }, q.AsSpan(4, 4).ToArray().Select(b => (sbyte)b));
        Assert.Equal(100, (sbyte)q[4 + 17]);
        Assert.Equal(-127 + 2 + 4, BitConverter.ToInt16(q, 260));
        Assert.Equal(100, BitConverter.ToInt16(q, 262));
    }

    [Fact]
    public void DequantizeQ8_KIsDTimesQ()
    {
        float[] x = QuantTestData.Gaussian(512, 21);
        byte[] q = KernelTestData.QuantizeActivations(GgmlType.Q4_K, x);
        float[] back = KernelTestData.DequantizeActivations(GgmlType.Q4_K, q, 512);
        for (int i = 0; i < 512; i++)
        {
            int b = i / 256;
            float d = BitConverter.ToSingle(q, b * 292);
            Assert.Equal(d * (sbyte)q[b * 292 + 4 + i % 256], back[i]);
            Assert.True(Math.Abs(back[i] - x[i]) <= Math.Abs(d) / 2 * 1.0001, $"element {i}");
        }
    }

    [Fact]
    public void FormatsAndSizes()
    {
        Assert.Equal(GgmlType.Q8_0, ActivationQuant.FormatFor(GgmlType.Q4_0));
        Assert.Equal(GgmlType.Q8_0, ActivationQuant.FormatFor(GgmlType.Q8_0));
        Assert.Equal(GgmlType.Q8_K, ActivationQuant.FormatFor(GgmlType.Q4_K));
        Assert.Equal(GgmlType.Q8_K, ActivationQuant.FormatFor(GgmlType.Q6_K));
        Assert.Equal(4096 / 32 * 34, ActivationQuant.BytesFor(GgmlType.Q4_0, 4096));
        Assert.Equal(4096 / 256 * 292, ActivationQuant.BytesFor(GgmlType.Q6_K, 4096));
        Assert.Throws<NotSupportedException>(() => ActivationQuant.FormatFor(GgmlType.F16));
        float[] x = new float[40];
        byte[] dst = new byte[400];
        fixed (float* px = x) fixed (byte* pd = dst)
        {
            float* a = px;
            byte* b = pd;
            Assert.Throws<ArgumentException>(() => ActivationQuant.QuantizeQ8_0(a, b, 40));
            Assert.Throws<ArgumentException>(() => ActivationQuant.QuantizeQ8_K(a, b, 32));
        }
    }

    /// <summary>ggml's quantize_row_q8_K_ref, line by line (plus bsums = 0 for an all-zero block, which ggml leaves).</summary>
    private static byte[] ReferenceQ8_K(float[] x)
    {
        var y = new byte[x.Length / 256 * 292];
        for (int i = 0; i < x.Length / 256; i++)
        {
            int o = i * 292;
            float max = 0, amax = 0;
            for (int j = 0; j < 256; j++)
            {
                float ax = MathF.Abs(x[256 * i + j]);
                if (ax > amax) { amax = ax; max = x[256 * i + j]; }
            }
            if (amax == 0) continue;
            float iscale = -127f / max;
            var q = new int[256];
            for (int j = 0; j < 256; j++)
            {
                float v = iscale * x[256 * i + j];
                int n = (BitConverter.SingleToInt32Bits(v + 12582912f) & 0x007fffff) - 0x00400000;
                q[j] = Math.Min(127, n);
                y[o + 4 + j] = (byte)(sbyte)q[j];
            }
            for (int g = 0; g < 16; g++)
            {
                int s = 0;
                for (int k = 0; k < 16; k++) s += q[16 * g + k];
                BitConverter.TryWriteBytes(y.AsSpan(o + 260 + 2 * g, 2), (short)s);
            }
            BitConverter.TryWriteBytes(y.AsSpan(o, 4), 1 / iscale);
        }
        return y;
    }
}
