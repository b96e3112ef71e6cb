using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Cuda;

/// <summary>
/// The model-family operations of the CUDA backend, one at a time, against the CPU backend on the same random
/// inputs: attention with scale, softcap and sliding window; GLU (SiLU and GELU-tanh); bias add; scale; softcap;
/// in-place RMS norm over heads; NEOX / partial / attention-factor RoPE with two specs alternating; weights that
/// are row slices of a fused tensor. They need a GPU and skip everywhere else (perf/cuda-check.sh runs them).
/// </summary>
public unsafe class CudaOpAgreementTests
{
    private const int MaxBatch = 16, Context = 64, MaxHeadDim = 128;

    /// <summary>A CPU and a CUDA backend prepared alike, with helpers to fill and read buffers on both.</summary>
    private sealed class Pair : IDisposable
    {
        public readonly CpuBackend Cpu = new(2);
        public readonly CudaBackend Gpu;
        private readonly List<nint> _pinned = new();

        public Pair()
        {
            var (info, target) = CudaTestEnvironment.Device.Value!.Value;
            Gpu = new CudaBackend(info, target, new KernelCache(Path.Combine(Path.GetDirectoryName(TestPaths.TempFile("x"))!, "kernels")));
            var limits = new BackendLimits(MaxBatch, 1024, Context, MaxHeadDim, MaxHeadDim);
            Cpu.Prepare(limits);
            Gpu.Prepare(limits);
        }

        public (BackendBuffer Cpu, BackendBuffer Gpu) Buffers(float[] values)
        {
            var c = Cpu.Allocate(values.Length);
            var g = Gpu.Allocate(values.Length);
            values.AsSpan().CopyTo(new Span<float>(((CpuBuffer)c).Data, values.Length));
            Gpu.CopyIn(values, g, 0);
            return (c, g);
        }

        public (float[] Cpu, float[] Gpu) Read((BackendBuffer Cpu, BackendBuffer Gpu) b, int count)
        {
            var c = new float[count];
            var g = new float[count];
            Cpu.CopyOut(b.Cpu, 0, c);
            Gpu.CopyOut(b.Gpu, 0, g);
            return (c, g);
        }

        /// <summary>A tensor in pinned native memory (the backends read weights in place).</summary>
        public TensorView Tensor(string name, GgmlType type, long[] dims, ReadOnlySpan<byte> bytes)
        {
            nint p = (nint)NativeMemory.AlignedAlloc((nuint)bytes.Length, 64);
            _pinned.Add(p);
            bytes.CopyTo(new Span<byte>((void*)p, bytes.Length));
            return new TensorView(name, type, dims, (byte*)p, bytes.Length);
        }

        public TensorView F32(string name, float[] values, params long[] dims) => Tensor(name, GgmlType.F32, dims, MemoryMarshal.AsBytes(values.AsSpan()));

        public void Dispose()
        {
            Gpu.Dispose();
            Cpu.Dispose();
            foreach (nint p in _pinned) NativeMemory.AlignedFree((void*)p);
        }
    }

    private static float[] Random(int n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return x;
    }

    private static void Close(float[] want, float[] got, double rel, double abs, string what)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
            Assert.True(Math.Abs(got[i] - want[i]) <= abs + rel * Math.Abs(want[i]), $"{what}, element {i}: cuda {got[i]}, cpu {want[i]}");
    }

    public static TheoryData<int, int, float, int, int> AttentionCases()
    {
        var data = new TheoryData<int, int, float, int, int>();
        foreach (int headDim in new[] { 64, 80 })
            foreach (float softcap in new[] { 0f, 3f })
                foreach (int window in new[] { 0, 1, 5 })
                    foreach (var (n, start) in new[] { (1, 0), (1, 20), (7, 0), (9, 13) })
                        if (headDim == 64 || (n == 9 && window != 1)) data.Add(headDim, window, softcap, n, start);
        return data;
    }

    /// <summary>Scores scale·q·k (scale 0.3, not 1/sqrt(d)), softcapped, over the window; GQA group 2; the cache filled first.</summary>
    [CudaDeviceTheory]
    [MemberData(nameof(AttentionCases))]
    public void AttentionWithScaleSoftcapAndWindowAgrees(int headDim, int window, float softcap, int nTokens, int startPos)
    {
        using var p = new Pair();
        const int heads = 4, kvHeads = 2;
        int kvDim = kvHeads * headDim, total = startPos + nTokens;
        var cpuCache = new KvCache(p.Cpu, 1, Context, kvDim);
        var gpuCache = new KvCache(p.Gpu, 1, Context, kvDim);
        var k = p.Buffers(Random(total * kvDim, 1, 2f));
        var v = p.Buffers(Random(total * kvDim, 2));
        // The history in one batch at position 0, as a prefill would leave it.
        p.Cpu.StoreKv(cpuCache, 0, 0, total, k.Cpu, v.Cpu);
        p.Gpu.StoreKv(gpuCache, 0, 0, total, k.Gpu, v.Gpu);
        var q = p.Buffers(Random(nTokens * heads * headDim, 3, 2f));
        var dst = p.Buffers(new float[nTokens * heads * headDim]);
        var options = new AttentionOptions(0.3f, softcap, window);
        p.Cpu.Attention(q.Cpu, cpuCache, 0, startPos, nTokens, heads, headDim, dst.Cpu, options);
        p.Gpu.Attention(q.Gpu, gpuCache, 0, startPos, nTokens, heads, headDim, dst.Gpu, options);
        var (want, got) = p.Read(dst, nTokens * heads * headDim);
        // The GPU cache is fp16: K and V carry 2^-11 relative rounding.
        Close(want, got, 2e-3, 4e-3, $"attention head {headDim} window {window} softcap {softcap} n {nTokens} start {startPos}");
    }

    [CudaDeviceTheory]
    [InlineData(GluKind.Silu)]
    [InlineData(GluKind.GeluTanh)]
    public void GluAgrees(GluKind kind)
    {
        using var p = new Pair();
        const int n = 5000;
        var gate = p.Buffers(Random(n, 4, 12f)); // ±12: both tails of the activation
        var up = p.Buffers(Random(n, 5));
        p.Cpu.Glu(gate.Cpu, up.Cpu, n - 3, kind);
        p.Gpu.Glu(gate.Gpu, up.Gpu, n - 3, kind);
        var (want, got) = p.Read(gate, n);
        Close(want, got, 1e-5, 1e-7, kind.ToString());
        Assert.Equal(want[^3..], got[^3..]); // past count: untouched
    }

    [CudaDeviceFact]
    public void AddBiasScaleAndSoftcapAgree()
    {
        using var p = new Pair();
        const int width = 96, tokens = 5;
        var bias = p.F32("bias", Random(width, 6), width);
        var cpuBias = p.Cpu.LoadWeight(bias);
        var gpuBias = p.Gpu.LoadWeight(bias);
        var x = p.Buffers(Random(width * (tokens + 1), 7, 40f));
        p.Cpu.AddBias(x.Cpu, cpuBias, tokens);
        p.Gpu.AddBias(x.Gpu, gpuBias, tokens);
        var (want, got) = p.Read(x, width * (tokens + 1));
        Assert.Equal(want, got); // one float add per element
        p.Cpu.Scale(x.Cpu, width * tokens, 0.0625f * 3);
        p.Gpu.Scale(x.Gpu, width * tokens, 0.0625f * 3);
        (want, got) = p.Read(x, width * (tokens + 1));
        Assert.Equal(want, got); // one float product per element
        p.Cpu.Softcap(x.Cpu, width * tokens - 1, 5f);
        p.Gpu.Softcap(x.Gpu, width * tokens - 1, 5f);
        (want, got) = p.Read(x, width * (tokens + 1));
        Close(want, got, 3e-5, 2e-7 * 5f, "softcap"); // the CPU tanh: ~5e-8 absolute
        Assert.All(got.AsSpan(0, width * tokens - 1).ToArray(), v => Assert.True(Math.Abs(v) < 5f));
    }

    /// <summary>Per-head q/k norm: x == dst, rows = tokens · heads of width headDim.</summary>
    [CudaDeviceFact]
    public void RmsNormInPlaceOverHeadsAgrees()
    {
        using var p = new Pair();
        const int headDim = 64, heads = 6, tokens = 3;
        var w = p.F32("q_norm", Random(headDim, 8), headDim);
        var cw = p.Cpu.LoadWeight(w);
        var gw = p.Gpu.LoadWeight(w);
        var x = p.Buffers(Random(headDim * heads * tokens, 9, 3f));
        p.Cpu.RmsNorm(x.Cpu, cw, x.Cpu, tokens * heads, headDim, 1e-6f);
        p.Gpu.RmsNorm(x.Gpu, gw, x.Gpu, tokens * heads, headDim, 1e-6f);
        var (want, got) = p.Read(x, headDim * heads * tokens);
        Close(want, got, 1e-6, 1e-7, "rms_norm in place");
    }

    /// <summary>
    /// NEOX and normal layouts, partial rotary (dims 32 of 64: the last 32 elements pass through), attention factor,
    /// and two specs used alternately (the device keeps one table per spec).
    /// </summary>
    [CudaDeviceFact]
    public void RopeLayoutsPartialRotaryAndSpecsAgree()
    {
        using var p = new Pair();
        const int headDim = 64, heads = 3, tokens = 5;
        var specs = new[]
        {
            new RopeSpec(headDim, 32, 10000f, 1f, null, neox: true, attnFactor: 1.25f),
            new RopeSpec(headDim, 64, 1000000f, 8f, null, neox: false),
            new RopeSpec(headDim, 64, 10000f, 1f, null, neox: true),
            new RopeSpec(headDim, 32, 10000f, 1f, [1f, 1f, 2f, 2f, 4f, 4f, 8f, 8f, 1f, 1f, 1f, 1f, 1f, 1f, 1f, 1f], neox: false),
        };
        var input = Random(headDim * heads * tokens, 10, 2f);
        foreach (int round in new[] { 0, 1 })
            for (int s = 0; s < specs.Length; s++)
            {
                var x = p.Buffers(input);
                int start = 11 + 7 * s + 100 * round;
                p.Cpu.Rope(x.Cpu, tokens, heads, start, specs[s]);
                p.Gpu.Rope(x.Gpu, tokens, heads, start, specs[s]);
                var (want, got) = p.Read(x, input.Length);
                Close(want, got, 1e-6, 1e-6, $"rope spec {s} round {round}");
                if (specs[s].Dims < headDim)
                    for (int r = 0; r < heads * tokens; r++)
                        for (int i = specs[s].Dims; i < headDim; i++)
                            Assert.Equal(input[r * headDim + i], got[r * headDim + i]);
            }
    }

    /// <summary>
    /// Weights that are row slices of one fused tensor (Phi-3's attn_qkv): the slice's product equals the matching
    /// rows of the whole tensor's product on the GPU bit for bit, and the CPU's within the dot tolerance.
    /// </summary>
    [CudaDeviceTheory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q6_K)]
    public void RowSlicedWeightsReadTheirOwnRows(GgmlType type)
    {
        using var p = new Pair();
        const int k = 512, rows = 48, first = 16, count = 24, tokens = 3;
        var values = Random(k * rows, 11);
        var bytes = EdgeLlm.Quant.QuantRef.QuantizeRow(type, values); // whole blocks per row: rows of k quantize alike as one long row
        var whole = p.Tensor("qkv", type, [k, rows], bytes);
        var slice = whole.RowSlice("k", first, count);
        var x = p.Buffers(Random(k * tokens, 12));
        var all = p.Buffers(new float[rows * tokens]);
        var part = p.Buffers(new float[count * tokens]);
        p.Gpu.MatMul(p.Gpu.LoadWeight(whole), x.Gpu, all.Gpu, tokens);
        p.Gpu.MatMul(p.Gpu.LoadWeight(slice), x.Gpu, part.Gpu, tokens);
        p.Cpu.MatMul(p.Cpu.LoadWeight(slice), x.Cpu, part.Cpu, tokens);
        var (_, gAll) = p.Read(all, rows * tokens);
        var (cPart, gPart) = p.Read(part, count * tokens);
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < count; r++)
                Assert.Equal(gAll[t * rows + first + r], gPart[t * count + r]);
        double tol = CudaKernels.IsIntegerDot(type) ? 3e-2 : 1e-4; // 8-bit activations on the GPU
        double scale = cPart.Max(Math.Abs);
        Close(cPart, gPart, 0, tol * scale, $"{type} row slice");
    }
}
