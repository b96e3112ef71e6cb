namespace EdgeLlm.Convert.Sources;

/// <summary>
/// llama.cpp's tensor names for the llama architecture, the order the converter writes them in (token
/// embedding, output norm, output, then each block), and the shape each must have for given hyperparameters.
/// </summary>
internal static class LlamaLayout
{
    public const string TokenEmbd = "token_embd.weight";
    public const string OutputNorm = "output_norm.weight";
    public const string Output = "output.weight";
    public const string RopeFreqs = "rope_freqs.weight";

    /// <summary>Per-block tensor names after "blk.N.", in writing order.</summary>
    public static readonly string[] BlockTensors =
    [
        "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "attn_norm.weight",
        "ffn_gate.weight", "ffn_down.weight", "ffn_up.weight", "ffn_norm.weight",
    ];

    /// <summary>Expected PyTorch-order shape of a llama tensor, or null for a name this layout does not know.</summary>
    public static long[]? ExpectedShape(string name, LlamaParams p)
    {
        long dim = p.Dim, kv = (long)p.Dim / p.Heads * p.KvHeads, ffn = p.FfnDim, vocab = p.VocabSize;
        switch (name)
        {
            case TokenEmbd or Output: return [vocab, dim];
            case OutputNorm: return [dim];
            case RopeFreqs: return [p.Dim / p.Heads / 2];
        }
        if (!TryParseBlock(name, out int layer, out string suffix) || layer >= p.Layers) return null;
        return suffix switch
        {
            "attn_q.weight" or "attn_output.weight" => [dim, dim],
            "attn_k.weight" or "attn_v.weight" => [kv, dim],
            "attn_norm.weight" or "ffn_norm.weight" => [dim],
            "ffn_gate.weight" or "ffn_up.weight" => [ffn, dim],
            "ffn_down.weight" => [dim, ffn],
            _ => null,
        };
    }

    /// <summary>Splits "blk.N.rest" into N and rest.</summary>
    public static bool TryParseBlock(string name, out int layer, out string suffix)
    {
        layer = -1;
        suffix = "";
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return false;
        int dot = name.IndexOf('.', 4);
        if (dot < 0 || !int.TryParse(name.AsSpan(4, dot - 4), System.Globalization.NumberStyles.None, null, out layer)) return false;
        suffix = name[(dot + 1)..];
        return true;
    }

    /// <summary>Puts named tensors in writing order: known names first in layout order, then the rest as given.</summary>
    public static List<T> Order<T>(IEnumerable<T> tensors, Func<T, string> name, int layers)
    {
        var byName = new Dictionary<string, T>(StringComparer.Ordinal);
        var rest = new List<T>();
        foreach (var t in tensors)
        {
            if (!byName.TryAdd(name(t), t)) throw new EdgeLlmException($"tensor '{name(t)}' appears twice in the checkpoint");
        }
        var order = new List<string> { TokenEmbd, RopeFreqs, OutputNorm, Output };
        for (int i = 0; i < layers; i++)
            foreach (string s in BlockTensors) order.Add($"blk.{i}.{s}");
        var result = new List<T>(byName.Count);
        foreach (string n in order)
            if (byName.Remove(n, out var t)) result.Add(t);
        foreach (var t in tensors)
            if (byName.ContainsKey(name(t))) result.Add(t);
        return result;
    }
}
