using EdgeLlm.Backends.Cpu;
using EdgeLlm.Tests.Kernels;

namespace EdgeLlm.Tests.DecodeOverhead;

/// <summary>
/// The vectorized RMS norm (the sum of squares in double over eight lanes, the scaling in float vectors) against a
/// float64 norm: row lengths with and without a tail past the vectors (1, 3, 8, 13, 64, 2048, 2053), rows of large and
/// small magnitudes; in place (the Q/K norms of qwen3/gemma3 write over their input) and not; and a batch of rows on 1,
/// 2 and 3 threads gives the same bits as each row normed alone.
/// </summary>
public sealed unsafe class RmsNormTests
{
    [Theory]
    [InlineData(1, 1.0)]
    [InlineData(3, 1.0)]
    [InlineData(8, 1.0)]
    [InlineData(13, 1.0)]
    [InlineData(64, 1e-3)]
    [InlineData(2048, 1.0)]
    [InlineData(2053, 300.0)]
    public void Row_matches_a_float64_norm(int n, double sigma)
    {
        float[] x = K256TestData.Gaussian(n, n + 1, sigma);
        float[] w = K256TestData.Gaussian(n, n + 2);
        const float eps = 1e-5f;
        double ss = 0;
        foreach (float v in x) ss += (double)v * v;
        fixed (float* px = x)
            Assert.True(Math.Abs(RmsNorm.SumSquares(px, n) - ss) <= 1e-13 * ss, $"n {n}: sum of squares {RmsNorm.SumSquares(px, n):R} vs {ss:R}");
        double scale = 1.0 / Math.Sqrt(ss / n + eps);
        float[] dst = new float[n], inPlace = (float[])x.Clone();
        fixed (float* px = x)
        fixed (float* pw = w)
        fixed (float* pd = dst)
        fixed (float* pi = inPlace)
        {
            RmsNorm.Row(px, pw, pd, n, eps);
            RmsNorm.Row(pi, pw, pi, n, eps);
        }
        for (int i = 0; i < n; i++)
        {
            double want = x[i] * scale * w[i];
            // three float roundings (the scale, x·scale, ·w): well inside 4 units of 2^-24 relative
            Assert.True(Math.Abs(dst[i] - want) <= 4 * Math.Pow(2, -24) * Math.Abs(want) + 1e-30, $"n {n}: element {i}: {dst[i]:R} vs float64 {want:R}");
            Assert.Equal(BitConverter.SingleToInt32Bits(dst[i]), BitConverter.SingleToInt32Bits(inPlace[i]));
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void A_batch_on_any_thread_count_gives_the_bits_of_each_row_alone(int threads)
    {
        const int n = 2053, tokens = 5;
        float[] x = K256TestData.Gaussian(n * tokens, 9);
        float[] w = K256TestData.Gaussian(n, 10);
        float[] batch = new float[n * tokens], alone = new float[n * tokens];
        using var pool = new WorkerPool(threads);
        var norm = new RmsNorm();
        fixed (float* px = x)
        fixed (float* pw = w)
        fixed (float* pb = batch)
        fixed (float* pa = alone)
        {
            norm.Run(pool, px, pw, pb, tokens, n, 1e-6f);
            for (int t = 0; t < tokens; t++) RmsNorm.Row(px + t * n, pw, pa + t * n, n, 1e-6f);
        }
        for (int i = 0; i < batch.Length; i++)
            Assert.Equal(BitConverter.SingleToInt32Bits(alone[i]), BitConverter.SingleToInt32Bits(batch[i]));
    }
}
