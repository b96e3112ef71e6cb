using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.ModelGen;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Model;

/// <summary>
/// A small random-weight model for tests (see <see cref="RandomModel.Write"/>): its <see cref="Shape"/> (any family),
/// the weight type, the RoPE and family numbers a test varies, and faults to inject into the file.
/// </summary>
internal sealed record RandomModelSpec
{
    public string Arch { get; init; } = "llama";
    public int Dim { get; init; } = 64;
    public int Layers { get; init; } = 2;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;

    /// <summary>Head size; null = Dim / Heads. Another size is written as attention.key_length / value_length.</summary>
    public int? HeadDim { get; init; }
    public int Ffn { get; init; } = 96;
    public int Vocab { get; init; } = 300;
    public int ContextLength { get; init; } = 64;
    public GgmlType WeightType { get; init; } = GgmlType.F32;
    public bool Tied { get; init; }

    /// <summary>A rope_freqs.weight of per-pair divisors rising linearly from 1 to 8.</summary>
    public bool RopeFreqs { get; init; }

    /// <summary>Rotated head elements (rope.dimension_count; null = the whole head).</summary>
    public int? RopeDims { get; init; }
    public float FreqBase { get; init; } = 10000f;
    public float? RopeScaleLinear { get; init; }

    /// <summary>attention.sliding_window; null = no key (the engine's default for Gemma 2, an error for Gemma 3).</summary>
    public int? SlidingWindow { get; init; }

    /// <summary>attn_logit_softcapping / final_logit_softcapping; null = the family's value (Gemma 2: 50 and 30).</summary>
    public float? AttnSoftcap { get; init; }
    public float? FinalSoftcap { get; init; }

    /// <summary>Phi-3 LongRoPE: rope_factors_long/short tensors, rope.scaling.attn_factor and original_context_length.</summary>
    public bool LongRope { get; init; }
    public int OriginalContext { get; init; } = 16;
    public float RopeAttnFactor { get; init; } = 1.19f;
    public int Seed { get; init; } = 1234;

    /// <summary>Tensor names to leave out (to test error messages).</summary>
    public string[] Omit { get; init; } = [];

    /// <summary>Tensor whose last dimension is written one too large (to test shape checks).</summary>
    public string? Misshape { get; init; }

    /// <summary>Tensor written as zero bytes of this type instead (to test unsupported types).</summary>
    public (string Name, GgmlType Type)? RawType { get; init; }

    /// <summary>Metadata set last (to test validation).</summary>
    public (string Key, GgufValue Value)[] Overrides { get; init; } = [];

    /// <summary>A model of another family as the family tests draw it: F16 matrices, seed 4321.</summary>
    public static RandomModelSpec Family(string arch) => new() { Arch = arch, WeightType = GgmlType.F16, Seed = 4321 };

    /// <summary>The model's shape; an architecture the engine does not run is drawn as llama and only named otherwise.</summary>
    public ModelShape Shape => new()
    {
        Arch = ArchSpec.Find(Arch) is null ? "llama" : Arch,
        Dim = Dim, Layers = Layers, Heads = Heads, KvHeads = KvHeads, Ffn = Ffn, Vocab = Vocab, Context = ContextLength,
        KeyLength = HeadDim is int h && h != Dim / Heads ? h : null,
        RopeDims = RopeDims,
        RmsEps = Arch.StartsWith("gemma", StringComparison.Ordinal) ? 1e-6f : 1e-5f,
        RopeBase = FreqBase,
        Window = SlidingWindow,
        Tied = Tied,
        RopeFreqs = RopeFreqs,
    };
}

/// <summary>
/// Writes a seeded random-weight model through the model generator's writer (<see cref="ModelGenerator.WriteFile"/>):
/// its plan of tensors (llama.cpp's names and shapes for the family) and metadata, a minimal SentencePiece-style
/// tokenizer ("&lt;unk&gt;", "&lt;s&gt;", "&lt;/s&gt;", byte tokens, then plain pieces), and the spec's faults.
/// Values are drawn in plan order from one <see cref="Random"/>: matrices uniform in ±sqrt(3/fan_in) (unit-variance
/// outputs, so activations stay O(1) and logits have a realistic spread) and quantized by the reference quantizer,
/// embeddings in ±1, norms in [0.8, 1.2] (for Gemma these stand for the stored 1 + w), biases in ±0.5.
/// </summary>
internal static class RandomModel
{
    public static string Write(RandomModelSpec s, string? path = null)
    {
        path ??= TestPaths.TempFile($"random-{s.Arch}-{GgmlTypes.Name(s.WeightType)}.gguf");
        var shape = s.Shape;
        var options = new ModelGenOptions
        {
            Shape = shape, Format = new WeightFormat(s.WeightType), OutputType = s.WeightType, Seed = (ulong)s.Seed, Name = "random-" + s.Arch,
        };

        var plan = new List<PlannedTensor>();
        foreach (var t in ModelGenerator.Plan(options))
        {
            if (s.Omit.Contains(t.Name)) continue;
            var u = t;
            if (s.Misshape == t.Name) u = u with { Dims = t.Dims.Length == 1 ? [t.Dims[0] + 1] : [t.Dims[0], t.Dims[1] + 1] };
            if (s.RawType is { } raw && raw.Name == t.Name) u = u with { Type = raw.Type };
            plan.Add(u);
            if (t.Name == TensorNames.TokenEmbd && s.LongRope)
                foreach (string name in (ReadOnlySpan<string>)[TensorNames.RopeFactorsLong, TensorNames.RopeFactorsShort])
                    plan.Add(new PlannedTensor(name, TensorRole.RopeFreqs, -1, GgmlType.F32, [shape.RotatedDims / 2]));
        }

        string K(string key) => ModelKeys.Of(s.Arch, key);
        var meta = new List<(string Key, GgufValue Value)>();
        foreach (var (key, value) in ModelGenerator.Metadata(options))
        {
            if (key == ModelKeys.Of(shape.Arch, ModelKeys.SlidingWindow) && s.SlidingWindow is null) continue;
            if (key == ModelKeys.Architecture) meta.Add((key, GgufValue.Of(s.Arch)));
            else meta.Add((key.StartsWith(shape.Arch + ".", StringComparison.Ordinal) ? K(key[(shape.Arch.Length + 1)..]) : key, value));
        }
        if (s.AttnSoftcap is float ac) meta.Add((K(ModelKeys.AttnSoftcap), GgufValue.Of(ac)));
        if (s.FinalSoftcap is float fc) meta.Add((K(ModelKeys.FinalSoftcap), GgufValue.Of(fc)));
        if (s.RopeScaleLinear is float scale)
        {
            meta.Add((K(ModelKeys.RopeScalingType), GgufValue.Of("linear")));
            meta.Add((K(ModelKeys.RopeScalingFactor), GgufValue.Of(scale)));
        }
        if (s.LongRope)
        {
            meta.Add((K(ModelKeys.RopeAttnFactor), GgufValue.Of(s.RopeAttnFactor)));
            meta.Add((K(ModelKeys.RopeOriginalContext), GgufValue.Of((uint)s.OriginalContext)));
        }
        meta.AddRange(Tokenizer(s.Vocab));
        meta.AddRange(s.Overrides);

        var rng = new Random(s.Seed);
        ModelGenerator.WriteFile(path, plan, meta, (stream, t) => stream.Write(Bytes(t, s, rng)));
        return path;
    }

    /// <summary>The tensor's values drawn from <paramref name="rng"/> and quantized row by row (zeros for a raw-type fault).</summary>
    private static byte[] Bytes(PlannedTensor t, RandomModelSpec s, Random rng)
    {
        if (s.RawType is { } raw && raw.Name == t.Name) return new byte[t.Bytes];
        int ne0 = (int)t.Dims[0], ne1 = t.Dims.Length > 1 ? (int)t.Dims[1] : 1;
        var v = new float[ne0 * ne1];
        switch (t.Role)
        {
            case TensorRole.TokenEmbd: Uniform(rng, v, -1f, 1f); break;
            case TensorRole.Norm: Uniform(rng, v, 0.8f, 1.2f); break;
            case TensorRole.Bias: Uniform(rng, v, -0.5f, 0.5f); break;
            case TensorRole.RopeFreqs when t.Name == TensorNames.RopeFreqs:
                for (int i = 0; i < v.Length; i++) v[i] = 1f + 7f * i / Math.Max(1, v.Length - 1);
                break;
            case TensorRole.RopeFreqs: Uniform(rng, v, 1f, t.Name == TensorNames.RopeFactorsLong ? 8f : 1.5f); break;
            default:
                float limit = MathF.Sqrt(3f / ne0);
                Uniform(rng, v, -limit, limit);
                break;
        }
        long rowBytes = GgmlTypes.RowBytes(t.Type, ne0);
        var bytes = new byte[rowBytes * ne1];
        for (int r = 0; r < ne1; r++) QuantRef.QuantizeRow(t.Type, v.AsSpan(r * ne0, ne0)).CopyTo(bytes, r * rowBytes);
        return bytes;
    }

    private static void Uniform(Random rng, float[] v, float lo, float hi)
    {
        for (int i = 0; i < v.Length; i++) v[i] = lo + (hi - lo) * rng.NextSingle();
    }

    private static IEnumerable<(string, GgufValue)> Tokenizer(int vocab)
    {
        var tokens = new string[vocab];
        var scores = new float[vocab];
        var types = new int[vocab];
        for (int i = 0; i < vocab; i++)
        {
            if (i < 3) { tokens[i] = i switch { 0 => "<unk>", 1 => "<s>", _ => "</s>" }; types[i] = i == 0 ? 2 : 3; }
            else if (i < 3 + 256) { tokens[i] = $"<0x{i - 3:X2}>"; types[i] = 6; }
            else { tokens[i] = "\u2581p" + (i - 259); types[i] = 1; scores[i] = -(i - 259); }
        }
        return VocabSource.SentencePieceKeys(tokens, scores, types);
    }
}
