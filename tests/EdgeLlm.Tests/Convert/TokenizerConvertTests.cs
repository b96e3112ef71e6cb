using System.Text;
using EdgeLlm.Convert;
using EdgeLlm.Convert.Sources;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Convert;

/// <summary>Tokenizer files turned into GGUF tokenizer metadata, against llama.cpp's own conversions.</summary>
public class TokenizerConvertTests
{
    /// <summary>Writes a vocab-only GGUF from tokenizer data (the converter's own tokenizer keys) and opens it.</summary>
    private static GgufFile WriteVocabOnly(TokenizerData tok, int vocab)
    {
        var w = new GgufWriter();
        w.Set("general.architecture", "llama");
        GgufOutput.AddTokenizer(w, tok, vocab);
        string path = TestPaths.TempFile("vocab.gguf");
        w.Write(path);
        return GgufFile.Open(path);
    }

    [Fact]
    public void Llama2TokenizerModelEqualsLlamaCppVocabTokenByToken()
    {
        var spm = SentencePieceModel.Load(TestPaths.Data("llama2-tokenizer.model"));
        Assert.Equal(2, spm.ModelType); // BPE
        Assert.True(spm.ByteFallback);
        Assert.True(spm.AddDummyPrefix);
        Assert.False(spm.RemoveExtraWhitespaces);
        Assert.Equal(-1, spm.PadId);

        using var got = WriteVocabOnly(spm.ToTokenizerData(), 32000);
        using var want = GgufFile.Open(TestPaths.Data("ggml-vocab-llama-spm.gguf"));
        string[] wt = want.GetArray<string>("tokenizer.ggml.tokens")!, gt = got.GetArray<string>("tokenizer.ggml.tokens")!;
        float[] ws = want.GetArray<float>("tokenizer.ggml.scores")!, gs = got.GetArray<float>("tokenizer.ggml.scores")!;
        int[] wy = want.GetIntArray("tokenizer.ggml.token_type")!, gy = got.GetIntArray("tokenizer.ggml.token_type")!;
        Assert.Equal(32000, gt.Length);
        for (int i = 0; i < wt.Length; i++)
        {
            Assert.True(wt[i] == gt[i], $"token {i}: '{gt[i]}' vs llama.cpp '{wt[i]}'");
            Assert.True(BitConverter.SingleToInt32Bits(ws[i]) == BitConverter.SingleToInt32Bits(gs[i]), $"score {i}: {gs[i]} vs {ws[i]}");
            Assert.True(wy[i] == gy[i], $"type {i}: {gy[i]} vs {wy[i]}");
        }
        foreach (string key in new[] { "tokenizer.ggml.model", "tokenizer.ggml.pre" })
            Assert.Equal(want.GetString(key), got.GetString(key));
        foreach (string key in new[] { "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id" })
            Assert.Equal(want.GetInt(key), got.GetInt(key));
        Assert.Null(got.Get("tokenizer.ggml.padding_token_id"));
        Assert.Equal(want.GetBool("tokenizer.ggml.add_bos_token"), got.GetBool("tokenizer.ggml.add_bos_token"));
        Assert.Equal(want.GetBool("tokenizer.ggml.add_eos_token"), got.GetBool("tokenizer.ggml.add_eos_token"));
        Assert.Null(got.Get("tokenizer.ggml.add_space_prefix"));
    }

    [Fact]
    public void Llama2cTokenizerBinEqualsConvertLlama2cOutput()
    {
        var tok = TokenizerLoader.Load(ConvertTestKit.Tok512, 512);
        using var want = GgufFile.Open(TestPaths.Stories260K);
        Assert.Equal(want.GetArray<string>("tokenizer.ggml.tokens"), tok.Tokens);
        Assert.Equal(want.GetArray<float>("tokenizer.ggml.scores"), tok.Scores);
        Assert.Equal(want.GetIntArray("tokenizer.ggml.token_type"), tok.TokenTypes);
        Assert.Equal((1, 2, 0), (tok.Bos, tok.Eos, tok.Unknown));
    }

    [Fact]
    public void Llama2cTokenizerOfTheWrongSizeIsRejected()
    {
        var e = Assert.Throws<EdgeLlmException>(() => TokenizerLoader.Load(ConvertTestKit.Tok512, 500));
        Assert.Contains("does not match the model's vocab_size", e.Message);
        e = Assert.Throws<EdgeLlmException>(() => TokenizerLoader.Load(ConvertTestKit.Tok512, 600));
        Assert.Contains("truncated at token 512", e.Message);
    }

    [Fact]
    public void TruncatedSentencePieceModelIsRejected()
    {
        byte[] b = File.ReadAllBytes(TestPaths.Data("llama2-tokenizer.model"));
        string path = TestPaths.TempFile("cut.model");
        File.WriteAllBytes(path, b[..1000]);
        var e = Assert.Throws<EdgeLlmException>(() => SentencePieceModel.Load(path));
        Assert.Contains("not a SentencePiece model", e.Message);
        Assert.Contains("runs past the end", e.Message);
    }

    /// <summary>A hand-written byte-level BPE tokenizer.json with both merge spellings, added tokens and a config.</summary>
    [Fact]
    public void TokenizerJsonBecomesGpt2Vocabulary()
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        string llama3Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), $$$"""
            {
              "added_tokens": [
                {"id": 6, "content": "<|begin_of_text|>", "special": true},
                {"id": 7, "content": "<|end|>", "special": false},
                {"id": 8, "content": "▁hello", "special": false}
              ],
              "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "{{{llama3Regex}}}"}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
              "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
              "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġa": 4, "c": 5}, "merges": ["a b", ["Ġ", "a"]]}
            }
            """, Encoding.UTF8);
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """
            {"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|end|>"}, "chat_template": "{{ messages }}"}
            """);
        var tok = TokenizerLoader.Load(Path.Combine(dir, "tokenizer.json"), 10);
        Assert.Equal("gpt2", tok.Model);
        Assert.Equal("llama-bpe", tok.Pre);
        Assert.Equal(["a", "b", "ab", "Ġ", "Ġa", "c", "<|begin_of_text|>", "<|end|>", " hello", "[PAD9]"], tok.Tokens);
        Assert.Equal([1, 1, 1, 1, 1, 1, 3, 3, 4, 5], tok.TokenTypes); // <|end|> is not flagged special but looks it
        Assert.Equal(["a b", "Ġ a"], tok.Merges!);
        Assert.Null(tok.Scores);
        Assert.Equal((6, 7), (tok.Bos, tok.Eos));
        Assert.True(tok.AddBos);
        Assert.Equal("{{ messages }}", tok.ChatTemplate);

        using var f = WriteVocabOnly(tok, 10);
        Assert.Equal("gpt2", f.GetString("tokenizer.ggml.model"));
        Assert.Equal(["a b", "Ġ a"], f.GetArray<string>("tokenizer.ggml.merges")!);
        Assert.Equal("{{ messages }}", f.GetString("tokenizer.chat_template"));
        Assert.Null(f.Get("tokenizer.ggml.scores"));
    }

    [Fact]
    public void TokenizerLongerThanTheModelVocabularyIsAnError()
    {
        var w = new GgufWriter();
        var e = Assert.Throws<EdgeLlmException>(() => GgufOutput.AddTokenizer(w, ConvertTestKit.TinyVocab(12), 10));
        Assert.Contains("12 tokens", e.Message);
    }

    [Fact]
    public void ShortVocabularyIsPaddedLikeLlamaCpp()
    {
        using var f = WriteVocabOnly(ConvertTestKit.TinyVocab(5), 7);
        Assert.Equal(["<unk>", "<s>", "</s>", "t3", "t4", "[PAD5]", "[PAD6]"], f.GetArray<string>("tokenizer.ggml.tokens")!);
        Assert.Equal([2, 3, 3, 1, 1, 5, 5], f.GetIntArray("tokenizer.ggml.token_type")!);
        Assert.Equal(-10000f, f.GetArray<float>("tokenizer.ggml.scores")![6]);
    }
}
