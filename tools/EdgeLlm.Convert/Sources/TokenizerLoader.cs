using EdgeLlm.Gguf;

namespace EdgeLlm.Convert.Sources;

/// <summary>
/// Finds and reads a tokenizer in any supported form, picked by file name: SentencePiece <c>*.model</c>,
/// Hugging Face <c>tokenizer.json</c> (+ tokenizer_config.json), llama2.c <c>*.bin</c>, the tokenizer.* keys of
/// a <c>*.gguf</c>, or a Hugging Face directory holding one of the first two.
/// </summary>
public static class TokenizerLoader
{
    /// <param name="vocabSize">The model's vocabulary size (llama2.c tokenizers need it), or -1.</param>
    public static TokenizerData Load(string path, int vocabSize = -1)
    {
        try { return LoadAny(path, vocabSize); }
        catch (InvalidOperationException e) when (JsonFile.IsWrongJsonType(e))
        {
            throw new EdgeLlmException($"{path}: a JSON value has the wrong type for its key (a string where a number belongs, or the like)");
        }
    }

    private static TokenizerData LoadAny(string path, int vocabSize)
    {
        if (Directory.Exists(path)) return FromHfDirectory(path, null);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: tokenizer file not found", path);
        string ext = Path.GetExtension(path).ToLowerInvariant();
        return ext switch
        {
            ".model" => HfTokenizer.ApplyConfig(SentencePieceModel.Load(path).ToTokenizerData(), Path.GetDirectoryName(Path.GetFullPath(path))!),
            ".json" => HfTokenizer.LoadBpe(path, vocabSize, null, null),
            ".bin" => Llama2cTokenizer.Load(path, vocabSize),
            ".gguf" => FromGguf(path),
            _ => throw new EdgeLlmException($"{path}: unknown tokenizer format (expected tokenizer.model, tokenizer.json, a llama2.c .bin or a .gguf)"),
        };
    }

    /// <summary>tokenizer.model if present (as llama.cpp prefers), else tokenizer.json; config.json's special ids as a fallback.</summary>
    internal static TokenizerData FromHfDirectory(string dir, HfConfig? config)
    {
        string spm = Path.Combine(dir, "tokenizer.model");
        string json = Path.Combine(dir, "tokenizer.json");
        if (File.Exists(spm))
        {
            var data = SentencePieceModel.Load(spm).ToTokenizerData();
            if (config?.BosTokenId is int b && b < data.Tokens.Length) data = data with { Bos = b };
            if (config?.EosTokenId is int e && e < data.Tokens.Length) data = data with { Eos = e };
            return HfTokenizer.ApplyConfig(data, dir);
        }
        if (File.Exists(json)) return HfTokenizer.LoadBpe(json, config?.Params.Shape.Vocab ?? -1, config?.BosTokenId, config?.EosTokenId);
        throw new EdgeLlmException($"{dir}: no tokenizer.model or tokenizer.json (pass --tokenizer)");
    }

    /// <summary>The tokenizer.* keys of a GGUF file (e.g. llama.cpp's vocab-only files).</summary>
    public static TokenizerData FromGguf(string path)
    {
        using var f = GgufFile.Open(path);
        return FromGguf(f);
    }

    internal static TokenizerData FromGguf(GgufFile f)
    {
        string model = f.GetString("tokenizer.ggml.model") ?? throw new EdgeLlmException($"{f.Path}: no tokenizer (metadata 'tokenizer.ggml.model' is missing)");
        var tokens = f.GetArray<string>("tokenizer.ggml.tokens") ?? throw new EdgeLlmException($"{f.Path}: metadata 'tokenizer.ggml.tokens' is missing or not a string array");
        var types = f.GetIntArray("tokenizer.ggml.token_type") ?? Enumerable.Repeat(1, tokens.Length).ToArray();
        int Id(string key) => f.GetInt(key) is long v && v >= 0 && v < tokens.Length ? (int)v : -1;
        return new TokenizerData
        {
            Model = model,
            Pre = f.GetString("tokenizer.ggml.pre"),
            Tokens = tokens,
            Scores = f.GetArray<float>("tokenizer.ggml.scores"),
            TokenTypes = types,
            Merges = f.GetArray<string>("tokenizer.ggml.merges"),
            Bos = Id("tokenizer.ggml.bos_token_id"),
            Eos = Id("tokenizer.ggml.eos_token_id"),
            Unknown = Id("tokenizer.ggml.unknown_token_id"),
            Padding = Id("tokenizer.ggml.padding_token_id"),
            AddBos = f.GetBool("tokenizer.ggml.add_bos_token"),
            AddEos = f.GetBool("tokenizer.ggml.add_eos_token"),
            ChatTemplate = f.GetString("tokenizer.chat_template"),
            AddSpacePrefix = f.GetBool("tokenizer.ggml.add_space_prefix"),
        };
    }
}
