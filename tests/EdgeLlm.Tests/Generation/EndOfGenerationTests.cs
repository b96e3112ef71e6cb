using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Tests.Model;

namespace EdgeLlm.Tests.Generation;

/// <summary>
/// Generation stops at the vocabulary's end-of-generation set, built as llama.cpp builds it: EOS, the
/// eot/eom ids of tokenizer.ggml.eot_token_id / eom_token_id, and the known end-of-turn texts. A random model
/// is run greedily once to learn its first generated token T; the same model (same weights) is then written
/// with T renamed or named by a key, and must stop before emitting T.
/// </summary>
public class EndOfGenerationTests
{
    private static readonly RandomModelSpec Spec = new() { Vocab = 300, ContextLength = 64, Seed = 77 };
    private static readonly int[] Prompt = [1, 40, 41, 42, 43];

    private static readonly Lazy<(int Token, string[] Tokens, int[] Types)> First = new(() =>
    {
        string path = RandomModel.Write(Spec);
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 1 });
        var g = new Generator(model, Tokenizer.FromGguf(model.File));
        var stats = g.Generate(Prompt, new GenerateOptions { MaxTokens = 2, Sampler = SamplerOptions.Greedy, IgnoreEos = true }, _ => true);
        Assert.Equal(2, stats.GeneratedTokens);
        int token = g.CachedTokens[Prompt.Length];
        return (token, model.File.GetArray<string>("tokenizer.ggml.tokens")!, model.File.GetIntArray("tokenizer.ggml.token_type")!);
    });

    private static GenerationStats Run(GenerateOptions o, params (string Key, GgufValue Value)[] overrides)
    {
        string path = RandomModel.Write(Spec with { Overrides = overrides });
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 1 });
        return new Generator(model, Tokenizer.FromGguf(model.File)).Generate(Prompt, o, _ => true);
    }

    private static readonly GenerateOptions Greedy8 = new() { MaxTokens = 8, Sampler = SamplerOptions.Greedy };

    /// <summary>The first generated token renamed to <paramref name="text"/>, as a normal token.</summary>
    private static (string, GgufValue)[] Renamed(string text)
    {
        var (t, tokens, types) = First.Value;
        Assert.True(t > 2, $"the first generated token is {t}, a special one: pick another seed");
        var renamed = (string[])tokens.Clone();
        renamed[t] = text;
        var retyped = (int[])types.Clone();
        retyped[t] = (int)TokenType.Normal;
        return [("tokenizer.ggml.tokens", GgufValue.Of(renamed)), ("tokenizer.ggml.token_type", GgufValue.Of(retyped))];
    }

    [Theory]
    [InlineData("<|eot_id|>")]
    [InlineData("<|im_end|>")]
    [InlineData("<end_of_turn>")]
    [InlineData("<|end|>")]
    [InlineData("<|endoftext|>")]
    [InlineData("<|eom_id|>")]
    [InlineData("<|end_of_text|>")]
    public void StopsAtAKnownEndOfTurnText(string text)
    {
        var stats = Run(Greedy8, Renamed(text));
        Assert.Equal(StopReason.EndOfGeneration, stats.Stop);
        Assert.Equal(0, stats.GeneratedTokens);
    }

    [Fact]
    public void AnOrdinaryTextDoesNotStop()
    {
        var stats = Run(Greedy8, Renamed("<|not_an_end|>"));
        Assert.Equal(StopReason.TokenLimit, stats.Stop);
        Assert.Equal(8, stats.GeneratedTokens);
    }

    [Theory]
    [InlineData("tokenizer.ggml.eot_token_id")]
    [InlineData("tokenizer.ggml.eom_token_id")]
    [InlineData("tokenizer.ggml.eos_token_id")]
    public void StopsAtTheTokenAKeyNames(string key)
    {
        var stats = Run(Greedy8, (key, GgufValue.Of((uint)First.Value.Token)));
        Assert.Equal(StopReason.EndOfGeneration, stats.Stop);
        Assert.Equal(0, stats.GeneratedTokens);
    }

    [Fact]
    public void IgnoreEosGoesPastTheEndToken()
    {
        var stats = Run(Greedy8 with { IgnoreEos = true }, Renamed("<|im_end|>"));
        Assert.Equal(StopReason.TokenLimit, stats.Stop);
        Assert.Equal(8, stats.GeneratedTokens);
    }

    [Fact]
    public void ChatStopTokensStopTooAndAnEndTokenPrintsNothing()
    {
        // ChatSession passes its template's end-of-turn ids as StopTokens.
        var stats = Run(Greedy8 with { StopTokens = [First.Value.Token] });
        Assert.Equal(StopReason.EndOfGeneration, stats.Stop);
        Assert.Equal(0, stats.GeneratedTokens);
    }

    [Fact]
    public void ChatSessionStopsAtTheTemplatesEndOfTurnAndTheVocabularysEos()
    {
        var v = Vocab(["<unk>", "<s>", "</s>", "<|im_end|>", "<end_of_turn>", "<|eot_id|>", "x"]);
        Assert.Equal([3, 2], ChatSession.StopTokenIds(v, ChatTemplateKind.ChatMl));
        Assert.Equal([4, 2], ChatSession.StopTokenIds(v, ChatTemplateKind.Gemma));
        Assert.Equal([5, 2], ChatSession.StopTokenIds(v, ChatTemplateKind.Llama3));
        // All three texts are end-of-generation whatever the template, and forced to control tokens.
        Assert.Equal([2, 3, 4, 5], v.EndOfGenerationIds);
        Assert.Equal(TokenType.Control, v.Type(4));
    }

    private static Vocabulary Vocab(string[] tokens)
    {
        var w = new GgufWriter()
            .Set("general.architecture", "llama")
            .Set("tokenizer.ggml.model", "llama")
            .Set("tokenizer.ggml.tokens", tokens)
            .Set("tokenizer.ggml.scores", new float[tokens.Length])
            .Set("tokenizer.ggml.token_type", Enumerable.Repeat(1, tokens.Length).ToArray());
        string path = TestPaths.TempFile("eog.gguf");
        w.Write(path);
        using var f = GgufFile.Open(path);
        return Vocabulary.FromGguf(f);
    }
}
