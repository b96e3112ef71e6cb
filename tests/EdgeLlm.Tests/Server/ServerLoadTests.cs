using System.Diagnostics;
using Xunit.Abstractions;

namespace EdgeLlm.Tests.Server;

/// <summary>
/// A bounded load test: concurrent streaming clients on loopback; every stream must decode to exactly the
/// greedy text of its own prompt (no lost or mixed-up streams). Throughput, latency and memory are
/// reported to the test output, not asserted.
/// </summary>
[Collection("Server")]
public class ServerLoadTests(ServerFixture f, ITestOutputHelper output)
{
    [Fact]
    public async Task Concurrent_streaming_clients_get_their_own_streams()
    {
        const int clients = 16, perClient = 4, maxTokens = 16;
        string[] prompts = ["Once upon a time", "The cat", "Lily liked", "One day, a boy", "The sun was", "Tom and Sue"];
        var expected = new Dictionary<string, string>();
        foreach (string p in prompts) expected[p] = f.GreedyChat(p, maxTokens);
        // Everyone queues at once: widen the fixture's queue (2) so all fit; a 503 would be retried and counted.
        int oldQueue = f.Engine.QueueLimit;
        f.Engine.QueueLimit = clients;
        var proc = Process.GetCurrentProcess();
        proc.Refresh();
        long rssBefore = proc.WorkingSet64;
        var latencies = new List<double>();
        int busy = 0;
        var clock = Stopwatch.StartNew();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var tasks = new List<Task>();
        for (int c = 0; c < clients; c++)
        {
            int id = c;
            tasks.Add(Task.Run(async () =>
            {
                using var http = f.Client();
                for (int k = 0; k < perClient; k++)
                {
                    string prompt = prompts[(id + k) % prompts.Length];
                    while (true)
                    {
                        var t0 = Stopwatch.StartNew();
                        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
                        {
                            Content = ServerFixture.Body($$"""{"messages":[{"role":"user","content":"{{prompt}}"}],"temperature":0,"max_tokens":{{maxTokens}},"stream":true}"""),
                        };
                        using var r = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
                        if ((int)r.StatusCode == 503) { Interlocked.Increment(ref busy); await Task.Delay(5, timeout.Token); continue; }
                        var (chunks, done) = await ServerTests.ReadSse(r);
                        Assert.True(done);
                        Assert.Equal(expected[prompt], ServerTests.ChatText(chunks));
                        lock (latencies) latencies.Add(t0.Elapsed.TotalMilliseconds);
                        break;
                    }
                }
            }, timeout.Token));
        }
        try { await Task.WhenAll(tasks); }
        finally { f.Engine.QueueLimit = oldQueue; }
        double seconds = clock.Elapsed.TotalSeconds;
        proc.Refresh();
        long rssAfter = proc.WorkingSet64;
        latencies.Sort();
        Assert.Equal(clients * perClient, latencies.Count);
        Assert.Equal(0, f.Engine.Admitted);
        output.WriteLine($"load: {clients} clients x {perClient} streaming requests ({maxTokens} tokens) in {seconds:F2} s = {latencies.Count / seconds:F1} req/s; " +
            $"p50 {latencies[latencies.Count / 2]:F1} ms, p95 {latencies[(int)(latencies.Count * 0.95)]:F1} ms; 503 retries {busy}; " +
            $"RSS {rssBefore / 1048576.0:F1} MiB -> {rssAfter / 1048576.0:F1} MiB");
    }
}
