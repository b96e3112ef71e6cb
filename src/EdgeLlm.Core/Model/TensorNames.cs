namespace EdgeLlm.Model;

/// <summary>
/// llama.cpp's GGUF tensor names, written once for the runtime, the converter, the model generator and the test
/// writers: the model-level tensors, and the per-block ones as the suffix after <c>blk.N.</c>
/// (<see cref="Block"/>). Which block tensors a family has is <see cref="ArchSpec.BlockTensors"/>; their
/// shapes are <see cref="ModelShape.Dims"/>.
/// </summary>
public static class TensorNames
{
    public const string TokenEmbd = "token_embd.weight";
    public const string OutputNorm = "output_norm.weight";
    public const string Output = "output.weight";

    /// <summary>Llama 3.1 per-pair RoPE frequency divisors.</summary>
    public const string RopeFreqs = "rope_freqs.weight";

    /// <summary>Phi-3 LongRoPE factors past / within the original context.</summary>
    public const string RopeFactorsLong = "rope_factors_long.weight";
    public const string RopeFactorsShort = "rope_factors_short.weight";

    // Per block, after "blk.N.".
    public const string AttnNorm = "attn_norm.weight";
    public const string AttnQ = "attn_q.weight";
    public const string AttnK = "attn_k.weight";
    public const string AttnV = "attn_v.weight";

    /// <summary>Q, K and V stacked in one matrix (rows q | k | v, Phi-3).</summary>
    public const string AttnQkv = "attn_qkv.weight";
    public const string AttnQBias = "attn_q.bias";
    public const string AttnKBias = "attn_k.bias";
    public const string AttnVBias = "attn_v.bias";
    public const string AttnQNorm = "attn_q_norm.weight";
    public const string AttnKNorm = "attn_k_norm.weight";
    public const string AttnOutput = "attn_output.weight";
    public const string AttnOutputBias = "attn_output.bias";
    public const string PostAttnNorm = "post_attention_norm.weight";
    public const string FfnNorm = "ffn_norm.weight";
    public const string FfnGate = "ffn_gate.weight";

    /// <summary>The up projection; with <see cref="ArchSpec.FusedGateUp"/> gate and up stacked (gate rows first).</summary>
    public const string FfnUp = "ffn_up.weight";
    public const string FfnDown = "ffn_down.weight";
    public const string PostFfwNorm = "post_ffw_norm.weight";

    /// <summary>Every block tensor in the order the forward pass uses them (the order the model generator writes).</summary>
    public static readonly string[] BlockForwardOrder =
    [
        AttnNorm, AttnQkv, AttnQ, AttnK, AttnV, AttnQBias, AttnKBias, AttnVBias, AttnQNorm, AttnKNorm, AttnOutput,
        PostAttnNorm, FfnNorm, FfnGate, FfnUp, FfnDown, PostFfwNorm,
    ];

    /// <summary>The prefix of layer <paramref name="layer"/>'s tensors: <c>blk.N.</c>.</summary>
    public static string BlockPrefix(int layer) => $"blk.{layer}.";

    /// <summary>The full name of block tensor <paramref name="tensor"/> (a suffix above) of layer <paramref name="layer"/>.</summary>
    public static string Block(int layer, string tensor) => $"blk.{layer}.{tensor}";

    /// <summary>Splits <c>blk.N.rest</c> into N and rest; false for a name outside the blocks.</summary>
    public static bool TryParseBlock(string name, out int layer, out string tensor)
    {
        layer = BlockLayer(name);
        tensor = layer < 0 ? "" : name[(name.IndexOf('.', 4) + 1)..];
        return layer >= 0;
    }

    /// <summary>N of a <c>blk.N.rest</c> name, or −1 for a name outside the blocks (no allocation).</summary>
    public static int BlockLayer(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return -1;
        int dot = name.IndexOf('.', 4);
        return dot > 4 && int.TryParse(name.AsSpan(4, dot - 4), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int layer)
            ? layer : -1;
    }

    /// <summary>Whether a tensor is a 1-D vector (norm weights, biases, rope factors), which llama.cpp keeps in F32.</summary>
    public static bool IsVector(string tensor) =>
        tensor.EndsWith("norm.weight", StringComparison.Ordinal) || tensor.EndsWith(".bias", StringComparison.Ordinal)
        || tensor is RopeFreqs or RopeFactorsLong or RopeFactorsShort;
}
