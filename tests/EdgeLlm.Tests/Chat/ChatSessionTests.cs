using EdgeLlm.Generation;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Chat;

/// <summary>KV-cache reuse across turns: only the new suffix is prefilled, and the logits equal a from-scratch run.</summary>
public class ChatSessionTests
{
    private static readonly GenerateOptions Greedy = new() { MaxTokens = 12, Sampler = SamplerOptions.Greedy };

    [Fact]
    public void Second_turn_prefills_only_new_tokens_and_matches_a_fresh_run()
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 512 });
        var tok = Tokenizer.FromGguf(model.File);
        var session = new ChatSession(model, tok, ChatTemplateKind.ChatMl, "Be kind.");
        var s1 = session.Send("Once upon a time", Greedy, _ => { });
        Assert.Equal(s1.PromptTokens, session.LastPrefillTokens); // first turn: everything
        int cachedAfter1 = session.Generator.CachedCount;

        int[] prompt2Expected = tok.Encode(ChatTemplates.Render(ChatTemplateKind.ChatMl,
            [.. session.Messages, new ChatMessage("user", "Tell me more")], true), addBos: tok.Vocab.AddBos, parseSpecial: true);
        var reused = session.Generator.CachedTokens.ToArray();
        int lcp = 0;
        while (lcp < reused.Length && lcp < prompt2Expected.Length - 1 && reused[lcp] == prompt2Expected[lcp]) lcp++;

        var s2 = session.Send("Tell me more", Greedy with { KeepPromptLogits = true }, _ => { });
        Assert.Equal(prompt2Expected.Length, s2.PromptTokens);
        Assert.Equal(prompt2Expected.Length - lcp, session.LastPrefillTokens);
        Assert.True(lcp > s1.PromptTokens, $"reused {lcp} tokens, the first prompt alone was {s1.PromptTokens} (cache had {cachedAfter1})");
        Assert.True(session.LastPrefillTokens < s2.PromptTokens / 2);
        float[] reusedLogits = session.Generator.PromptLogits.ToArray();

        // From scratch on a fresh model: the same prompt's logits.
        using var fresh = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 512 });
        var g = new Generator(fresh, Tokenizer.FromGguf(fresh.File));
        g.Generate(prompt2Expected, Greedy with { MaxTokens = 1, KeepPromptLogits = true }, _ => true);
        Assert.Equal(prompt2Expected.Length, g.LastPrefillTokens);
        float[] scratch = g.PromptLogits.ToArray();
        for (int i = 0; i < scratch.Length; i++)
            Assert.True(Math.Abs(scratch[i] - reusedLogits[i]) <= 1e-4f * (1 + Math.Abs(scratch[i])), $"logit {i}: {reusedLogits[i]} vs {scratch[i]}");
    }

    [Fact]
    public void Full_context_drops_oldest_turns_but_keeps_the_system_prompt()
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 128 });
        var tok = Tokenizer.FromGguf(model.File);
        var session = new ChatSession(model, tok, ChatTemplateKind.ChatMl, "sys") { ReserveTokens = 16 };
        int dropped = 0;
        session.OnTruncated = d => dropped += d;
        for (int i = 0; i < 6; i++) session.Send("Lily went to the park with her mom", Greedy with { MaxTokens = 16 }, _ => { });
        Assert.True(dropped > 0);
        Assert.Equal("system", session.Messages[0].Role);
        Assert.Equal("sys", session.Messages[0].Content);
        Assert.True(session.RenderPrompt().Length < 128);
    }

    [Fact]
    public void Chat_command_runs_turns_reset_and_exits_on_eof()
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = EdgeLlm.Cli.EdgeLlmCli.Execute(["chat", "--temp", "0", "-n", "8", "-c", "512", "-v"], o, e,
            new StringReader("Once upon a time\nAgain\n/reset\nHello\n"));
        Assert.Equal(0, rc);
        string err = e.ToString();
        Assert.Contains("no tokenizer.chat_template; using chatml", err); // stories260K has none
        Assert.Contains("[conversation reset]", err);
        Assert.Equal(3, System.Text.RegularExpressions.Regex.Matches(err, @"\[prefill \d+ of \d+ tokens").Count);
        Assert.Equal(5, o.ToString().Split("> ").Length - 1); // a "> " before each of the four lines and before EOF
    }
}
