using EdgeLlm.Model;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// The converter's view of the engine's model description (<see cref="TensorNames"/>, <see cref="ArchSpec.BlockTensors"/>,
/// <see cref="ModelShape.Dims"/>): the order the converter writes tensors in (token embedding, rope tensors, output
/// norm, output, then each block in llama.cpp's order) and the shape each must have, in PyTorch order (rows first).
/// </summary>
internal static class LlamaLayout
{
    /// <summary>Expected PyTorch-order shape of a tensor, or null for a name this architecture does not have.</summary>
    public static long[]? ExpectedShape(string name, LlamaParams p)
    {
        // llama.cpp writes rope_freqs for llama only (Llama 3.1's rope scaling).
        if (name == TensorNames.RopeFreqs && p.Shape.Arch != "llama") return null;
        if (p.Shape.Dims(name) is not { } dims) return null;
        Array.Reverse(dims);
        return dims;
    }

    /// <summary>Puts named tensors in writing order: known llama names first in layout order, then the rest as given.</summary>
    public static List<T> Order<T>(IEnumerable<T> tensors, Func<T, string> name, int layers) => Order(tensors, name, layers, "llama");

    /// <summary>Puts named tensors in writing order: known names first in the architecture's order, then the rest as given.</summary>
    public static List<T> Order<T>(IEnumerable<T> tensors, Func<T, string> name, int layers, string architecture)
    {
        var byName = new Dictionary<string, T>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            if (!byName.TryAdd(name(t), t)) throw new EdgeLlmException($"tensor '{name(t)}' appears twice in the checkpoint");
        }
        var order = new List<string>
        {
            TensorNames.TokenEmbd, TensorNames.RopeFreqs, TensorNames.RopeFactorsLong, TensorNames.RopeFactorsShort,
            TensorNames.OutputNorm, TensorNames.Output,
        };
        var block = (ArchSpec.Find(architecture) ?? ArchSpec.Llama).BlockTensors;
        for (int i = 0; i < layers; i++)
            foreach (string s in block) order.Add(TensorNames.Block(i, s));
        var result = new List<T>(byName.Count);
        foreach (string n in order)
            if (byName.Remove(n, out var t)) result.Add(t);
        foreach (var t in tensors)
            if (byName.ContainsKey(name(t))) result.Add(t);
        return result;
    }
}
