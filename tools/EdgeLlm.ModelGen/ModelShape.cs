namespace EdgeLlm.ModelGen;

/// <summary>
/// The hyperparameters of a Llama model to generate. The presets are the real shapes the benchmarks target
/// (TinyLlama 1.1B, Llama-2 7B, Llama-2/3 70B layout with a 32000 vocab) and a tiny shape for tests; every
/// K-quant needs rows that are a multiple of 256, so tiny keeps dim and ffn at multiples of 256.
/// </summary>
public sealed record ModelShape
{
    public required int Dim { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int Ffn { get; init; }
    public required int Vocab { get; init; }
    public required int Context { get; init; }

    public int HeadDim => Dim / Heads;
    public int KvDim => KvHeads * HeadDim;

    public static readonly string[] PresetNames = ["tiny", "1.1b", "7b", "70b"];

    /// <summary>A named preset, or null for an unknown name.</summary>
    public static ModelShape? Preset(string name) => name.ToLowerInvariant() switch
    {
        "tiny" => new() { Dim = 256, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 512, Vocab = 512, Context = 512 },
        "1.1b" => new() { Dim = 2048, Layers = 22, Heads = 32, KvHeads = 4, Ffn = 5632, Vocab = 32000, Context = 2048 },
        "7b" => new() { Dim = 4096, Layers = 32, Heads = 32, KvHeads = 32, Ffn = 11008, Vocab = 32000, Context = 4096 },
        "70b" => new() { Dim = 8192, Layers = 80, Heads = 64, KvHeads = 8, Ffn = 28672, Vocab = 32000, Context = 4096 },
        _ => null,
    };

    /// <summary>Null if the shape is a valid Llama, else one line saying what is wrong.</summary>
    public string? Problem()
    {
        if (Dim < 1 || Layers < 1 || Heads < 1 || KvHeads < 1 || Ffn < 1 || Vocab < 1 || Context < 1)
            return $"every dimension must be positive ({this})";
        if (Dim % Heads != 0) return $"{Heads} heads do not divide dim {Dim}";
        if (Heads % KvHeads != 0) return $"{KvHeads} kv heads do not divide {Heads} heads";
        if (HeadDim % 2 != 0) return $"head dim {HeadDim} is odd (RoPE rotates pairs)";
        if (Dim > Model.LlamaConfig.MaxDim || Ffn > Model.LlamaConfig.MaxFfn || Layers > Model.LlamaConfig.MaxLayers
            || Vocab > Model.LlamaConfig.MaxVocab || Context > Model.LlamaConfig.MaxContext)
            return $"shape is beyond the engine's limits ({this})";
        return null;
    }

    /// <summary>Weights in the matrices and embeddings (norms included).</summary>
    public long ParameterCount =>
        2L * Dim * Vocab + Dim
        + Layers * (2L * Dim + (long)Dim * Dim * 2 + 2L * Dim * KvDim + 3L * Dim * Ffn);

    public override string ToString() =>
        $"dim {Dim}, layers {Layers}, heads {Heads}, kv heads {KvHeads}, ffn {Ffn}, vocab {Vocab}, ctx {Context}";
}
