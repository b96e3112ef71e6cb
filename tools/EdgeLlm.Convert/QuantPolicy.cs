using EdgeLlm.Convert.Sources;
using EdgeLlm.Gguf;

namespace EdgeLlm.Convert;

/// <summary>The <c>--type</c> of a conversion: llama.cpp's file types this converter writes.</summary>
public enum OutputType { F32, F16, BF16, Q8_0, Q4_0, Q4_K_M }

/// <summary>
/// Which ggml type each tensor gets, following llama.cpp's llama-quant.cpp (<c>llama_tensor_get_type</c>) for
/// the llama architecture:
/// <list type="bullet">
/// <item>Only 2-D+ tensors named "*weight" that are not norms are converted; the rest (norms, rope_freqs) are F32.</item>
/// <item>F32/F16/BF16: every converted tensor gets that type.</item>
/// <item>Quantized types: <c>output.weight</c> (or <c>token_embd.weight</c> when there is no output, i.e. tied
/// embeddings) is Q6_K, or Q8_0 when its rows are not whole 256-blocks or the type is Q8_0.</item>
/// <item>Q4_K_M: attn_v and ffn_down are Q6_K in the "use_more_bits" layers (the first n/8, the last n/8 and
/// every third layer in between: <c>i &lt; n/8 || i &gt;= 7n/8 || (i - n/8) % 3 == 2</c>), Q4_K elsewhere; on
/// the 70B shape (80 layers, GQA) llama.cpp raises the remaining Q4_K attn_v to Q5_K, which EdgeLlm does not
/// implement, so they get Q6_K.</item>
/// <item>A row length that is not a multiple of the type's block size falls back: Q6_K to Q8_0 (as llama.cpp),
/// Q4_K to Q8_0 (llama.cpp uses Q5_0, which EdgeLlm lacks; Q8_0 loses nothing), Q4_0/Q8_0 to F16 (llama.cpp
/// stops), and F16 when even that does not fit.</item>
/// </list>
/// </summary>
public static class QuantPolicy
{
    public static readonly string[] Names = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"];

    public static bool TryParse(string s, out OutputType type)
    {
        int i = Array.IndexOf(Names, s.ToLowerInvariant());
        type = (OutputType)Math.Max(i, 0);
        return i >= 0;
    }

    public static string Name(OutputType t) => Names[(int)t];

    /// <summary>llama.cpp's <c>llama_ftype</c> number written as general.file_type.</summary>
    public static uint FileType(OutputType t) => t switch
    {
        OutputType.F32 => 0,        // LLAMA_FTYPE_ALL_F32
        OutputType.F16 => 1,        // LLAMA_FTYPE_MOSTLY_F16
        OutputType.Q4_0 => 2,       // LLAMA_FTYPE_MOSTLY_Q4_0
        OutputType.Q8_0 => 7,       // LLAMA_FTYPE_MOSTLY_Q8_0
        OutputType.Q4_K_M => 15,    // LLAMA_FTYPE_MOSTLY_Q4_K_M
        OutputType.BF16 => 32,      // LLAMA_FTYPE_MOSTLY_BF16
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>The default tensor type of a file type.</summary>
    public static GgmlType BaseType(OutputType t) => t switch
    {
        OutputType.F32 => GgmlType.F32,
        OutputType.F16 => GgmlType.F16,
        OutputType.BF16 => GgmlType.BF16,
        OutputType.Q8_0 => GgmlType.Q8_0,
        OutputType.Q4_0 => GgmlType.Q4_0,
        OutputType.Q4_K_M => GgmlType.Q4_K,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    public static bool IsQuantized(GgmlType t) => t is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16);

    /// <summary>The model facts the policy looks at.</summary>
    public readonly record struct ModelShape(int Layers, bool HasOutput, bool Is70B)
    {
        /// <summary>llama.cpp's LLM_TYPE_70B for llama: 80 layers with fewer KV heads than heads.</summary>
        public static ModelShape Of(LlamaParams p, bool hasOutput) => new(p.Layers, hasOutput, p.Layers == 80 && p.KvHeads != p.Heads);
    }

    /// <summary>A tensor's type; <see cref="Fallback"/> says why it differs from the policy's first choice.</summary>
    public readonly record struct Choice(GgmlType Type, string? Fallback);

    /// <param name="dims">GGUF dims, innermost (row length) first.</param>
    public static Choice Choose(OutputType output, string name, long[] dims, ModelShape model)
    {
        bool convert = name.EndsWith("weight", StringComparison.Ordinal) && CountDims(dims) >= 2
            && !name.Contains("_norm.weight", StringComparison.Ordinal);
        if (!convert) return new Choice(GgmlType.F32, null);
        var type = BaseType(output);
        if (!IsQuantized(type)) return new Choice(type, null);

        long nx = dims[0];
        if (name == LlamaLayout.Output || (!model.HasOutput && name == LlamaLayout.TokenEmbd))
        {
            if (nx % GgmlTypes.BlockSize(type) != 0) type = GgmlType.Q8_0;
            else if (type != GgmlType.Q8_0) type = GgmlType.Q6_K;
        }
        else if (output == OutputType.Q4_K_M && LlamaLayout.TryParseBlock(name, out int layer, out string suffix))
        {
            if (suffix == "attn_v.weight")
            {
                if (UseMoreBits(layer, model.Layers)) type = GgmlType.Q6_K;
                else if (model.Is70B) type = GgmlType.Q6_K; // llama.cpp: Q5_K
            }
            else if (suffix == "ffn_down.weight" && UseMoreBits(layer, model.Layers)) type = GgmlType.Q6_K;
        }
        if (nx % GgmlTypes.BlockSize(type) == 0) return new Choice(type, null);

        var wanted = type;
        type = type switch { GgmlType.Q6_K or GgmlType.Q4_K => GgmlType.Q8_0, _ => GgmlType.F16 };
        if (nx % GgmlTypes.BlockSize(type) != 0) type = GgmlType.F16;
        return new Choice(type, $"row length {nx} is not a multiple of the {GgmlTypes.Name(wanted)} block size {GgmlTypes.BlockSize(wanted)}: using {GgmlTypes.Name(type)}");
    }

    /// <summary>llama.cpp's use_more_bits(i_layer, n_layers).</summary>
    public static bool UseMoreBits(int layer, int layers) =>
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    /// <summary>ggml_n_dims: trailing 1s do not count.</summary>
    private static int CountDims(long[] dims)
    {
        int n = dims.Length;
        while (n > 1 && dims[n - 1] == 1) n--;
        return n;
    }
}
