namespace EdgeLlm.Convert.Sources;

/// <summary>
/// llama.cpp's tensor names for the architectures the converter writes (llama and the families that share its
/// block structure: qwen2, qwen3, phi3, gemma, gemma2, gemma3), the order the converter writes them in (token
/// embedding, rope tensors, output norm, output, then each block), and the shape each must have for given
/// hyperparameters. Shapes are in PyTorch order (rows first).
/// </summary>
internal static class LlamaLayout
{
    public const string TokenEmbd = "token_embd.weight";
    public const string OutputNorm = "output_norm.weight";
    public const string Output = "output.weight";
    public const string RopeFreqs = "rope_freqs.weight";
    public const string RopeFactorsLong = "rope_factors_long.weight";
    public const string RopeFactorsShort = "rope_factors_short.weight";

    /// <summary>Per-block tensor names of the llama architecture after "blk.N.", in writing order.</summary>
    public static readonly string[] BlockTensors =
    [
        "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "attn_norm.weight",
        "ffn_gate.weight", "ffn_down.weight", "ffn_up.weight", "ffn_norm.weight",
    ];

    private static readonly string[] Qwen2Block =
    [
        "attn_q.weight", "attn_q.bias", "attn_k.weight", "attn_k.bias", "attn_v.weight", "attn_v.bias",
        "attn_output.weight", "attn_norm.weight", "ffn_gate.weight", "ffn_down.weight", "ffn_up.weight", "ffn_norm.weight",
    ];

    private static readonly string[] Qwen3Block =
    [
        "attn_q.weight", "attn_q_norm.weight", "attn_k.weight", "attn_k_norm.weight", "attn_v.weight",
        "attn_output.weight", "attn_norm.weight", "ffn_gate.weight", "ffn_down.weight", "ffn_up.weight", "ffn_norm.weight",
    ];

    private static readonly string[] Phi3Block =
    [
        "attn_norm.weight", "attn_qkv.weight", "attn_output.weight", "ffn_norm.weight", "ffn_down.weight", "ffn_up.weight",
    ];

    private static readonly string[] Gemma2Block =
    [
        "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "attn_norm.weight", "post_attention_norm.weight",
        "ffn_gate.weight", "ffn_down.weight", "ffn_up.weight", "ffn_norm.weight", "post_ffw_norm.weight",
    ];

    private static readonly string[] Gemma3Block =
    [
        "attn_q.weight", "attn_q_norm.weight", "attn_k.weight", "attn_k_norm.weight", "attn_v.weight", "attn_output.weight",
        "attn_norm.weight", "post_attention_norm.weight", "ffn_gate.weight", "ffn_down.weight", "ffn_up.weight", "ffn_norm.weight",
        "post_ffw_norm.weight",
    ];

    /// <summary>The tensors every block of an architecture must have, after "blk.N.", in writing order.</summary>
    public static string[] BlockTensorsOf(string architecture) => architecture switch
    {
        "qwen2" => Qwen2Block,
        "qwen3" => Qwen3Block,
        "phi3" => Phi3Block,
        "gemma2" => Gemma2Block,
        "gemma3" => Gemma3Block,
        _ => BlockTensors, // llama, mistral, gemma
    };

    /// <summary>Expected PyTorch-order shape of a tensor, or null for a name this architecture does not have.</summary>
    public static long[]? ExpectedShape(string name, LlamaParams p)
    {
        long dim = p.Dim, hd = p.HeadSize, q = p.Heads * hd, kv = p.KvHeads * hd, ffn = p.FfnDim, vocab = p.VocabSize;
        long ropePairs = (p.RopeDims > 0 ? p.RopeDims : hd) / 2;
        switch (name)
        {
            case TokenEmbd or Output: return [vocab, dim];
            case OutputNorm: return [dim];
            case RopeFreqs when p.Architecture == "llama": return [ropePairs];
            case RopeFactorsLong or RopeFactorsShort when p.Architecture == "phi3": return [ropePairs];
        }
        if (!TryParseBlock(name, out int layer, out string suffix) || layer >= p.Layers) return null;
        if (Array.IndexOf(BlockTensorsOf(p.Architecture), suffix) < 0) return null;
        return suffix switch
        {
            "attn_q.weight" => [q, dim],
            "attn_k.weight" or "attn_v.weight" => [kv, dim],
            "attn_output.weight" => [dim, q],
            "attn_q.bias" => [q],
            "attn_k.bias" or "attn_v.bias" => [kv],
            "attn_q_norm.weight" or "attn_k_norm.weight" => [hd],
            "attn_qkv.weight" => [q + 2 * kv, dim],
            "attn_norm.weight" or "ffn_norm.weight" or "post_attention_norm.weight" or "post_ffw_norm.weight" => [dim],
            "ffn_gate.weight" => [ffn, dim],
            "ffn_up.weight" => p.Architecture == "phi3" ? [2 * ffn, dim] : [ffn, dim],
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
        var order = new List<string> { TokenEmbd, RopeFreqs, RopeFactorsLong, RopeFactorsShort, OutputNorm, Output };
        var block = BlockTensorsOf(architecture);
        for (int i = 0; i < layers; i++)
            foreach (string s in block) order.Add($"blk.{i}.{s}");
        var result = new List<T>(byName.Count);
        foreach (string n in order)
            if (byName.Remove(n, out var t)) result.Add(t);
        foreach (var t in tensors)
            if (byName.ContainsKey(name(t))) result.Add(t);
        return result;
    }
}
