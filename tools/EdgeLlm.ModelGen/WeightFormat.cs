using EdgeLlm.Gguf;

namespace EdgeLlm.ModelGen;

/// <summary>What `--type` asks for: one tensor type for the matrices, or llama.cpp's Q4_K_M mix.</summary>
public enum WeightFormat { F32, F16, Q8_0, Q4_0, Q4_K, Q6_K, Q4_K_M }

/// <summary>The role a tensor plays, which decides its type under a mix and how its values are drawn.</summary>
public enum TensorRole { TokenEmbd, Output, Norm, AttnQ, AttnK, AttnV, AttnOutput, FfnGate, FfnUp, FfnDown }

/// <summary>
/// Which ggml type each tensor gets, following llama.cpp's <c>llama_tensor_get_type</c> for the formats
/// offered: norms stay F32; <c>output.weight</c> becomes Q6_K for every quantized format but Q8_0 (so a
/// "Q4_0" file is Q4_0 plus a Q6_K output, as llama.cpp writes it); Q4_K_M bumps <c>attn_v</c> and
/// <c>ffn_down</c> to Q6_K on the first and last eighth of the layers and every third layer between. Not
/// reproduced: llama.cpp's Q5_K for the other 70B attn_v tensors under Q4_K_M (EdgeLlm does not compute
/// Q5_K; they stay Q4_K).
/// </summary>
public static class WeightFormats
{
    public static readonly string[] Names = ["f32", "f16", "q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m"];

    public static bool TryParse(string s, out WeightFormat format)
    {
        int i = Array.IndexOf(Names, s.ToLowerInvariant());
        format = i < 0 ? default : (WeightFormat)i;
        return i >= 0;
    }

    public static string Name(WeightFormat f) => Names[(int)f];

    /// <summary>The main matrix type of a format.</summary>
    public static GgmlType BaseType(WeightFormat f) => f switch
    {
        WeightFormat.F32 => GgmlType.F32,
        WeightFormat.F16 => GgmlType.F16,
        WeightFormat.Q8_0 => GgmlType.Q8_0,
        WeightFormat.Q4_0 => GgmlType.Q4_0,
        WeightFormat.Q4_K or WeightFormat.Q4_K_M => GgmlType.Q4_K,
        WeightFormat.Q6_K => GgmlType.Q6_K,
        _ => throw new ArgumentOutOfRangeException(nameof(f)),
    };

    /// <summary>
    /// llama.cpp's <c>general.file_type</c> (llama_ftype) for the format: ALL_F32 0, MOSTLY_F16 1, Q4_0 2,
    /// Q8_0 7, Q4_K_S 14 (the nearest label for an all-Q4_K file), Q4_K_M 15, Q6_K 18.
    /// </summary>
    public static uint FileType(WeightFormat f) => f switch
    {
        WeightFormat.F32 => 0,
        WeightFormat.F16 => 1,
        WeightFormat.Q4_0 => 2,
        WeightFormat.Q8_0 => 7,
        WeightFormat.Q4_K => 14,
        WeightFormat.Q4_K_M => 15,
        WeightFormat.Q6_K => 18,
        _ => throw new ArgumentOutOfRangeException(nameof(f)),
    };

    /// <summary>llama.cpp's use_more_bits: the first and last eighth of the layers, and every third one between.</summary>
    public static bool UseMoreBits(int layer, int layers) =>
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    /// <summary>The type of one tensor; <paramref name="outputOverride"/> replaces the rule for output.weight.</summary>
    public static GgmlType TypeOf(WeightFormat f, TensorRole role, int layer, int layers, GgmlType? outputOverride = null)
    {
        if (role == TensorRole.Norm) return GgmlType.F32;
        GgmlType baseType = BaseType(f);
        if (role == TensorRole.Output)
        {
            if (outputOverride is { } o) return o;
            return f is WeightFormat.F32 or WeightFormat.F16 or WeightFormat.Q8_0 ? baseType : GgmlType.Q6_K;
        }
        if (f == WeightFormat.Q4_K_M && role is TensorRole.AttnV or TensorRole.FfnDown && UseMoreBits(layer, layers))
            return GgmlType.Q6_K;
        return baseType;
    }
}
