using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using EdgeLlm.Gguf;

namespace EdgeLlm.Perf;

/// <summary>
/// "Weights GB/s": quantized weight bytes read per operation (<see cref="WeightMatrix.WeightBytes"/> for the case's
/// Type parameter, or its Rows parameter × the row bytes where the benchmark has one) divided by the mean time. Lets Q4 and Q8 kernels be compared against memory bandwidth.
/// </summary>
public sealed class WeightThroughputColumn : IColumn
{
    public string Id => nameof(WeightThroughputColumn);
    public string ColumnName => "Weights GB/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Quantized weight bytes per operation / mean time (1 GB = 1e9 bytes)";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var stats = summary[benchmarkCase]?.ResultStatistics;
        if (stats is null || benchmarkCase.Parameters["Type"] is not GgmlType type) return "-";
        // Benchmarks with a Rows parameter (the kernel mat-vecs) read that many rows, the others WeightMatrix.Rows.
        int rows = benchmarkCase.Parameters["Rows"] is int r ? r : WeightMatrix.Rows;
        double bytes = (double)rows * GgmlTypes.RowBytes(type, WeightMatrix.Cols);
        return (bytes / stats.Mean).ToString("0.000", System.Globalization.CultureInfo.InvariantCulture); // bytes/ns = GB/s
    }
}

/// <summary>Config for every benchmark class here: the default columns plus the weight throughput and the operation rate.</summary>
public sealed class PerfConfig : ManualConfig
{
    public PerfConfig() => AddColumn(new WeightThroughputColumn(), new OpsThroughputColumn());
}
