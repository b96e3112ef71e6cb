using EdgeLlm.Gguf;

namespace EdgeLlm.ModelGen;

/// <summary>
/// The tokenizer metadata a generated model carries, so `edgellm run` works on it: every <c>tokenizer.*</c>
/// key copied from a GGUF file (by default the Llama-2 32000-token SentencePiece vocab in the repo's
/// tests/data/ggml-vocab-llama-spm.gguf when the vocab is 32000), or a synthetic SentencePiece vocab
/// (&lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, 256 byte tokens, single characters, letter pairs, filler pieces).
/// </summary>
public sealed class VocabSource
{
    public const string LlamaSpmFile = "ggml-vocab-llama-spm.gguf";
    public const int LlamaSpmSize = 32000;
    public const int MinSyntheticVocab = 259;

    public IReadOnlyList<(string Key, GgufValue Value)> Keys { get; }

    /// <summary>Where the tokens came from: a file path or "synthetic".</summary>
    public string Origin { get; }

    private VocabSource(IReadOnlyList<(string, GgufValue)> keys, string origin)
    {
        Keys = keys;
        Origin = origin;
    }

    /// <summary>
    /// The vocab for a model of <paramref name="vocab"/> tokens: from <paramref name="file"/> if given (its token
    /// count must match), else the repo's Llama-2 vocab when vocab is 32000 and that file can be found, else synthetic.
    /// </summary>
    public static VocabSource For(int vocab, string? file)
    {
        if (file is null && vocab == LlamaSpmSize) file = FindLlamaSpm();
        return file is null ? Synthetic(vocab) : FromFile(file, vocab);
    }

    public static VocabSource FromFile(string path, int vocab)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: tokenizer file not found");
        using var f = GgufFile.Open(path);
        var keys = new List<(string, GgufValue)>();
        foreach (string k in f.Keys)
            if (k.StartsWith("tokenizer.", StringComparison.Ordinal)) keys.Add((k, f.Get(k)!));
        var tokens = f.Get("tokenizer.ggml.tokens");
        if (tokens is null) throw new InvalidDataException($"{path}: no tokenizer.ggml.tokens to copy");
        if (tokens.Count != vocab)
            throw new InvalidDataException($"{path}: has {tokens.Count} tokens but the model's vocab is {vocab} (use --vocab {tokens.Count})");
        return new VocabSource(keys, path);
    }

    /// <summary>tests/data/ggml-vocab-llama-spm.gguf above the working directory or the program, or null.</summary>
    public static string? FindLlamaSpm()
    {
        foreach (string start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
            for (string? d = start; d is not null; d = Path.GetDirectoryName(d))
            {
                string p = Path.Combine(d, "tests", "data", LlamaSpmFile);
                if (File.Exists(p)) return p;
            }
        return null;
    }

    /// <summary>
    /// The tokenizer.* keys of a SentencePiece ("llama") vocabulary with &lt;unk&gt; 0, &lt;s&gt; 1 and &lt;/s&gt; 2, in
    /// the order llama.cpp writes them; <paramref name="pre"/> and the add_bos / add_eos flags only when given.
    /// </summary>
    public static List<(string Key, GgufValue Value)> SentencePieceKeys(string[] tokens, float[] scores, int[] types,
        string? pre = null, bool? addBos = null, bool? addEos = null)
    {
        var keys = new List<(string, GgufValue)> { ("tokenizer.ggml.model", GgufValue.Of("llama")) };
        if (pre is not null) keys.Add(("tokenizer.ggml.pre", GgufValue.Of(pre)));
        keys.Add(("tokenizer.ggml.tokens", GgufValue.Of(tokens)));
        keys.Add(("tokenizer.ggml.scores", GgufValue.Of(scores)));
        keys.Add(("tokenizer.ggml.token_type", GgufValue.Of(types)));
        keys.Add(("tokenizer.ggml.bos_token_id", GgufValue.Of(1u)));
        keys.Add(("tokenizer.ggml.eos_token_id", GgufValue.Of(2u)));
        keys.Add(("tokenizer.ggml.unknown_token_id", GgufValue.Of(0u)));
        if (addBos is bool b) keys.Add(("tokenizer.ggml.add_bos_token", GgufValue.Of(b)));
        if (addEos is bool e) keys.Add(("tokenizer.ggml.add_eos_token", GgufValue.Of(e)));
        return keys;
    }

    public static VocabSource Synthetic(int vocab)
    {
        if (vocab < MinSyntheticVocab)
            throw new ArgumentException($"a synthetic vocab needs at least {MinSyntheticVocab} tokens (3 specials + 256 bytes), got {vocab}");
        var tokens = new string[vocab];
        var scores = new float[vocab];
        var types = new int[vocab];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        int n = 0;
        void Add(string piece, int type)
        {
            if (n >= vocab || !seen.Add(piece)) return;
            tokens[n] = piece;
            types[n] = type;
            scores[n] = type == 1 ? -n : 0f;
            n++;
        }
        Add("<unk>", 2);
        Add("<s>", 3);
        Add("</s>", 3);
        for (int b = 0; b < 256; b++) Add($"<0x{b:X2}>", 6);
        Add("\u2581", 1);
        for (char c = '!'; c <= '~'; c++) Add(c.ToString(), 1);
        for (char c = 'a'; c <= 'z'; c++) Add("\u2581" + c, 1);
        for (char c = 'A'; c <= 'Z'; c++) Add("\u2581" + c, 1);
        for (char a = 'a'; a <= 'z'; a++)
            for (char b = 'a'; b <= 'z'; b++) Add(a.ToString() + b, 1);
        for (int i = 0; n < vocab; i++) Add("\u2581w" + i.ToString(System.Globalization.CultureInfo.InvariantCulture), 1);
        var keys = SentencePieceKeys(tokens, scores, types, pre: "default", addBos: true, addEos: false);
        return new VocabSource(keys, "synthetic");
    }
}
