using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;

namespace EdgeLlm.Tests.Server;

/// <summary>The OpenAI-compatible server, in-process on a loopback port with the bundled model.</summary>
[Collection("Server")]
public class ServerTests(ServerFixture f)
{
    private static string ChatJson(string user, int max, bool stream, string extra = "")
        => $$"""{"model":"stories260K","messages":[{"role":"user","content":{{JsonSerializer.Serialize(user)}}}],"temperature":0,"max_tokens":{{max}},"stream":{{(stream ? "true" : "false")}}{{extra}}}""";

    /// <summary>Reads an SSE response: the JSON of each data line, and whether [DONE] closed it.</summary>
    internal static async Task<(List<JsonElement> Chunks, bool Done)> ReadSse(HttpResponseMessage r)
    {
        var chunks = new List<JsonElement>();
        bool done = false;
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.Length == 0) continue;
            Assert.StartsWith("data: ", line);
            string data = line[6..];
            if (data == "[DONE]") { done = true; continue; }
            chunks.Add(JsonDocument.Parse(data).RootElement.Clone());
        }
        return (chunks, done);
    }

    internal static string ChatText(List<JsonElement> chunks)
    {
        var sb = new StringBuilder();
        foreach (var c in chunks)
            if (c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var t)) sb.Append(t.GetString());
        return sb.ToString();
    }

    [Fact]
    public async Task Non_streaming_chat_equals_the_generator_and_counts_usage()
    {
        var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(ChatJson("Once upon a time", 20, false)));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var j = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("chat.completion", j.GetProperty("object").GetString());
        var choice = j.GetProperty("choices")[0];
        string text = choice.GetProperty("message").GetProperty("content").GetString()!;
        Assert.Equal(f.GreedyChat("Once upon a time", 20), text);
        var usage = j.GetProperty("usage");
        int completion = usage.GetProperty("completion_tokens").GetInt32();
        Assert.Equal(completion == 20 ? "length" : "stop", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + completion, usage.GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task Streaming_chat_sends_chunks_then_done_and_equals_non_streaming()
    {
        var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(ChatJson("The little dog", 24, true)));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType!.MediaType);
        var (chunks, done) = await ReadSse(r);
        Assert.True(done);
        Assert.True(chunks.Count > 2);
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        Assert.Equal("chat.completion.chunk", chunks[0].GetProperty("object").GetString());
        Assert.NotEqual(JsonValueKind.Null, chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").ValueKind);
        Assert.Equal(f.GreedyChat("The little dog", 24), ChatText(chunks));
    }

    [Fact]
    public async Task Completions_equal_edgellm_run_and_stop_strings_cut_the_text()
    {
        var r = await f.Http.PostAsync("/v1/completions", ServerFixture.Body("""{"prompt":"Once upon a time","temperature":0,"max_tokens":30}"""));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var j = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
        string text = j.GetProperty("choices")[0].GetProperty("text").GetString()!;
        var run = Cli.CliRunner.InProcess("run", "-p", "Once upon a time", "--temp", "0", "-n", "30", "-c", "256");
        Assert.Equal(0, run.ExitCode);
        Assert.Equal(run.Stdout.TrimEnd('\n'), text);

        string stop = text.Substring(text.Length / 2, 3);
        var r2 = await f.Http.PostAsync("/v1/completions", ServerFixture.Body(
            $$"""{"prompt":"Once upon a time","temperature":0,"max_tokens":30,"stop":["zzzz",{{JsonSerializer.Serialize(stop)}}],"stream":true}"""));
        var (chunks, done) = await ReadSse(r2);
        Assert.True(done);
        var sb = new StringBuilder();
        foreach (var c in chunks) sb.Append(c.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], sb.ToString());
        Assert.Equal("stop", chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Models_and_health()
    {
        var m = JsonDocument.Parse(await f.Http.GetStringAsync("/v1/models")).RootElement;
        Assert.Equal("stories260K", m.GetProperty("data")[0].GetProperty("id").GetString());
        Assert.Equal("ok", JsonDocument.Parse(await f.Http.GetStringAsync("/health")).RootElement.GetProperty("status").GetString());
    }

    [Theory]
    [InlineData("{not json", 400, null)]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":-1}""", 400, "max_tokens")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}""", 400, "temperature")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"n":2}""", 400, "n")]
    [InlineData("""{"messages":"hi"}""", 400, "messages")]
    [InlineData("""{"messages":[]}""", 400, "messages")]
    [InlineData("""{"messages":[{"role":"wizard","content":"hi"}]}""", 400, "messages")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"stop":5}""", 400, "stop")]
    [InlineData("null", 400, null)]
    [InlineData("", 400, null)]
    public async Task Bad_requests_get_openai_errors(string body, int status, string? param)
    {
        var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(body));
        Assert.Equal(status, (int)r.StatusCode);
        var e = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(e.GetProperty("message").GetString()));
        Assert.True(e.TryGetProperty("type", out _) && e.TryGetProperty("code", out _));
        if (param is not null) Assert.Equal(param, e.GetProperty("param").GetString());
    }

    [Fact]
    public async Task Prompt_longer_than_the_context_and_oversized_body_are_refused()
    {
        string longPrompt = string.Join(' ', Enumerable.Repeat("the dog ran to the park", 80));
        var r = await f.Http.PostAsync("/v1/completions", ServerFixture.Body($$"""{"prompt":"{{longPrompt}}"}"""));
        Assert.Equal(400, (int)r.StatusCode);
        Assert.Equal("context_length_exceeded", JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());

        string huge = new('a', 100 * 1024);
        var r2 = await f.Http.PostAsync("/v1/completions", ServerFixture.Body($$"""{"prompt":"{{huge}}"}"""));
        Assert.Equal(413, (int)r2.StatusCode);
        Assert.Equal("request_too_large", JsonDocument.Parse(await r2.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Missing_or_wrong_api_key_is_401()
    {
        using var anon = new HttpClient { BaseAddress = f.Server.BaseAddress };
        var r = await anon.GetAsync("/v1/models");
        Assert.Equal(401, (int)r.StatusCode);
        Assert.Equal("authentication_error", JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("type").GetString());
        anon.DefaultRequestHeaders.Authorization = new("Bearer", "wrong");
        Assert.Equal(401, (int)(await anon.GetAsync("/v1/models")).StatusCode);
        Assert.Equal(401, (int)(await anon.PostAsync("/v1/completions", ServerFixture.Body("""{"prompt":"hi"}"""))).StatusCode);
    }

    [Fact]
    public async Task Queue_bound_returns_503_with_retry_after()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        f.Engine.HoldSlotHook = async ct => { entered.TrySetResult(); await release.Task.WaitAsync(ct); };
        try
        {
            // One running (held) + queue of 2 waiting = 3 admitted; the fourth is refused.
            var held = new List<Task<HttpResponseMessage>>();
            for (int i = 0; i < 3; i++)
                held.Add(f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(ChatJson("Hi", 4, false))));
            await entered.Task.WaitAsync(TimeSpan.FromSeconds(30));
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (f.Engine.Admitted < 3 && DateTime.UtcNow < deadline) await Task.Delay(10);
            Assert.Equal(3, f.Engine.Admitted);
            var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(ChatJson("Hi", 4, false)));
            Assert.Equal(503, (int)r.StatusCode);
            Assert.Equal("1", r.Headers.RetryAfter!.ToString());
            f.Engine.HoldSlotHook = null;
            release.SetResult();
            foreach (var t in held) Assert.Equal(HttpStatusCode.OK, (await t).StatusCode);
        }
        finally
        {
            f.Engine.HoldSlotHook = null;
            release.TrySetResult();
        }
        Assert.Equal(0, f.Engine.Admitted);
    }

    [Fact]
    public async Task Disconnect_mid_stream_stops_generation_and_frees_the_slot()
    {
        f.Engine.TextHook = () => Thread.Sleep(20); // slow enough that the stream is surely mid-way
        try
        {
            using var client = f.Client();
            using var cts = new CancellationTokenSource();
            var req = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = ServerFixture.Body("""{"prompt":"Once upon a time","temperature":0,"max_tokens":200,"stream":true}"""),
            };
            var r = await client.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var reader = new StreamReader(await r.Content.ReadAsStreamAsync(cts.Token));
            string? first = await reader.ReadLineAsync(cts.Token);
            Assert.StartsWith("data: ", first);
            Assert.Equal(1, f.Engine.Admitted);
            cts.Cancel();
            r.Dispose();
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (f.Engine.Admitted != 0 && DateTime.UtcNow < deadline) await Task.Delay(10);
            Assert.Equal(0, f.Engine.Admitted);
            Assert.Equal(EdgeLlm.Generation.StopReason.Cancelled, f.Engine.LastStop);
        }
        finally
        {
            f.Engine.TextHook = null;
        }
        var ok = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(ChatJson("Hi", 4, false)));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task Official_openai_client_talks_to_it()
    {
        var client = new ChatClient("stories260K", new ApiKeyCredential(ServerFixture.Key),
            new OpenAIClientOptions { Endpoint = new Uri(f.Server.BaseAddress, "/v1") });
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 16 };
        ChatCompletion done = await client.CompleteChatAsync([new UserChatMessage("Once upon a time")], options);
        string expected = f.GreedyChat("Once upon a time", 16);
        Assert.Equal(expected, done.Content[0].Text);
        Assert.True(done.Usage.OutputTokenCount > 0);

        var sb = new StringBuilder();
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("Once upon a time")], options))
            foreach (var part in update.ContentUpdate) sb.Append(part.Text);
        Assert.Equal(expected, sb.ToString());
    }
}
