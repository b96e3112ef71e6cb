using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;

namespace EdgeLlm.Backends.Cpu;

/// <summary>Embedding lookup: dst[t] = the dequantized row ids[t] of the table (one row per token, on the calling thread).</summary>
internal static unsafe class GetRows
{
    public static void Run(CpuWeight table, ReadOnlySpan<int> ids, float* dst)
    {
        var row = KernelTable.For(table.Type) ?? throw new NotSupportedException($"get_rows of {GgmlTypes.Name(table.Type)} ({table.Name})");
        var toFloat = row.ToFloat;
        int n = (int)table.Ne0;
        for (int t = 0; t < ids.Length; t++) toFloat(table.Row(ids[t]), dst + (long)t * n, n);
    }
}
