using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Diagnostics;

/// <summary>
/// The weight bytes one decode step (one token) must read from memory: every layer matrix and norm, the
/// final norm, the output matrix, and the one row of the embedding table the token selects (a tied output
/// reads the whole table as the output matrix, plus that row). Multiplied by tokens/s this is the achieved
/// weight bandwidth that decode speed is bounded by. RoPE factors are copied at load and not counted.
/// </summary>
public static class WeightTraffic
{
    public static long BytesPerToken(LlamaWeights w)
    {
        long bytes = w.TokenEmbd.RowBytes + w.OutputNorm.ByteLength + w.Output.ByteLength;
        foreach (var l in w.Layers) bytes += l.ByteLength;
        return bytes;
    }

    /// <summary>Total bytes and elements of all tensors in the file (what llama-bench calls size and params).</summary>
    public static (long Bytes, long Parameters) FileTotals(GgufFile file)
    {
        long bytes = 0, elements = 0;
        foreach (var t in file.Tensors)
        {
            bytes += t.ByteSize;
            elements += t.ElementCount;
        }
        return (bytes, elements);
    }

    /// <summary>The type holding the most bytes among the 2-D tensors (e.g. Q4_0 for llama.cpp's "Q4_0" files with a Q6_K output).</summary>
    public static GgmlType DominantType(GgufFile file)
    {
        var byType = new Dictionary<GgmlType, long>();
        foreach (var t in file.Tensors)
            if (t.Dims.Length >= 2 && t.Dims[1] > 1) byType[t.Type] = byType.GetValueOrDefault(t.Type) + t.ByteSize;
        GgmlType best = GgmlType.F32;
        long most = -1;
        foreach (var (type, b) in byType)
            if (b > most || (b == most && type < best)) { best = type; most = b; }
        return best;
    }
}
