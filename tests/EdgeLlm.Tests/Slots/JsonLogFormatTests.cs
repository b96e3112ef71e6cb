using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using EdgeLlm.Cli.Server;

namespace EdgeLlm.Tests.Slots;

/// <summary>
/// <c>edgellm serve --log-format json</c> as a process: its request log line on stderr is one JSON object per line
/// (the framework's JSON console formatter), carrying the request's id, status and token counts as fields (the
/// in-process server tests capture the log through a provider, so the console formatter is checked here).
/// </summary>
public class JsonLogFormatTests
{
    [Fact]
    public async Task Json_log_format_writes_each_request_line_as_a_json_object_with_its_fields()
    {
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
        }
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { Path.Combine(AppContext.BaseDirectory, "edgellm.dll"), "serve", "-m", TestPaths.Stories260K, "--host", "127.0.0.1",
                     "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--log-format", "json", "-t", "1", "-c", "128", "--device", "cpu" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var lines = new List<string>();
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (lines) lines.Add(e.Data); };
        p.BeginErrorReadLine();
        _ = p.StandardOutput.ReadToEndAsync();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
            var deadline = DateTime.UtcNow.AddSeconds(120);
            while (true)
            {
                Assert.False(p.HasExited, "serve exited: " + string.Join("\n", lines));
                try
                {
                    if ((await http.GetAsync("/health")).StatusCode == HttpStatusCode.OK) break;
                }
                catch (HttpRequestException) { }
                Assert.True(DateTime.UtcNow < deadline, "serve did not start: " + string.Join("\n", lines));
                await Task.Delay(200);
            }
            var r = await http.PostAsync("/v1/completions", new StringContent("""{"prompt":"Once upon a time","max_tokens":5,"temperature":0}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            var body = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
            string id = body.GetProperty("id").GetString()!;
            int completion = body.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
            int prompt = body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();

            string? line = null;
            for (var until = DateTime.UtcNow.AddSeconds(30); line is null && DateTime.UtcNow < until; await Task.Delay(100))
                lock (lines) line = lines.FirstOrDefault(l => l.Contains(id, StringComparison.Ordinal));
            Assert.True(line is not null, $"no log line names {id}: " + string.Join("\n", lines));
            lock (lines) Assert.Single(lines, l => l.Contains(id, StringComparison.Ordinal)); // one line per request
            var j = JsonDocument.Parse(line!).RootElement;
            Assert.Equal(EdgeLlmServer.LogCategory, j.GetProperty("Category").GetString());
            Assert.Equal("Information", j.GetProperty("LogLevel").GetString());
            Assert.StartsWith($"request {id} POST /v1/completions status=200 prompt={prompt} ", j.GetProperty("Message").GetString());
            var state = j.GetProperty("State");
            Assert.Equal(id, state.GetProperty("Id").GetString());
            Assert.Equal("200", state.GetProperty("Status").ToString());
            Assert.Equal(prompt.ToString(System.Globalization.CultureInfo.InvariantCulture), state.GetProperty("PromptTokens").ToString());
            Assert.Equal(completion.ToString(System.Globalization.CultureInfo.InvariantCulture), state.GetProperty("CompletionTokens").ToString());
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
            p.WaitForExit(20_000);
        }
    }
}
