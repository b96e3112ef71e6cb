namespace EdgeLlm.Tests.Quant;

/// <summary>Inputs shared by the quant tests: seeded Gaussian rows and the ggml golden vectors.</summary>
internal static class QuantTestData
{
    /// <summary><paramref name="n"/> samples of N(0, sigma²) from a seeded generator (Box–Muller).</summary>
    public static float[] Gaussian(int n, int seed, double sigma = 1.0)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            double u = 1.0 - rng.NextDouble(), v = rng.NextDouble();
            x[i] = (float)(sigma * Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * v));
        }
        return x;
    }

    /// <summary>
    /// The 2048-float input row of tests/data/quant-golden (eight 256-value blocks of different shapes, see the
    /// README there) and the bytes ggml's <c>quantize_row_*_ref</c> produced from it.
    /// </summary>
    public static float[] GoldenInput()
    {
        byte[] raw = File.ReadAllBytes(TestPaths.Data("quant-golden/input.f32"));
        var x = new float[raw.Length / 4];
        Buffer.BlockCopy(raw, 0, x, 0, raw.Length);
        return x;
    }

    public static byte[] GoldenOutput(string file) => File.ReadAllBytes(TestPaths.Data("quant-golden/" + file));

    /// <summary>RMS of (a − b) divided by the RMS of a, in double.</summary>
    public static double RelativeRmsError(float[] a, float[] b)
    {
        double err = 0, sig = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = (double)a[i] - b[i];
            err += d * d;
            sig += (double)a[i] * a[i];
        }
        return Math.Sqrt(err / sig);
    }

    /// <summary>Σ w[i]·x[i] in double, index order: the definition Dot must reproduce.</summary>
    public static float DotReference(float[] w, float[] x)
    {
        double s = 0;
        for (int i = 0; i < w.Length; i++) s += (double)w[i] * x[i];
        return (float)s;
    }

    /// <summary>The index of the first difference, for readable failures, or −1.</summary>
    public static int FirstDifference(byte[] expected, byte[] actual)
    {
        if (expected.Length != actual.Length) return Math.Min(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) if (expected[i] != actual[i]) return i;
        return -1;
    }
}
