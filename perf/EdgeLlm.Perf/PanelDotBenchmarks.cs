using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;

namespace EdgeLlm.Perf;

/// <summary>
/// The Q4_0 matmul kernels single-threaded on a Rows × 4096 matrix: <c>Dot</c> (the plain rung loop over Q8_0
/// blocks), <c>Panel</c> (<see cref="DotQ4_0.DotPanel"/>, decode), <c>Panel4</c> (<see cref="DotQ4_0.DotPanel4"/>:
/// four tokens per pass over the weights, prefill; its Weights GB/s counts one pass, so ×4 is the token rate), all
/// on the selected rung (<c>EDGELLM_KERNEL_RUNG</c> picks another).
/// </summary>
[Config(typeof(PerfConfig))]
public unsafe class PanelDotBenchmarks
{
    private WeightMatrix _m = null!;
    private byte* _xq;
    private byte* _panel;
    private long _panelBytes;

    [Params(GgmlType.Q4_0)]
    public GgmlType Type { get; set; }

    [Params("Dot", "Panel", "Panel4")]
    public string Kernel { get; set; } = "Dot";

    [Params(4096)]
    public int Rows { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _m = new WeightMatrix(Type, Rows);
        int n = WeightMatrix.Cols;
        int bytes = ActivationQuant.BytesFor(Type, n);
        _xq = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        ActivationQuant.QuantizeFor(Type, _m.X, _xq, n);
        _panelBytes = Q8_0Panel.BytesFor(n);
        _panel = (byte*)NativeMemory.AlignedAlloc((nuint)(4 * _panelBytes), 64);
        for (int t = 0; t < 4; t++) Q8_0Panel.FromBlocks(_xq, _panel + t * _panelBytes, n);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _m?.Dispose();
        NativeMemory.AlignedFree(_xq);
        NativeMemory.AlignedFree(_panel);
    }

    [Benchmark]
    public float MatMul()
    {
        float* y = _m.Y;
        byte* w = _m.Weights;
        long rb = _m.RowBytes;
        int n = WeightMatrix.Cols;
        switch (Kernel)
        {
            case "Dot": for (int r = 0; r < Rows; r++) y[r & 1023] = DotQ4_0.Dot(w + r * rb, _xq, n); break;
            case "Panel": for (int r = 0; r < Rows; r++) y[r & 1023] = DotQ4_0.DotPanel(w + r * rb, _panel, n); break;
            default: for (int r = 0; r < Rows; r++) DotQ4_0.DotPanel4(w + r * rb, _panel, _panelBytes, n, y + (r & 1023), 1024); break;
        }
        return y[0];
    }
}
