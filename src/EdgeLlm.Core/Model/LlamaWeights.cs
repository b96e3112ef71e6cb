using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Model;

/// <summary>
/// The tensors of a model, bound by llama.cpp name and checked against the config: shape (ne0, ne1 as ggml
/// writes them), and a type EdgeLlm computes. Which optional tensors a layer has follows the family's
/// <see cref="ArchSpec"/>; fused tensors (Phi-3's attn_qkv, gate|up in ffn_up) are split into row slices.
/// Views point into the file's memory map (zero copy), so the <see cref="GgufFile"/> must outlive this object.
/// </summary>
public sealed class LlamaWeights
{
    /// <summary>[dim, vocab]: row t is the embedding of token t.</summary>
    public TensorView TokenEmbd { get; }
    public TensorView OutputNorm { get; }

    /// <summary>[dim, vocab]; the same view as <see cref="TokenEmbd"/> when <see cref="TiedOutput"/>.</summary>
    public TensorView Output { get; }
    public bool TiedOutput { get; }

    /// <summary>Llama-3.1 RoPE frequency factors [rope_dims / 2], or null.</summary>
    public TensorView? RopeFreqs { get; }

    /// <summary>Phi-3 LongRoPE factors [rope_dims / 2] for contexts past / within the original one, or null.</summary>
    public TensorView? RopeFactorsLong { get; }
    public TensorView? RopeFactorsShort { get; }

    public LayerWeights[] Layers { get; }

    public LlamaWeights(GgufFile file, LlamaConfig c)
    {
        var b = new Binder(file);
        var a = c.Arch;
        TokenEmbd = b.Matrix(TensorNames.TokenEmbd, c.Dim, c.VocabSize);
        OutputNorm = b.Vector(TensorNames.OutputNorm, c.Dim);
        TiedOutput = file.FindTensor(TensorNames.Output) is null;
        Output = TiedOutput ? TokenEmbd : b.Matrix(TensorNames.Output, c.Dim, c.VocabSize);
        RopeFreqs = b.OptionalVector(TensorNames.RopeFreqs, c.RopeDims / 2);
        if (a.LongRope)
        {
            RopeFactorsLong = b.OptionalVector(TensorNames.RopeFactorsLong, c.RopeDims / 2);
            RopeFactorsShort = b.OptionalVector(TensorNames.RopeFactorsShort, c.RopeDims / 2);
        }
        Layers = new LayerWeights[c.LayerCount];
        for (int i = 0; i < c.LayerCount; i++)
        {
            string p = TensorNames.BlockPrefix(i);
            TensorView wq, wk, wv, gate, up;
            if (a.FusedQkv && file.FindTensor(p + TensorNames.AttnQkv) is not null)
            {
                var qkv = b.Matrix(p + TensorNames.AttnQkv, c.Dim, c.QDim + 2 * c.KvDim);
                wq = qkv.RowSlice(p + TensorNames.AttnQkv + "[q]", 0, c.QDim);
                wk = qkv.RowSlice(p + TensorNames.AttnQkv + "[k]", c.QDim, c.KvDim);
                wv = qkv.RowSlice(p + TensorNames.AttnQkv + "[v]", c.QDim + c.KvDim, c.KvDim);
            }
            else
            {
                wq = b.Matrix(p + TensorNames.AttnQ, c.Dim, c.QDim);
                wk = b.Matrix(p + TensorNames.AttnK, c.Dim, c.KvDim);
                wv = b.Matrix(p + TensorNames.AttnV, c.Dim, c.KvDim);
            }
            if (a.FusedGateUp)
            {
                var gateUp = b.Matrix(p + TensorNames.FfnUp, c.Dim, 2 * c.FfnDim);
                gate = gateUp.RowSlice(p + TensorNames.FfnUp + "[gate]", 0, c.FfnDim);
                up = gateUp.RowSlice(p + TensorNames.FfnUp + "[up]", c.FfnDim, c.FfnDim);
            }
            else
            {
                gate = b.Matrix(p + TensorNames.FfnGate, c.Dim, c.FfnDim);
                up = b.Matrix(p + TensorNames.FfnUp, c.Dim, c.FfnDim);
            }
            Layers[i] = new LayerWeights
            {
                AttnNorm = b.Vector(p + TensorNames.AttnNorm, c.Dim),
                Wq = wq,
                Wk = wk,
                Wv = wv,
                Bq = a.RequiresQkvBias ? b.Vector(p + TensorNames.AttnQBias, c.QDim) : b.OptionalVector(p + TensorNames.AttnQBias, c.QDim),
                Bk = a.RequiresQkvBias ? b.Vector(p + TensorNames.AttnKBias, c.KvDim) : b.OptionalVector(p + TensorNames.AttnKBias, c.KvDim),
                Bv = a.RequiresQkvBias ? b.Vector(p + TensorNames.AttnVBias, c.KvDim) : b.OptionalVector(p + TensorNames.AttnVBias, c.KvDim),
                QNorm = a.QkNorm ? b.Vector(p + TensorNames.AttnQNorm, c.HeadDim) : null,
                KNorm = a.QkNorm ? b.Vector(p + TensorNames.AttnKNorm, c.HeadDim) : null,
                Wo = b.Matrix(p + TensorNames.AttnOutput, c.QDim, c.Dim),
                Bo = b.OptionalVector(p + TensorNames.AttnOutputBias, c.Dim),
                PostAttnNorm = a.PostNorms ? b.Vector(p + TensorNames.PostAttnNorm, c.Dim) : null,
                FfnNorm = b.Vector(p + TensorNames.FfnNorm, c.Dim),
                Gate = gate,
                Up = up,
                Down = b.Matrix(p + TensorNames.FfnDown, c.FfnDim, c.Dim),
                PostFfnNorm = a.PostNorms ? b.Vector(p + TensorNames.PostFfwNorm, c.Dim) : null,
            };
        }
    }

    /// <summary>
    /// The per-pair divisors of the rotation frequencies, copied out as floats, or null: rope_freqs (Llama 3.1),
    /// else Phi-3's LongRoPE factors, long when the context exceeds the original one (as llama.cpp chooses).
    /// </summary>
    public float[]? RopeFreqFactors(LlamaConfig c, int contextSize)
    {
        if (RopeFreqs is { } t) return Floats(t);
        if (RopeFactorsLong is { } l && contextSize > c.RopeOriginalContext) return Floats(l);
        if (RopeFactorsShort is { } s) return Floats(s);
        return null;
    }

    private static unsafe float[] Floats(TensorView t)
    {
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
            if (!TypeTraits.IsComputable(t.Type))
                throw Error(name, $"type {GgmlTypes.Name(t.Type)} is not supported (EdgeLlm computes {Quant.TypeTraits.Names})");
            return file.GetTensor(t);
        }

        /// <summary>A 1-D float32 tensor if the file has one by that name, else null.</summary>
        public TensorView? OptionalVector(string name, int n) => file.FindTensor(name) is null ? null : Vector(name, n);

        /// <summary>A 1-D float32 tensor (norm weights, biases, rope factors: llama.cpp never quantizes 1-D tensors).</summary>
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

/// <summary>
/// The tensors of one transformer block (blk.N.*), shapes as ggml: [ne0 = input, ne1 = output]. Optional ones
/// (biases, q/k norms, post-branch norms) are null when the family or the file has none.
/// </summary>
public sealed class LayerWeights
{
    public required TensorView AttnNorm { get; init; }
    public required TensorView Wq { get; init; }
    public required TensorView Wk { get; init; }
    public required TensorView Wv { get; init; }
    public TensorView? Bq { get; init; }
    public TensorView? Bk { get; init; }
    public TensorView? Bv { get; init; }
    public TensorView? QNorm { get; init; }
    public TensorView? KNorm { get; init; }
    public required TensorView Wo { get; init; }
    public TensorView? Bo { get; init; }
    public TensorView? PostAttnNorm { get; init; }
    public required TensorView FfnNorm { get; init; }
    public required TensorView Gate { get; init; }
    public required TensorView Up { get; init; }
    public required TensorView Down { get; init; }
    public TensorView? PostFfnNorm { get; init; }

    /// <summary>Bytes of every tensor of the layer (a fused tensor counted once: its slices add up to it).</summary>
    public long ByteLength
    {
        get
        {
            long n = AttnNorm.ByteLength + Wq.ByteLength + Wk.ByteLength + Wv.ByteLength + Wo.ByteLength
                + FfnNorm.ByteLength + Gate.ByteLength + Up.ByteLength + Down.ByteLength;
            foreach (var t in (ReadOnlySpan<TensorView?>)[Bq, Bk, Bv, QNorm, KNorm, Bo, PostAttnNorm, PostFfnNorm])
                if (t is { } v) n += v.ByteLength;
            return n;
        }
    }
}
