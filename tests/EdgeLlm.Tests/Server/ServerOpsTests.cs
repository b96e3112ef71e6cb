using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using EdgeLlm.Cli.Server;
using EdgeLlm.Generation;
using Microsoft.Extensions.Logging;

namespace EdgeLlm.Tests.Server;

/// <summary>Operations: CORS, open /health, /metrics, the per-request log line, the exposure warning.</summary>
[Collection("Server")]
public class ServerOpsTests(ServerFixture f)
{
    [Fact]
    public async Task Cors_preflight_is_answered_without_a_key_and_responses_carry_the_origin()
    {
        using var anon = new HttpClient { BaseAddress = f.Server.BaseAddress };
        var pre = new HttpRequestMessage(HttpMethod.Options, "/v1/chat/completions");
        pre.Headers.Add("Origin", ServerFixture.Origin);
        pre.Headers.Add("Access-Control-Request-Method", "POST");
        pre.Headers.Add("Access-Control-Request-Headers", "authorization,content-type");
        var r = await anon.SendAsync(pre);
        Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        Assert.Equal(ServerFixture.Origin, r.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.Contains("POST", r.Headers.GetValues("Access-Control-Allow-Methods").Single());
        Assert.Equal("authorization,content-type", r.Headers.GetValues("Access-Control-Allow-Headers").Single());

        var post = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = ServerFixture.Body("""{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"temperature":0}"""),
        };
        post.Headers.Add("Origin", ServerFixture.Origin);
        var ok = await f.Http.SendAsync(post);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal(ServerFixture.Origin, ok.Headers.GetValues("Access-Control-Allow-Origin").Single());
        // Errors carry it too, so that the browser shows the client the error.
        var denied = await anon.GetAsync("/v1/models");
        Assert.Equal(401, (int)denied.StatusCode);
        Assert.Equal(ServerFixture.Origin, denied.Headers.GetValues("Access-Control-Allow-Origin").Single());
    }

    [Fact]
    public async Task Health_is_open_while_the_other_endpoints_need_the_key()
    {
        using var anon = new HttpClient { BaseAddress = f.Server.BaseAddress };
        var h = await anon.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, h.StatusCode);
        Assert.Equal("ok", JsonDocument.Parse(await h.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString());
        Assert.Equal(401, (int)(await anon.GetAsync("/v1/models")).StatusCode);
        Assert.Equal(401, (int)(await anon.GetAsync("/metrics")).StatusCode);
        Assert.Equal(401, (int)(await anon.PostAsync("/v1/chat/completions", ServerFixture.Body("""{"messages":[{"role":"user","content":"Hi"}]}"""))).StatusCode);
    }

    private static readonly Regex Sample = new(@"^([a-z_]+)(\{[^}]*\})? (\S+)$", RegexOptions.Multiline);

    private async Task<Dictionary<string, double>> Metrics()
    {
        var r = await f.Http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.StartsWith("text/plain", r.Content.Headers.ContentType!.ToString());
        string text = await r.Content.ReadAsStringAsync();
        var d = new Dictionary<string, double>();
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith('#')) { Assert.Matches(@"^# (HELP|TYPE) edgellm_[a-z_]+ ", line); continue; }
            var m = Sample.Match(line);
            Assert.True(m.Success, line);
            d[m.Groups[1].Value + m.Groups[2].Value] = double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
        }
        return d;
    }

    private static double Get(Dictionary<string, double> d, string key) => d.GetValueOrDefault(key);

    [Fact]
    public async Task Metrics_counters_move_by_the_right_amounts()
    {
        var before = await Metrics();
        var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(
            """{"messages":[{"role":"user","content":"The big tree"}],"max_tokens":9,"temperature":0}"""));
        var usage = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("usage");
        var bad = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body("""{"messages":[{"role":"user","content":"hi"}],"n":4}"""));
        Assert.Equal(400, (int)bad.StatusCode);
        var c = await f.Http.PostAsync("/v1/completions", ServerFixture.Body("""{"prompt":"The big tree","max_tokens":5,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}"""));
        var (chunks, _) = await ServerTests.ReadSse(c);
        var cu = chunks[^1].GetProperty("usage");
        var after = await Metrics();

        const string chat = "edgellm_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}";
        Assert.Equal(Get(before, chat) + 1, Get(after, chat));
        const string chat400 = "edgellm_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"}";
        Assert.Equal(Get(before, chat400) + 1, Get(after, chat400));
        const string compl = "edgellm_requests_total{endpoint=\"/v1/completions\",status=\"200\"}";
        Assert.Equal(Get(before, compl) + 1, Get(after, compl));
        const string metrics = "edgellm_requests_total{endpoint=\"/metrics\",status=\"200\"}";
        Assert.Equal(Get(before, metrics) + 1, Get(after, metrics)); // the first scrape is counted once it has answered
        Assert.Equal(Get(before, "edgellm_prompt_tokens_total") + usage.GetProperty("prompt_tokens").GetInt32() + cu.GetProperty("prompt_tokens").GetInt32(),
            Get(after, "edgellm_prompt_tokens_total"));
        Assert.Equal(Get(before, "edgellm_completion_tokens_total") + usage.GetProperty("completion_tokens").GetInt32() + cu.GetProperty("completion_tokens").GetInt32(),
            Get(after, "edgellm_completion_tokens_total"));
        Assert.Equal(Get(before, "edgellm_prompt_cached_tokens_total")
                + usage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32()
                + cu.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32(),
            Get(after, "edgellm_prompt_cached_tokens_total"));
        Assert.Equal(0, Get(after, "edgellm_queue_depth"));
        Assert.Equal(0, Get(after, "edgellm_slot_busy"));
        Assert.True(Get(after, "edgellm_last_decode_tokens_per_second") > 0);
        Assert.True(Get(after, "edgellm_last_prefill_tokens_per_second") > 0);
    }

    [Fact]
    public async Task Metrics_show_the_busy_slot_and_the_queue()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        f.Engine.HoldSlotHook = async ct => { entered.TrySetResult(); await release.Task.WaitAsync(ct); };
        try
        {
            string body = """{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2}""";
            var held = new[] { f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(body)), f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(body)) };
            await entered.Task.WaitAsync(TimeSpan.FromSeconds(30));
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (f.Engine.Admitted < 2 && DateTime.UtcNow < deadline) await Task.Delay(10);
            var m = await Metrics();
            Assert.Equal(1, Get(m, "edgellm_slot_busy"));
            Assert.Equal(1, Get(m, "edgellm_queue_depth"));
            f.Engine.HoldSlotHook = null;
            release.SetResult();
            foreach (var t in held) Assert.Equal(HttpStatusCode.OK, (await t).StatusCode);
        }
        finally
        {
            f.Engine.HoldSlotHook = null;
            release.TrySetResult();
        }
    }

    [Fact]
    public async Task One_log_line_per_request_with_its_token_counts()
    {
        var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(
            """{"messages":[{"role":"user","content":"A small bird"}],"max_tokens":7,"temperature":0}"""));
        var j = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
        string id = j.GetProperty("id").GetString()!;
        var usage = j.GetProperty("usage");
        var lines = f.Logs.Entries.Where(e => e.Values.TryGetValue("Id", out var v) && (string?)v == id).ToList();
        var line = Assert.Single(lines);
        Assert.Equal(EdgeLlmServer.LogCategory, line.Category);
        Assert.Equal(LogLevel.Information, line.Level);
        Assert.Equal(200, line.Values["Status"]);
        Assert.Equal("/v1/chat/completions", line.Values["Path"]);
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32(), line.Values["PromptTokens"]);
        Assert.Equal(usage.GetProperty("completion_tokens").GetInt32(), line.Values["CompletionTokens"]);
        Assert.Equal(usage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32(), line.Values["CachedTokens"]);
        Assert.Contains($"request {id} POST /v1/chat/completions status=200 prompt={usage.GetProperty("prompt_tokens").GetInt32()} ", line.Text);
        Assert.Matches(@"prefill=\d+(\.\d) tok/s decode=\d+(\.\d) tok/s", line.Text);

        int before = f.Logs.Entries.Count(e => e.Category == EdgeLlmServer.LogCategory && e.Text.Contains("status=400"));
        await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body("""{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}]}"""));
        Assert.Equal(before + 1, f.Logs.Entries.Count(e => e.Category == EdgeLlmServer.LogCategory && e.Text.Contains("status=400")));
    }

    [Theory]
    [InlineData("0.0.0.0", null, true)]
    [InlineData("::", null, true)]
    [InlineData("192.168.1.5", null, true)]
    [InlineData("0.0.0.0", "k", false)]
    [InlineData("127.0.0.1", null, false)]
    [InlineData("::1", null, false)]
    public void Exposed_without_key_is_non_loopback_and_no_key(string host, string? key, bool exposed)
        => Assert.Equal(exposed, ServerOptions.ExposedWithoutKey(IPAddress.Parse(host), key));

    [Fact]
    public async Task Warning_on_a_non_loopback_host_without_a_key_and_no_cors_by_default()
    {
        var logs = new CapturingLoggerProvider();
        using (var engine = new InferenceEngine(f.Model, "stories260K", ChatTemplateKind.ChatMl, 0))
        {
            await using var open = await EdgeLlmServer.StartAsync(engine, new ServerOptions { Host = "0.0.0.0", Port = 0, LogProvider = logs });
        }
        Assert.Single(logs.Entries, e => e.Level == LogLevel.Warning && e.Text.Contains("--api-key"));

        var quiet = new CapturingLoggerProvider();
        using var engine2 = new InferenceEngine(f.Model, "stories260K", ChatTemplateKind.ChatMl, 0);
        await using var local = await EdgeLlmServer.StartAsync(engine2, new ServerOptions { Port = 0, LogProvider = quiet });
        Assert.DoesNotContain(quiet.Entries, e => e.Level >= LogLevel.Warning);
        using var http = new HttpClient { BaseAddress = local.BaseAddress };
        var req = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        req.Headers.Add("Origin", "https://elsewhere.example");
        var r = await http.SendAsync(req);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.False(r.Headers.Contains("Access-Control-Allow-Origin"));
    }

    [Fact]
    public void Serve_refuses_an_unknown_log_format()
    {
        var run = Cli.CliRunner.InProcess("serve", "--log-format", "xml");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("--log-format", run.Stderr);
    }
}
