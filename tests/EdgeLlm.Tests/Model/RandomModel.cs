using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Model;

/// <summary>Shape and type of a random-weight llama GGUF (see <see cref="RandomModel.Write"/>).</summary>
internal sealed record RandomModelSpec
{
    public int Dim { get; init; } = 64;
    public int Layers { get; init; } = 2;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    public int Ffn { get; init; } = 96;
    public int Vocab { get; init; } = 300;
    public int ContextLength { get; init; } = 64;
    public GgmlType WeightType { get; init; } = GgmlType.F32;
    public bool Tied { get; init; }
    public bool RopeFreqs { get; init; }
    public int? RopeDims { get; init; }
    public float FreqBase { get; init; } = 10000f;
    public float? RopeScaleLinear { get; init; }
    public int Seed { get; init; } = 1234;

    /// <summary>Tensor names to leave out (to test error messages).</summary>
    public string[] Omit { get; init; } = [];

    /// <summary>Tensor name whose second dimension is written one too large (to test shape checks).</summary>
    public string? Misshape { get; init; }

    /// <summary>Tensor written as zero bytes of this type instead (to test unsupported types).</summary>
    public (string Name, GgmlType Type)? RawType { get; init; }

    /// <summary>Metadata overrides applied last (to test validation).</summary>
    public (string Key, GgufValue Value)[] Overrides { get; init; } = [];
}

/// <summary>
/// Writes a seeded random-weight model in llama.cpp's layout: full llama metadata, a minimal SentencePiece
/// style tokenizer ("&lt;unk&gt;", "&lt;s&gt;", "&lt;/s&gt;", byte tokens, then plain pieces), norms in F32 and
/// matrices in the requested type. Weights are uniform in +-sqrt(3/fan_in) (unit-variance outputs) so
/// activations stay O(1) through the layers and logits have a realistic spread.
/// </summary>
internal static class RandomModel
{
    public static string Write(RandomModelSpec s, string? path = null)
    {
        path ??= TestPaths.TempFile($"random-{GgmlTypes.Name(s.WeightType)}.gguf");
        var rng = new Random(s.Seed);
        int headDim = s.Dim / s.Heads;
        int kvDim = s.KvHeads * headDim;
        int ropeDims = s.RopeDims ?? headDim;

        var w = new GgufWriter()
            .Set("general.architecture", "llama")
            .Set("general.name", "random-test")
            .Set("general.quantization_version", 2u)
            .Set("llama.context_length", (uint)s.ContextLength)
            .Set("llama.embedding_length", (uint)s.Dim)
            .Set("llama.block_count", (uint)s.Layers)
            .Set("llama.feed_forward_length", (uint)s.Ffn)
            .Set("llama.attention.head_count", (uint)s.Heads)
            .Set("llama.attention.head_count_kv", (uint)s.KvHeads)
            .Set("llama.attention.layer_norm_rms_epsilon", 1e-5f)
            .Set("llama.rope.dimension_count", (uint)ropeDims)
            .Set("llama.rope.freq_base", s.FreqBase)
            .Set("llama.vocab_size", (uint)s.Vocab);
        if (s.RopeScaleLinear is float scale) w.Set("llama.rope.scaling.type", "linear").Set("llama.rope.scaling.factor", scale);
        var (tokens, scores, types) = Tokenizer(s.Vocab);
        w.Set("tokenizer.ggml.model", "llama")
            .Set("tokenizer.ggml.tokens", tokens)
            .Set("tokenizer.ggml.scores", scores)
            .Set("tokenizer.ggml.token_type", types)
            .Set("tokenizer.ggml.bos_token_id", 1u)
            .Set("tokenizer.ggml.eos_token_id", 2u)
            .Set("tokenizer.ggml.unknown_token_id", 0u);
        foreach (var (key, value) in s.Overrides) w.Set(key, value);

        void Matrix(string name, int ne0, int ne1) =>
            Add(w, s, name, s.WeightType, ne0, ne1, Uniform(rng, ne0 * ne1, MathF.Sqrt(3f / ne0)));
        void Norm(string name, int n)
        {
            var v = new float[n];
            for (int i = 0; i < n; i++) v[i] = 0.8f + 0.4f * rng.NextSingle();
            Add(w, s, name, GgmlType.F32, n, 1, v);
        }

        // Embeddings: unit-ish scale, like real models after the first norm.
        Add(w, s, "token_embd.weight", s.WeightType, s.Dim, s.Vocab, Uniform(rng, s.Dim * s.Vocab, 1f));
        Norm("output_norm.weight", s.Dim);
        if (!s.Tied) Matrix("output.weight", s.Dim, s.Vocab);
        if (s.RopeFreqs)
        {
            // Llama-3.1 style factors: 1 for high frequencies rising to 8 for low ones.
            var f = new float[ropeDims / 2];
            for (int i = 0; i < f.Length; i++) f[i] = 1f + 7f * i / Math.Max(1, f.Length - 1);
            Add(w, s, "rope_freqs.weight", GgmlType.F32, f.Length, 1, f);
        }
        for (int l = 0; l < s.Layers; l++)
        {
            string p = $"blk.{l}.";
            Norm(p + "attn_norm.weight", s.Dim);
            Matrix(p + "attn_q.weight", s.Dim, s.Dim);
            Matrix(p + "attn_k.weight", s.Dim, kvDim);
            Matrix(p + "attn_v.weight", s.Dim, kvDim);
            Matrix(p + "attn_output.weight", s.Dim, s.Dim);
            Norm(p + "ffn_norm.weight", s.Dim);
            Matrix(p + "ffn_gate.weight", s.Dim, s.Ffn);
            Matrix(p + "ffn_down.weight", s.Ffn, s.Dim);
            Matrix(p + "ffn_up.weight", s.Dim, s.Ffn);
        }
        w.Write(path);
        return path;
    }

    private static float[] Uniform(Random rng, int n, float limit)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (2f * rng.NextSingle() - 1f) * limit;
        return v;
    }

    /// <summary>Quantizes row by row and adds the tensor as 1-D (ne1 == 1 for vectors) or 2-D.</summary>
    private static void Add(GgufWriter w, RandomModelSpec s, string name, GgmlType type, int ne0, int ne1, float[] values)
    {
        if (s.Omit.Contains(name)) return;
        if (s.RawType is { } raw && raw.Name == name)
        {
            w.AddTensor(name, raw.Type, [ne0, ne1], new byte[GgmlTypes.RowBytes(raw.Type, ne0) * ne1]);
            return;
        }
        if (s.Misshape == name)
        {
            ne1 += 1;
            Array.Resize(ref values, ne0 * ne1);
        }
        long rowBytes = GgmlTypes.RowBytes(type, ne0);
        var bytes = new byte[rowBytes * ne1];
        for (int r = 0; r < ne1; r++)
        {
            byte[] row = QuantRef.QuantizeRow(type, values.AsSpan(r * ne0, ne0));
            row.CopyTo(bytes, r * rowBytes);
        }
        long[] dims = ne1 == 1 && name.EndsWith("norm.weight", StringComparison.Ordinal) || name == "rope_freqs.weight"
            ? [ne0] : [ne0, ne1];
        w.AddTensor(name, type, dims, bytes);
    }

    private static (string[] Tokens, float[] Scores, int[] Types) Tokenizer(int vocab)
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
        return (tokens, scores, types);
    }
}
