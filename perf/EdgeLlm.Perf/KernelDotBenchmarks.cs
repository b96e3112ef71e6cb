using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using BenchmarkDotNet.Attributes;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;

namespace EdgeLlm.Perf;

/// <summary>
/// The integer dot kernels as a single-threaded mat-vec: a Rows × 4096 quantized matrix (4096 × 4096 by default)
/// times activations already quantized once (Q8_0 or Q8_K), one kernel call per row, per type and per rung. Rungs
/// the CPU lacks are skipped at setup (the case reports no result). Weights GB/s = matrix bytes / time.
/// </summary>
[Config(typeof(PerfConfig))]
public unsafe class KernelDotBenchmarks
{
    private WeightMatrix _m = null!;
    private byte* _xq;

    [Params(GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q8_0, GgmlType.Q6_K)]
    public GgmlType Type { get; set; }

    /// <summary>Scalar, Avx2 (no VNNI), Avx2Vnni (AVX-VNNI 256-bit vpdpbusd/vpdpwssd), Avx512 (vpmaddubsw + vpmaddwd).</summary>
    [Params("Scalar", "Avx2", "Avx2Vnni", "Avx512")]
    public string Rung { get; set; } = "Scalar";

    [Params(4096)]
    public int Rows { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        bool ok = Rung switch
        {
            "Avx2" => KernelRung.IsSupported(Backends.Cpu.Kernels.Rung.Avx2),
            "Avx2Vnni" => KernelRung.IsSupported(Backends.Cpu.Kernels.Rung.Avx2) && AvxVnni.IsSupported,
            "Avx512" => KernelRung.IsSupported(Backends.Cpu.Kernels.Rung.Avx512),
            _ => true,
        };
        if (!ok) throw new PlatformNotSupportedException($"rung {Rung} is not supported on this CPU");
        _m = new WeightMatrix(Type, Rows);
        int bytes = ActivationQuant.BytesFor(Type, WeightMatrix.Cols);
        _xq = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        ActivationQuant.QuantizeFor(Type, _m.X, _xq, WeightMatrix.Cols);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _m?.Dispose();
        NativeMemory.AlignedFree(_xq);
    }

    [Benchmark]
    public float MatVec()
    {
        float* y = _m.Y;
        byte* w = _m.Weights;
        long rb = _m.RowBytes;
        int n = WeightMatrix.Cols;
        switch (Type)
        {
            case GgmlType.Q4_0:
                switch (Rung)
                {
                    case "Scalar": for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ4_0.DotScalar(w + r * rb, _xq, n); break;
                    case "Avx2": for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ4_0.DotAvx2(w + r * rb, _xq, n, false); break;
                    case "Avx2Vnni": for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ4_0.DotAvx2(w + r * rb, _xq, n, true); break;
                    default: for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ4_0.DotAvx512(w + r * rb, _xq, n); break;
                }
                break;
            case GgmlType.Q8_0:
                switch (Rung)
                {
                    case "Scalar": for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ8_0.DotScalar(w + r * rb, _xq, n); break;
                    case "Avx2": for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ8_0.DotAvx2(w + r * rb, _xq, n, false); break;
                    case "Avx2Vnni": for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ8_0.DotAvx2(w + r * rb, _xq, n, true); break;
                    default: for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ8_0.DotAvx512(w + r * rb, _xq, n); break;
                }
                break;
            case GgmlType.Q4_K:
                switch (Rung)
                {
                    case "Scalar": for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ4_K.DotScalar(w + r * rb, _xq, n); break;
                    case "Avx2": for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ4_K.DotAvx2(w + r * rb, _xq, n, false); break;
                    case "Avx2Vnni": for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ4_K.DotAvx2(w + r * rb, _xq, n, true); break;
                    default: for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ4_K.DotAvx512(w + r * rb, _xq, n); break;
                }
                break;
            default:
                switch (Rung)
                {
                    case "Scalar": for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ6_K.DotScalar(w + r * rb, _xq, n); break;
                    case "Avx2": for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ6_K.DotAvx2(w + r * rb, _xq, n, false); break;
                    case "Avx2Vnni": for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ6_K.DotAvx2(w + r * rb, _xq, n, true); break;
                    default: for (int r = 0; r < Rows; r++) y[r & 4095] = DotQ6_K.DotAvx512(w + r * rb, _xq, n); break;
                }
                break;
        }
        return y[0];
    }
}
