using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeLlm.Generation;
using EdgeLlm.Model;
using EdgeLlm.Tests.Cli;
using EdgeLlm.Tests.Server;

namespace EdgeLlm.Tests.Grammar;

/// <summary>logprobs / top_logprobs against a float64 log-softmax of the logits that the `logits` command prints.</summary>
[Collection("Server")]
public class LogprobsTests(ServerFixture f)
{
    private const double Tol = 2e-3; // the server's cached-prefix prefill vs one batch in `logits`: float rounding only

    /// <summary>The float64 log-softmax of every position's full logits, from `edgellm logits --top VOCAB`.</summary>
    private static double[][] ReferenceLogSoftmax(int[] ids)
    {
        var r = CliRunner.InProcess("logits", "-m", TestPaths.Stories260K, "--tokens", string.Join(",", ids), "--top", "100000", "-t", "1", "-c", "256", "-ctk", "f32", "-ctv", "f32"); // the fixture's server keeps the library default, f32 rows
        Assert.True(r.ExitCode == 0, r.Stderr);
        var rows = new List<double[]>();
        foreach (string line in r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var top = JsonDocument.Parse(line).RootElement.GetProperty("top");
            var row = new double[top.GetArrayLength()];
            Assert.Equal(512, row.Length);
            foreach (var pair in top.EnumerateArray()) row[pair[0].GetInt32()] = pair[1].GetDouble();
            double max = row.Max();
            double lse = max + Math.Log(row.Sum(x => Math.Exp(x - max)));
            rows.Add(row.Select(x => x - lse).ToArray());
        }
        Assert.Equal(ids.Length, rows.Count);
        return rows.ToArray();
    }

    /// <summary>The greedy continuation's token ids, from the generator itself.</summary>
    private static int[] GreedyIds(int[] prompt, int max, int[]? stops)
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 256 });
        var tok = Tokenizer.FromGguf(model.File);
        var ids = new List<int>();
        new Generator(model, tok).Generate(prompt, new GenerateOptions
        {
            MaxTokens = max, Sampler = SamplerOptions.Greedy, StopTokens = stops, OnLogprobs = lp => ids.Add(lp.Token),
        }, _ => true);
        return ids.ToArray();
    }

    private static byte[] Bytes(JsonElement e) => e.GetProperty("bytes").EnumerateArray().Select(b => (byte)b.GetInt32()).ToArray();

    [Fact]
    public async Task Chat_logprobs_are_the_models_log_softmax_streamed_and_not()
    {
        var tok = f.Engine.Tokenizer;
        int[] prompt = tok.Encode(ChatTemplates.Render(ChatTemplateKind.ChatMl, [new EdgeLlm.Generation.ChatMessage("user", "Once upon a time")], true),
            tok.Vocab.AddBos, parseSpecial: true);
        int[] ids = GreedyIds(prompt, 12, f.Engine.ChatStopTokens);
        Assert.NotEmpty(ids);
        var reference = ReferenceLogSoftmax([.. prompt, .. ids]);

        string body(bool stream) => "{\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a time\"}],\"temperature\":0,\"max_tokens\":12,"
            + "\"logprobs\":true,\"top_logprobs\":5,\"stream\":" + (stream ? "true" : "false") + "}";
        var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(body(false)));
        var choice = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0];
        var content = choice.GetProperty("logprobs").GetProperty("content").EnumerateArray().ToArray();
        Assert.Equal(ids.Length, content.Length);
        var text = new StringBuilder();
        for (int k = 0; k < ids.Length; k++)
        {
            var e = content[k];
            double[] row = reference[prompt.Length - 1 + k];
            Assert.Equal(tok.TokenPiece(ids[k]).ToArray(), Bytes(e));
            Assert.Equal(Encoding.UTF8.GetString(tok.TokenPiece(ids[k])), e.GetProperty("token").GetString());
            Assert.Equal(row[ids[k]], e.GetProperty("logprob").GetDouble(), Tol);
            var top = e.GetProperty("top_logprobs").EnumerateArray().ToArray();
            Assert.Equal(5, top.Length);
            double[] best = row.OrderByDescending(x => x).Take(5).ToArray();
            for (int j = 0; j < 5; j++) Assert.Equal(best[j], top[j].GetProperty("logprob").GetDouble(), Tol);
            Assert.Equal(Bytes(e), Bytes(top[0])); // greedy: the pick is the most likely token
            text.Append(e.GetProperty("token").GetString());
        }
        Assert.Equal(choice.GetProperty("message").GetProperty("content").GetString(), text.ToString());

        // Streamed: the chunks' entries, joined, are the same tokens and values.
        var s = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(body(true)));
        var streamed = new List<JsonElement>();
        foreach (string line in (await s.Content.ReadAsStringAsync()).Split('\n'))
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
            var ch = JsonDocument.Parse(line[6..]).RootElement.GetProperty("choices");
            if (ch.GetArrayLength() > 0 && ch[0].TryGetProperty("logprobs", out var lp) && lp.ValueKind == JsonValueKind.Object)
                streamed.AddRange(lp.GetProperty("content").EnumerateArray());
        }
        Assert.Equal(content.Length, streamed.Count);
        for (int k = 0; k < content.Length; k++)
        {
            Assert.Equal(content[k].GetProperty("token").GetString(), streamed[k].GetProperty("token").GetString());
            Assert.Equal(content[k].GetProperty("logprob").GetDouble(), streamed[k].GetProperty("logprob").GetDouble(), Tol); // the second request reuses the cached prompt prefix
        }
    }

    [Fact]
    public async Task Completions_logprobs_have_the_legacy_shape_and_values()
    {
        var tok = f.Engine.Tokenizer;
        int[] prompt = tok.Encode("The little dog", addBos: true);
        int[] ids = GreedyIds(prompt, 10, null);
        var reference = ReferenceLogSoftmax([.. prompt, .. ids]);
        var r = await f.Http.PostAsync("/v1/completions", ServerFixture.Body("""{"prompt":"The little dog","temperature":0,"max_tokens":10,"logprobs":3}"""));
        var choice = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0];
        var lp = choice.GetProperty("logprobs");
        var tokens = lp.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToArray();
        var values = lp.GetProperty("token_logprobs").EnumerateArray().Select(t => t.GetDouble()).ToArray();
        var tops = lp.GetProperty("top_logprobs").EnumerateArray().ToArray();
        var offsets = lp.GetProperty("text_offset").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        Assert.Equal(ids.Length, tokens.Length);
        int offset = 0;
        for (int k = 0; k < ids.Length; k++)
        {
            double[] row = reference[prompt.Length - 1 + k];
            Assert.Equal(Encoding.UTF8.GetString(tok.TokenPiece(ids[k])), tokens[k]);
            Assert.Equal(row[ids[k]], values[k], Tol);
            var top = tops[k].EnumerateObject().Select(p => p.Value.GetDouble()).OrderByDescending(x => x).ToArray();
            Assert.InRange(top.Length, 1, 3); // fewer when two tokens print the same text
            Assert.Equal(row.Max(), top[0], Tol);
            Assert.Equal(offset, offsets[k]);
            offset += tokens[k].Length;
        }
        Assert.Equal(choice.GetProperty("text").GetString(), string.Concat(tokens));
    }

    [Theory]
    [InlineData("/v1/chat/completions", "\"logprobs\":3", "logprobs")]
    [InlineData("/v1/chat/completions", "\"top_logprobs\":2", "top_logprobs")]
    [InlineData("/v1/chat/completions", "\"logprobs\":true,\"top_logprobs\":21", "top_logprobs")]
    [InlineData("/v1/completions", "\"logprobs\":true", "logprobs")]
    [InlineData("/v1/completions", "\"logprobs\":21", "logprobs")]
    [InlineData("/v1/completions", "\"logprobs\":1,\"top_logprobs\":1", "top_logprobs")]
    public async Task Bad_logprobs_requests_are_400s_naming_the_field(string path, string fields, string param)
    {
        string input = path == "/v1/completions" ? "\"prompt\":\"hi\"" : "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
        var r = await f.Http.PostAsync(path, ServerFixture.Body("{" + input + ",\"max_tokens\":2," + fields + "}"));
        Assert.Equal(400, (int)r.StatusCode);
        var e = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(param, e.GetProperty("param").GetString());
    }

    [Fact]
    public void Token_logprobs_match_a_float64_log_softmax_with_ties_by_lower_id()
    {
        var rng = new Random(1);
        var logits = new float[1000];
        for (int i = 0; i < logits.Length; i++) logits[i] = (float)(rng.NextDouble() * 20 - 10);
        logits[10] = logits[500] = logits[900] = 12.5f; // a three-way tie at the top
        var lp = new TokenLogprobs();
        lp.Compute(logits, 42, 20);
        double max = logits.Max();
        double lse = max + Math.Log(logits.Sum(x => Math.Exp(x - (double)max)));
        Assert.Equal(logits[42] - lse, lp.Logprob, 1e-12);
        var expected = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(20).ToArray();
        Assert.Equal(20, lp.TopCount);
        Assert.Equal(expected, lp.TopIds);
        for (int j = 0; j < 20; j++) Assert.Equal(logits[expected[j]] - lse, lp.TopLogprobs[j], 1e-12);
        lp.Compute(logits, 7, 0);
        Assert.Equal(0, lp.TopCount);
        _ = CultureInfo.InvariantCulture;
    }
}
