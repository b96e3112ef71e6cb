using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;

namespace EdgeLlm.Perf;

/// <summary>
/// Q4_K prefill kernels on the selected rung, single thread: a Rows × 4096 matrix times four tokens' Q8_K activations,
/// as four one-token <see cref="DotQ4_K.Dot"/> calls per row ("Dot") or one <see cref="DotQ4_K.Dot4"/> ("Dot4").
/// Both read the matrix once per operation (the four-token loop of the matmul keeps a row in L1).
/// </summary>
[Config(typeof(PerfConfig))]
public unsafe class Q4_KFourTokenBenchmarks
{
    private WeightMatrix _m = null!;
    private byte* _xq;
    private long _stride;

    [Params(GgmlType.Q4_K)]
    public GgmlType Type { get; set; }

    [Params("Dot", "Dot4")]
    public string Kernel { get; set; } = "Dot";

    [Params(4096)]
    public int Rows { get; set; }

    /// <summary>Tokens per operation (both kernels do four), for the GOP/s column.</summary>
    [Params(4)]
    public int Tokens { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _m = new WeightMatrix(Type, Rows);
        int n = WeightMatrix.Cols;
        _stride = ActivationQuant.BytesFor(Type, n);
        _xq = (byte*)NativeMemory.AlignedAlloc((nuint)(4 * _stride), 64);
        for (int t = 0; t < 4; t++) ActivationQuant.QuantizeFor(Type, _m.X, _xq + t * _stride, n);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _m?.Dispose();
        NativeMemory.AlignedFree(_xq);
    }

    [Benchmark]
    public float MatMul()
    {
        float* y = _m.Y;
        byte* w = _m.Weights;
        long rb = _m.RowBytes;
        int n = WeightMatrix.Cols;
        if (Kernel == "Dot")
        {
            for (int r = 0; r < Rows; r++)
                for (int t = 0; t < 4; t++) y[(r & 1023) + 1024 * t] = DotQ4_K.Dot(w + r * rb, _xq + t * _stride, n);
        }
        else
        {
            for (int r = 0; r < Rows; r++) DotQ4_K.Dot4(w + r * rb, _xq, _stride, n, y + (r & 1023), 1024);
        }
        return y[0];
    }
}
