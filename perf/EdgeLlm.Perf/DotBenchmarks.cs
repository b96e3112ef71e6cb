using BenchmarkDotNet.Attributes;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Perf;

/// <summary>Reference dot products: a 64 × 4096 weight matrix times a float vector (a mat-vec), per block type.</summary>
[Config(typeof(PerfConfig))]
public unsafe class DotBenchmarks
{
    private WeightMatrix _m = null!;

    [Params(GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K)]
    public GgmlType Type { get; set; }

    [GlobalSetup]
    public void Setup() => _m = new WeightMatrix(Type);

    [GlobalCleanup]
    public void Cleanup() => _m.Dispose();

    [Benchmark]
    public float Dot()
    {
        float sum = 0;
        for (int r = 0; r < WeightMatrix.Rows; r++)
            sum += QuantRef.Dot(Type, _m.Weights + r * _m.RowBytes, _m.X, WeightMatrix.Cols);
        return sum;
    }
}
