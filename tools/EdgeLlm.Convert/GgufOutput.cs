using EdgeLlm.Convert.Sources;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Convert;

/// <summary>
/// The metadata of a converted file, in the keys and order llama.cpp's converters write: general.*, the
/// {arch}.* hyperparameters (the llama set, or the architecture's own set a Hugging Face config produced), general.file_type (and general.quantization_version = 2 when any tensor is
/// quantized), the tokenizer.* keys and the chat template, then the per-tensor checksums
/// (<see cref="TensorChecksums.MetadataKey"/>, filled in after the data is written). A GGUF input keeps all its
/// metadata except the keys rewritten here.
/// </summary>
internal static class GgufOutput
{
    public static void AddMetadata(GgufWriter w, CheckpointSource source, TokenizerData tok, bool tokenizerOverridden,
        OutputType type, bool anyQuantized, string? name, int? context, int tensorCount)
    {
        var p = source.Params;
        if (source is GgufSource g)
        {
            foreach (string key in g.File.Keys)
            {
                if (key is ModelKeys.FileType or ModelKeys.QuantizationVersion or "general.alignment" or TensorChecksums.MetadataKey) continue;
                if (tokenizerOverridden && key.StartsWith("tokenizer.", StringComparison.Ordinal)) continue;
                w.Set(key, g.File.Get(key)!);
            }
            if (name is not null) w.Set(ModelKeys.Name, name);
            if (context is int c) w.Set(ModelKeys.Of(g.File.GetString(ModelKeys.Architecture) ?? "llama", ModelKeys.ContextLength), (uint)c);
            w.Set(ModelKeys.FileType, QuantPolicy.FileType(type));
            if (anyQuantized) w.Set(ModelKeys.QuantizationVersion, 2u);
            if (tokenizerOverridden) AddTokenizer(w, tok, p.Shape.Vocab);
        }
        else if (p.ArchMetadata is { } keys)
        {
            string arch = p.Shape.Arch;
            w.Set(ModelKeys.Architecture, arch);
            w.Set(ModelKeys.Name, name ?? p.Name);
            foreach (var (key, value) in keys)
                w.Set(ModelKeys.Of(arch, key), key == ModelKeys.ContextLength && context is int c ? GgufValue.Of((uint)c) : value);
            w.Set(ModelKeys.FileType, QuantPolicy.FileType(type));
            if (anyQuantized) w.Set(ModelKeys.QuantizationVersion, 2u);
            AddTokenizer(w, tok, p.Shape.Vocab);
        }
        else
        {
            var s = p.Shape;
            static string K(string key) => ModelKeys.Of("llama", key);
            w.Set(ModelKeys.Architecture, "llama");
            w.Set(ModelKeys.Name, name ?? p.Name);
            w.Set(K(ModelKeys.BlockCount), (uint)s.Layers);
            w.Set(K(ModelKeys.ContextLength), (uint)(context ?? s.Context));
            w.Set(K(ModelKeys.EmbeddingLength), (uint)s.Dim);
            w.Set(K(ModelKeys.FeedForwardLength), (uint)s.Ffn);
            w.Set(K(ModelKeys.HeadCount), (uint)s.Heads);
            w.Set(K(ModelKeys.HeadCountKv), (uint)s.KvHeads);
            w.Set(K(ModelKeys.RopeFreqBase), s.FreqBase);
            w.Set(K(ModelKeys.RmsEps), s.Eps);
            w.Set(ModelKeys.FileType, QuantPolicy.FileType(type));
            w.Set(K(ModelKeys.VocabSize), (uint)s.Vocab);
            w.Set(K(ModelKeys.RopeDimensionCount), (uint)(s.Dim / s.Heads));
            if (anyQuantized) w.Set(ModelKeys.QuantizationVersion, 2u);
            AddTokenizer(w, tok, s.Vocab);
        }
        w.Set(TensorChecksums.MetadataKey, GgufValue.Of(new ulong[tensorCount]));
    }

    /// <summary>
    /// tokenizer.* keys. A vocabulary shorter than the model's embedding is padded with <c>[PADn]</c> unused
    /// tokens (score -10000), as llama.cpp's converter pads; a longer one is an error.
    /// </summary>
    internal static void AddTokenizer(GgufWriter w, TokenizerData tok, int vocabSize)
    {
        int n = tok.Tokens.Length;
        if (tok.TokenTypes.Length != n || (tok.Scores is { } s0 && s0.Length != n))
            throw new EdgeLlmException($"tokenizer: {n} tokens but {tok.TokenTypes.Length} types and {tok.Scores?.Length} scores");
        if (n > vocabSize)
            throw new EdgeLlmException($"the tokenizer has {n} tokens but the model's vocabulary (embedding rows) is {vocabSize}: wrong tokenizer?");
        var tokens = tok.Tokens;
        var types = tok.TokenTypes;
        var scores = tok.Scores;
        if (n < vocabSize)
        {
            tokens = new string[vocabSize];
            types = new int[vocabSize];
            tok.Tokens.CopyTo(tokens, 0);
            tok.TokenTypes.CopyTo(types, 0);
            if (scores is not null) { scores = new float[vocabSize]; tok.Scores!.CopyTo(scores, 0); }
            for (int i = n; i < vocabSize; i++)
            {
                tokens[i] = $"[PAD{i}]";
                types[i] = 5;
                if (scores is not null) scores[i] = -10000f;
            }
        }
        w.Set("tokenizer.ggml.model", tok.Model);
        if (tok.Pre is not null) w.Set("tokenizer.ggml.pre", tok.Pre);
        w.Set("tokenizer.ggml.tokens", tokens);
        if (scores is not null) w.Set("tokenizer.ggml.scores", scores);
        w.Set("tokenizer.ggml.token_type", types);
        if (tok.Merges is { Length: > 0 } merges) w.Set("tokenizer.ggml.merges", merges);
        if (tok.Bos >= 0) w.Set("tokenizer.ggml.bos_token_id", (uint)tok.Bos);
        if (tok.Eos >= 0) w.Set("tokenizer.ggml.eos_token_id", (uint)tok.Eos);
        if (tok.Unknown >= 0) w.Set("tokenizer.ggml.unknown_token_id", (uint)tok.Unknown);
        if (tok.Padding >= 0) w.Set("tokenizer.ggml.padding_token_id", (uint)tok.Padding);
        if (tok.AddBos is bool ab) w.Set("tokenizer.ggml.add_bos_token", ab);
        if (tok.AddEos is bool ae) w.Set("tokenizer.ggml.add_eos_token", ae);
        if (tok.AddSpacePrefix == false) w.Set("tokenizer.ggml.add_space_prefix", false);
        if (!string.IsNullOrEmpty(tok.ChatTemplate)) w.Set("tokenizer.chat_template", tok.ChatTemplate);
    }
}
