using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.ModelGen;

/// <summary>
/// What `--type` asks for: one tensor type for the matrices (any type of <see cref="TypeTraits"/>, named as llama.cpp
/// names it, lower case), or llama.cpp's Q4_K_M / Q5_K_M mixes (<see cref="Mix"/> over Q4_K / Q5_K).
/// </summary>
public readonly record struct WeightFormat(GgmlType Type, bool Mix = false)
{
    public static readonly WeightFormat F32 = new(GgmlType.F32);
    public static readonly WeightFormat F16 = new(GgmlType.F16);
    public static readonly WeightFormat Q8_0 = new(GgmlType.Q8_0);
    public static readonly WeightFormat Q4_0 = new(GgmlType.Q4_0);
    public static readonly WeightFormat Q4_K = new(GgmlType.Q4_K);
    public static readonly WeightFormat Q6_K = new(GgmlType.Q6_K);
    /// <summary>Q4_K with attn_v and ffn_down in Q6_K on llama.cpp's use_more_bits layers.</summary>
    public static readonly WeightFormat Q4_K_M = new(GgmlType.Q4_K, Mix: true);
    /// <summary>Q5_K with the same Q6_K bumps as <see cref="Q4_K_M"/>.</summary>
    public static readonly WeightFormat Q5_K_M = new(GgmlType.Q5_K, Mix: true);

    public bool IsFloat => TypeTraits.Of(Type) is { IsQuantized: false };
}

/// <summary>The role a tensor plays, which decides its type under a mix and how its values are drawn.</summary>
public enum TensorRole { TokenEmbd, Output, Norm, AttnQ, AttnK, AttnV, AttnOutput, FfnGate, FfnUp, FfnDown, AttnQkv, Bias, RopeFreqs }

/// <summary>
/// Which ggml type each tensor gets, following llama.cpp's <c>llama_tensor_get_type</c> for the formats
/// offered: norms stay F32; <c>output.weight</c> becomes Q6_K for every quantized format but Q8_0 (so a
/// "Q4_0" file is Q4_0 plus a Q6_K output, as llama.cpp writes it); Q4_K_M and Q5_K_M bump <c>attn_v</c> and
/// <c>ffn_down</c> to Q6_K on the first and last eighth of the layers and every third layer between, and a fused
/// <c>attn_qkv</c> one step (Q5_K, Q6_K); with tied embeddings token_embd is the output and follows the output rule. A row
/// length that is not a multiple of the chosen type's block gets llama.cpp's fallback type (<see cref="Fallback"/>).
/// Not reproduced: llama.cpp's Q5_K for the other 70B attn_v tensors under Q4_K_M (they stay Q4_K).
/// </summary>
public static class WeightFormats
{
    /// <summary>Every format by name: each type of the table (f32, f16, bf16, q8_0, q4_0, ...), then the mixes.</summary>
    public static readonly string[] Names = [.. TypeTraits.All.Select(r => r.Name.ToLowerInvariant()), .. MixNames];

    /// <summary>The llama.cpp mixes the generator writes.</summary>
    public static string[] MixNames => ["q4_k_m", "q5_k_m"];

    public static bool TryParse(string s, out WeightFormat format)
    {
        string lower = s.ToLowerInvariant();
        if (lower is "q4_k_m" or "q5_k_m")
        {
            format = lower == "q4_k_m" ? WeightFormat.Q4_K_M : WeightFormat.Q5_K_M;
            return true;
        }
        foreach (var r in TypeTraits.All)
        {
            if (r.Name.Equals(lower, StringComparison.OrdinalIgnoreCase))
            {
                format = new WeightFormat(r.Type);
                return true;
            }
        }
        format = default;
        return false;
    }

    public static string Name(WeightFormat f) => GgmlTypes.Name(f.Type).ToLowerInvariant() + (f.Mix ? "_m" : "");

    /// <summary>The main matrix type of a format.</summary>
    public static GgmlType BaseType(WeightFormat f) => f.Type;

    /// <summary>llama.cpp's <c>general.file_type</c> (llama_ftype) for the format: the type's row, or MOSTLY_Q4_K_M 15 / MOSTLY_Q5_K_M 17 for the mixes.</summary>
    public static uint FileType(WeightFormat f) =>
        f.Mix ? (f.Type == GgmlType.Q4_K ? 15u : 17u) : TypeTraits.Require(f.Type, "file type of").FileType;

    /// <summary>llama.cpp's use_more_bits: the first and last eighth of the layers, and every third one between.</summary>
    public static bool UseMoreBits(int layer, int layers) =>
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    /// <summary>
    /// The type of one tensor; <paramref name="outputOverride"/> replaces the rule for output.weight (and for
    /// token_embd when <paramref name="tied"/>: it is then the output).
    /// </summary>
    public static GgmlType TypeOf(WeightFormat f, TensorRole role, int layer, int layers, GgmlType? outputOverride = null, bool tied = false)
    {
        if (role is TensorRole.Norm or TensorRole.Bias or TensorRole.RopeFreqs) return GgmlType.F32;
        GgmlType baseType = BaseType(f);
        if (role == TensorRole.Output || (tied && role == TensorRole.TokenEmbd))
        {
            if (outputOverride is { } o) return o;
            return f.IsFloat || baseType == GgmlType.Q8_0 ? baseType : GgmlType.Q6_K;
        }
        if (f.Mix && role is TensorRole.AttnV or TensorRole.FfnDown && UseMoreBits(layer, layers))
            return GgmlType.Q6_K;
        if (f.Mix && role == TensorRole.AttnQkv) return f.Type == GgmlType.Q4_K ? GgmlType.Q5_K : GgmlType.Q6_K;
        return baseType;
    }

    /// <summary>
    /// llama.cpp's replacement for a type whose block does not divide a tensor's rows (e.g. Gemma 3 1B's 1152):
    /// Q2_K, Q3_K, IQ4_XS -> IQ4_NL; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0; null when it has none.
    /// </summary>
    public static GgmlType? Fallback(GgmlType t) => t switch
    {
        GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.IQ4_XS => GgmlType.IQ4_NL,
        GgmlType.Q4_K => GgmlType.Q5_0,
        GgmlType.Q5_K => GgmlType.Q5_1,
        GgmlType.Q6_K => GgmlType.Q8_0,
        _ => null,
    };
}
