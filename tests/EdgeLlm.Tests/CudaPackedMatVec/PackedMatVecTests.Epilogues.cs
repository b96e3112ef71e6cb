using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Cuda;

namespace EdgeLlm.Tests.CudaPackedMatVec;

/// <summary>
/// The stacked products' epilogues of a decode step (issue 17.2, 5 launches per layer), host-emulated
/// (packed_harness.cpp): matvec_packed_&lt;type&gt;_qkv (the block that finishes a head of the stacked Q/K/V product
/// rotates it and stores K/V in the fp16 cache) against matvec_packed_&lt;type&gt;_t1 into the stack followed by
/// rope_store_qkv_f32, and matvec_packed_&lt;type&gt;_glu (the block that finishes a 32-block of gate and up writes the
/// activation and its q8 quantization) against the product followed by glu_split_q8_f32: every output buffer bit for
/// bit, the counters back at zero; and the epilogue's arithmetic against float64 on the product's floats.
/// </summary>
public partial class PackedMatVecTests
{
    internal static byte[] RandomRowsFor(GgmlType type, int k, int rows, Random rng) => RandomRows(type, k, rows, rng);

    internal static byte[] ExecHarness(MemoryStream input, string what) => PackedHarness.Exec(input, what);

    /// <summary>type, warps per row, NEOX, rotated pairs per head (head dim 32: 16 is full rotary).</summary>
    public static TheoryData<GgmlType, int, int, int> QkvShapes()
    {
        var d = new TheoryData<GgmlType, int, int, int>();
        foreach (var t in CudaRepack.Types) d.Add(t, 1, t == GgmlType.Q4_K ? 1 : 0, 16);
        d.Add(GgmlType.Q4_0, 2, 1, 16);
        d.Add(GgmlType.Q4_0, 4, 0, 16);
        d.Add(GgmlType.Q6_K, 4, 1, 8); // partial rotary: the last 16 elements of each head copied as they are
        d.Add(GgmlType.Q8_0, 2, 0, 12);
        return d;
    }

    [HostCompilerTheory]
    [MemberData(nameof(QkvShapes))]
    public void QkvEpilogueEqualsProductThenRopeStoreQkv(GgmlType type, int wpr, int neox, int half)
    {
        const int k = 256, qHeads = 2, kvHeads = 1, headDim = 32, pos = 3;
        const float scale = 1.5f, attnFactor = 1.1f;
        int qDim = qHeads * headDim, kvDim = kvHeads * headDim, rows = qDim + 2 * kvDim, heads = qHeads + 2 * kvHeads;
        var rng = new Random(k + wpr * 7 + half + (int)type);
        var raw = RandomRows(type, k, rows, rng);
        var packed = Pack(type, k, rows, raw);
        var x = new float[k];
        for (int i = 0; i < k; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var inv = new double[half];
        for (int i = 0; i < half; i++) inv[i] = Math.Pow(10000, -2.0 * i / (2 * half));
        var input = new MemoryStream();
        WriteName(input, "matvec_qkv");
        WriteName(input, CudaKernels.Suffix(type)!);
        foreach (int v in new[] { k, qHeads, kvHeads, headDim, wpr, half, neox, pos, 0 }) input.Write(BitConverter.GetBytes(v));
        input.Write(BitConverter.GetBytes(scale));
        input.Write(BitConverter.GetBytes(attnFactor));
        input.Write(MemoryMarshal.AsBytes(inv.AsSpan()));
        input.Write(BitConverter.GetBytes(CudaRepack.RowBytes(type, k)));
        input.Write(packed);
        input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
        var bytes = PackedHarness.Exec(input, $"matvec_qkv {type} wpr={wpr}");
        int cache = (pos + 1) * kvDim;
        int run = rows * 4 + (qDim + 2 * kvDim) * 4 + 2 * cache * 2 + heads * 4;
        Assert.Equal(2 * run, bytes.Length);
        var fused = bytes.AsSpan(0, run);
        var plain = bytes.AsSpan(run, run);
        int first = -1;
        for (int i = 0; i < run && first < 0; i++) if (fused[i] != plain[i]) first = i;
        Assert.True(first < 0, $"{type} wpr={wpr}: the qkv epilogue and the product + rope_store_qkv_f32 differ first at byte {first} of {run}");
        foreach (int c in MemoryMarshal.Cast<byte, int>(fused[^(heads * 4)..])) Assert.Equal(0, c);

        // Not vacuous: q and k are the float64 rotation of the product's floats, v is copied, the cache rows hold the
        // fp16 keys and values at pos and nothing before it.
        var stack = MemoryMarshal.Cast<byte, float>(plain[..(rows * 4)]).ToArray();
        var outs = MemoryMarshal.Cast<byte, float>(plain.Slice(rows * 4, (qDim + 2 * kvDim) * 4)).ToArray();
        var kc = MemoryMarshal.Cast<byte, ushort>(plain.Slice(rows * 4 + (qDim + 2 * kvDim) * 4, cache * 2)).ToArray();
        var vc = MemoryMarshal.Cast<byte, ushort>(plain.Slice(rows * 4 + (qDim + 2 * kvDim) * 4 + cache * 2, cache * 2)).ToArray();
        Assert.Contains(stack, v => v != 0f);
        for (int c = 0; c < qDim + kvDim; c++)
        {
            int h = c % headDim, head0 = c - h;
            double want = stack[c], bound = 1e-6 * Math.Max(1, Math.Abs(want));
            if (h < 2 * half)
            {
                int i = neox == 1 ? (h < half ? h : h - half) : h / 2;
                bool firstOfPair = neox == 1 ? h < half : h % 2 == 0;
                int partner = head0 + (neox == 1 ? (firstOfPair ? i + half : i) : (firstOfPair ? h + 1 : h - 1));
                double theta = pos / (double)scale * inv[i];
                double cs = Math.Cos(theta) * attnFactor, sn = Math.Sin(theta) * attnFactor;
                double x0 = firstOfPair ? stack[c] : stack[partner], x1 = firstOfPair ? stack[partner] : stack[c];
                want = firstOfPair ? x0 * cs - x1 * sn : x0 * sn + x1 * cs;
                // the float sine and cosine and the two float products are each within half an ulp: a few ulps of the
                // terms' sizes (the difference may cancel)
                bound = 1e-6 * (Math.Abs(x0) + Math.Abs(x1)) * attnFactor + 1e-7;
            }
            Assert.True(Math.Abs(outs[c] - want) <= bound, $"{type} element {c}: {outs[c]} vs float64 {want}");
            if (c >= qDim)
                Assert.True(Math.Abs((double)BitConverter.UInt16BitsToHalf(kc[pos * kvDim + c - qDim]) - outs[c]) <= 1e-3 * Math.Max(1, Math.Abs(outs[c])), $"{type} key {c - qDim}");
        }
        for (int e = 0; e < kvDim; e++)
        {
            Assert.Equal(stack[qDim + kvDim + e], outs[qDim + kvDim + e]);
            Assert.True(Math.Abs((double)BitConverter.UInt16BitsToHalf(vc[pos * kvDim + e]) - stack[qDim + kvDim + e]) <= 1e-3 * Math.Max(1, Math.Abs(stack[qDim + kvDim + e])), $"{type} value {e}");
        }
        for (int i = 0; i < pos * kvDim; i++)
        {
            Assert.Equal(0xFFFF, kc[i]);
            Assert.Equal(0xFFFF, vc[i]);
        }
    }

    /// <summary>type, warps per row, head size, Q/K/V biases.</summary>
    public static TheoryData<GgmlType, int, int, int> BiasedQkvShapes()
    {
        var d = new TheoryData<GgmlType, int, int, int>();
        d.Add(GgmlType.Q4_0, 1, 32, 1);  // Qwen2: biases, four rows per block
        d.Add(GgmlType.Q8_0, 1, 18, 1);  // a head size of 18: blocks of 4 rows straddle two heads
        d.Add(GgmlType.Q4_K, 2, 10, 1);  // 10 with 2 rows per block
        d.Add(GgmlType.Q6_K, 1, 6, 0);   // 6 without biases
        d.Add(GgmlType.Q5_0, 4, 14, 1);  // one row per block
        return d;
    }

    /// <summary>
    /// matvec_packed_&lt;type&gt;_qkv with Qwen2's Q/K/V biases and with head sizes that are not a multiple of the
    /// block's rows (a block then finishes rows of two heads; each head's rows are counted) against the product into
    /// the stack + rope_store_qkv_f32 with the same biases, every output bit for bit and the counters back at zero
    /// (rope_store_qkv_f32 with biases is held to split + add_bias_f32 + rope_f32 + store_kv_f16 by
    /// FusedKernelHostTests). The biased values are the product plus the bias, the float sum.
    /// </summary>
    [HostCompilerTheory]
    [MemberData(nameof(BiasedQkvShapes))]
    public void QkvEpilogueWithBiasesAndAnyHeadSizeEqualsProductThenRopeStoreQkv(GgmlType type, int wpr, int headDim, int biased)
    {
        const int k = 256, qHeads = 3, kvHeads = 1, pos = 2, neox = 1;
        const float scale = 1f, attnFactor = 1f;
        int half = headDim / 2, qDim = qHeads * headDim, kvDim = kvHeads * headDim, rows = qDim + 2 * kvDim, heads = qHeads + 2 * kvHeads;
        var rng = new Random(k + wpr * 11 + headDim + (int)type);
        var packed = Pack(type, k, rows, RandomRows(type, k, rows, rng));
        var x = new float[k];
        for (int i = 0; i < k; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var bias = new float[rows];
        for (int i = 0; i < rows; i++) bias[i] = (float)(rng.NextDouble() - 0.5);
        var inv = new double[half];
        for (int i = 0; i < half; i++) inv[i] = Math.Pow(1000000, -2.0 * i / (2 * half));
        var input = new MemoryStream();
        WriteName(input, "matvec_qkv");
        WriteName(input, CudaKernels.Suffix(type)!);
        foreach (int v in new[] { k, qHeads, kvHeads, headDim, wpr, half, neox, pos, biased }) input.Write(BitConverter.GetBytes(v));
        input.Write(BitConverter.GetBytes(scale));
        input.Write(BitConverter.GetBytes(attnFactor));
        input.Write(MemoryMarshal.AsBytes(inv.AsSpan()));
        if (biased == 1) input.Write(MemoryMarshal.AsBytes(bias.AsSpan()));
        input.Write(BitConverter.GetBytes(CudaRepack.RowBytes(type, k)));
        input.Write(packed);
        input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
        var bytes = PackedHarness.Exec(input, $"matvec_qkv {type} wpr={wpr} head {headDim}");
        int cache = (pos + 1) * kvDim;
        int run = rows * 4 + (qDim + 2 * kvDim) * 4 + 2 * cache * 2 + heads * 4;
        Assert.Equal(2 * run, bytes.Length);
        var fused = bytes.AsSpan(0, run);
        var plain = bytes.AsSpan(run, run);
        int first = -1;
        for (int i = 0; i < run && first < 0; i++) if (fused[i] != plain[i]) first = i;
        Assert.True(first < 0, $"{type} wpr={wpr} head {headDim}: the qkv epilogue and the product + rope_store_qkv_f32 differ first at byte {first} of {run}");
        foreach (int c in MemoryMarshal.Cast<byte, int>(fused[^(heads * 4)..])) Assert.Equal(0, c);
        var stack = MemoryMarshal.Cast<byte, float>(fused[..(rows * 4)]).ToArray();
        var outs = MemoryMarshal.Cast<byte, float>(fused.Slice(rows * 4, (qDim + 2 * kvDim) * 4)).ToArray();
        Assert.Contains(stack, v => v != 0f);
        for (int e = 0; e < kvDim; e++)
            Assert.Equal(stack[qDim + kvDim + e] + (biased == 1 ? bias[qDim + kvDim + e] : 0f), outs[qDim + kvDim + e]);
        for (int c = 0; c < qDim + kvDim; c++) Assert.True(float.IsFinite(outs[c]), $"{type} head {headDim}: element {c} never written");
    }

    /// <summary>type, warps per row, GeGLU (else SwiGLU), quantize.</summary>
    public static TheoryData<GgmlType, int, int, int> GluShapes()
    {
        var d = new TheoryData<GgmlType, int, int, int>();
        foreach (var t in CudaRepack.Types) d.Add(t, 1, t == GgmlType.Q5_K ? 1 : 0, 1);
        d.Add(GgmlType.Q4_0, 2, 0, 1);
        d.Add(GgmlType.Q4_K, 4, 1, 1);
        d.Add(GgmlType.Q8_0, 1, 0, 0);
        return d;
    }

    [HostCompilerTheory]
    [MemberData(nameof(GluShapes))]
    public void GluEpilogueEqualsProductThenGluSplitQ8(GgmlType type, int wpr, int geglu, int quantize)
    {
        const int k = 256, ffn = 64;
        int rows = 2 * ffn, groups = ffn / 32;
        var rng = new Random(k + wpr * 5 + geglu + (int)type);
        var raw = RandomRows(type, k, rows, rng);
        var packed = Pack(type, k, rows, raw);
        var x = new float[k];
        for (int i = 0; i < k; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var input = new MemoryStream();
        WriteName(input, "matvec_glu");
        WriteName(input, CudaKernels.Suffix(type)!);
        foreach (int v in new[] { k, ffn, wpr, geglu, quantize }) input.Write(BitConverter.GetBytes(v));
        input.Write(BitConverter.GetBytes(CudaRepack.RowBytes(type, k)));
        input.Write(packed);
        input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
        var bytes = PackedHarness.Exec(input, $"matvec_glu {type} wpr={wpr}");
        int run = rows * 4 + 2 * ffn * 4 + ffn + 2 * groups * 4 + groups * 4;
        Assert.Equal(2 * run, bytes.Length);
        var fused = bytes.AsSpan(0, run);
        var plain = bytes.AsSpan(run, run);
        int first = -1;
        for (int i = 0; i < run && first < 0; i++) if (fused[i] != plain[i]) first = i;
        Assert.True(first < 0, $"{type} wpr={wpr}: the glu epilogue and the product + glu_split_q8_f32 differ first at byte {first} of {run}");
        foreach (int c in MemoryMarshal.Cast<byte, int>(fused[^(groups * 4)..])) Assert.Equal(0, c);

        // Not vacuous: gate is act(g) * u of the product's floats in float64, up is u, the quants are gate / d with
        // d = max |gate| / 127 per 32-block (untouched, 0x5A, without quantize).
        var stack = MemoryMarshal.Cast<byte, float>(plain[..(rows * 4)]).ToArray();
        var gate = MemoryMarshal.Cast<byte, float>(plain.Slice(rows * 4, ffn * 4)).ToArray();
        var up = MemoryMarshal.Cast<byte, float>(plain.Slice(rows * 4 + ffn * 4, ffn * 4)).ToArray();
        var q = plain.Slice(rows * 4 + 2 * ffn * 4, ffn).ToArray();
        var dx = MemoryMarshal.Cast<byte, float>(plain.Slice(rows * 4 + 2 * ffn * 4 + ffn, groups * 4)).ToArray();
        Assert.Contains(stack, v => v != 0f);
        for (int i = 0; i < ffn; i++)
        {
            double g = stack[i], u = stack[ffn + i];
            double act = geglu == 1 ? 0.5 * g * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (g + 0.044715 * g * g * g))) : g / (1 + Math.Exp(-g));
            Assert.Equal((float)u, up[i]);
            Assert.True(Math.Abs(gate[i] - act * u) <= 1e-5 * Math.Max(1, Math.Abs(act * u)), $"{type} element {i}: {gate[i]} vs float64 {act * u}");
        }
        for (int b = 0; b < groups; b++)
        {
            if (quantize == 0)
            {
                Assert.All(q.AsSpan(b * 32, 32).ToArray(), v => Assert.Equal(0x5A, v));
                continue;
            }
            double amax = 0;
            for (int i = 0; i < 32; i++) amax = Math.Max(amax, Math.Abs(gate[b * 32 + i]));
            Assert.True(Math.Abs(dx[b] - amax / 127) <= 1e-6 * Math.Max(1e-3, amax), $"{type} block {b}: d {dx[b]} vs {amax / 127}");
            for (int i = 0; i < 32; i++)
                Assert.True(Math.Abs((sbyte)q[b * 32 + i] - gate[b * 32 + i] / (amax / 127)) <= 0.5 + 1e-3, $"{type} block {b} quant {i}");
        }
    }
}
