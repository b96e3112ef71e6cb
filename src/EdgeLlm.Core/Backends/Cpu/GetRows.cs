using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Backends.Cpu;

/// <summary>Embedding lookup: dst[t] = the dequantized row ids[t] of the table (one row per token, on the calling thread).</summary>
internal static unsafe class GetRows
{
    public static void Run(CpuWeight table, ReadOnlySpan<int> ids, float* dst)
    {
        int n = (int)table.Ne0;
        for (int t = 0; t < ids.Length; t++)
        {
            byte* row = table.Row(ids[t]);
            float* d = dst + (long)t * n;
            switch (table.Type)
            {
                case GgmlType.F32: Buffer.MemoryCopy(row, d, (long)n * sizeof(float), (long)n * sizeof(float)); break;
                case GgmlType.F16: HalfConvert.F16ToF32((ushort*)row, d, n); break;
                case GgmlType.BF16: HalfConvert.BF16ToF32((ushort*)row, d, n); break;
                default: QuantRef.DequantizeRow(table.Type, row, d, n); break;
            }
        }
    }
}
