using EdgeLlm.Generation;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Speculative;

/// <summary>
/// End to end on real files: greedy speculative decoding (prompt lookup, a draft equal to the target, a draft that
/// disagrees often) must print exactly the tokens plain greedy decoding prints, through rejections and cache rollbacks.
/// </summary>
public class SpeculativeDecodingTests
{
    private static string Visible(string name) => Path.Combine(TestPaths.Data("models-visible"), name);

    private static LlamaModel Load(string path, int ctx = 256) => LlamaModel.Load(path, new BackendOptions { Threads = 2, ContextSize = ctx });

    /// <summary>Plain decoding, written out: the prompt in one pass, then one token per pass, sampled with the same chain.</summary>
    private static List<int> Plain(LlamaModel model, Tokenizer tok, int[] prompt, GenerateOptions o)
    {
        model.Cache.Clear();
        var logits = new float[model.VocabSize];
        var sampler = new Sampler(model.VocabSize, o.Sampler);
        var seq = new List<int>(prompt);
        model.Forward(prompt, 0, logits);
        var output = new List<int>();
        while (o.MaxTokens < 0 || output.Count < o.MaxTokens)
        {
            int t = sampler.Sample(logits, seq.ToArray());
            if (!o.IgnoreEos && tok.Vocab.IsEndOfGeneration(t)) break;
            output.Add(t);
            seq.Add(t);
            if (seq.Count >= model.ContextSize) break;
            model.Forward(t, seq.Count - 1, logits);
        }
        return output;
    }

    private static (List<int> Tokens, SpeculativeGenerator G, GenerationStats S) Speculative(LlamaModel model, Tokenizer tok, int[] prompt, GenerateOptions o, DraftSource draft)
    {
        var g = new SpeculativeGenerator(model, tok, draft);
        var s = g.Generate(prompt, o, _ => true);
        return (g.Tokens.ToArray().Skip(prompt.Length).ToList(), g, s);
    }

    private static readonly GenerateOptions Greedy100 = new() { MaxTokens = 100, Sampler = SamplerOptions.Greedy, IgnoreEos = true };

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(10)]
    public void Lookup_Greedy_EqualsPlain(int n)
    {
        using var model = Load(TestPaths.Stories260K);
        var tok = Tokenizer.FromGguf(model.File);
        int[] prompt = tok.Encode("Once upon a time, there was a little girl. Once upon a time, there was a little", addBos: true);
        var plain = Plain(model, tok, prompt, Greedy100);
        var (spec, g, s) = Speculative(model, tok, prompt, Greedy100, new LookupDrafter(n));
        Assert.Equal(100, plain.Count);
        Assert.Equal(plain, spec);
        Assert.Equal(100, s.GeneratedTokens);
        Assert.True(g.Drafted > 0 && g.Accepted > 0 && g.Accepted < g.Drafted, $"{g.Accepted}/{g.Drafted}: both paths should run");
        Assert.Equal(100, g.Steps + g.Accepted); // each pass gives one target token plus the drafts it kept
    }

    [Fact]
    public void DraftEqualToTarget_Greedy_AcceptsEveryDraft()
    {
        using var model = Load(TestPaths.Stories260K);
        var tok = Tokenizer.FromGguf(model.File);
        int[] prompt = tok.Encode("Lily wanted to play", addBos: true);
        var plain = Plain(model, tok, prompt, Greedy100);
        using var draftModel = Load(TestPaths.Stories260K);
        var (spec, g, _) = Speculative(model, tok, prompt, Greedy100, new ModelDrafter(draftModel, SamplerOptions.Greedy, maxDraft: 5, pMin: 0, ownsModel: false));
        Assert.Equal(plain, spec);
        // The same weights agree on every token (batched and one-token passes compute each logit the same way).
        Assert.Equal(g.Drafted, g.Accepted);
        Assert.Equal(17, g.Steps); // 16 passes of 5 drafts + 1, then 3 + 1 for the last 4 tokens
    }

    [Theory]
    [InlineData("llama.gguf", "llama-Q2_K.gguf", 0f)]
    [InlineData("llama.gguf", "llama-Q2_K.gguf", 0.3f)]
    [InlineData("llama-Q4_K.gguf", "llama-Q3_K.gguf", 0f)]
    public void DisagreeingDraft_Greedy_EqualsPlain(string target, string draft, float pMin)
    {
        using var model = Load(Visible(target));
        var tok = Tokenizer.FromGguf(model.File);
        int[] prompt = [1, 5, 300, 17, 912, 44];
        var plain = Plain(model, tok, prompt, Greedy100);
        using var draftModel = Load(Visible(draft));
        var (spec, g, _) = Speculative(model, tok, prompt, Greedy100, new ModelDrafter(draftModel, SamplerOptions.Greedy, maxDraft: 4, pMin: pMin, ownsModel: false));
        Assert.Equal(plain, spec);
        if (pMin == 0) Assert.True(g.Accepted < g.Drafted, $"{g.Accepted}/{g.Drafted}: the draft should be rejected sometimes");
    }

    [Fact]
    public void RepeatPenaltyAndContextEnd_Greedy_EqualsPlain()
    {
        using var model = Load(TestPaths.Stories260K, ctx: 60);
        var tok = Tokenizer.FromGguf(model.File);
        int[] prompt = tok.Encode("The cat sat on the mat. The cat sat on the", addBos: true);
        var o = new GenerateOptions { MaxTokens = -1, Sampler = SamplerOptions.Greedy with { RepeatPenalty = 1.3f, RepeatLastN = 16 }, IgnoreEos = true };
        var plain = Plain(model, tok, prompt, o);
        using var draftModel = Load(TestPaths.Stories260K, ctx: 60);
        var (spec, _, s) = Speculative(model, tok, prompt, o, new ModelDrafter(draftModel, o.Sampler, maxDraft: 7, pMin: 0, ownsModel: false));
        Assert.Equal(StopReason.ContextFull, s.Stop);
        Assert.Equal(60 - prompt.Length, spec.Count);
        Assert.Equal(plain, spec);
        var (look, _, _) = Speculative(model, tok, prompt, o, new LookupDrafter(6));
        Assert.Equal(plain, look);
    }

    [Fact]
    public void Sampled_SelfDraft_KeepsEveryDraft_AndIsReproducible()
    {
        // With q == p (the same model and chain) min(1, p/q) = 1: every draft is kept, whatever the seed.
        using var model = Load(TestPaths.Stories260K);
        var tok = Tokenizer.FromGguf(model.File);
        int[] prompt = tok.Encode("Lily wanted to play", addBos: true);
        var o = new GenerateOptions { MaxTokens = 60, Sampler = new SamplerOptions { Temperature = 0.9f, Seed = 42 }, IgnoreEos = true };
        using var draftModel = Load(TestPaths.Stories260K);
        var (a, g, _) = Speculative(model, tok, prompt, o, new ModelDrafter(draftModel, o.Sampler, maxDraft: 4, pMin: 0, ownsModel: false));
        Assert.Equal(g.Drafted, g.Accepted);
        var (b, _, _) = Speculative(model, tok, prompt, o, new ModelDrafter(draftModel, o.Sampler, maxDraft: 4, pMin: 0, ownsModel: false));
        Assert.Equal(a, b);
        Assert.Equal(60, a.Count);
    }

    [Fact]
    public void DraftWithAnotherVocabulary_IsRefused()
    {
        using var target = Load(TestPaths.Stories260K);
        using var draft = Load(Visible("llama.gguf"));
        var e = Assert.Throws<EdgeLlmException>(() => ModelDrafter.CheckVocabulary(
            Tokenizer.FromGguf(target.File).Vocab, Tokenizer.FromGguf(draft.File).Vocab, "draft.gguf", target.VocabSize, draft.VocabSize));
        Assert.Contains("draft.gguf", e.Message);
        Assert.Contains("512", e.Message);
        Assert.Contains("1200", e.Message);
    }
}
