using System.Numerics;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Quant;

/// <summary>
/// The vectorized K-quant scale searches (one SIMD lane per sub-block) against the scalar ports of ggml's
/// <c>make_qkx2_quants</c> / <c>make_qx_quants</c>, bit for bit, on blocks chosen to hit every branch: Gaussian,
/// all-positive (min clamped to 0), all-negative, constant (max == min), all-zero and sub-GROUP_MAX_EPS groups,
/// values on exact rounding ties, one huge outlier, and a mix of these across the lanes of one group. The
/// parameter sets are ggml's: Q4_K (32, 15, −1, 0.1, 20), Q5_K (32, 31, −0.5, 0.1, 15), Q2_K (16, 3, −0.5, 0.1,
/// 15, mad), and an nstep 0 search (ggml returns after the first guess); Q6_K's make_qx_quants (16, 32); Q3_K's
/// make_q3_quants (16, 4).
/// </summary>
public unsafe class KQuantSearchTests
{
    private static float[] Block(int kind, int count, Random rng)
    {
        var x = new float[count];
        for (int i = 0; i < count; i++)
        {
            double g = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            x[i] = kind switch
            {
                0 => (float)(0.02 * g),
                1 => (float)Math.Abs(g) + 0.5f,                    // all positive: min clamps to 0
                2 => -(float)Math.Abs(g) - 0.1f,                   // all negative
                3 => 0.25f,                                        // constant
                4 => 0f,                                           // all zero
                5 => (float)(1e-17 * g),                           // below GROUP_MAX_EPS
                6 => (rng.Next(-16, 17)) * 0.5f,                   // exact halves: rounding ties
                7 => i % 37 == 5 ? 1000f : (float)(0.01 * g),      // one outlier
                _ => (float)(g * Math.Exp(rng.Next(-20, 20))),     // wide dynamic range
            };
        }
        return x;
    }

    public static TheoryData<int, int, int, float, float, int, bool> Qkx2Params => new()
    {
        { 8, 32, 15, -1f, 0.1f, 20, false },    // Q4_K
        { 8, 32, 31, -0.5f, 0.1f, 15, false },  // Q5_K
        { 16, 16, 3, -0.5f, 0.1f, 15, true },   // Q2_K
        { 8, 32, 15, -1f, 0.1f, 0, false },     // nstep < 1
    };

    [Theory]
    [MemberData(nameof(Qkx2Params))]
    public void Qkx2LanesEqualTheScalarSearch(int nsub, int n, int nmax, float rmin, float rdelta, int nstep, bool mad)
    {
        Assert.True(Vector.IsHardwareAccelerated, "the vector path is what this test checks");
        var rng = new Random(nsub * 1000 + nmax * 10 + nstep);
        for (int trial = 0; trial < 400; trial++)
        {
            // Each sub-block gets its own kind, so one vector group mixes branches across lanes.
            var x = new float[nsub * n];
            for (int s = 0; s < nsub; s++) Block(trial < 9 ? trial : rng.Next(9), n, rng).CopyTo(x, s * n);
            var w = new float[nsub * n];
            for (int i = 0; i < w.Length; i++) w[i] = MathF.Abs(x[i]) + (float)rng.NextDouble();
            var L = new byte[nsub * n];
            var scales = new float[nsub];
            var mins = new float[nsub];
            fixed (float* px = x, pw = w, ps = scales, pm = mins) fixed (byte* pl = L)
                KQuantSearch.Qkx2(nsub, n, nmax, px, pw, pl, ps, pm, rmin, rdelta, nstep, mad);

            var refL = new byte[n];
            var laux = new byte[n];
            for (int s = 0; s < nsub; s++)
            {
                float refMin, refScale;
                fixed (float* px = x, pw = w) fixed (byte* pl = refL, pa = laux)
                    refScale = KQuantSearch.MakeQkx2Quants(n, nmax, px + s * n, pw + s * n, pl, out refMin, pa, rmin, rdelta, nstep, mad);
                Assert.True(BitConverter.SingleToInt32Bits(refScale) == BitConverter.SingleToInt32Bits(scales[s]), $"trial {trial} sub-block {s}: scale {scales[s]:R} != {refScale:R}");
                Assert.True(BitConverter.SingleToInt32Bits(refMin) == BitConverter.SingleToInt32Bits(mins[s]), $"trial {trial} sub-block {s}: min {mins[s]:R} != {refMin:R}");
                Assert.Equal(refL, L.AsSpan(s * n, n).ToArray());
            }
        }
    }

    [Fact]
    public void QxLanesEqualTheScalarSearch()
    {
        Assert.True(Vector.IsHardwareAccelerated, "the vector path is what this test checks");
        const int nsub = 16, n = 16, nmax = 32;
        var rng = new Random(6);
        for (int trial = 0; trial < 400; trial++)
        {
            var x = new float[nsub * n];
            for (int s = 0; s < nsub; s++) Block(trial < 9 ? trial : rng.Next(9), n, rng).CopyTo(x, s * n);
            var L = new sbyte[nsub * n];
            var scales = new float[nsub];
            fixed (float* px = x, ps = scales) fixed (sbyte* pl = L) KQuantSearch.Qx(nsub, n, nmax, px, pl, ps);
            var refL = new sbyte[n];
            for (int s = 0; s < nsub; s++)
            {
                float refScale;
                fixed (float* px = x) fixed (sbyte* pl = refL) refScale = KQuantSearch.ScalarQx(n, nmax, px + s * n, pl);
                Assert.True(BitConverter.SingleToInt32Bits(refScale) == BitConverter.SingleToInt32Bits(scales[s]), $"trial {trial} sub-block {s}: scale {scales[s]:R} != {refScale:R}");
                Assert.Equal(refL, L.AsSpan(s * n, n).ToArray());
            }
        }
    }

    [Fact]
    public void Q3LanesEqualTheScalarSearch()
    {
        Assert.True(Vector.IsHardwareAccelerated, "the vector path is what this test checks");
        const int nsub = 16, n = 16, nmax = 4;
        var rng = new Random(3);
        for (int trial = 0; trial < 400; trial++)
        {
            var x = new float[nsub * n];
            for (int s = 0; s < nsub; s++) Block(trial < 9 ? trial : rng.Next(9), n, rng).CopyTo(x, s * n);
            var L = new sbyte[nsub * n];
            var scales = new float[nsub];
            fixed (float* px = x, ps = scales) fixed (sbyte* pl = L) KQuantSearch.Q3(nsub, n, nmax, px, pl, ps);
            var refL = new sbyte[n];
            for (int s = 0; s < nsub; s++)
            {
                float refScale;
                fixed (float* px = x) fixed (sbyte* pl = refL) refScale = KQuantSearch.MakeQ3Quants(n, nmax, px + s * n, pl);
                Assert.True(BitConverter.SingleToInt32Bits(refScale) == BitConverter.SingleToInt32Bits(scales[s]), $"trial {trial} sub-block {s}: scale {scales[s]:R} != {refScale:R}");
                Assert.Equal(refL, L.AsSpan(s * n, n).ToArray());
            }
        }
    }
}
