using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace EdgeLlm.Tests.Slots;

/// <summary>
/// <c>edgellm serve --parallel 4</c> as a process, on a random Q4_0 llama whose matmuls run the eight-row GEMM over
/// the repacked weights on x64 (vocab 300: the output matrix also has four rows after its last whole group of
/// eight): a request's text and every log-probability it reports (printed round-trip, so a one-ulp change in a
/// logit shows) must be the same when it decodes alone as when it decodes in one batch with three other requests.
/// That holds only if serve turns batch invariance on (<c>BackendOptions.BatchInvariant</c>): without it a lone
/// decode runs the one-row loops over the stored rows and a batch the packed GEMM, which sum in another order.
/// </summary>
public class BatchInvariantServeTests
{
    private static readonly Lazy<string> ModelPath = new(() => Model.RandomModel.Write(
        new Model.RandomModelSpec { Dim = 256, Ffn = 512, Heads = 4, KvHeads = 2, Vocab = 300, ContextLength = 256, WeightType = EdgeLlm.Gguf.GgmlType.Q4_0, Seed = 77 },
        TestPaths.TempFile("slots-invariant-q4_0.gguf")));

    private static string Body(string prompt) =>
        $$"""{"prompt":{{JsonSerializer.Serialize(prompt)}},"max_tokens":16,"temperature":0,"logprobs":5}""";

    private static async Task<(string Text, string Logprobs)> Complete(HttpClient http, string prompt)
    {
        var r = await http.PostAsync("/v1/completions", new StringContent(Body(prompt), Encoding.UTF8, "application/json"));
        string json = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, json);
        var choice = JsonDocument.Parse(json).RootElement.GetProperty("choices")[0];
        return (choice.GetProperty("text").GetString()!, choice.GetProperty("logprobs").GetRawText());
    }

    private static async Task<double> Metric(HttpClient http, string name)
    {
        string text = await http.GetStringAsync("/metrics");
        foreach (string line in text.Split('\n'))
            if (line.StartsWith(name + " ", StringComparison.Ordinal))
                return double.Parse(line[(name.Length + 1)..], CultureInfo.InvariantCulture);
        throw new Xunit.Sdk.XunitException($"/metrics has no {name}:\n{text}");
    }

    [Fact]
    public async Task A_request_gives_the_same_logprobs_alone_and_batched_with_others_on_repacked_weights()
    {
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
        }
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { Path.Combine(AppContext.BaseDirectory, "edgellm.dll"), "serve", "-m", ModelPath.Value, "--host", "127.0.0.1",
                     "--port", port.ToString(CultureInfo.InvariantCulture), "--parallel", "4", "-t", "2", "-c", "128", "--device", "cpu" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var lines = new List<string>();
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (lines) lines.Add(e.Data); };
        p.BeginErrorReadLine();
        _ = p.StandardOutput.ReadToEndAsync();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(120) };
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

            string[] prompts = ["the cat sat on the mat", "a b c", "once upon a time there was a very long prompt here", "zq"];
            var alone = new (string Text, string Logprobs)[prompts.Length];
            for (int i = 0; i < prompts.Length; i++) alone[i] = await Complete(http, prompts[i]);

            double steps0 = await Metric(http, "edgellm_decode_steps_total"), tokens0 = await Metric(http, "edgellm_decode_step_tokens_total");
            var together = await Task.WhenAll(prompts.Select(q => Complete(http, q)));
            double steps = await Metric(http, "edgellm_decode_steps_total") - steps0, tokens = await Metric(http, "edgellm_decode_step_tokens_total") - tokens0;
            // The four requests really shared decode steps (arriving together they start in the same step).
            Assert.True(tokens / steps > 2, $"mean decode batch {tokens}/{steps}: the requests did not run together");

            for (int i = 0; i < prompts.Length; i++)
            {
                Assert.Equal(alone[i].Text, together[i].Text);
                Assert.Equal(alone[i].Logprobs, together[i].Logprobs);
            }
            // The logprobs are real numbers, not empty lists that would compare equal whatever the kernels did.
            var lp = JsonDocument.Parse(alone[0].Logprobs).RootElement.GetProperty("token_logprobs");
            Assert.InRange(lp.GetArrayLength(), 1, 16);
            Assert.All(lp.EnumerateArray(), v => Assert.True(v.GetDouble() <= 0));
            Assert.True(lp.EnumerateArray().Sum(v => v.GetDouble()) < 0);
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
            p.WaitForExit(20_000);
        }
    }
}
