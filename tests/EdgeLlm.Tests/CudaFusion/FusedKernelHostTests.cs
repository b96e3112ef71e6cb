using System.Runtime.InteropServices;
using EdgeLlm.Tests.Cuda;
using static EdgeLlm.Tests.Cuda.CudaBlockMathHostTests;

namespace EdgeLlm.Tests.CudaFusion;

/// <summary>
/// kernels/fused.cu in the host emulation (tests/EdgeLlm.Tests/Cuda/HostEmulation, fused_ops.h): each fused kernel
/// against the sequence of unfused kernels it replaces in a decode step (add_f32 + rmsnorm_f32 + quantize_q8;
/// split + rope_f32 twice + store_kv_f16; split + swiglu_f32/geglu_f32 + quantize_q8; and attention.cu's one-launch
/// attention_flash_f16 against attention_split_f16 + attention_combine_f32 + quantize_q8), on the same inputs, with
/// blocks of 256 emulated threads (real warp shuffles and barriers). The fused kernels do the same float operations
/// in the same order, so every output buffer must be equal bit for bit; the unfused kernels themselves are checked
/// against the CPU backend by CudaElementwiseHostTests and CudaBlockMathHostTests.
/// </summary>
public class FusedKernelHostTests
{
    private static MemoryStream Input(string op)
    {
        var s = new MemoryStream();
        s.Write(System.Text.Encoding.ASCII.GetBytes(op));
        s.WriteByte(0);
        return s;
    }

    private static void Ints(Stream s, params int[] v) { foreach (int x in v) s.Write(BitConverter.GetBytes(x)); }
    private static void Floats(Stream s, params float[] v) => s.Write(MemoryMarshal.AsBytes(v.AsSpan()));

    private static float[] Random(int n, int seed, float scale)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return x;
    }

    /// <summary>The fused run's bytes (the first half) equal the unfused run's (the second); returns the unfused half.</summary>
    private static byte[] SameBits(byte[] both, long expectHalf, string what)
    {
        Assert.Equal(2 * expectHalf, both.LongLength);
        var fused = both.AsSpan(0, (int)expectHalf);
        var plain = both.AsSpan((int)expectHalf);
        int first = -1;
        for (int i = 0; i < fused.Length && first < 0; i++) if (fused[i] != plain[i]) first = i;
        Assert.True(first < 0, $"{what}: fused and unfused results differ first at byte {first} of {expectHalf}");
        return plain.ToArray();
    }

    [HostCompilerTheory]
    [InlineData(256, 1, 1, 1)] // the forward's residual add + norm + quantize, y aliased with dst
    [InlineData(256, 0, 1, 0)] // the first layer's norm + quantize
    [InlineData(256, 1, 0, 1)] // add + norm before a float-weight product
    [InlineData(320, 1, 1, 1)] // a row that is not a multiple of the 256 threads (Gemma's 320)
    public void AddRmsNormQuantizeEqualsAddThenNormThenQuantize(int dim, int residual, int quantize, int alias)
    {
        const int n = 3;
        var w = Random(dim, 1, 0.2f);
        for (int i = 0; i < dim; i++) w[i] += 1f;
        var x = Random(n * dim, 2, 3f);
        var y = Random(n * dim, 3, 1f);
        for (int i = 0; i < 32; i++) x[i] = y[i] = 0f; // an all-zero 32-block (d = 0, quants 0)
        var input = Input("add_rmsnorm_q8");
        Ints(input, n, dim, residual, quantize, alias);
        Floats(input, 1e-5f);
        Floats(input, w);
        Floats(input, x);
        Floats(input, y);
        long count = (long)n * dim;
        long half = count * 8 + (quantize == 1 ? count + count / 32 * 8 : 0);
        var plain = SameBits(Harness.Exec(input, "add_rmsnorm_q8"), half, "add_rmsnorm_q8");
        // Not vacuous: the norm's output is the float64 formula to float rounding.
        var got = MemoryMarshal.Cast<byte, float>(plain.AsSpan((int)(count * 4), (int)(count * 4)));
        for (int t = 0; t < n; t++)
        {
            double ss = 0;
            for (int i = 0; i < dim; i++) { double v = x[t * dim + i] + (residual == 1 ? y[t * dim + i] : 0f); ss += v * v; }
            double scale = 1 / Math.Sqrt(ss / dim + 1e-5);
            for (int i = 0; i < dim; i++)
            {
                double want = (x[t * dim + i] + (residual == 1 ? y[t * dim + i] : 0f)) * scale * w[i];
                Assert.True(Math.Abs(got[t * dim + i] - want) <= 1e-5 * Math.Max(1, Math.Abs(want)), $"token {t} element {i}: {got[t * dim + i]} vs {want}");
            }
        }
        if (quantize == 1) Assert.Contains(plain.AsSpan((int)(count * 8), (int)count).ToArray(), b => b != 0);
    }

    /// <summary>
    /// rope_store_qkv_f32 against the split, [the Q/K/V bias adds (add_bias_f32, Qwen2),] rope_f32 of q and k and
    /// store_kv_f16, bit for bit; head sizes that are not a multiple of 4 included.
    /// </summary>
    [HostCompilerTheory]
    [InlineData(0, 32, 1f, 1f, 64, 0)]   // normal layout, full rotary
    [InlineData(1, 32, 1f, 1f, 64, 0)]   // NEOX
    [InlineData(1, 16, 4f, 1.3f, 64, 0)] // NEOX, partial rotary, linear scaling, attention factor
    [InlineData(0, 24, 1f, 1f, 64, 0)]   // normal layout, partial rotary
    [InlineData(1, 32, 1f, 1f, 64, 1)]   // Qwen2: NEOX with Q/K/V biases
    [InlineData(1, 9, 1f, 1f, 18, 1)]    // biases, a head size of 18
    [InlineData(0, 3, 2f, 1f, 10, 1)]    // biases, a head size of 10, partial rotary
    [InlineData(1, 5, 1f, 1f, 10, 0)]    // a head size of 10 without biases
    public void RopeStoreQkvEqualsSplitRopeRopeStore(int neox, int half, float scale, float attnFactor, int headDim, int biased)
    {
        const int n = 3, qHeads = 4, kvHeads = 2, start = 5;
        int qDim = qHeads * headDim, kvDim = kvHeads * headDim, width = qDim + 2 * kvDim;
        var inv = new double[half];
        for (int i = 0; i < half; i++) inv[i] = Math.Pow(10000, -2.0 * i / (2 * half));
        var qkv = Random(n * width, 4, 2f);
        qkv[qDim + 3] = 1e6f; // a key beyond fp16's range: both paths must clamp it alike
        var bias = Random(qDim + 2 * kvDim, 9, 0.5f);
        var input = Input("rope_store_qkv");
        Ints(input, n, qHeads, kvHeads, headDim, half, start, neox, biased);
        Floats(input, scale, attnFactor);
        input.Write(MemoryMarshal.AsBytes(inv.AsSpan()));
        if (biased == 1) Floats(input, bias);
        Floats(input, qkv);
        long cache = (long)(start + n) * kvDim;
        long floats = (long)n * width;
        var plain = SameBits(Harness.Exec(input, "rope_store_qkv"), floats * 4 + cache * 4, "rope_store_qkv");
        // Not vacuous: the queries were rotated (pair 1 of token 2 moved), v was copied as is, the cache rows before
        // startPos are untouched.
        var q = MemoryMarshal.Cast<byte, float>(plain.AsSpan(0, n * qDim * 4));
        int at = 2 * qDim + 1;
        Assert.NotEqual(qkv[2 * width + 1], q[at]);
        var v = MemoryMarshal.Cast<byte, float>(plain.AsSpan((n * qDim + n * kvDim) * 4, n * kvDim * 4));
        Assert.Equal(qkv[width + qDim + kvDim + 7] + (biased == 1 ? bias[qDim + kvDim + 7] : 0f), v[kvDim + 7]); // (the bias added)
        var kc = MemoryMarshal.Cast<byte, ushort>(plain.AsSpan((int)(floats * 4), (int)(cache * 2)));
        for (int i = 0; i < start * kvDim; i++) Assert.Equal(0xFFFF, kc[i]);
    }

    [HostCompilerTheory]
    [InlineData(0, 1)]
    [InlineData(1, 1)]
    [InlineData(0, 0)]
    [InlineData(1, 0)]
    public void GluSplitQuantizeEqualsSplitThenGluThenQuantize(int geglu, int quantize)
    {
        const int n = 3, ffn = 320;
        var gu = Random(n * 2 * ffn, 5, 6f);
        var input = Input("glu_split");
        Ints(input, n, ffn, geglu, quantize);
        Floats(input, gu);
        long count = (long)n * ffn;
        var plain = SameBits(Harness.Exec(input, "glu_split"), count * 8 + (quantize == 1 ? count + count / 32 * 8 : 0), "glu_split");
        // Not vacuous: up is the second half of each token's row, and gate holds act(g) * u.
        var gate = MemoryMarshal.Cast<byte, float>(plain.AsSpan(0, (int)count * 4));
        var up = MemoryMarshal.Cast<byte, float>(plain.AsSpan((int)count * 4, (int)count * 4));
        for (int t = 0; t < n; t++)
            for (int i = 0; i < ffn; i += 37)
            {
                double g = gu[t * 2 * ffn + i], u = gu[t * 2 * ffn + ffn + i];
                Assert.Equal((float)u, up[t * ffn + i]);
                double act = geglu == 1 ? 0.5 * g * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (g + 0.044715 * g * g * g))) : g / (1 + Math.Exp(-g));
                Assert.True(Math.Abs(gate[t * ffn + i] - act * u) <= 1e-5 * Math.Max(1, Math.Abs(act * u)), $"token {t} element {i}");
            }
    }

    /// <summary>
    /// attention_flash_f16 (one launch: split, combine by the last block of each kv head, quantization) against
    /// attention_split_f16 + attention_combine_f32 [+ quantize_q8]: bit for bit, launched twice on the same counters
    /// (two layers, or two replays of a captured step), the counters back at zero after each launch; and the output
    /// against a float64 softmax-attention over the fp16 keys and values (relative 1e-5 of the largest |value|).
    /// </summary>
    [HostCompilerTheory]
    [InlineData(4, 64, 2, 150, 0, 1)]   // GQA, three chunks of 64 filled, the last block to count holds no position
    [InlineData(8, 128, 1, 40, 0, 1)]   // one kv head, head dim 128 (one element per thread)
    [InlineData(4, 64, 2, 150, 20, 1)]  // a sliding window: the combine reads only the last chunks
    [InlineData(4, 64, 2, 255, 0, 1)]   // every chunk filled: the last block to count did work
    [InlineData(4, 64, 2, 100, 0, 0)]   // a product over float weights follows: no quantization
    [InlineData(6, 80, 2, 70, 0, 0)]    // head dim 80 (Gemma): not a multiple of 32, so never quantized
    public void FlashAttentionEqualsSplitThenCombineThenQuantize(int heads, int headDim, int kvHeads, int start, int window, int quantize)
    {
        const int context = 256, chunk = 64;
        int kvDim = kvHeads * headDim;
        var rng = new Random(6);
        var keys = new ushort[(start + 1) * kvDim];
        var values = new ushort[(start + 1) * kvDim];
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = BitConverter.HalfToUInt16Bits((Half)(rng.NextDouble() * 2 - 1));
            values[i] = BitConverter.HalfToUInt16Bits((Half)(rng.NextDouble() * 4 - 2));
        }
        var q = Random(heads * headDim, 7, 1f);
        float scale = 1f / MathF.Sqrt(headDim);
        var input = Input("attention_flash");
        Ints(input, heads, headDim, kvDim, start, window);
        Floats(input, scale, 0f);
        Ints(input, context, chunk, quantize);
        input.Write(MemoryMarshal.AsBytes(keys.AsSpan()));
        input.Write(MemoryMarshal.AsBytes(values.AsSpan()));
        Floats(input, q);
        int count = heads * headDim;
        long half = count * 4L + (quantize == 1 ? count + count / 32 * 8 : 0) + kvHeads * 4;
        var plain = SameBits(Harness.Exec(input, "attention_flash"), half, "attention_flash");
        var counters = MemoryMarshal.Cast<byte, int>(plain.AsSpan((int)(half - kvHeads * 4), kvHeads * 4));
        foreach (int c in counters) Assert.Equal(0, c);
        var o = MemoryMarshal.Cast<byte, float>(plain.AsSpan(0, count * 4));
        int group = heads / kvHeads, first = window > 0 ? Math.Max(0, start - window + 1) : 0;
        for (int h = 0; h < heads; h++)
        {
            int kvh = h / group;
            var s = new double[start + 1];
            double max = double.NegativeInfinity, sum = 0;
            for (int j = first; j <= start; j++)
            {
                double dot = 0;
                for (int d = 0; d < headDim; d++) dot += (double)q[h * headDim + d] * (double)BitConverter.UInt16BitsToHalf(keys[j * kvDim + kvh * headDim + d]);
                s[j] = dot * scale;
                max = Math.Max(max, s[j]);
            }
            for (int j = first; j <= start; j++) sum += Math.Exp(s[j] - max);
            for (int d = 0; d < headDim; d++)
            {
                double want = 0;
                for (int j = first; j <= start; j++) want += Math.Exp(s[j] - max) / sum * (double)BitConverter.UInt16BitsToHalf(values[j * kvDim + kvh * headDim + d]);
                Assert.True(Math.Abs(o[h * headDim + d] - want) <= 2e-5 * 2, $"head {h} element {d}: {o[h * headDim + d]} vs {want}");
            }
        }
    }

    [HostCompilerFact]
    public void SplitRowsPutsEachPartInItsBuffer()
    {
        const int n = 2, w0 = 5, w1 = 3, w2 = 4;
        var src = new float[n * (w0 + w1 + w2)];
        for (int i = 0; i < src.Length; i++) src[i] = i;
        var input = Input("split_rows");
        Ints(input, n, w0, w1, w2);
        Floats(input, src);
        var got = MemoryMarshal.Cast<byte, float>(Harness.Exec(input, "split_rows")).ToArray();
        var want = new List<float>();
        for (int t = 0; t < n; t++) for (int c = 0; c < w0; c++) want.Add(t * 12 + c);
        for (int t = 0; t < n; t++) for (int c = 0; c < w1; c++) want.Add(t * 12 + w0 + c);
        for (int t = 0; t < n; t++) for (int c = 0; c < w2; c++) want.Add(t * 12 + w0 + w1 + c);
        Assert.Equal(want.ToArray(), got);
    }
}
