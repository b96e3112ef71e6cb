using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace EdgeLlm.Perf;

/// <summary>
/// "GOP/s": multiply-adds counted as two operations, 2 × rows × columns × tokens per operation, divided by the mean
/// time. Tokens is the case's Tokens parameter where it has one, else 4 for a Kernel parameter ending in "4", else 1. The integer kernels'
/// counterpart of GFLOP/s: what the ALUs deliver, next to <see cref="WeightThroughputColumn"/>'s bytes.
/// </summary>
public sealed class OpsThroughputColumn : IColumn
{
    public string Id => nameof(OpsThroughputColumn);
    public string ColumnName => "GOP/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 1;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "2 x rows x columns x tokens per operation / mean time (multiply and add counted apart, 1 G = 1e9)";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var stats = summary[benchmarkCase]?.ResultStatistics;
        if (stats is null) return "-";
        int rows = benchmarkCase.Parameters["Rows"] is int r ? r : WeightMatrix.Rows;
        int tokens = benchmarkCase.Parameters["Tokens"] is int tk ? tk : benchmarkCase.Parameters["Kernel"] is string k && k.EndsWith('4') ? 4 : 1;
        double ops = 2.0 * rows * WeightMatrix.Cols * tokens;
        return (ops / stats.Mean).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture); // ops/ns = G ops/s
    }
}
