using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Tests.Quant;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// F32·F32 and F16·F32 dots, every ladder width, awkward lengths, against a float64 reference. Tolerance: the
/// standard bound for a float sum of n products, |Δ| ≤ (n + 16)·2^-24·Σ|a·b| (no chain in these kernels is longer
/// than n additions plus the final lane reduction).
/// </summary>
public unsafe class FloatDotTests
{
    private static readonly int[] Lengths = { 0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 257, 1000, 4099 };

    public static IEnumerable<object[]> Cases()
    {
        foreach (int n in Lengths)
            foreach (string width in new[] { "Dot", "512", "256", "128", "Scalar" })
                yield return new object[] { n, width };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void F32MatchesDoubleReference(int n, string width)
    {
        float[] a = QuantTestData.Gaussian(n, 100 + n);
        float[] b = QuantTestData.Gaussian(n, 200 + n);
        double exact = 0, mag = 0;
        for (int i = 0; i < n; i++) { exact += (double)a[i] * b[i]; mag += Math.Abs((double)a[i] * b[i]); }
        float got;
        fixed (float* pa = a) fixed (float* pb = b)
            got = width switch
            {
                "Dot" => DotF32.Dot(pa, pb, n),
                "512" => DotF32.Dot512(pa, pb, n),
                "256" => DotF32.Dot256(pa, pb, n),
                "128" => DotF32.Dot128(pa, pb, n),
                _ => DotF32.DotScalar(pa, pb, n),
            };
        double tol = (n + 16) * Math.Pow(2, -24) * mag;
        Assert.True(Math.Abs(got - exact) <= tol, $"n {n} {width}: {got} vs {exact} (tol {tol:G3})");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void F16MatchesDoubleReference(int n, string width)
    {
        float[] wf = QuantTestData.Gaussian(n, 300 + n, 0.5);
        if (n > 5) { wf[1] = 65504f; wf[2] = 3e-7f; wf[3] = -0f; wf[4] = -6e-5f; } // max, subnormals, −0
        Half[] w = wf.Select(v => (Half)v).ToArray();
        float[] x = QuantTestData.Gaussian(n, 400 + n);
        double exact = 0, mag = 0;
        for (int i = 0; i < n; i++) { double p = (double)(float)w[i] * x[i]; exact += p; mag += Math.Abs(p); }
        float got;
        fixed (Half* pw = w) fixed (float* px = x)
            got = width switch
            {
                "Dot" => DotF16.Dot(pw, px, n),
                "512" => DotF16.Dot512(pw, px, n),
                "256" => DotF16.Dot256(pw, px, n),
                "128" => DotF16.Dot128(pw, px, n),
                _ => DotF16.DotScalar(pw, px, n),
            };
        double tol = (n + 16) * Math.Pow(2, -24) * mag;
        Assert.True(Math.Abs(got - exact) <= tol, $"n {n} {width}: {got} vs {exact} (tol {tol:G3})");
    }

    [Fact]
    public void Fp16ConversionIsExactForEveryValue()
    {
        for (int h = 0; h < 65536; h++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            float got = DotF16.ToFloat(BitConverter.UInt16BitsToHalf((ushort)h));
            if (float.IsNaN(expected)) Assert.True(float.IsNaN(got), $"0x{h:X4} must be NaN");
            else if (BitConverter.SingleToUInt32Bits(expected) != BitConverter.SingleToUInt32Bits(got))
                Assert.Fail($"0x{h:X4}: {got} vs {expected}");
        }
    }

    [Fact]
    public void VectorFp16ConversionMatchesScalar()
    {
        var h = new ushort[65536];
        for (int i = 0; i < h.Length; i++) h[i] = (ushort)i;
        var ones = new float[65536];
        Array.Fill(ones, 1f);
        // With x = one-hot, each dot is one converted weight; check a spread of them through every width.
        var x = new float[32];
        fixed (ushort* ph = h) fixed (float* px = x)
        {
            for (int start = 0; start < 65536; start += 32)
            {
                for (int k = 0; k < 32; k += 7)
                {
                    Array.Clear(x);
                    x[k] = 1f;
                    ushort bits = h[start + k];
                    float expected = (float)BitConverter.UInt16BitsToHalf(bits);
                    if (float.IsNaN(expected) || float.IsInfinity(expected)) continue; // inf·0 in other lanes is NaN
                    Assert.Equal(expected, DotF16.Dot512((Half*)(ph + start), px, 32));
                    Assert.Equal(expected, DotF16.Dot256((Half*)(ph + start), px, 32));
                    Assert.Equal(expected, DotF16.Dot128((Half*)(ph + start), px, 32));
                }
            }
        }
    }

    [Fact]
    public void NegativeLengthThrows()
    {
        float[] a = new float[4];
        fixed (float* p = a)
        {
            float* q = p;
            Assert.Throws<ArgumentOutOfRangeException>(() => DotF32.Dot(q, q, -1));
            Assert.Throws<ArgumentOutOfRangeException>(() => DotF16.Dot((Half*)q, q, -1));
        }
    }
}
