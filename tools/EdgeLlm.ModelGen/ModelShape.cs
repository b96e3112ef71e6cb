namespace EdgeLlm.ModelGen;

/// <summary>
/// The hyperparameters of a model to generate: the family (<see cref="Arch"/>, a <c>general.architecture</c> the
/// engine runs) and its numbers. The presets are the real shapes the benchmarks target (TinyLlama 1.1B, Llama-2
/// 7B, Llama-2/3 70B layout with a 32000 vocab, and the 1B-3B edge models of each family) and a tiny shape for
/// tests; every K-quant needs rows that are a multiple of 256, so tiny keeps dim and ffn at multiples of 256
/// (rows that are not, like Gemma 3 1B's 1152, get llama.cpp's fallback type).
/// </summary>
public sealed record ModelShape
{
    /// <summary>The family: general.architecture and the tensor layout (<see cref="Model.ArchSpec"/>).</summary>
    public string Arch { get; init; } = "llama";
    public required int Dim { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int Ffn { get; init; }
    public required int Vocab { get; init; }
    public required int Context { get; init; }

    /// <summary>Head size when it is not Dim / Heads (written as attention.key_length / value_length); null = Dim / Heads.</summary>
    public int? KeyLength { get; init; }

    /// <summary>No output.weight: the output projection is token_embd (always so for the Gemma families).</summary>
    public bool Tied { get; init; }

    /// <summary>Llama 3.1+ rope_freqs.weight (the llama3 rope-scaling divisors, factor 32 over an 8192 context).</summary>
    public bool RopeFreqs { get; init; }

    /// <summary>rope.freq_base; null = the family's usual base (<see cref="ArchDefaults"/>).</summary>
    public float? RopeBase { get; init; }

    /// <summary>attention.sliding_window for the families with sliding layers; null = the family's usual window.</summary>
    public int? Window { get; init; }

    public int HeadDim => KeyLength ?? Dim / Heads;
    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;

    /// <summary>Gemma ties the output to the embeddings whatever the shape says.</summary>
    public bool IsTied => Tied || Arch.StartsWith("gemma", StringComparison.Ordinal);

    public static readonly string[] PresetNames =
        ["tiny", "1.1b", "7b", "70b", "llama3.2-1b", "qwen2.5-1.5b", "qwen3-1.7b", "phi3-mini", "gemma2-2b", "gemma3-1b"];

    /// <summary>A named preset, or null for an unknown name.</summary>
    public static ModelShape? Preset(string name) => name.ToLowerInvariant() switch
    {
        "tiny" => new() { Dim = 256, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 512, Vocab = 512, Context = 512 },
        "1.1b" => new() { Dim = 2048, Layers = 22, Heads = 32, KvHeads = 4, Ffn = 5632, Vocab = 32000, Context = 2048 },
        "7b" => new() { Dim = 4096, Layers = 32, Heads = 32, KvHeads = 32, Ffn = 11008, Vocab = 32000, Context = 4096 },
        "70b" => new() { Dim = 8192, Layers = 80, Heads = 64, KvHeads = 8, Ffn = 28672, Vocab = 32000, Context = 4096 },
        // Llama-3.2-1B: head 64, tied embeddings, rope base 500000 with llama3 rope_freqs.
        "llama3.2-1b" => new()
        {
            Dim = 2048, Layers = 16, Heads = 32, KvHeads = 8, Ffn = 8192, Vocab = 128256, Context = 131072,
            Tied = true, RopeFreqs = true, RopeBase = 500000f,
        },
        // Qwen2.5-1.5B: q/k/v biases (the qwen2 layout), tied embeddings (tie_word_embeddings in its config).
        "qwen2.5-1.5b" => new()
        {
            Arch = "qwen2", Dim = 1536, Layers = 28, Heads = 12, KvHeads = 2, Ffn = 8960, Vocab = 151936, Context = 32768,
            Tied = true,
        },
        // Qwen3-1.7B: head 128 (q is 16 x 128 = dim), q/k norms, tied embeddings.
        "qwen3-1.7b" => new()
        {
            Arch = "qwen3", Dim = 2048, Layers = 28, Heads = 16, KvHeads = 8, Ffn = 6144, Vocab = 151936, Context = 40960,
            KeyLength = 128, Tied = true,
        },
        // Phi-3-mini-4k: fused attn_qkv and gate|up.
        "phi3-mini" => new()
        {
            Arch = "phi3", Dim = 3072, Layers = 32, Heads = 32, KvHeads = 32, Ffn = 8192, Vocab = 32064, Context = 4096,
        },
        // Gemma-2-2B: head 256 (q is 8 x 256 = 2048, not dim), softcaps 50/30, window 4096 on even layers.
        "gemma2-2b" => new()
        {
            Arch = "gemma2", Dim = 2304, Layers = 26, Heads = 8, KvHeads = 4, Ffn = 9216, Vocab = 256000, Context = 8192,
            KeyLength = 256, Tied = true, Window = 4096,
        },
        // Gemma-3-1B: head 256, q/k norms, five local layers (window 512, base 10000) per global one (base 1e6).
        "gemma3-1b" => new()
        {
            Arch = "gemma3", Dim = 1152, Layers = 26, Heads = 4, KvHeads = 1, Ffn = 6912, Vocab = 262144, Context = 32768,
            KeyLength = 256, Tied = true, Window = 512, RopeBase = 1000000f,
        },
        _ => null,
    };

    /// <summary>Null if the shape is a valid model of its family, else one line saying what is wrong.</summary>
    public string? Problem()
    {
        if (Model.ArchSpec.Find(Arch) is null)
            return $"architecture '{Arch}' is not one the engine runs ({string.Join(", ", Model.LlamaConfig.SupportedArchitectures)})";
        if (Dim < 1 || Layers < 1 || Heads < 1 || KvHeads < 1 || Ffn < 1 || Vocab < 1 || Context < 1 || KeyLength is < 1)
            return $"every dimension must be positive ({this})";
        if (KeyLength is null && Dim % Heads != 0) return $"{Heads} heads do not divide dim {Dim}";
        if (Heads % KvHeads != 0) return $"{KvHeads} kv heads do not divide {Heads} heads";
        if (HeadDim % 2 != 0) return $"head dim {HeadDim} is odd (RoPE rotates pairs)";
        if (Dim > Model.LlamaConfig.MaxDim || Ffn > Model.LlamaConfig.MaxFfn || Layers > Model.LlamaConfig.MaxLayers
            || Vocab > Model.LlamaConfig.MaxVocab || Context > Model.LlamaConfig.MaxContext || HeadDim > Model.LlamaConfig.MaxHeadDim
            || Heads > Model.LlamaConfig.MaxHeads)
            return $"shape is beyond the engine's limits ({this})";
        return null;
    }

    /// <summary>Weights in the matrices, embeddings, norms and biases (rope_freqs not counted: it is not a weight).</summary>
    public long ParameterCount
    {
        get
        {
            var a = Model.ArchSpec.Find(Arch) ?? Model.ArchSpec.Llama;
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
