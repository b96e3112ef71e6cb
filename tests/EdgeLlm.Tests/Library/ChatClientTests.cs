using EdgeLlm.AI;
using EdgeLlm.Cli;
using Microsoft.Extensions.AI;

namespace EdgeLlm.Tests.Library;

/// <summary>EdgeLlm through Microsoft.Extensions.AI's IChatClient, checked against the CLI's `chat` on the same model.</summary>
public sealed class ChatClientTests : IDisposable
{
    private readonly IChatClient _chat = new EdgeLlmChatClient(TestPaths.Stories260K);
    private const string Prompt = "Tell me about a cat";

    public void Dispose() => _chat.Dispose();

    /// <summary>One user line through `edgellm chat` in-process; its answer (the text between the "> " prompts).</summary>
    private static string CliAnswer(params string[] flags)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = EdgeLlmCli.Execute(["chat", "-m", TestPaths.Stories260K, "-ctk", "f32", "-ctv", "f32", .. flags], o, e, new StringReader(Prompt + "\n"));
        Assert.True(rc == 0, e.ToString());
        string s = o.ToString();
        Assert.StartsWith("> ", s);
        Assert.EndsWith("\n> \n", s);
        return s[2..^4];
    }

    private static List<ChatMessage> Messages() => [new ChatMessage(ChatRole.User, Prompt)];

    private string Text(ChatOptions o) => _chat.GetResponseAsync(Messages(), o).GetAwaiter().GetResult().Text;

    [Fact]
    public async Task GreedyResponseEqualsTheCliChat()
    {
        var r = await _chat.GetResponseAsync(Messages(), new ChatOptions { Temperature = 0, MaxOutputTokens = 24 });
        Assert.Equal(CliAnswer("--temp", "0", "-n", "24"), r.Text);
        Assert.Equal(ChatRole.Assistant, r.Messages[^1].Role);
        Assert.Equal(24, r.Usage!.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, r.FinishReason);
        Assert.Equal("stories260K", r.ModelId);
        Assert.True(r.Text.Length > 20);
    }

    [Fact]
    public async Task SampledResponseEqualsTheCliWithTheSameSettings()
    {
        var o = new ChatOptions { Temperature = 1.1f, TopK = 20, TopP = 0.9f, Seed = 1234, MaxOutputTokens = 30, FrequencyPenalty = 0.5f, PresencePenalty = 0.25f };
        string cli = CliAnswer("--temp", "1.1", "--top-k", "20", "--top-p", "0.9", "--seed", "1234", "-n", "30",
            "--frequency-penalty", "0.5", "--presence-penalty", "0.25");
        Assert.Equal(cli, (await _chat.GetResponseAsync(Messages(), o)).Text);
        // Another seed gives another text (the seed is honoured, not a constant).
        Assert.NotEqual(cli, (await _chat.GetResponseAsync(Messages(), new ChatOptions { Temperature = 1.1f, TopK = 20, TopP = 0.9f, Seed = 99, MaxOutputTokens = 30 })).Text);
        // min_p and the penalty window through AdditionalProperties.
        var extra = new ChatOptions { Temperature = 1.1f, Seed = 5, MaxOutputTokens = 30, PresencePenalty = 1f, AdditionalProperties = new() { ["min_p"] = 0.2, ["repeat_last_n"] = 8 } };
        Assert.Equal(CliAnswer("--temp", "1.1", "--seed", "5", "-n", "30", "--presence-penalty", "1", "--min-p", "0.2", "--repeat-last-n", "8"),
            (await _chat.GetResponseAsync(Messages(), extra)).Text);
    }

    [Fact]
    public async Task StreamingEqualsNonStreaming()
    {
        var o = new ChatOptions { Temperature = 0, MaxOutputTokens = 40 };
        var whole = await _chat.GetResponseAsync(Messages(), o);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in _chat.GetStreamingResponseAsync(Messages(), o)) updates.Add(u);
        Assert.True(updates.Count > 5, $"{updates.Count} updates");
        Assert.Equal(whole.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(whole.FinishReason, updates[^1].FinishReason);
        var usage = updates.SelectMany(u => u.Contents).OfType<UsageContent>().Single().Details;
        Assert.Equal(whole.Usage!.InputTokenCount, usage.InputTokenCount);
        Assert.Equal(whole.Usage.OutputTokenCount, usage.OutputTokenCount);
        // The MEAI helper that folds updates back into a response agrees too.
        Assert.Equal(whole.Text, updates.ToChatResponse().Text);
    }

    [Fact]
    public async Task StopSequencesCutTheAnswerBeforeTheFirstMatch()
    {
        string full = Text(new ChatOptions { Temperature = 0, MaxOutputTokens = 40 });
        Assert.True(full.Length > 30, full);
        string stop = full.Substring(12, 4);
        string expected = full[..full.IndexOf(stop, StringComparison.Ordinal)];
        var o = new ChatOptions { Temperature = 0, MaxOutputTokens = 40, StopSequences = ["#never#", stop] };
        var r = await _chat.GetResponseAsync(Messages(), o);
        Assert.Equal(expected, r.Text);
        Assert.Equal(ChatFinishReason.Stop, r.FinishReason);
        var streamed = new List<string>();
        await foreach (var u in _chat.GetStreamingResponseAsync(Messages(), o)) streamed.Add(u.Text);
        Assert.Equal(expected, string.Concat(streamed));
    }

    [Fact]
    public async Task AnAbandonedOrCancelledRequestFreesTheModelForTheNext()
    {
        var o = new ChatOptions { Temperature = 0, MaxOutputTokens = 40 };
        await foreach (var u in _chat.GetStreamingResponseAsync(Messages(), o))
        {
            Assert.NotEmpty(u.Text);
            break;
        }
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => _chat.GetResponseAsync(Messages(), o, new CancellationToken(true)));
        Assert.Equal(CliAnswer("--temp", "0", "-n", "40"), (await _chat.GetResponseAsync(Messages(), o)).Text);
    }

    [Fact]
    public async Task UnsupportedRequestsAreRefused()
    {
        await Assert.ThrowsAsync<NotSupportedException>(() => _chat.GetResponseAsync(Messages(),
            new ChatOptions { Tools = [AIFunctionFactory.Create(() => 1, "one", "returns one", null)] }));
        await Assert.ThrowsAsync<NotSupportedException>(() => _chat.GetResponseAsync(Messages(), new ChatOptions { ResponseFormat = ChatResponseFormat.Json }));
        await Assert.ThrowsAsync<NotSupportedException>(() => _chat.GetResponseAsync([new ChatMessage(ChatRole.Tool, "42")]));
        await Assert.ThrowsAsync<ArgumentException>(() => _chat.GetResponseAsync(Messages(), new ChatOptions { TopP = 0 }));
        Assert.Equal("edgellm", _chat.GetService<ChatClientMetadata>()!.ProviderName);
    }
}
