using EdgeLlm.Compute;

namespace EdgeLlm.Model;

/// <summary>
/// What distinguishes one model family's transformer block from another's, as data the one forward pass
/// (<see cref="LlamaModel"/>) reads: which optional tensors a layer has, the gate activation, the RoPE layout,
/// the embedding scale, softcaps and the sliding-window pattern. Keys and tensor names are llama.cpp's; the
/// numbers a file carries (window size, softcaps, rope bases) are resolved into <see cref="LlamaConfig"/>.
/// </summary>
public sealed class ArchSpec
{
    /// <summary>The <c>general.architecture</c> value.</summary>
    public required string Name { get; init; }

    /// <summary>NEOX RoPE layout (pairs (i, i + dims/2)) instead of llama.cpp's "normal" (2i, 2i + 1).</summary>
    public bool NeoxRope { get; init; }

    public GluKind Activation { get; init; } = GluKind.Silu;

    /// <summary>attn_q/k/v.bias are required (Qwen 2); other families load them when present.</summary>
    public bool RequiresQkvBias { get; init; }

    /// <summary>Per-head RMSNorm of queries and keys before RoPE: attn_q_norm / attn_k_norm [head_dim] (Qwen 3, Gemma 3).</summary>
    public bool QkNorm { get; init; }

    /// <summary>RMSNorm of each branch output before the residual add: post_attention_norm, post_ffw_norm (Gemma 2/3).</summary>
    public bool PostNorms { get; init; }

    /// <summary>Q, K and V may come as one attn_qkv matrix (rows q | k | v), split zero-copy (Phi-3).</summary>
    public bool FusedQkv { get; init; }

    /// <summary>ffn_up holds gate and up stacked (gate rows first) and there is no ffn_gate (Phi-3).</summary>
    public bool FusedGateUp { get; init; }

    /// <summary>Embeddings are multiplied by sqrt(embedding_length) (Gemma).</summary>
    public bool ScaleEmbeddings { get; init; }

    /// <summary>Attention logit softcap read from <c>{arch}.attn_logit_softcapping</c>, with this default (0 = the family has none).</summary>
    public float AttnSoftcapDefault { get; init; }

    /// <summary>Final logit softcap read from <c>{arch}.final_logit_softcapping</c>, with this default (0 = the family has none).</summary>
    public float FinalSoftcapDefault { get; init; }

    /// <summary>
    /// Sliding-window layers: layer il uses the window iff <c>il % SwaPattern &lt; SwaPattern − 1</c> (llama.cpp's
    /// pattern: 2 = even layers, Gemma 2; 6 = five local then one global, Gemma 3). 0 = no sliding window.
    /// </summary>
    public int SwaPattern { get; init; }

    /// <summary>Window when the file has no <c>{arch}.attention.sliding_window</c> (0 = the key is required).</summary>
    public int SwaDefaultWindow { get; init; }

    /// <summary>Sliding-window layers rotate with this base and no scaling (Gemma 3: 10000); 0 = as the global layers.</summary>
    public float SwaRopeBase { get; init; }

    /// <summary>LongRoPE factor tensors rope_factors_long / rope_factors_short may be present (Phi-3).</summary>
    public bool LongRope { get; init; }

    /// <summary>
    /// Layer count of the family's 27B model, whose queries llama.cpp scales by 1/sqrt(embedding_length / head_count)
    /// instead of 1/sqrt(head_dim) (Gemma 2/3); 0 = always 1/sqrt(head_dim).
    /// </summary>
    public int ScaleByDimLayerCount { get; init; }

    public static readonly ArchSpec Llama = new() { Name = "llama" };
    public static readonly ArchSpec Mistral = new() { Name = "mistral" };
    public static readonly ArchSpec Qwen2 = new() { Name = "qwen2", NeoxRope = true, RequiresQkvBias = true };
    public static readonly ArchSpec Qwen3 = new() { Name = "qwen3", NeoxRope = true, QkNorm = true };
    // phi3.attention.sliding_window is not applied: llama.cpp disables Phi SWA (its converters fill the key wrongly).
    public static readonly ArchSpec Phi3 = new() { Name = "phi3", NeoxRope = true, FusedQkv = true, FusedGateUp = true, LongRope = true };
    public static readonly ArchSpec Gemma = new() { Name = "gemma", NeoxRope = true, Activation = GluKind.GeluTanh, ScaleEmbeddings = true };

    public static readonly ArchSpec Gemma2 = new()
    {
        Name = "gemma2", NeoxRope = true, Activation = GluKind.GeluTanh, ScaleEmbeddings = true, PostNorms = true,
        AttnSoftcapDefault = 50f, FinalSoftcapDefault = 30f, SwaPattern = 2, SwaDefaultWindow = 4096, ScaleByDimLayerCount = 46,
    };

    public static readonly ArchSpec Gemma3 = new()
    {
        Name = "gemma3", NeoxRope = true, Activation = GluKind.GeluTanh, ScaleEmbeddings = true, PostNorms = true, QkNorm = true,
        SwaPattern = 6, SwaRopeBase = 10000f, ScaleByDimLayerCount = 62,
    };

    /// <summary>Every family EdgeLlm runs, by <c>general.architecture</c>.</summary>
    public static readonly ArchSpec[] All = [Llama, Mistral, Qwen2, Qwen3, Phi3, Gemma, Gemma2, Gemma3];

    /// <summary>The family named <paramref name="architecture"/>, or null.</summary>
    public static ArchSpec? Find(string architecture)
    {
        foreach (var a in All)
            if (a.Name == architecture) return a;
        return null;
    }

    /// <summary>Whether layer <paramref name="layer"/> uses the sliding window.</summary>
    public bool IsSlidingLayer(int layer) => SwaPattern > 0 && layer % SwaPattern < SwaPattern - 1;

    public override string ToString() => Name;
}
