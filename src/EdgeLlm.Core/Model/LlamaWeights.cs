using EdgeLlm.Gguf;

namespace EdgeLlm.Model;

/// <summary>
/// The tensors of a Llama model, bound by llama.cpp name and checked against the config: shape
/// (ne0, ne1 as ggml writes them), and a type EdgeLlm computes. Views point into the file's memory map
/// (zero copy), so the <see cref="GgufFile"/> must outlive this object.
/// </summary>
public sealed class LlamaWeights
{
    public const string TokenEmbdName = "token_embd.weight";
    public const string OutputNormName = "output_norm.weight";
    public const string OutputName = "output.weight";
    public const string RopeFreqsName = "rope_freqs.weight";

    /// <summary>[dim, vocab]: row t is the embedding of token t.</summary>
    public TensorView TokenEmbd { get; }
    public TensorView OutputNorm { get; }

    /// <summary>[dim, vocab]; the same view as <see cref="TokenEmbd"/> when <see cref="TiedOutput"/>.</summary>
    public TensorView Output { get; }
    public bool TiedOutput { get; }

    /// <summary>Llama-3.1 RoPE frequency factors [rope_dims / 2], or null.</summary>
    public TensorView? RopeFreqs { get; }

    public LayerWeights[] Layers { get; }

    public LlamaWeights(GgufFile file, LlamaConfig c)
    {
        var b = new Binder(file);
        TokenEmbd = b.Matrix(TokenEmbdName, c.Dim, c.VocabSize);
        OutputNorm = b.Vector(OutputNormName, c.Dim);
        TiedOutput = file.FindTensor(OutputName) is null;
        Output = TiedOutput ? TokenEmbd : b.Matrix(OutputName, c.Dim, c.VocabSize);
        RopeFreqs = file.FindTensor(RopeFreqsName) is null ? null : b.Vector(RopeFreqsName, c.RopeDims / 2);
        Layers = new LayerWeights[c.LayerCount];
        for (int i = 0; i < c.LayerCount; i++)
        {
            string p = $"blk.{i}.";
            Layers[i] = new LayerWeights
            {
                AttnNorm = b.Vector(p + "attn_norm.weight", c.Dim),
                Wq = b.Matrix(p + "attn_q.weight", c.Dim, c.QDim),
                Wk = b.Matrix(p + "attn_k.weight", c.Dim, c.KvDim),
                Wv = b.Matrix(p + "attn_v.weight", c.Dim, c.KvDim),
                Wo = b.Matrix(p + "attn_output.weight", c.QDim, c.Dim),
                FfnNorm = b.Vector(p + "ffn_norm.weight", c.Dim),
                Gate = b.Matrix(p + "ffn_gate.weight", c.Dim, c.FfnDim),
                Up = b.Matrix(p + "ffn_up.weight", c.Dim, c.FfnDim),
                Down = b.Matrix(p + "ffn_down.weight", c.FfnDim, c.Dim),
            };
        }
    }

    /// <summary>The rope_freqs factors copied out as floats, or null.</summary>
    public unsafe float[]? RopeFreqFactors()
    {
        if (RopeFreqs is not { } t) return null;
        var f = new float[t.Ne0];
        for (int i = 0; i < f.Length; i++) f[i] = ((float*)t.Data)[i];
        return f;
    }

    /// <summary>Finds tensors and fails with one line naming the tensor.</summary>
    private readonly struct Binder(GgufFile file)
    {
        private ModelFormatException Error(string name, string problem) => new(file.Path, $"tensor '{name}'", problem);

        private GgufTensorInfo Find(string name) =>
            file.FindTensor(name) ?? throw Error(name, "required tensor is missing");

        /// <summary>Dims are [ne0, ne1] followed by nothing but 1s.</summary>
        private static bool HasShape(GgufTensorInfo t, long ne0, long ne1)
        {
            if (t.Dims[0] != ne0 || (t.Dims.Length > 1 ? t.Dims[1] : 1) != ne1) return false;
            for (int i = 2; i < t.Dims.Length; i++) if (t.Dims[i] != 1) return false;
            return true;
        }

        /// <summary>A weight matrix [ne0, ne1] of any type the engine computes.</summary>
        public TensorView Matrix(string name, int ne0, int ne1)
        {
            var t = Find(name);
            if (!HasShape(t, ne0, ne1))
                throw Error(name, $"shape {t.ShapeString} does not match the expected [{ne0}, {ne1}]");
            if (!GgmlTypes.IsComputable(t.Type))
                throw Error(name, $"type {GgmlTypes.Name(t.Type)} is not supported (EdgeLlm computes {Quant.TypeTraits.Names})");
            return file.GetTensor(t);
        }

        /// <summary>A 1-D float32 tensor (norm weights, rope factors: llama.cpp never quantizes 1-D tensors).</summary>
        public TensorView Vector(string name, int n)
        {
            var t = Find(name);
            if (!HasShape(t, n, 1))
                throw Error(name, $"shape {t.ShapeString} does not match the expected [{n}]");
            if (t.Type != GgmlType.F32)
                throw Error(name, $"type {GgmlTypes.Name(t.Type)} is not supported for a 1-D tensor (F32 expected)");
            return file.GetTensor(t);
        }
    }
}

/// <summary>The tensors of one transformer block (blk.N.*), shapes as ggml: [ne0 = input, ne1 = output].</summary>
public sealed class LayerWeights
{
    public required TensorView AttnNorm { get; init; }
    public required TensorView Wq { get; init; }
    public required TensorView Wk { get; init; }
    public required TensorView Wv { get; init; }
    public required TensorView Wo { get; init; }
    public required TensorView FfnNorm { get; init; }
    public required TensorView Gate { get; init; }
    public required TensorView Up { get; init; }
    public required TensorView Down { get; init; }
}
