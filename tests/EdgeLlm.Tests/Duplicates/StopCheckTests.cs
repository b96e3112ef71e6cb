using EdgeLlm.Generation;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Duplicates;

/// <summary>
/// The generate loops (plain, speculative, the server's, the grammar constraint) share one stop test,
/// <see cref="Vocabulary.EndsGeneration"/>: the vocabulary's end-of-generation set plus the caller's stop tokens.
/// </summary>
public class StopCheckTests
{
    [Fact]
    public void EndsGenerationIsTheVocabularysSetPlusTheStopTokens()
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 16 });
        var vocab = Tokenizer.FromGguf(model.File).Vocab;
        int eos = (int)model.File.GetInt("tokenizer.ggml.eos_token_id")!;
        Assert.True(vocab.EndsGeneration(eos, []));
        Assert.True(vocab.EndsGeneration(eos, [7]));
        Assert.False(vocab.EndsGeneration(7, []));
        Assert.True(vocab.EndsGeneration(7, [3, 7]));
        Assert.False(vocab.EndsGeneration(-1, []));
        Assert.False(vocab.EndsGeneration(model.VocabSize, []));
    }

    [Fact]
    public void PlainAndSpeculativeGenerationStopAtTheSameStopToken()
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 2, ContextSize = 256 });
        var tok = Tokenizer.FromGguf(model.File);
        int[] prompt = tok.Encode("Once upon a time, there was a little girl. Once upon a time, there was a little", addBos: true);

        // Where a stop token first appears in the plain greedy output: the first token from the 20th on not seen before.
        var plain = new Generator(model, tok);
        var free = plain.Generate(prompt, new GenerateOptions { MaxTokens = 80, Sampler = SamplerOptions.Greedy }, _ => true);
        int[] output = plain.CachedTokens[prompt.Length..].ToArray();
        Assert.Equal(80, free.GeneratedTokens);
        int k = 20;
        while (k < output.Length && Array.IndexOf(output, output[k], 0, k) >= 0) k++;
        Assert.True(k < output.Length, "no new token in the greedy output");

        var o = new GenerateOptions { MaxTokens = 80, Sampler = SamplerOptions.Greedy, StopTokens = [output[k]] };
        var a = new Generator(model, tok).Generate(prompt, o, _ => true);
        Assert.Equal(StopReason.EndOfGeneration, a.Stop);
        Assert.Equal(k, a.GeneratedTokens);

        var spec = new SpeculativeGenerator(model, tok, new LookupDrafter(4));
        var b = spec.Generate(prompt, o, _ => true);
        Assert.Equal(StopReason.EndOfGeneration, b.Stop);
        Assert.Equal(k, b.GeneratedTokens);
        Assert.Equal(output[..k], spec.Tokens.Slice(prompt.Length, k).ToArray());
        Assert.True(spec.Drafted > 0, "the lookup drafter should have proposed tokens");

        var ignored = new Generator(model, tok).Generate(prompt, o with { IgnoreEos = true }, _ => true);
        Assert.Equal(80, ignored.GeneratedTokens);
    }
}
