using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using static EdgeLlm.Tests.Cuda.CudaBlockMathHostTests;

namespace EdgeLlm.Tests.Cuda;

/// <summary>
/// The one-thread-per-element kernels of kernels/elementwise.cu (SwiGLU, GeGLU, bias add, scale, softcap) and
/// kernels/rope.cu (normal and NEOX layouts, partial rotary, attention factor), and the attention kernel (a block
/// of 128 OS threads with emulated warp shuffles and barriers), compiled by the host C++ compiler (HostEmulation)
/// and run on the CPU against the CPU backend's ops on the same inputs. This checks the kernels' formulas,
/// indexing and masking without a GPU; the device's own expf/tanhf/sincos are checked by CudaOpAgreementTests.
/// </summary>
public unsafe class CudaElementwiseHostTests : IDisposable
{
    private readonly CpuBackend _cpu = new(1);

    public CudaElementwiseHostTests() => _cpu.Prepare(new BackendLimits(16, 1024, 64, 128, 128));

    public void Dispose() => _cpu.Dispose();

    private BackendBuffer Buffer(float[] values)
    {
        var b = _cpu.Allocate(values.Length);
        values.AsSpan().CopyTo(new Span<float>(((CpuBuffer)b).Data, values.Length));
        return b;
    }

    private float[] Read(BackendBuffer b, int n)
    {
        var r = new float[n];
        _cpu.CopyOut(b, 0, r);
        return r;
    }

    private static float[] Random(int n, int seed, float scale)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return x;
    }

    private static MemoryStream Input(string op)
    {
        var s = new MemoryStream();
        s.Write(System.Text.Encoding.ASCII.GetBytes(op));
        s.WriteByte(0);
        return s;
    }

    private static float[] Floats(byte[] bytes) => MemoryMarshal.Cast<byte, float>(bytes).ToArray();

    private static void Close(float[] want, float[] got, double rel, double abs, string what)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
            Assert.True(Math.Abs(got[i] - want[i]) <= abs + rel * Math.Abs(want[i]), $"{what}, element {i}: kernel {got[i]}, cpu {want[i]}");
    }

    [HostCompilerTheory]
    [InlineData(GluKind.Silu, "swiglu")]
    [InlineData(GluKind.GeluTanh, "geglu")]
    public void GluKernelsMatchTheCpu(GluKind kind, string op)
    {
        const int n = 4099;
        var gate = Random(n, 1, 12f);
        var up = Random(n, 2, 1f);
        var g = Buffer(gate);
        _cpu.Glu(g, Buffer(up), n, kind);
        var input = Input(op);
        input.Write(BitConverter.GetBytes((long)n));
        input.Write(MemoryMarshal.AsBytes(gate.AsSpan()));
        input.Write(MemoryMarshal.AsBytes(up.AsSpan()));
        var got = Floats(Harness.Exec(input, op));
        Close(Read(g, n), got, 1e-5, 1e-7, op);
        // and against float64: silu(g) = g / (1 + e^-g), gelu(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))
        var exact = new float[n];
        for (int i = 0; i < n; i++)
        {
            double v = gate[i];
            double act = kind == GluKind.Silu ? v / (1 + Math.Exp(-v)) : 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
            exact[i] = (float)(act * up[i]);
        }
        Close(exact, got, 2e-6, 1e-7, op + " vs float64");
    }

    [HostCompilerTheory]
    [InlineData("scale", 0.1875f)]
    [InlineData("softcap", 30f)]
    [InlineData("softcap", 5f)]
    public void ScaleAndSoftcapKernelsMatchTheCpu(string op, float f)
    {
        const int n = 1000;
        var x = Random(n, 3, 60f);
        var b = Buffer(x);
        if (op == "scale") _cpu.Scale(b, n, f);
        else _cpu.Softcap(b, n, f);
        var input = Input(op);
        input.Write(BitConverter.GetBytes(f));
        input.Write(BitConverter.GetBytes((long)n));
        input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
        var got = Floats(Harness.Exec(input, op));
        // The CPU's vectorised tanh is good to ~5e-8 absolute (so ~5e-5 relative near 0); float64 pins the kernel tighter.
        Close(Read(b, n), got, op == "scale" ? 0 : 3e-5, op == "scale" ? 0 : 2e-7 * f, $"{op} {f}");
        var exact = x.Select(v => op == "scale" ? v * f : (float)(f * Math.Tanh(v / (double)f))).ToArray();
        Close(exact, got, op == "scale" ? 0 : 1e-6, op == "scale" ? 0 : 1e-7, $"{op} {f} vs float64");
        if (op == "softcap") Assert.All(got, v => Assert.True(Math.Abs(v) <= f));
    }

    [HostCompilerFact]
    public void AddBiasKernelMatchesTheCpu()
    {
        const int width = 96, tokens = 7;
        var bias = Random(width, 4, 0.1f);
        var x = Random(width * tokens, 5, 3f);
        var b = Buffer(x);
        fixed (float* pb = bias)
            _cpu.AddBias(b, _cpu.LoadWeight(new TensorView("bias", GgmlType.F32, [width], (byte*)pb, width * 4)), tokens);
        var input = Input("add_bias");
        input.Write(BitConverter.GetBytes(width));
        input.Write(BitConverter.GetBytes((long)width * tokens));
        input.Write(MemoryMarshal.AsBytes(bias.AsSpan()));
        input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
        Assert.Equal(Read(b, width * tokens), Floats(Harness.Exec(input, "add_bias")));
    }

    public static TheoryData<int, bool, float, int> RopeCases() => new()
    {
        { 64, false, 1f, 0 }, { 64, true, 1f, 0 }, { 32, true, 1.25f, 0 }, { 32, false, 1f, 1 }, { 48, true, 0.8f, 1 },
    };

    /// <summary>dims &lt; head 64: partial rotary (the tail passes through); factors: Llama-3.1 style per-pair divisors.</summary>
    [HostCompilerTheory]
    [MemberData(nameof(RopeCases))]
    public void RopeKernelMatchesTheCpu(int dims, bool neox, float attnFactor, int withFactors)
    {
        const int headDim = 64, heads = 3, tokens = 5, start = 37;
        float[]? factors = withFactors == 0 ? null : Enumerable.Range(0, dims / 2).Select(i => 1f + (i % 4)).ToArray();
        var spec = new RopeSpec(headDim, dims, 10000f, 2f, factors, neox, attnFactor);
        var x = Random(headDim * heads * tokens, 6, 2f);
        var b = Buffer(x);
        _cpu.Rope(b, tokens, heads, start, spec);
        var input = Input("rope");
        foreach (int v in new[] { tokens, heads, headDim, dims / 2, start, neox ? 1 : 0 }) input.Write(BitConverter.GetBytes(v));
        input.Write(BitConverter.GetBytes(spec.Scale));
        input.Write(BitConverter.GetBytes(spec.AttnFactor));
        input.Write(MemoryMarshal.AsBytes(spec.InverseFrequencies.AsSpan()));
        input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
        var got = Floats(Harness.Exec(input, "rope"));
        Close(Read(b, x.Length), got, 1e-6, 1e-6, $"rope dims {dims} neox {neox}");
        for (int r = 0; r < heads * tokens; r++)
            for (int i = dims; i < headDim; i++)
                Assert.Equal(x[r * headDim + i], got[r * headDim + i]);
    }

    public static TheoryData<int, int, float, int, int> AttentionCases() => new()
    {
        { 64, 0, 0f, 7, 0 }, { 64, 0, 0f, 1, 20 }, { 64, 5, 0f, 9, 13 }, { 64, 1, 0f, 3, 4 }, { 64, 0, 3f, 9, 13 },
        { 64, 5, 3f, 1, 20 }, { 80, 5, 3f, 9, 13 }, { 80, 0, 0f, 4, 2 }, { 256, 3, 0f, 2, 6 },
    };

    /// <summary>
    /// Score scale 0.3, softcap, sliding window, GQA group 2. K and V are rounded to fp16 before the CPU sees them,
    /// so both sides attend over the same numbers (the device cache is fp16).
    /// </summary>
    [HostCompilerTheory]
    [MemberData(nameof(AttentionCases))]
    public void AttentionKernelMatchesTheCpu(int headDim, int window, float softcap, int nTokens, int startPos)
    {
        const int heads = 4, kvHeads = 2;
        int kvDim = kvHeads * headDim, total = startPos + nTokens;
        var cpu = new CpuBackend(1);
        cpu.Prepare(new BackendLimits(16, 1024, 64, 256, 256));
        try
        {
            var k = Random(total * kvDim, 1, 2f).Select(v => (float)(Half)v).ToArray();
            var v = Random(total * kvDim, 2, 1f).Select(x => (float)(Half)x).ToArray();
            var q = Random(nTokens * heads * headDim, 3, 2f);
            var cache = new KvCache(cpu, 1, 64, kvDim);
            BackendBuffer Buf(float[] a)
            {
                var b = cpu.Allocate(a.Length);
                a.AsSpan().CopyTo(new Span<float>(((CpuBuffer)b).Data, a.Length));
                return b;
            }
            cpu.StoreKv(cache, 0, 0, total, Buf(k), Buf(v));
            var dst = cpu.Allocate(q.Length);
            var options = new AttentionOptions(0.3f, softcap, window);
            cpu.Attention(Buf(q), cache, 0, startPos, nTokens, heads, headDim, dst, options);
            var want = new float[q.Length];
            cpu.CopyOut(dst, 0, want);

            var input = Input("attention");
            foreach (int x in new[] { nTokens, heads, headDim, kvDim, startPos, window, 128 }) input.Write(BitConverter.GetBytes(x));
            input.Write(BitConverter.GetBytes(options.Scale));
            input.Write(BitConverter.GetBytes(options.Softcap));
            foreach (float x in k) input.Write(BitConverter.GetBytes(BitConverter.HalfToUInt16Bits((Half)x)));
            foreach (float x in v) input.Write(BitConverter.GetBytes(BitConverter.HalfToUInt16Bits((Half)x)));
            input.Write(MemoryMarshal.AsBytes(q.AsSpan()));
            var got = Floats(Harness.Exec(input, "attention"));
            Close(want, got, 1e-5, 1e-6, $"attention head {headDim} window {window} softcap {softcap} n {nTokens} start {startPos}");
        }
        finally
        {
            cpu.Dispose();
        }
    }
}
