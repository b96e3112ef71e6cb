using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Model;

/// <summary>Shape of a random-weight GGUF of one family (see <see cref="FamilyModel.Write"/>).</summary>
internal sealed record FamilySpec
{
    public required string Arch { get; init; }
    public int Dim { get; init; } = 64;
    public int Layers { get; init; } = 2;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;

    /// <summary>Head size; when it differs from Dim / Heads the file carries attention.key_length / value_length.</summary>
    public int HeadDim { get; init; } = 16;
    public int Ffn { get; init; } = 96;
    public int Vocab { get; init; } = 300;
    public int ContextLength { get; init; } = 64;
    public GgmlType WeightType { get; init; } = GgmlType.F16;
    public float FreqBase { get; init; } = 10000f;
    public float? RopeScaleLinear { get; init; }
    public int? SlidingWindow { get; init; }
    public float? AttnSoftcap { get; init; }
    public float? FinalSoftcap { get; init; }

    /// <summary>Rotated head elements (rope.dimension_count; null = the whole head).</summary>
    public int? RopeDims { get; init; }

    /// <summary>Phi-3 LongRoPE: rope_factors_long/short tensors, rope.scaling.attn_factor and original_context_length.</summary>
    public bool LongRope { get; init; }
    public int OriginalContext { get; init; } = 16;
    public float RopeAttnFactor { get; init; } = 1.19f;
    public int Seed { get; init; } = 4321;

    /// <summary>Tensor names to leave out (to test error messages).</summary>
    public string[] Omit { get; init; } = [];

    /// <summary>Tensor whose last dimension is written one too large (to test shape checks).</summary>
    public string? Misshape { get; init; }
}

/// <summary>
/// Writes a seeded random-weight model of one family with llama.cpp's metadata keys and tensor names (what its
/// converter writes): qwen2's q/k/v biases, qwen3's and gemma3's attn_q_norm / attn_k_norm, phi3's fused attn_qkv
/// and gate|up ffn_up, gemma2/3's post_attention_norm / post_ffw_norm, gemma's tied output. Matrices are F16 or
/// F32 uniform in ±sqrt(3/fan_in), norms in [0.8, 1.2] (for Gemma these stand for the stored 1 + w), biases in
/// ±0.5, embeddings in ±1.
/// </summary>
internal static class FamilyModel
{
    public static string Write(FamilySpec s, string? path = null)
    {
        path ??= TestPaths.TempFile($"family-{s.Arch}.gguf");
        var rng = new Random(s.Seed);
        string a = s.Arch + ".";
        bool gemma = s.Arch.StartsWith("gemma", StringComparison.Ordinal);
        int qDim = s.Heads * s.HeadDim, kvDim = s.KvHeads * s.HeadDim;

        var w = new GgufWriter()
            .Set("general.architecture", s.Arch)
            .Set("general.name", "random-" + s.Arch)
            .Set(a + "context_length", (uint)s.ContextLength)
            .Set(a + "embedding_length", (uint)s.Dim)
            .Set(a + "block_count", (uint)s.Layers)
            .Set(a + "feed_forward_length", (uint)s.Ffn)
            .Set(a + "attention.head_count", (uint)s.Heads)
            .Set(a + "attention.head_count_kv", (uint)s.KvHeads)
            .Set(a + "attention.layer_norm_rms_epsilon", gemma ? 1e-6f : 1e-5f)
            .Set(a + "rope.freq_base", s.FreqBase)
            .Set(a + "vocab_size", (uint)s.Vocab);
        if (s.HeadDim != s.Dim / s.Heads || gemma)
            w.Set(a + "attention.key_length", (uint)s.HeadDim).Set(a + "attention.value_length", (uint)s.HeadDim);
        if (s.RopeScaleLinear is float scale) w.Set(a + "rope.scaling.type", "linear").Set(a + "rope.scaling.factor", scale);
        int ropeDims = s.RopeDims ?? s.HeadDim;
        if (s.RopeDims is int rd) w.Set(a + "rope.dimension_count", (uint)rd);
        if (s.LongRope)
            w.Set(a + "rope.scaling.attn_factor", s.RopeAttnFactor).Set(a + "rope.scaling.original_context_length", (uint)s.OriginalContext);
        if (s.SlidingWindow is int window) w.Set(a + "attention.sliding_window", (uint)window);
        if (s.AttnSoftcap is float ac) w.Set(a + "attn_logit_softcapping", ac);
        if (s.FinalSoftcap is float fc) w.Set(a + "final_logit_softcapping", fc);
        var tokens = new string[s.Vocab];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = i < 3 ? (i switch { 0 => "<unk>", 1 => "<s>", _ => "</s>" }) : "\u2581t" + i;
        w.Set("tokenizer.ggml.model", "llama").Set("tokenizer.ggml.tokens", tokens)
            .Set("tokenizer.ggml.scores", new float[s.Vocab]).Set("tokenizer.ggml.token_type", Enumerable.Repeat(1, s.Vocab).ToArray());

        void Matrix(string name, int ne0, int ne1) => Add(w, s, name, s.WeightType, ne0, ne1, Uniform(rng, ne0 * ne1, MathF.Sqrt(3f / ne0)));
        void Vector(string name, int n, float lo, float hi)
        {
            var v = new float[n];
            for (int i = 0; i < n; i++) v[i] = lo + (hi - lo) * rng.NextSingle();
            Add(w, s, name, GgmlType.F32, n, 1, v);
        }

        Add(w, s, "token_embd.weight", s.WeightType, s.Dim, s.Vocab, Uniform(rng, s.Dim * s.Vocab, 1f));
        Vector("output_norm.weight", s.Dim, 0.8f, 1.2f);
        if (!gemma) Matrix("output.weight", s.Dim, s.Vocab);
        if (s.LongRope)
        {
            Vector("rope_factors_long.weight", ropeDims / 2, 1f, 8f);
            Vector("rope_factors_short.weight", ropeDims / 2, 1f, 1.5f);
        }
        for (int l = 0; l < s.Layers; l++)
        {
            string p = $"blk.{l}.";
            Vector(p + "attn_norm.weight", s.Dim, 0.8f, 1.2f);
            if (s.Arch == "phi3") Matrix(p + "attn_qkv.weight", s.Dim, qDim + 2 * kvDim);
            else
            {
                Matrix(p + "attn_q.weight", s.Dim, qDim);
                Matrix(p + "attn_k.weight", s.Dim, kvDim);
                Matrix(p + "attn_v.weight", s.Dim, kvDim);
            }
            if (s.Arch == "qwen2")
            {
                Vector(p + "attn_q.bias", qDim, -0.5f, 0.5f);
                Vector(p + "attn_k.bias", kvDim, -0.5f, 0.5f);
                Vector(p + "attn_v.bias", kvDim, -0.5f, 0.5f);
            }
            if (s.Arch is "qwen3" or "gemma3")
            {
                Vector(p + "attn_q_norm.weight", s.HeadDim, 0.8f, 1.2f);
                Vector(p + "attn_k_norm.weight", s.HeadDim, 0.8f, 1.2f);
            }
            Matrix(p + "attn_output.weight", qDim, s.Dim);
            if (s.Arch is "gemma2" or "gemma3") Vector(p + "post_attention_norm.weight", s.Dim, 0.8f, 1.2f);
            Vector(p + "ffn_norm.weight", s.Dim, 0.8f, 1.2f);
            if (s.Arch == "phi3") Matrix(p + "ffn_up.weight", s.Dim, 2 * s.Ffn);
            else
            {
                Matrix(p + "ffn_gate.weight", s.Dim, s.Ffn);
                Matrix(p + "ffn_up.weight", s.Dim, s.Ffn);
            }
            Matrix(p + "ffn_down.weight", s.Ffn, s.Dim);
            if (s.Arch is "gemma2" or "gemma3") Vector(p + "post_ffw_norm.weight", s.Dim, 0.8f, 1.2f);
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

    /// <summary>Adds a tensor row by row in <paramref name="type"/>: 1-D [ne0] when ne1 is 1, else [ne0, ne1].</summary>
    private static void Add(GgufWriter w, FamilySpec s, string name, GgmlType type, int ne0, int ne1, float[] values)
    {
        if (s.Omit.Contains(name)) return;
        bool vector = ne1 == 1;
        if (s.Misshape == name)
        {
            if (vector) ne0 += 1;
            else ne1 += 1;
            Array.Resize(ref values, ne0 * ne1);
        }
        long rowBytes = GgmlTypes.RowBytes(type, ne0);
        var bytes = new byte[rowBytes * ne1];
        for (int r = 0; r < ne1; r++) QuantRef.QuantizeRow(type, values.AsSpan(r * ne0, ne0)).CopyTo(bytes, r * rowBytes);
        w.AddTensor(name, type, vector ? [ne0] : [ne0, ne1], bytes);
    }
}
