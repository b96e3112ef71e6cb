namespace EdgeLlm.Backends.Cpu;

/// <summary>In-place softmax of n scores: subtract the max (no overflow), exp, normalise. Sequential, so deterministic.</summary>
internal static unsafe class Softmax
{
    public static void Row(float* x, int n)
    {
        float max = x[0];
        for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
        float sum = 0;
        for (int i = 0; i < n; i++)
        {
            float e = MathF.Exp(x[i] - max);
            x[i] = e;
            sum += e;
        }
        float inv = 1f / sum;
        for (int i = 0; i < n; i++) x[i] *= inv;
    }
}
