using EdgeLlm.Compute;

namespace EdgeLlm.Model;

/// <summary>
/// What distinguishes one model family's transformer block from another's, as data the one forward pass
/// (<see cref="LlamaModel"/>) reads: which optional tensors a layer has, the gate activation, the RoPE layout,
/// the embedding scale, softcaps and the sliding-window pattern. Keys and tensor names are llama.cpp's; the
/// numbers a file carries (window size, softcaps, rope bases) are resolved into <see cref="LlamaConfig"/>. The
/// tensors a block has (<see cref="BlockTensors"/>) follow from the flags; the usual numbers of the family's
/// published checkpoints (<see cref="UsualRmsEps"/>, ...) are what a writer puts in a file that does not choose them.
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

    /// <summary>The output projection is always token_embd (no output.weight): Gemma.</summary>
    public bool TiedEmbeddings { get; init; }

    /// <summary>llama.cpp's converter writes attention.key_length / value_length even when the head is dim / heads (Gemma).</summary>
    public bool WritesHeadLength { get; init; }

    /// <summary>RMSNorm epsilon of the family's published checkpoints (Qwen 2/3 and Gemma 1e-6, the others 1e-5).</summary>
    public float UsualRmsEps { get; init; } = 1e-5f;

    /// <summary>RoPE base of the family's published checkpoints (Qwen and Gemma 3: 1e6, the others 10000).</summary>
    public float UsualRopeBase { get; init; } = 10000f;

    /// <summary>Sliding window of the family's published checkpoints (Gemma 2: 4096, Gemma 3 1B: 512; 0 = no sliding layers).</summary>
    public int UsualWindow { get; init; }

    public static readonly ArchSpec Llama = new() { Name = "llama" };
    public static readonly ArchSpec Mistral = new() { Name = "mistral" };
    public static readonly ArchSpec Qwen2 = new() { Name = "qwen2", NeoxRope = true, RequiresQkvBias = true, UsualRmsEps = 1e-6f, UsualRopeBase = 1e6f };
    public static readonly ArchSpec Qwen3 = new() { Name = "qwen3", NeoxRope = true, QkNorm = true, UsualRmsEps = 1e-6f, UsualRopeBase = 1e6f };
    // phi3.attention.sliding_window is not applied: llama.cpp disables Phi SWA (its converters fill the key wrongly).
    public static readonly ArchSpec Phi3 = new() { Name = "phi3", NeoxRope = true, FusedQkv = true, FusedGateUp = true, LongRope = true };
    public static readonly ArchSpec Gemma = new()
    {
        Name = "gemma", NeoxRope = true, Activation = GluKind.GeluTanh, ScaleEmbeddings = true,
        TiedEmbeddings = true, WritesHeadLength = true, UsualRmsEps = 1e-6f,
    };

    public static readonly ArchSpec Gemma2 = new()
    {
        Name = "gemma2", NeoxRope = true, Activation = GluKind.GeluTanh, ScaleEmbeddings = true, PostNorms = true,
        AttnSoftcapDefault = 50f, FinalSoftcapDefault = 30f, SwaPattern = 2, SwaDefaultWindow = 4096, ScaleByDimLayerCount = 46,
        TiedEmbeddings = true, WritesHeadLength = true, UsualRmsEps = 1e-6f, UsualWindow = 4096,
    };

    public static readonly ArchSpec Gemma3 = new()
    {
        Name = "gemma3", NeoxRope = true, Activation = GluKind.GeluTanh, ScaleEmbeddings = true, PostNorms = true, QkNorm = true,
        SwaPattern = 6, SwaRopeBase = 10000f, ScaleByDimLayerCount = 62,
        TiedEmbeddings = true, WritesHeadLength = true, UsualRmsEps = 1e-6f, UsualRopeBase = 1e6f, UsualWindow = 512,
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

    private string[]? _blockTensors;

    /// <summary>
    /// The tensors every block of the family has (<see cref="TensorNames"/> suffixes after <c>blk.N.</c>), in the
    /// order llama.cpp's converter writes them: q (bias, norm), k (...), v (bias), attn_output, attn_norm (post
    /// norm), ffn_gate, ffn_down, ffn_up, ffn_norm (post norm); Phi-3's fused block is attn_norm, attn_qkv,
    /// attn_output, ffn_norm, ffn_down, ffn_up. Optional extras (attn_output.bias, biases outside Qwen 2) are not listed.
    /// </summary>
    public string[] BlockTensors => _blockTensors ??= ListBlockTensors();

    /// <summary>Whether every block of the family has tensor <paramref name="tensor"/> (a <see cref="TensorNames"/> suffix).</summary>
    public bool HasBlockTensor(string tensor) => Array.IndexOf(BlockTensors, tensor) >= 0;

    private string[] ListBlockTensors()
    {
        var t = new List<string>();
        if (FusedQkv) t.AddRange([TensorNames.AttnNorm, TensorNames.AttnQkv, TensorNames.AttnOutput, TensorNames.FfnNorm]);
        else
        {
            foreach (var (w, bias, norm) in (ReadOnlySpan<(string, string, string?)>)
                [(TensorNames.AttnQ, TensorNames.AttnQBias, TensorNames.AttnQNorm), (TensorNames.AttnK, TensorNames.AttnKBias, TensorNames.AttnKNorm),
                 (TensorNames.AttnV, TensorNames.AttnVBias, null)])
            {
                t.Add(w);
                if (RequiresQkvBias) t.Add(bias);
                if (QkNorm && norm is not null) t.Add(norm);
            }
            t.Add(TensorNames.AttnOutput);
            t.Add(TensorNames.AttnNorm);
            if (PostNorms) t.Add(TensorNames.PostAttnNorm);
        }
        if (!FusedGateUp) t.Add(TensorNames.FfnGate);
        t.Add(TensorNames.FfnDown);
        t.Add(TensorNames.FfnUp);
        if (!FusedQkv) t.Add(TensorNames.FfnNorm);
        if (PostNorms) t.Add(TensorNames.PostFfwNorm);
        return [.. t];
    }

    /// <summary>Whether layer <paramref name="layer"/> uses the sliding window.</summary>
    public bool IsSlidingLayer(int layer) => SwaPattern > 0 && layer % SwaPattern < SwaPattern - 1;

    public override string ToString() => Name;
}
