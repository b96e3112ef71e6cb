using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Quant;

namespace EdgeLlm.Tests.Kernels;

/// <summary>Inputs shared by the kernel tests: seeded weights and activations (the rung dispatch is <see cref="KernelVariants"/>).</summary>
internal static unsafe class KernelTestData
{
    public static readonly GgmlType[] QuantTypes = { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K };

    public static int BlockSize(GgmlType t) => GgmlTypes.Geometry(t).BlockSize;

    /// <summary>Weights: "gaussian" (σ 0.02 with a few ±0.5 outliers, quantized by the reference quantizer),
    /// "raw" (random bytes for every quant field, random finite fp16 scales: every nibble / q value and every scale
    /// byte, −128 included), "zeros" (gaussian with blocks 1, 3, 5, … all-zero bytes).</summary>
    public static byte[] Weights(GgmlType t, int n, string kind, int seed)
    {
        var rng = new Random(seed);
        int bs = BlockSize(t), bb = GgmlTypes.Geometry(t).BlockBytes;
        if (kind == "raw")
        {
            var raw = new byte[n / bs * bb];
            rng.NextBytes(raw);
            for (int b = 0; b < n / bs; b++)
            {
                int o = b * bb;
                switch (t)
                {
                    case GgmlType.Q4_0:
                    case GgmlType.Q8_0: SetHalf(raw, o, rng); break;
                    case GgmlType.Q4_K: SetHalf(raw, o, rng); SetHalf(raw, o + 2, rng); break;
                    case GgmlType.Q6_K: SetHalf(raw, o + 208, rng); break;
                }
            }
            return raw;
        }
        float[] f = QuantTestData.Gaussian(n, seed, 0.02);
        for (int i = 0; i < n; i += 97) f[i] = (i & 1) == 0 ? 0.5f : -0.5f;
        byte[] q = QuantRef.QuantizeRow(t, f);
        if (kind == "zeros")
            for (int b = 1; b < n / bs; b += 2) Array.Clear(q, b * bb, bb);
        return q;
    }

    /// <summary>A random finite fp16 with magnitude in [2^-14, 2^0), either sign.</summary>
    private static void SetHalf(byte[] a, int o, Random rng)
    {
        ushort h = (ushort)(((rng.Next(1, 16)) << 10) | rng.Next(1024) | (rng.Next(2) << 15));
        a[o] = (byte)h;
        a[o + 1] = (byte)(h >> 8);
    }

    /// <summary>
    /// Activations: N(0, 1); with 2+ blocks block 1 is tiny (×1e-20: its Q8_0 scale underflows fp16 to 0), blocks
    /// 2, 7, 12, … are all zero, and with 4+ blocks block 0 has a 1e3 outlier (the rest of it quantizes coarsely).
    /// </summary>
    public static float[] Activations(int n, int blockSize, int seed)
    {
        float[] x = QuantTestData.Gaussian(n, seed);
        int nb = n / blockSize;
        for (int b = 2; b < nb; b += 5) Array.Clear(x, b * blockSize, blockSize);
        if (nb >= 4) x[3] = 1000f;
        if (nb >= 2)
            for (int i = blockSize; i < 2 * blockSize; i++) x[i] *= 1e-20f;
        return x;
    }

    public static byte[] QuantizeActivations(GgmlType weightType, float[] x)
    {
        var xq = new byte[ActivationQuant.BytesFor(weightType, x.Length)];
        fixed (float* px = x) fixed (byte* pq = xq) ActivationQuant.QuantizeFor(weightType, px, pq, x.Length);
        return xq;
    }

    public static float[] DequantizeActivations(GgmlType weightType, byte[] xq, int n)
    {
        var x = new float[n];
        fixed (byte* pq = xq) fixed (float* px = x)
        {
            GgmlType format = ActivationQuant.FormatFor(weightType);
            if (format == GgmlType.Q8_0) QuantRef.DequantizeRow(GgmlType.Q8_0, pq, px, n);
            else if (format == GgmlType.Q8_1) ActivationQuant.DequantizeQ8_1(pq, px, n);
            else ActivationQuant.DequantizeQ8_K(pq, px, n);
        }
        return x;
    }

    /// <summary>
    /// The magnitude float reassociation errors scale with: Σ |x'_i|·(|w'_i| + 2·μ_i), where μ_i = dmin·m of the
    /// weight's Q4_K sub-block (0 for other types): it bounds Σ_blocks of |each float term| the kernels add up.
    /// </summary>
    public static double Magnitude(GgmlType t, byte[] w, float[] wDeq, float[] xDeq)
    {
        double m = 0;
        for (int i = 0; i < xDeq.Length; i++)
            m += Math.Abs((double)xDeq[i]) * (Math.Abs((double)wDeq[i]) + 2 * MinTerm(t, w, i));
        return m;
    }

    private static double MinTerm(GgmlType t, byte[] w, int i)
    {
        if (t != GgmlType.Q4_K) return 0;
        int b = i / 256;
        fixed (byte* p = w)
        {
            byte* blk = p + b * Q4_K.BlockBytes;
            Q4_K.GetScaleMin(i % 256 / 32, blk + 4, out _, out int m);
            return Math.Abs((double)(float)BitConverter.UInt16BitsToHalf((ushort)(blk[2] | (blk[3] << 8)))) * m;
        }
    }

    public static float[] DequantizeWeights(GgmlType t, byte[] w, int n)
    {
        var f = new float[n];
        QuantRef.DequantizeRow(t, w, f);
        return f;
    }

    /// <summary>
    /// A decode case: <paramref name="rows"/> weight rows of <paramref name="n"/> values (row r from
    /// <paramref name="makeRow"/>), stored one after another in <c>W</c> and apart in <c>WRow</c>; <paramref name="tokens"/>
    /// activation vectors (<see cref="Activations"/> of <paramref name="actBlock"/>-value blocks, seeds
    /// <paramref name="actSeed"/> + k), token k scaled by 1 + 3k so a token that reads another token's activations is far
    /// off, side by side in <c>X</c>, and each quantized for the weight type in <c>Xq</c>.
    /// </summary>
    public static (byte[] W, byte[][] WRow, float[] X, byte[][] Xq) DecodeCase(GgmlType t, int n, int rows, int tokens,
        Func<int, byte[]> makeRow, int actBlock, int actSeed)
    {
        long rowBytes = GgmlTypes.RowBytes(t, n);
        var w = new byte[rows * rowBytes];
        var wRow = new byte[rows][];
        for (int r = 0; r < rows; r++)
        {
            wRow[r] = makeRow(r);
            wRow[r].CopyTo(w, r * rowBytes);
        }
        var x = new float[tokens * n];
        var xq = new byte[tokens][];
        for (int k = 0; k < tokens; k++)
        {
            float[] a = Activations(n, actBlock, actSeed + k);
            for (int i = 0; i < n; i++) a[i] *= 1 + 3 * k;
            a.CopyTo(x, k * n);
            xq[k] = QuantizeActivations(t, a);
        }
        return (w, wRow, x, xq);
    }

    /// <summary>
    /// Per (token k, row r) at k·rows + r: the integer scalar rung <paramref name="scalar"/> on the stored row and the
    /// token's quantized activations, and the tolerance 1e-5·<see cref="Magnitude"/> around it.
    /// </summary>
    public static (float[] Want, double[] Tol) ScalarReference(GgmlType t, int n, byte[][] wRow, byte[][] xq,
        delegate*<byte*, byte*, int, float> scalar)
    {
        int rows = wRow.Length, tokens = xq.Length;
        var want = new float[tokens * rows];
        var tol = new double[tokens * rows];
        for (int k = 0; k < tokens; k++)
        {
            float[] xDeq = DequantizeActivations(t, xq[k], n);
            for (int r = 0; r < rows; r++)
            {
                fixed (byte* pr = wRow[r]) fixed (byte* pq = xq[k]) want[k * rows + r] = scalar(pr, pq, n);
                tol[k * rows + r] = 1e-5 * Magnitude(t, wRow[r], DequantizeWeights(t, wRow[r], n), xDeq);
            }
        }
        return (want, tol);
    }
}
