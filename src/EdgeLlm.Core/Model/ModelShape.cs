namespace EdgeLlm.Model;

/// <summary>
/// The one description of a model's shape: its family (<see cref="Arch"/>, a <c>general.architecture</c> the
/// engine runs, whose structure is <see cref="ArchSpec"/>) and its hyperparameters. <see cref="LlamaConfig"/>
/// reads one from a GGUF file; the converter gets one from a checkpoint, the model generator builds one from a
/// preset, the test writers from their specs; the tensors such a model has are <see cref="ArchSpec.BlockTensors"/>
/// with the sizes of <see cref="Dims"/>. Optional numbers left null mean the family's usual value
/// (<see cref="ArchSpec.UsualRmsEps"/>, ...) when a model is written, and llama.cpp's default when one is read.
/// </summary>
public sealed record ModelShape
{
    /// <summary>The family: general.architecture and the tensor layout (<see cref="ArchSpec"/>).</summary>
    public string Arch { get; init; } = "llama";
    public required int Dim { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int Ffn { get; init; }
    public required int Vocab { get; init; }
    public int Context { get; init; } = 2048;

    /// <summary>Head size when it is not Dim / Heads (written as attention.key_length / value_length); null = Dim / Heads.</summary>
    public int? KeyLength { get; init; }

    /// <summary>Leading elements of each head that RoPE rotates (rope.dimension_count); null = the whole head.</summary>
    public int? RopeDims { get; init; }

    /// <summary>RMSNorm epsilon; null = the family's usual one.</summary>
    public float? RmsEps { get; init; }

    /// <summary>rope.freq_base; null = the family's usual base.</summary>
    public float? RopeBase { get; init; }

    /// <summary>attention.sliding_window for the families with sliding layers; null = the family's usual window.</summary>
    public int? Window { get; init; }

    /// <summary>No output.weight: the output projection is token_embd (always so for the families that tie, Gemma).</summary>
    public bool Tied { get; init; }

    /// <summary>Llama 3.1+ rope_freqs.weight (per-pair RoPE frequency divisors).</summary>
    public bool RopeFreqs { get; init; }

    /// <summary>The family's structure; throws for an architecture the engine does not run (see <see cref="Problem"/>).</summary>
    public ArchSpec Family => ArchSpec.Find(Arch) ?? throw new ArgumentException($"architecture '{Arch}' is not one the engine runs");

    public int HeadDim => KeyLength ?? Dim / Heads;
    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;
    public int RotatedDims => RopeDims ?? HeadDim;

    /// <summary>RMSNorm epsilon written for this shape: <see cref="RmsEps"/> or the family's usual one.</summary>
    public float Eps => RmsEps ?? Family.UsualRmsEps;

    /// <summary>RoPE base written for this shape: <see cref="RopeBase"/> or the family's usual one.</summary>
    public float FreqBase => RopeBase ?? Family.UsualRopeBase;

    /// <summary>Sliding window written for this shape (0 for a family without sliding layers).</summary>
    public int SlidingWindow => Family.SwaPattern > 0 ? Window ?? Family.UsualWindow : 0;

    /// <summary>Whether the output projection is token_embd: <see cref="Tied"/>, or a family that always ties.</summary>
    public bool IsTied => Tied || ArchSpec.Find(Arch) is { TiedEmbeddings: true };

    /// <summary>Null if the shape is a valid model of its family within the engine's limits, else one line saying what is wrong.</summary>
    public string? Problem()
    {
        if (ArchSpec.Find(Arch) is null)
            return $"architecture '{Arch}' is not one the engine runs ({string.Join(", ", LlamaConfig.SupportedArchitectures)})";
        if (Dim < 1 || Layers < 1 || Heads < 1 || KvHeads < 1 || Ffn < 1 || Vocab < 1 || Context < 1 || KeyLength is < 1)
            return $"every dimension must be positive ({this})";
        if (KeyLength is null && Dim % Heads != 0) return $"{Heads} heads do not divide dim {Dim}";
        if (Heads % KvHeads != 0) return $"{KvHeads} kv heads do not divide {Heads} heads";
        if (HeadDim % 2 != 0) return $"head dim {HeadDim} is odd (RoPE rotates pairs)";
        if (RopeDims is { } r && (r < 2 || r > HeadDim || r % 2 != 0)) return $"rope dims {r} is not an even number in [2, {HeadDim}]";
        if (Dim > LlamaConfig.MaxDim || Ffn > LlamaConfig.MaxFfn || Layers > LlamaConfig.MaxLayers
            || Vocab > LlamaConfig.MaxVocab || Context > LlamaConfig.MaxContext || HeadDim > LlamaConfig.MaxHeadDim
            || Heads > LlamaConfig.MaxHeads)
            return $"shape is beyond the engine's limits ({this})";
        return null;
    }

    /// <summary>
    /// The ggml dims (innermost first: [ne0] or [ne0, ne1], input width first for a matrix) of tensor
    /// <paramref name="name"/> in a model of this shape, or null when the model has no such tensor (a block
    /// tensor its family does not have, a layer past <see cref="Layers"/>, an unknown name).
    /// </summary>
    public long[]? Dims(string name)
    {
        switch (name)
        {
            case TensorNames.TokenEmbd or TensorNames.Output: return [Dim, Vocab];
            case TensorNames.OutputNorm: return [Dim];
            case TensorNames.RopeFreqs: return [RotatedDims / 2];
            case TensorNames.RopeFactorsLong or TensorNames.RopeFactorsShort: return Family.LongRope ? [RotatedDims / 2] : null;
        }
        return TensorNames.TryParseBlock(name, out int layer, out string tensor) && layer < Layers ? BlockDims(tensor) : null;
    }

    /// <summary>The ggml dims of block tensor <paramref name="tensor"/> (a <see cref="TensorNames"/> suffix), or null if the family has none.</summary>
    public long[]? BlockDims(string tensor)
    {
        if (!Family.HasBlockTensor(tensor)) return null;
        long dim = Dim, q = QDim, kv = KvDim, ffn = Ffn;
        return tensor switch
        {
            TensorNames.AttnQ => [dim, q],
            TensorNames.AttnK or TensorNames.AttnV => [dim, kv],
            TensorNames.AttnQkv => [dim, q + 2 * kv],
            TensorNames.AttnOutput => [q, dim],
            TensorNames.AttnQBias => [q],
            TensorNames.AttnKBias or TensorNames.AttnVBias => [kv],
            TensorNames.AttnQNorm or TensorNames.AttnKNorm => [HeadDim],
            TensorNames.AttnNorm or TensorNames.FfnNorm or TensorNames.PostAttnNorm or TensorNames.PostFfwNorm => [dim],
            TensorNames.FfnGate => [dim, ffn],
            TensorNames.FfnUp => Family.FusedGateUp ? [dim, 2 * ffn] : [dim, ffn],
            TensorNames.FfnDown => [ffn, dim],
            _ => null,
        };
    }

    /// <summary>Weights in the matrices, embeddings, norms and biases (rope_freqs not counted: it is not a weight).</summary>
    public long ParameterCount
    {
        get
        {
            var a = ArchSpec.Find(Arch) ?? ArchSpec.Llama;
            long perLayer = 2L * Dim + 2L * Dim * QDim + 2L * Dim * KvDim + 3L * Dim * Ffn;
            if (a.RequiresQkvBias) perLayer += QDim + 2L * KvDim;
            if (a.QkNorm) perLayer += 2L * HeadDim;
            if (a.PostNorms) perLayer += 2L * Dim;
            return (IsTied ? 1L : 2L) * Dim * Vocab + Dim + Layers * perLayer;
        }
    }

    public override string ToString() =>
        (Arch == "llama" ? "" : Arch + ": ") +
        $"dim {Dim}, layers {Layers}, heads {Heads}, kv heads {KvHeads}" + (KeyLength is int k ? $", head {k}" : "") +
        $", ffn {Ffn}, vocab {Vocab}, ctx {Context}" + (IsTied ? ", tied" : "");
}
