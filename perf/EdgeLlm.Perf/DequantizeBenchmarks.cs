using BenchmarkDotNet.Attributes;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Perf;

/// <summary>Reference dequantization of a 64 × 4096 weight matrix, one row at a time, per block type.</summary>
[Config(typeof(PerfConfig))]
public unsafe class DequantizeBenchmarks
{
    private WeightMatrix _m = null!;

    [Params(GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K)]
    public GgmlType Type { get; set; }

    [GlobalSetup]
    public void Setup() => _m = new WeightMatrix(Type);

    [GlobalCleanup]
    public void Cleanup() => _m.Dispose();

    [Benchmark]
    public float Dequantize()
    {
        for (int r = 0; r < WeightMatrix.Rows; r++)
            QuantRef.DequantizeRow(Type, _m.Weights + r * _m.RowBytes, _m.Y, WeightMatrix.Cols);
        return _m.Y[WeightMatrix.Cols - 1];
    }
}
