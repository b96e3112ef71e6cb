using EdgeLlm.Gguf;

namespace EdgeLlm.Generation;

/// <summary>How a byte-level BPE vocabulary splits text into words before merging (<c>tokenizer.ggml.pre</c>).</summary>
public enum PreTokenizerKind
{
    /// <summary>Not used (SentencePiece vocabularies).</summary>
    None,

    /// <summary>llama.cpp's "default": punctuation runs, then the GPT-2 rule, then digit runs, then groups of 3 ASCII digits.</summary>
    Default,

    /// <summary>The GPT-2 rule: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</summary>
    Gpt2,

    /// <summary>The Llama-3 rule: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</summary>
    Llama3,

    /// <summary>Qwen 2 (and Qwen 2.5/3): the Llama-3 rule with single digits (\p{N} instead of \p{N}{1,3}).</summary>
    Qwen2,

    /// <summary>SmolLM / StarCoder: every number character alone, then the GPT-2 rule.</summary>
    SmolLm,

    /// <summary>GPT-4o (Phi-4-mini, Llama 4): case-aware letter runs with trailing contractions, \p{N}{1,3}, and the Llama-3 whitespace rules.</summary>
    Gpt4o,
}

/// <summary>
/// Everything a tokenizer needs, read from a GGUF file's <c>tokenizer.ggml.*</c> metadata and validated.
/// Defaults for absent keys follow llama.cpp (llama_vocab::impl::load): SentencePiece gets BOS 1, EOS 2,
/// UNK 0, add_bos on, add_eos off, space prefix on; byte-level BPE gets BOS = EOS = 11, no BOS, no space
/// prefix (Llama-3 style pre-tokenizers turn add_bos on). Special ids of -1 or 0xFFFFFFFF mean "none".
/// </summary>
public sealed class Vocabulary
{
    /// <summary>The id used for "no such token".</summary>
    public const int None = -1;

    private readonly string[] _tokens;
    private readonly float[] _scores;
    private readonly TokenType[] _types;
    private readonly Dictionary<string, int> _ids;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _idsBySpan;
    private readonly bool[] _endOfGeneration;

    public TokenizerModel Model { get; }

    /// <summary>The raw <c>tokenizer.ggml.model</c> string ("llama" or "gpt2").</summary>
    public string ModelName { get; }

    /// <summary>The raw <c>tokenizer.ggml.pre</c> string ("default" when absent).</summary>
    public string Pre { get; }

    public PreTokenizerKind PreTokenizer { get; }

    /// <summary>BPE merges in rank order ("left right"); empty for SentencePiece.</summary>
    public IReadOnlyList<string> Merges { get; }

    public int Count => _tokens.Length;

    public int Bos { get; }
    public int Eos { get; }
    public int Unknown { get; }
    public int Padding { get; }

    /// <summary>End-of-turn token (<c>tokenizer.ggml.eot_token_id</c>, or found by its text as llama.cpp does).</summary>
    public int Eot { get; }

    /// <summary>End-of-message token (<c>tokenizer.ggml.eom_token_id</c>, or "&lt;|eom_id|&gt;").</summary>
    public int Eom { get; }

    public bool AddBos { get; }
    public bool AddEos { get; }
    public bool AddSpacePrefix { get; }

    /// <summary>BPE: a whole pre-tokenized word that is itself a token is emitted without merging (Llama 3).</summary>
    public bool IgnoreMerges { get; }

    /// <summary>Tokens that end generation: EOS, EOT, EOM and the end-of-turn texts llama.cpp recognises.</summary>
    public IReadOnlyList<int> EndOfGenerationIds { get; }

    /// <summary>Control, user-defined and unknown tokens, longest text first: the ones matched literally in text.</summary>
    internal int[] SpecialTokensByLength { get; }

    /// <summary>Where the metadata came from (for messages).</summary>
    public string Source { get; }

    private Vocabulary(string source, TokenizerModel model, string modelName, string pre, PreTokenizerKind preKind,
        string[] tokens, float[] scores, TokenType[] types, string[] merges, Dictionary<string, int> ids,
        int bos, int eos, int unk, int pad, int eot, int eom, bool addBos, bool addEos, bool addSpacePrefix, bool ignoreMerges,
        bool[] eog)
    {
        Source = source;
        Model = model;
        ModelName = modelName;
        Pre = pre;
        PreTokenizer = preKind;
        _tokens = tokens;
        _scores = scores;
        _types = types;
        Merges = merges;
        _ids = ids;
        _idsBySpan = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        Bos = bos;
        Eos = eos;
        Unknown = unk;
        Padding = pad;
        Eot = eot;
        Eom = eom;
        AddBos = addBos;
        AddEos = addEos;
        AddSpacePrefix = addSpacePrefix;
        IgnoreMerges = ignoreMerges;
        _endOfGeneration = eog;
        var eogList = new List<int>();
        for (int i = 0; i < eog.Length; i++) if (eog[i]) eogList.Add(i);
        EndOfGenerationIds = eogList;

        var special = new List<int>();
        for (int i = 0; i < types.Length; i++)
            if (types[i] is TokenType.Control or TokenType.UserDefined or TokenType.Unknown) special.Add(i);
        var specialArr = special.ToArray();
        // Longest text first, measured in UTF-8 bytes as llama.cpp does; ties by id so the order is deterministic.
        var bytes = new int[types.Length];
        foreach (int id in specialArr) bytes[id] = System.Text.Encoding.UTF8.GetByteCount(tokens[id]);
        Array.Sort(specialArr, (a, b) =>
        {
            int c = bytes[b].CompareTo(bytes[a]);
            return c != 0 ? c : a.CompareTo(b);
        });
        SpecialTokensByLength = specialArr;
    }

    public string Token(int id) => _tokens[id];
    public float Score(int id) => _scores[id];
    public TokenType Type(int id) => _types[id];

    public bool IsEndOfGeneration(int id) => (uint)id < (uint)_endOfGeneration.Length && _endOfGeneration[id];

    /// <summary>
    /// Whether <paramref name="id"/> ends a generation: an end-of-generation token of the vocabulary or one of the
    /// caller's <paramref name="stopTokens"/> (GenerateOptions.StopTokens). The one stop test of every generate loop.
    /// </summary>
    public bool EndsGeneration(int id, ReadOnlySpan<int> stopTokens) => IsEndOfGeneration(id) || stopTokens.Contains(id);

    /// <summary>The id of a token text (the last one when a text occurs twice, as llama.cpp), or <see cref="None"/>.</summary>
    public int Find(string text) => _ids.TryGetValue(text, out int id) ? id : None;

    /// <summary>Allocation-free lookup of a token text given as characters.</summary>
    public int Find(ReadOnlySpan<char> text) => _idsBySpan.TryGetValue(text, out int id) ? id : None;

    private static readonly string[] EotTexts =
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>",
        "<\uFF5Cend\u2581of\u2581sentence\uFF5C>", "<end_of_utterance>",
    ];

    private static readonly string[] EogTexts =
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
        "<|end_of_text|>", "<end_of_utterance>",
    ];

    /// <summary>Reads and validates the tokenizer metadata of an open GGUF file.</summary>
    public static Vocabulary FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        string src = file.Path;

        const string kModel = "tokenizer.ggml.model";
        string modelName = RequireString(file, kModel);
        TokenizerModel model = modelName switch
        {
            "llama" => TokenizerModel.SentencePiece,
            "gpt2" => TokenizerModel.Bpe,
            _ => throw new TokenizerException(src, kModel,
                $"unsupported tokenizer model \"{modelName}\" (EdgeLlm supports \"llama\" (SentencePiece) and \"gpt2\" (byte-level BPE))"),
        };

        const string kPre = "tokenizer.ggml.pre";
        string pre = OptionalString(file, kPre) ?? "default";

        const string kTokens = "tokenizer.ggml.tokens";
        var tokensValue = file.Get(kTokens) ?? throw new TokenizerException(src, kTokens, "required key is missing");
        if (tokensValue.Value is not string[] rawTokens)
            throw new TokenizerException(src, kTokens, $"expected an array of strings, found {Describe(tokensValue)}");
        int n = rawTokens.Length;
        if (n == 0) throw new TokenizerException(src, kTokens, "the vocabulary is empty");

        const string kScores = "tokenizer.ggml.scores";
        float[] scores;
        var scoresValue = file.Get(kScores);
        if (scoresValue is null)
        {
            if (model == TokenizerModel.SentencePiece) throw new TokenizerException(src, kScores, "required key is missing (SentencePiece merges by score)");
            scores = new float[n];
        }
        else
        {
            if (scoresValue.Value is not float[] s) throw new TokenizerException(src, kScores, $"expected an array of float32, found {Describe(scoresValue)}");
            if (s.Length != n) throw new TokenizerException(src, kScores, $"{s.Length} scores for {n} tokens");
            scores = s;
        }

        const string kTypes = "tokenizer.ggml.token_type";
        var types = new TokenType[n];
        var typesValue = file.Get(kTypes);
        if (typesValue is null)
        {
            Array.Fill(types, TokenType.Normal);
        }
        else
        {
            int[] t = file.GetIntArray(kTypes) ?? throw new TokenizerException(src, kTypes, $"expected an array of integers, found {Describe(typesValue)}");
            if (t.Length != n) throw new TokenizerException(src, kTypes, $"{t.Length} token types for {n} tokens");
            for (int i = 0; i < n; i++)
            {
                if ((uint)t[i] > (uint)TokenType.Byte) throw new TokenizerException(src, kTypes, $"token {i} has type {t[i]} (valid: 0 to 6)");
                types[i] = (TokenType)t[i];
            }
        }

        // Token texts; llama.cpp renames empty ones and lets a later duplicate win the text -> id map.
        var tokens = new string[n];
        var ids = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            string w = rawTokens[i];
            if (w.Length == 0) w = "[EMPTY_" + i.ToString(System.Globalization.CultureInfo.InvariantCulture) + "]";
            tokens[i] = w;
            ids[w] = i;
        }

        string[] merges = [];
        PreTokenizerKind preKind = PreTokenizerKind.None;
        int bos, eos, unk = None, pad = None;
        bool addBos, addEos = false, addSpacePrefix, ignoreMerges = false;
        if (model == TokenizerModel.SentencePiece)
        {
            bos = 1; eos = 2; unk = 0;
            addBos = true;
            addSpacePrefix = true;
        }
        else
        {
            const string kMerges = "tokenizer.ggml.merges";
            var mergesValue = file.Get(kMerges) ?? throw new TokenizerException(src, kMerges, "required key is missing (byte-level BPE needs merge ranks)");
            merges = mergesValue.Value as string[] ?? throw new TokenizerException(src, kMerges, $"expected an array of strings, found {Describe(mergesValue)}");
            bos = 11; eos = 11;
            addBos = false;
            addSpacePrefix = false;
            // The names llama.cpp's llama_vocab::impl::load accepts for these rules (and their flags).
            switch (pre)
            {
                case "default":
                    preKind = PreTokenizerKind.Default;
                    break;
                case "gpt-2" or "phi-2" or "jina-es" or "jina-de" or "gigachat" or "jina-v2-es" or "jina-v2-de"
                    or "a.x-4.0" or "mellum" or "mpt" or "olmo" or "jais" or "exaone4" or "trillion" or "granite-docling":
                    preKind = PreTokenizerKind.Gpt2;
                    break;
                case "gpt2":
                    // Not a llama.cpp name: EdgeLlm's converter wrote it before it used "gpt-2"; kept so those files load.
                    preKind = PreTokenizerKind.Gpt2;
                    break;
                case "llama3" or "llama-v3" or "llama-bpe" or "falcon3" or "falcon-h1" or "pixtral" or "midm-2.0" or "lfm2":
                    preKind = PreTokenizerKind.Llama3;
                    ignoreMerges = true;
                    addBos = true;
                    break;
                case "dbrx" or "smaug-bpe":
                    preKind = PreTokenizerKind.Llama3;
                    break;
                case "qwen2" or "deepseek-r1-qwen" or "megrez" or "stablelm2" or "hunyuan":
                    preKind = PreTokenizerKind.Qwen2;
                    break;
                case "smollm" or "starcoder" or "refact" or "command-r" or "codeshell" or "exaone" or "minerva-7b":
                    preKind = PreTokenizerKind.SmolLm;
                    break;
                case "gpt-4o" or "llama4":
                    preKind = PreTokenizerKind.Gpt4o;
                    break;
                default:
                    throw new TokenizerException(src, kPre,
                        $"unknown pre-tokenizer \"{pre}\" (EdgeLlm knows default, gpt-2, llama-bpe, qwen2, smollm, gpt-4o and their llama.cpp aliases)");
            }
        }
        // Defaults that do not exist in a tiny vocabulary are "none".
        if (bos >= n) bos = None;
        if (eos >= n) eos = None;
        if (unk >= n) unk = None;

        bos = OptionalId(file, "tokenizer.ggml.bos_token_id", n, bos);
        eos = OptionalId(file, "tokenizer.ggml.eos_token_id", n, eos);
        unk = OptionalId(file, "tokenizer.ggml.unknown_token_id", n, unk);
        pad = OptionalId(file, "tokenizer.ggml.padding_token_id", n, pad);
        int eot = OptionalId(file, "tokenizer.ggml.eot_token_id", n, None);
        int eom = OptionalId(file, "tokenizer.ggml.eom_token_id", n, None);

        addBos = OptionalBool(file, "tokenizer.ggml.add_bos_token") ?? addBos;
        addEos = OptionalBool(file, "tokenizer.ggml.add_eos_token") ?? addEos;
        addSpacePrefix = OptionalBool(file, "tokenizer.ggml.add_space_prefix") ?? addSpacePrefix;
        if (addBos && bos == None) throw new TokenizerException(src, "tokenizer.ggml.add_bos_token", "BOS is to be added but the vocabulary has no BOS token");
        if (addEos && eos == None) throw new TokenizerException(src, "tokenizer.ggml.add_eos_token", "EOS is to be added but the vocabulary has no EOS token");

        // llama.cpp finds EOT/EOM by their text when the keys are absent, and forces end-of-turn texts to control.
        if (eot == None)
            foreach (string t in EotTexts)
                if (ids.TryGetValue(t, out int id)) { eot = id; break; }
        if (eom == None && ids.TryGetValue("<|eom_id|>", out int eomId)) eom = eomId;
        var eog = new bool[n];
        foreach (string t in EogTexts)
            if (ids.TryGetValue(t, out int id)) { eog[id] = true; types[id] = TokenType.Control; }
        if (eot != None) types[eot] = TokenType.Control;
        if (eom != None) types[eom] = TokenType.Control;
        if (eos != None) eog[eos] = true;
        if (eot != None) eog[eot] = true;
        if (eom != None) eog[eom] = true;

        return new Vocabulary(src, model, modelName, pre, preKind, tokens, scores, types, merges, ids,
            bos, eos, unk, pad, eot, eom, addBos, addEos, addSpacePrefix, ignoreMerges, eog);
    }

    private static string Describe(GgufValue v) =>
        v.Type == GgufValueType.Array ? $"an array of {v.ElementType}" : v.Type.ToString();

    private static string RequireString(GgufFile f, string key)
    {
        var v = f.Get(key) ?? throw new TokenizerException(f.Path, key, "required key is missing");
        return v.Value as string ?? throw new TokenizerException(f.Path, key, $"expected a string, found {Describe(v)}");
    }

    private static string? OptionalString(GgufFile f, string key)
    {
        var v = f.Get(key);
        if (v is null) return null;
        return v.Value as string ?? throw new TokenizerException(f.Path, key, $"expected a string, found {Describe(v)}");
    }

    private static bool? OptionalBool(GgufFile f, string key)
    {
        var v = f.Get(key);
        if (v is null) return null;
        return v.Value is bool b ? b : throw new TokenizerException(f.Path, key, $"expected a bool, found {Describe(v)}");
    }

    private static int OptionalId(GgufFile f, string key, int count, int fallback)
    {
        var v = f.Get(key);
        if (v is null) return fallback;
        if (!v.TryGetInt64(out long id)) throw new TokenizerException(f.Path, key, $"expected an integer token id, found {Describe(v)}");
        if (id == -1 || id == uint.MaxValue) return None;
        if (id < 0 || id >= count) throw new TokenizerException(f.Path, key, $"token id {id} is outside the vocabulary (0 to {count - 1})");
        return (int)id;
    }
}
