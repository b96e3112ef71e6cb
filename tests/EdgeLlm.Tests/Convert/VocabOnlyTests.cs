using System.Text;
using System.Text.Json;
using EdgeLlm.Convert.Sources;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// tokenizer.json -> tokenizer.ggml.pre as llama.cpp names the pre-tokenizers, the SentencePiece vocabulary of a
/// byte_fallback tokenizer.json, and the --vocab-only command with the files it writes read back by edgellm.
/// </summary>
public class VocabOnlyTests
{
    // The split regexes exactly as the models' tokenizer.json files spell them.
    private const string Llama3 = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Qwen2 = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Gpt4o = @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static string Split(string regex) => $$"""
        {"type": "Sequence", "pretokenizers": [
          {"type": "Split", "pattern": {"Regex": {{JsonSerializer.Serialize(regex)}}}, "behavior": "Isolated", "invert": false},
          {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}
        """;

    private const string SmolLm = """
        {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
          {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]}
        """;

    private static string WriteBpeJson(string? preTokenizer)
    {
        string path = TestPaths.TempFile("tokenizer.json");
        string pre = preTokenizer is null ? "" : $"\"pre_tokenizer\": {preTokenizer},";
        File.WriteAllText(path, $$"""
            { {{pre}}
              "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3}, "merges": ["a b"]} }
            """, Encoding.UTF8);
        return path;
    }

    public static TheoryData<string?, string> PreCases => new()
    {
        { Split(Llama3), "llama-bpe" },
        { Split(Qwen2), "qwen2" },
        { Split(Gpt4o), "gpt-4o" },
        { Split(Gpt2), "gpt-2" },
        { SmolLm, "smollm" },
        { """{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}""", "gpt-2" },
        { null, "default" },
    };

    [Theory]
    [MemberData(nameof(PreCases))]
    public void PreTokenizerIsNamedAsLlamaCppNamesIt(string? preTokenizer, string expected)
    {
        var tok = TokenizerLoader.Load(WriteBpeJson(preTokenizer));
        Assert.Equal("gpt2", tok.Model);
        Assert.Equal(expected, tok.Pre);
    }

    [Fact]
    public void AnUnknownPreTokenizerIsAOneLineErrorNamingTheKey()
    {
        string path = WriteBpeJson(Split(@"\p{L}+|\s+|."));
        var e = Assert.Throws<EdgeLlmException>(() => TokenizerLoader.Load(path));
        Assert.Contains("'pre_tokenizer'", e.Message);
        Assert.Contains(@"\p{L}+|\s+|.", e.Message);
        Assert.Contains(path, e.Message);
        Assert.DoesNotContain('\n', e.Message);

        string output = TestPaths.TempFile("bad.gguf");
        var r = ConvertTestKit.ConvertCliRun("--vocab-only", path, "-o", output);
        Assert.Equal(1, r.ExitCode);
        Assert.Single(r.Stderr.TrimEnd('\n').Split('\n'));
        Assert.Contains("pre_tokenizer", r.Stderr);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void EdgellmRefusesAnUnknownPreTokenizerInAGgufWithOneLineNamingTheKey()
    {
        var w = new GgufWriter().Set("general.architecture", "llama")
            .Set("tokenizer.ggml.model", "gpt2").Set("tokenizer.ggml.pre", "qwen9")
            .Set("tokenizer.ggml.tokens", new[] { "a", "b" }).Set("tokenizer.ggml.merges", new[] { "a b" });
        string path = TestPaths.TempFile("qwen9.gguf");
        w.Write(path);
        var r = CliRunner.InProcess("tokenize", "-m", path, "-p", "ab");
        Assert.Equal(1, r.ExitCode);
        Assert.Single(r.Stderr.TrimEnd('\n').Split('\n'));
        Assert.Contains("tokenizer.ggml.pre", r.Stderr);
        Assert.Contains("unknown pre-tokenizer \"qwen9\"", r.Stderr);
    }

    /// <summary>
    /// A SentencePiece model exported as tokenizer.json (byte_fallback, Llama-2/Phi-3 style normalizer that prepends
    /// "▁"): a "llama" vocabulary whose scores follow the merge ranks, byte and unknown tokens typed, and a space prefix.
    /// </summary>
    [Fact]
    public void ByteFallbackTokenizerJsonBecomesSentencePieceVocabulary()
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), """
            {
              "added_tokens": [
                {"id": 0, "content": "<unk>", "special": true},
                {"id": 1, "content": "<s>", "special": true},
                {"id": 2, "content": "</s>", "special": true},
                {"id": 10, "content": "▁▁", "special": false}
              ],
              "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
              "pre_tokenizer": null,
              "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
              "model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>",
                "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x41>": 3, "▁": 4, "a": 5, "b": 6, "ab": 7, "▁ab": 8, "▁a": 9, "▁▁": 10},
                "merges": [["a", "b"], ["▁", "ab"], ["▁", "a"], ["▁a", "b"]]}
            }
            """, Encoding.UTF8);
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}""");

        string output = Path.Combine(dir, "vocab.gguf");
        var r = ConvertTestKit.ConvertCliRun("--vocab-only", dir, "-o", output);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var f = GgufFile.Open(output);
        Assert.Empty(f.Tensors);
        Assert.Equal("llama", f.GetString("tokenizer.ggml.model"));
        Assert.Equal([2, 3, 3, 6, 1, 1, 1, 1, 1, 1, 4], f.GetIntArray("tokenizer.ggml.token_type")!);
        // ab is made by merge 0, ▁ab by merge 1 (and 3), ▁a by merge 2; single characters by none (below all merges);
        // added tokens -1000 as llama.cpp's converter sets them.
        Assert.Equal([-1000f, -1000f, -1000f, 0f, -5f, -5f, -5f, -1f, -2f, -3f, -1000f], f.GetArray<float>("tokenizer.ggml.scores")!);
        Assert.Equal("  ", f.GetArray<string>("tokenizer.ggml.tokens")![10]); // user-defined "▁▁" written with spaces
        Assert.Equal((1L, 2L, 0L), (f.GetInt("tokenizer.ggml.bos_token_id"), f.GetInt("tokenizer.ggml.eos_token_id"), f.GetInt("tokenizer.ggml.unknown_token_id")));
        Assert.True(f.GetBool("tokenizer.ggml.add_bos_token"));
        Assert.Null(f.Get("tokenizer.ggml.add_space_prefix")); // the default (true) for SentencePiece

        var tok = Tokenizer.FromGguf(f);
        // "ab" -> "▁ab": (a,b) scores -1, (▁,a) -3: "ab" first, then (▁,ab) -2 -> [▁ab]. HF's BPE merges the same way.
        Assert.Equal([8], tok.Encode("ab", addBos: false));
        // "A" has no piece: byte fallback <0x41> after "▁".
        Assert.Equal([1, 4, 3], tok.Encode("A", addBos: true));
        // Two spaces are the user-defined token, cut out of the text before merging; the text after it gets the
        // space prefix again, as llama.cpp does after any token cut out of the text.
        Assert.Equal([8, 10, 9], tok.Encode("ab  a", addBos: false));
    }

    public static TheoryData<string, string, bool> SpacePrefixCases => new()
    {
        // Gemma: spaces become "▁" but nothing is put in front.
        { """{"type": "Replace", "pattern": {"String": " "}, "content": "▁"}""", "null", false },
        // Llama 2 / Phi-3 / Mistral: Prepend("▁") then Replace.
        { """{"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}""", "null", true },
        // Newer exports: no normalizer, a Metaspace pre-tokenizer that prepends on the first piece, or never.
        { "null", """{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}""", true },
        { "null", """{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": false}""", false },
    };

    [Theory]
    [MemberData(nameof(SpacePrefixCases))]
    public void SpacePrefixFollowsTheNormalizerOrMetaspace(string normalizer, string preTokenizer, bool prefix)
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), $$"""
            { "normalizer": {{normalizer}}, "pre_tokenizer": {{preTokenizer}},
              "model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>",
                "vocab": {"<unk>": 0, "▁": 1, "a": 2, "▁a": 3}, "merges": [["▁", "a"]]} }
            """, Encoding.UTF8);
        string output = Path.Combine(dir, "vocab.gguf");
        var r = ConvertTestKit.ConvertCliRun("--vocab-only", Path.Combine(dir, "tokenizer.json"), "-o", output);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var f = GgufFile.Open(output);
        Assert.Equal(prefix ? null : false, f.GetBool("tokenizer.ggml.add_space_prefix"));
        // "a" is "▁a" with the prefix, "a" without.
        Assert.Equal(prefix ? [3] : [2], Tokenizer.FromGguf(f).Encode("a", addBos: false));
    }

    [Fact]
    public void VocabOnlyCommandLineMistakes()
    {
        var r = ConvertTestKit.ConvertCliRun("--vocab-only", "-o", TestPaths.TempFile("v.gguf"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("missing INPUT (tokenizer.json", r.Stderr);
        r = ConvertTestKit.ConvertCliRun("--vocab-only", "x.json", "--tokenizer", "y.json", "-o", TestPaths.TempFile("v.gguf"));
        Assert.Equal(2, r.ExitCode);
        r = ConvertTestKit.ConvertCliRun("--vocab-only", TestPaths.TempFile("none.json"), "-o", TestPaths.TempFile("v.gguf"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("none.json", r.Stderr);
    }
}
