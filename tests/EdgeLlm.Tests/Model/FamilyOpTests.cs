using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Model;

/// <summary>
/// The CPU backend's family operations against float64 formulas: GELU(tanh) and SiLU gating, softcap (including
/// saturation), scale, bias add, in-place RMSNorm over q/k heads, NEOX and normal RoPE with partial rotary dims and an
/// attention factor; lengths that exercise every vector width and the scalar tail, and bit-identical results for
/// 1 and 3 threads.
/// </summary>
public unsafe class FamilyOpTests
{
    private static float* P(BackendBuffer b) => ((CpuBuffer)b).Data;

    private static float[] Random(int n, int seed, float range)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (rng.NextSingle() * 2 - 1) * range;
        return v;
    }

    private static BackendBuffer Buffer(CpuBackend b, float[] v)
    {
        var buf = b.Allocate(v.Length);
        v.CopyTo(new Span<float>(P(buf), v.Length));
        return buf;
    }

    private static float[] Read(BackendBuffer buf) => new Span<float>(P(buf), (int)buf.Length).ToArray();

    private static double Silu(double x) => x / (1 + Math.Exp(-x));

    private static double GeluTanh(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    [Theory]
    [InlineData(GluKind.Silu)]
    [InlineData(GluKind.GeluTanh)]
    public void GluMatchesFloat64ForEveryTailAndThreadCount(GluKind kind)
    {
        foreach (int n in new[] { 1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 100003 })
        {
            float[] gate = Random(n, n, 12f), up = Random(n, n + 1, 2f);
            gate[0] = n > 1 ? -30f : gate[0]; // deep negative tail: exactly 0 (or -0) from the exp form
            float[]? first = null;
            foreach (int threads in new[] { 1, 3 })
            {
                using var b = new CpuBackend(threads);
                var g = Buffer(b, gate);
                b.Glu(g, Buffer(b, up), n, kind);
                float[] got = Read(g);
                for (int i = 0; i < n; i++)
                {
                    double want = (kind == GluKind.Silu ? Silu(gate[i]) : GeluTanh(gate[i])) * up[i];
                    Assert.True(Math.Abs(got[i] - want) <= 2e-6 * (1 + Math.Abs(want)), $"{kind} n {n} [{i}] gate {gate[i]}: {got[i]} vs {want}");
                }
                if (first is null) first = got;
                else Assert.Equal(first, got);
            }
        }
    }

    [Fact]
    public void SoftcapMatchesFloat64AndSaturates()
    {
        const float cap = 30f;
        foreach (int n in new[] { 1, 5, 16, 19, 262147 })
        {
            float[] x = Random(n, 7 * n, 200f);
            if (n > 4) { x[1] = 1e30f; x[2] = -1e30f; x[3] = 0f; x[4] = 1e-3f; }
            float[]? first = null;
            foreach (int threads in new[] { 1, 3 })
            {
                using var b = new CpuBackend(threads);
                var buf = Buffer(b, x);
                b.Softcap(buf, n, cap);
                float[] got = Read(buf);
                for (int i = 0; i < n; i++)
                {
                    double want = cap * Math.Tanh(x[i] / (double)cap);
                    Assert.True(Math.Abs(got[i] - want) <= 4e-6 * cap, $"n {n} [{i}] x {x[i]}: {got[i]} vs {want}");
                }
                if (first is null) first = got;
                else Assert.Equal(first, got);
            }
        }
    }

    [Fact]
    public void ScaleAndAddBiasAreExact()
    {
        using var b = new CpuBackend(2);
        const int tokens = 5, width = 37;
        float[] x = Random(tokens * width, 3, 4f), bias = Random(width, 4, 1f);
        var buf = Buffer(b, x);
        b.Scale(buf, x.Length, 16f);
        fixed (float* pb = bias)
        {
            var view = new TensorView("bias", GgmlType.F32, [width], (byte*)pb, width * sizeof(float));
            b.AddBias(buf, b.LoadWeight(view), tokens);
        }
        float[] got = Read(buf);
        for (int t = 0; t < tokens; t++)
            for (int i = 0; i < width; i++)
                Assert.Equal(x[t * width + i] * 16f + bias[i], got[t * width + i]);
    }

    [Fact]
    public void RmsNormInPlaceOverHeadsMatchesFloat64()
    {
        using var b = new CpuBackend(3);
        const int rows = 3 * 4, headDim = 24; // 3 tokens × 4 heads, normalised per head
        float[] x = Random(rows * headDim, 9, 3f), w = Random(headDim, 10, 1f);
        var buf = Buffer(b, x);
        fixed (float* pw = w)
            b.RmsNorm(buf, b.LoadWeight(new TensorView("q_norm", GgmlType.F32, [headDim], (byte*)pw, headDim * sizeof(float))), buf, rows, headDim, 1e-6f);
        float[] got = Read(buf);
        for (int r = 0; r < rows; r++)
        {
            double ss = 0;
            for (int i = 0; i < headDim; i++) ss += (double)x[r * headDim + i] * x[r * headDim + i];
            double inv = 1 / Math.Sqrt(ss / headDim + 1e-6);
            for (int i = 0; i < headDim; i++)
                Assert.True(Math.Abs(got[r * headDim + i] - x[r * headDim + i] * inv * w[i]) <= 1e-5, $"row {r} [{i}]");
        }
    }

    [Theory]
    [InlineData(false, 64, 1f)]
    [InlineData(true, 64, 1f)]
    [InlineData(true, 48, 1.19f)] // Phi-4-mini style partial rotary dims, LongRoPE attention factor
    [InlineData(false, 32, 0.5f)]
    public void RopeMatchesFloat64(bool neox, int dims, float attnFactor)
    {
        const int headDim = 64, heads = 3, tokens = 5, startPos = 11;
        float[] factors = new float[dims / 2];
        for (int i = 0; i < factors.Length; i++) factors[i] = 1f + i % 5;
        var spec = new RopeSpec(headDim, dims, 10000f, 2f, factors, neox, attnFactor);
        using var b = new CpuBackend(2);
        b.Prepare(new BackendLimits(8, 256, 64, headDim, dims));
        float[] x = Random(tokens * heads * headDim, 12, 1f);
        var buf = Buffer(b, x);
        b.Rope(buf, tokens, heads, startPos, spec);
        float[] got = Read(buf);
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
            {
                int o = (t * heads + h) * headDim;
                var want = new double[headDim];
                for (int i = 0; i < headDim; i++) want[i] = x[o + i];
                for (int i = 0; i < dims / 2; i++)
                {
                    double theta = (startPos + t) / 2.0 * Math.Pow(10000.0, -2.0 * i / dims) / factors[i];
                    double c = Math.Cos(theta) * attnFactor, s = Math.Sin(theta) * attnFactor;
                    int a = neox ? i : 2 * i, bb = neox ? i + dims / 2 : 2 * i + 1;
                    want[a] = x[o + a] * c - x[o + bb] * s;
                    want[bb] = x[o + a] * s + x[o + bb] * c;
                }
                for (int i = 0; i < headDim; i++)
                    Assert.True(Math.Abs(got[o + i] - want[i]) <= 2e-6, $"token {t} head {h} [{i}]: {got[o + i]} vs {want[i]}");
            }
    }
}
