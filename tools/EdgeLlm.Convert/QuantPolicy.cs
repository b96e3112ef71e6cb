using EdgeLlm.Convert.Sources;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Convert;

/// <summary>The <c>--type</c> of a conversion: llama.cpp's file types this converter writes.</summary>
public enum OutputType { F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q4_K_S, Q5_K_S, Q5_K_M, Q6_K, Q3_K_M, IQ4_XS, Q5_0 }

/// <summary>
/// Which ggml type each tensor gets: llama.cpp's llama-quant.cpp (<c>llama_model_quantize_impl</c> and
/// <c>llama_tensor_get_type</c>, llama.cpp c392e50) for the llama architecture without an importance matrix:
/// <list type="bullet">
/// <item>Only 2-D+ tensors named "*weight" that are not norms are converted; the rest (norms, rope_freqs) are F32.</item>
/// <item>F32/F16/BF16: every converted tensor gets that type (no per-tensor policy).</item>
/// <item>Otherwise a tensor starts at the file type's default (q4_k_m/q4_k_s Q4_K, q5_k_m/q5_k_s Q5_K, q6_k Q6_K,
/// q3_k_m Q3_K, iq4_xs IQ4_XS, q5_0 Q5_0, q8_0 Q8_0, q4_0 Q4_0) and:
/// <list type="bullet">
/// <item><c>output.weight</c> (<c>token_embd.weight</c> when there is no output, i.e. tied embeddings): Q8_0 when its
/// rows are not whole blocks of the default type, else Q6_K unless the default is Q8_0.</item>
/// <item>attn_v (counted in file order as i of n): q3_k_m Q5_K for i &lt; 2 else Q4_K; iq4_xs Q5_K when
/// n_head/n_head_kv ≥ 4; q4_k_m and q5_k_m Q6_K where use_more_bits(i, n); q4_k_s Q5_K for i &lt; 4; then on
/// the 70B shape (80 layers, n_head_kv ≠ n_head) a Q3_K or Q4_K attn_v becomes Q5_K.</item>
/// <item>ffn_down (counted in file order as i of n_layer): q3_k_m Q5_K for i &lt; n/16 else Q4_K; q4_k_m and
/// q5_k_m Q6_K where use_more_bits(i, n); iq4_xs and q4_k_s Q5_K for i &lt; n/8.</item>
/// <item>attn_output: q3_k_m Q4_K.</item>
/// </list></item>
/// <item>A row length that is not a multiple of the chosen type's block size falls back as llama.cpp does:
/// Q2_K/Q3_K/IQ4_XS to IQ4_NL, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, then F16 if that does not fit either.
/// For the 32-element types (Q4_0, Q5_0, Q8_0) llama.cpp stops with "Unsupported tensor size"; this converter
/// writes F16 instead. Every fallback is reported.</item>
/// </list>
/// </summary>
public static class QuantPolicy
{
    public static readonly string[] Names = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q4_k_s", "q5_k_s", "q5_k_m", "q6_k", "q3_k_m", "iq4_xs", "q5_0"];

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
        OutputType.Q5_0 => 8,       // LLAMA_FTYPE_MOSTLY_Q5_0
        OutputType.Q3_K_M => 12,    // LLAMA_FTYPE_MOSTLY_Q3_K_M
        OutputType.Q4_K_S => 14,    // LLAMA_FTYPE_MOSTLY_Q4_K_S
        OutputType.Q4_K_M => 15,    // LLAMA_FTYPE_MOSTLY_Q4_K_M
        OutputType.Q5_K_S => 16,    // LLAMA_FTYPE_MOSTLY_Q5_K_S
        OutputType.Q5_K_M => 17,    // LLAMA_FTYPE_MOSTLY_Q5_K_M
        OutputType.Q6_K => 18,      // LLAMA_FTYPE_MOSTLY_Q6_K
        OutputType.IQ4_XS => 30,    // LLAMA_FTYPE_MOSTLY_IQ4_XS
        OutputType.BF16 => 32,      // LLAMA_FTYPE_MOSTLY_BF16
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>The default tensor type of a file type (llama.cpp's <c>default_type</c>).</summary>
    public static GgmlType BaseType(OutputType t) => t switch
    {
        OutputType.F32 => GgmlType.F32,
        OutputType.F16 => GgmlType.F16,
        OutputType.BF16 => GgmlType.BF16,
        OutputType.Q8_0 => GgmlType.Q8_0,
        OutputType.Q4_0 => GgmlType.Q4_0,
        OutputType.Q5_0 => GgmlType.Q5_0,
        OutputType.Q4_K_M or OutputType.Q4_K_S => GgmlType.Q4_K,
        OutputType.Q5_K_M or OutputType.Q5_K_S => GgmlType.Q5_K,
        OutputType.Q6_K => GgmlType.Q6_K,
        OutputType.Q3_K_M => GgmlType.Q3_K,
        OutputType.IQ4_XS => GgmlType.IQ4_XS,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    public static bool IsQuantized(GgmlType t) => t is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16);

    /// <summary>The model facts the policy looks at.</summary>
    /// <param name="Gqa">llama.cpp's n_gqa(): n_head / n_head_kv (integer division).</param>
    public readonly record struct ModelFacts(int Layers, bool HasOutput, bool Is70B, int Gqa = 1)
    {
        /// <summary>llama.cpp's LLM_TYPE_70B for llama: 80 layers with fewer KV heads than heads.</summary>
        public static ModelFacts Of(ModelShape s, bool hasOutput) =>
            new(s.Layers, hasOutput, s.Layers == 80 && s.KvHeads != s.Heads, s.KvHeads > 0 ? s.Heads / s.KvHeads : 1);
    }

    /// <summary>A tensor's type; <see cref="Fallback"/> says why it differs from the policy's first choice.</summary>
    public readonly record struct Choice(GgmlType Type, string? Fallback);

    /// <summary>
    /// llama.cpp's running counters: attn_v and ffn_down tensors are numbered in the order llama-quantize visits
    /// them, which is its loader's name order (<see cref="CompareNames"/>), not the order in the file.
    /// </summary>
    public struct Counters
    {
        public int AttnV;
        public int FfnDown;
    }

    /// <summary>Types for a whole model (result in the given order), counting in llama.cpp's visiting order.</summary>
    public static Choice[] ChooseAll(OutputType output, IReadOnlyList<(string Name, long[] Dims)> tensors, ModelFacts model)
    {
        var order = new int[tensors.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        Array.Sort(order, (a, b) => CompareNames(tensors[a].Name, tensors[b].Name));
        var counters = new Counters();
        var result = new Choice[tensors.Count];
        foreach (int i in order) result[i] = Choose(output, tensors[i].Name, tensors[i].Dims, model, ref counters);
        return result;
    }

    /// <summary>
    /// llama.cpp's <c>weight_name_comparer</c>: by the layer number of "blk.N." (−1 for other names), then by the
    /// bytes of the name.
    /// </summary>
    public static int CompareNames(string a, string b)
    {
        int la = LayerOf(a), lb = LayerOf(b);
        return la != lb ? la.CompareTo(lb) : string.CompareOrdinal(a, b);
    }

    private static int LayerOf(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return -1;
        int i = 4, v = 0;
        bool any = false;
        while (i < name.Length && name[i] is >= '0' and <= '9' && v < 100_000_000) { v = v * 10 + (name[i++] - '0'); any = true; }
        return any && i < name.Length && name[i] == '.' ? v : -1;
    }

    /// <summary>One tensor, taking the counters from the layer number in its name (right for files in layer order).</summary>
    /// <param name="dims">GGUF dims, innermost (row length) first.</param>
    public static Choice Choose(OutputType output, string name, long[] dims, ModelFacts model)
    {
        var counters = new Counters();
        if (TensorNames.TryParseBlock(name, out int layer, out _)) counters = new Counters { AttnV = layer, FfnDown = layer };
        return Choose(output, name, dims, model, ref counters);
    }

    /// <param name="dims">GGUF dims, innermost (row length) first.</param>
    /// <param name="counters">advanced past this tensor when it is an attn_v or ffn_down that gets quantized.</param>
    public static Choice Choose(OutputType output, string name, long[] dims, ModelFacts model, ref Counters counters)
    {
        bool convert = name.EndsWith("weight", StringComparison.Ordinal) && CountDims(dims) >= 2
            && !name.Contains("_norm.weight", StringComparison.Ordinal);
        if (!convert) return new Choice(GgmlType.F32, null);
        var type = BaseType(output);
        if (!IsQuantized(type)) return new Choice(type, null);

        long nx = dims[0];
        int n = model.Layers;
        if (name == TensorNames.Output || (!model.HasOutput && name == TensorNames.TokenEmbd))
        {
            if (nx % GgmlTypes.BlockSize(type) != 0) type = GgmlType.Q8_0;
            else if (type != GgmlType.Q8_0) type = GgmlType.Q6_K;
        }
        else if (name == TensorNames.TokenEmbd)
        {
            // llama.cpp changes token_embd only for the IQ1/IQ2/IQ3_XXS/TQ file types, none of which is written here.
        }
        else if (name.Contains(TensorNames.AttnV, StringComparison.Ordinal))
        {
            int i = counters.AttnV++;
            switch (output)
            {
                case OutputType.Q3_K_M: type = i < 2 ? GgmlType.Q5_K : GgmlType.Q4_K; break;
                case OutputType.IQ4_XS when model.Gqa >= 4: type = GgmlType.Q5_K; break;
                case OutputType.Q4_K_M or OutputType.Q5_K_M when UseMoreBits(i, n): type = GgmlType.Q6_K; break;
                case OutputType.Q4_K_S when i < 4: type = GgmlType.Q5_K; break;
            }
            // 70B: eight heads share each attn_v row, so the tensor is small and gets more bits.
            if (model.Is70B && type is GgmlType.Q3_K or GgmlType.Q4_K) type = GgmlType.Q5_K;
        }
        else if (name.Contains("ffn_down", StringComparison.Ordinal))
        {
            int i = counters.FfnDown++;
            switch (output)
            {
                case OutputType.Q3_K_M: type = i < n / 16 ? GgmlType.Q5_K : GgmlType.Q4_K; break;
                case OutputType.Q4_K_M or OutputType.Q5_K_M when UseMoreBits(i, n): type = GgmlType.Q6_K; break;
                case OutputType.IQ4_XS or OutputType.Q4_K_S when i < n / 8: type = GgmlType.Q5_K; break;
            }
        }
        else if (name.Contains(TensorNames.AttnOutput, StringComparison.Ordinal))
        {
            if (output == OutputType.Q3_K_M) type = GgmlType.Q4_K;
        }
        if (nx % GgmlTypes.BlockSize(type) == 0) return new Choice(type, null);

        var wanted = type;
        type = type switch
        {
            GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.IQ4_XS => GgmlType.IQ4_NL,
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            _ => GgmlType.F16,
        };
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
