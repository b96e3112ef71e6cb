using EdgeLlm.Generation;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Generation;

public class VocabularyTests
{
    /// <summary>Writes a vocab-only GGUF with the given metadata and opens its vocabulary.</summary>
    internal static Vocabulary Load(Action<GgufWriter> setup)
    {
        var w = new GgufWriter();
        setup(w);
        string path = TestPaths.TempFile("vocab.gguf");
        w.Write(path);
        using var f = GgufFile.Open(path);
        return Vocabulary.FromGguf(f);
    }

    private static void Spm(GgufWriter w)
    {
        w.Set("tokenizer.ggml.model", "llama")
         .Set("tokenizer.ggml.tokens", new[] { "<unk>", "<s>", "</s>", "▁a", "a" })
         .Set("tokenizer.ggml.scores", new[] { 0f, 0f, 0f, -1f, -2f })
         .Set("tokenizer.ggml.token_type", new[] { 2, 3, 3, 1, 1 });
    }

    [Fact]
    public void SentencePieceDefaultsFollowLlamaCpp()
    {
        var v = Load(Spm);
        Assert.Equal(TokenizerModel.SentencePiece, v.Model);
        Assert.Equal((1, 2, 0, Vocabulary.None), (v.Bos, v.Eos, v.Unknown, v.Padding));
        Assert.True(v.AddBos);
        Assert.False(v.AddEos);
        Assert.True(v.AddSpacePrefix);
        Assert.Equal("default", v.Pre);
        Assert.Equal(3, v.Find("▁a"));
        Assert.Equal(Vocabulary.None, v.Find("zz"));
    }

    [Fact]
    public void KeysOverrideDefaults()
    {
        var v = Load(w =>
        {
            Spm(w);
            w.Set("tokenizer.ggml.add_bos_token", false).Set("tokenizer.ggml.add_eos_token", true)
             .Set("tokenizer.ggml.add_space_prefix", false).Set("tokenizer.ggml.eos_token_id", 4u)
             .Set("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu).Set("tokenizer.ggml.eot_token_id", 3u);
        });
        Assert.False(v.AddBos);
        Assert.True(v.AddEos);
        Assert.False(v.AddSpacePrefix);
        Assert.Equal(4, v.Eos);
        Assert.Equal(Vocabulary.None, v.Padding);
        Assert.Equal(3, v.Eot);
        Assert.Equal(TokenType.Control, v.Type(3)); // an end-of-turn token is a control token
        Assert.Equal(new[] { 3, 4 }, v.EndOfGenerationIds);
    }

    [Fact]
    public void EndOfTurnIsFoundByText()
    {
        var v = Load(w => w.Set("tokenizer.ggml.model", "gpt2").Set("tokenizer.ggml.pre", "llama-bpe")
            .Set("tokenizer.ggml.tokens", new[] { "a", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>" })
            .Set("tokenizer.ggml.merges", Array.Empty<string>())
            .Set("tokenizer.ggml.bos_token_id", 1u).Set("tokenizer.ggml.eos_token_id", 2u));
        Assert.Equal(3, v.Eot);
        Assert.True(v.IsEndOfGeneration(2));
        Assert.True(v.IsEndOfGeneration(3));
        Assert.False(v.IsEndOfGeneration(0));
        Assert.True(v.AddBos);         // Llama-3 pre-tokenizers add BOS
        Assert.True(v.IgnoreMerges);
        Assert.False(v.AddSpacePrefix);
        Assert.Equal(PreTokenizerKind.Llama3, v.PreTokenizer);
    }

    [Theory]
    [InlineData("model-type", "tokenizer.ggml.model", "expected a string, found Int32")]
    [InlineData("missing-tokens", "tokenizer.ggml.tokens", "required key is missing")]
    [InlineData("bert", "tokenizer.ggml.model", "unsupported tokenizer model \"bert\"")]
    [InlineData("scores-length", "tokenizer.ggml.scores", "4 scores for 5 tokens")]
    [InlineData("types-length", "tokenizer.ggml.token_type", "6 token types for 5 tokens")]
    [InlineData("bad-type", "tokenizer.ggml.token_type", "token 4 has type 9")]
    [InlineData("bos-range", "tokenizer.ggml.bos_token_id", "token id 5 is outside the vocabulary (0 to 4)")]
    [InlineData("no-merges", "tokenizer.ggml.merges", "required key is missing")]
    [InlineData("bad-pre", "tokenizer.ggml.pre", "unknown pre-tokenizer \"qwen9\"")]
    [InlineData("tokens-type", "tokenizer.ggml.tokens", "expected an array of strings")]
    public void BadMetadataFailsWithAOneLineMessageNamingTheKey(string problem, string key, string message)
    {
        var e = Assert.Throws<TokenizerException>(() => Load(w =>
        {
            if (problem == "missing-tokens")
            {
                w.Set("tokenizer.ggml.model", "llama");
                return;
            }
            Spm(w);
            switch (problem)
            {
                case "model-type": w.Set("tokenizer.ggml.model", GgufValue.Of(1)); break;
                case "bert": w.Set("tokenizer.ggml.model", "bert"); break;
                case "scores-length": w.Set("tokenizer.ggml.scores", new[] { 0f, 0f, 0f, 0f }); break;
                case "types-length": w.Set("tokenizer.ggml.token_type", new[] { 1, 1, 1, 1, 1, 1 }); break;
                case "bad-type": w.Set("tokenizer.ggml.token_type", new[] { 2, 3, 3, 1, 9 }); break;
                case "bos-range": w.Set("tokenizer.ggml.bos_token_id", 5u); break;
                case "no-merges": w.Set("tokenizer.ggml.model", "gpt2"); break;
                case "bad-pre": w.Set("tokenizer.ggml.model", "gpt2").Set("tokenizer.ggml.merges", new[] { "a b" }).Set("tokenizer.ggml.pre", "qwen9"); break;
                case "tokens-type": w.Set("tokenizer.ggml.tokens", new[] { 1, 2, 3, 4, 5 }); break;
            }
        }));
        Assert.Equal(key, e.Key);
        Assert.Contains(message, e.Message);
        Assert.Contains(key, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
