using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using EdgeLlm.Cli.Server;
using EdgeLlm.Generation;
using EdgeLlm.Model;
using EdgeLlm.Tests.Server;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Embeddings;

namespace EdgeLlm.Tests.Slots;

/// <summary>stories260K behind a server with 4 slots (<c>--parallel 4</c>) and embeddings on.</summary>
public sealed class ParallelServerFixture : IAsyncLifetime
{
    public const int Slots = 4;
    public LlamaModel Model { get; private set; } = null!;
    public EdgeLlmServer Server { get; private set; } = null!;
    public InferenceEngine Engine => Server.Engine;

    public async Task InitializeAsync()
    {
        Model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 2, ContextSize = 256, BatchInvariant = true }); // as serve --parallel N loads it
        var engine = new InferenceEngine(Model, "stories260K", ChatTemplateKind.ChatMl, queueLimit: 16, parallel: Slots, embeddings: true);
        Server = await EdgeLlmServer.StartAsync(engine, new ServerOptions { Port = 0, ApiKey = ServerFixture.Key, LogProvider = new CapturingLoggerProvider() });
    }

    public HttpClient Client()
    {
        var c = new HttpClient { BaseAddress = Server.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        c.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", ServerFixture.Key);
        return c;
    }

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        Server.Engine.Dispose();
        Model.Dispose();
    }
}

[CollectionDefinition("ParallelServer", DisableParallelization = true)]
public sealed class ParallelServerCollection : ICollectionFixture<ParallelServerFixture>;

/// <summary>
/// Several requests at once on a 4-slot server: decoded together (continuous batching), every stream must be exactly
/// what the same request gives when it runs alone with the same seed (greedy ones: what the plain Generator gives).
/// </summary>
[Collection("ParallelServer")]
public class ParallelServerTests(ParallelServerFixture f)
{
    private static readonly string[] Prompts =
        ["Once upon a time", "The cat", "Lily liked", "One day, a boy", "The sun was", "Tom and Sue", "A big red ball", "Mom said"];

    private const int MaxTokens = 24;

    /// <summary>Even requests greedy, odd ones sampled at temperature 0.9 with their own seed.</summary>
    private static string Request(int i, bool stream)
    {
        string sampling = i % 2 == 0 ? "\"temperature\":0" : $"\"temperature\":0.9,\"seed\":{100 + i}";
        return $$"""{"messages":[{"role":"user","content":"{{Prompts[i]}}"}],{{sampling}},"max_tokens":{{MaxTokens}},"stream":{{(stream ? "true" : "false")}}}""";
    }

    private static async Task<string> Stream(HttpClient http, int i)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = ServerFixture.Body(Request(i, true)) };
        using var r = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var (chunks, done) = await ServerTests.ReadSse(r);
        Assert.True(done);
        // One id per stream: no chunk of another request's stream slipped in.
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        return ServerTests.ChatText(chunks);
    }

    /// <summary>What the plain single-sequence Generator gives for request i.</summary>
    private static string Alone(int i)
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 256 });
        var tok = Tokenizer.FromGguf(model.File);
        int[] prompt = tok.Encode(ChatTemplates.Render(ChatTemplateKind.ChatMl, [new EdgeLlm.Generation.ChatMessage("user", Prompts[i])], true), tok.Vocab.AddBos, parseSpecial: true);
        var s = new SamplerOptions();
        s = i % 2 == 0 ? s with { Temperature = 0, PresencePenalty = 0, FrequencyPenalty = 0 }
            : s with { Temperature = 0.9f, Seed = 100 + i, PresencePenalty = 0, FrequencyPenalty = 0 };
        var sb = new StringBuilder();
        new Generator(model, tok).Generate(prompt, new GenerateOptions
        {
            MaxTokens = MaxTokens, Sampler = s, StopTokens = ChatSession.StopTokenIds(tok.Vocab, ChatTemplateKind.ChatMl),
        }, t => { sb.Append(t); return true; });
        return sb.ToString();
    }

    /// <summary>Holds the scheduler until <paramref name="count"/> requests are queued for it, so they surely run in one batch.</summary>
    private async Task Together(int count, Func<Task> start)
    {
        using var gate = new ManualResetEventSlim(false);
        f.Engine.SchedulerGate = gate;
        f.Engine.MaxStepSize = 0;
        try
        {
            var run = start();
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (f.Engine.Pending < count && DateTime.UtcNow < deadline) await Task.Delay(5);
            Assert.Equal(count, f.Engine.Pending);
            gate.Set();
            await run;
        }
        finally
        {
            f.Engine.SchedulerGate = null;
            gate.Set();
        }
        Assert.Equal(count, f.Engine.MaxStepSize);
    }

    [Fact]
    public async Task Eight_concurrent_streams_equal_each_request_run_alone()
    {
        var expected = new string[Prompts.Length];
        for (int i = 0; i < Prompts.Length; i++) expected[i] = Alone(i);
        using var http = f.Client();
        // One at a time through the server first: the same as the Generator.
        for (int i = 0; i < Prompts.Length; i++) Assert.Equal(expected[i], await Stream(http, i));

        long stepsBefore = f.Engine.DecodeSteps, tokensBefore = f.Engine.DecodeTokens;
        var results = new Task<string>[Prompts.Length];
        // 8 streams on 4 slots: 4 start together, the other 4 wait and take slots as they free up.
        await Together(ParallelServerFixture.Slots, () =>
        {
            for (int i = 0; i < results.Length; i++)
            {
                int k = i;
                results[k] = Task.Run(() => Stream(http, k));
            }
            return Task.WhenAll(results);
        });
        for (int i = 0; i < results.Length; i++) Assert.Equal(expected[i], await results[i]);
        Assert.True(f.Engine.DecodeTokens - tokensBefore > f.Engine.DecodeSteps - stepsBefore, "decode steps ran one slot each");
        Assert.Equal(0, f.Engine.Admitted);
        Assert.Equal(0, f.Engine.Busy);

        string metrics = await http.GetStringAsync("/metrics");
        Assert.Contains($"edgellm_slots {ParallelServerFixture.Slots}\n", metrics);
        Assert.Contains("edgellm_slot_busy 0\n", metrics);
        Assert.Contains("edgellm_queue_depth 0\n", metrics);
        Assert.Contains($"edgellm_decode_steps_total {f.Engine.DecodeSteps}\n", metrics);
        Assert.Contains($"edgellm_decode_step_tokens_total {f.Engine.DecodeTokens}\n", metrics);
    }

    /// <summary>A greedy non-streaming /v1/completions answer to prompt i (short prompts: four fit one batch).</summary>
    private static async Task<string> Complete(HttpClient http, int i)
    {
        var r = await http.PostAsync("/v1/completions", ServerFixture.Body($$"""{"prompt":"{{Prompts[i]}}","temperature":0,"max_tokens":{{MaxTokens}}}"""));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        using var doc = JsonDocument.Parse(await r.Content.ReadAsStringAsync());
        return doc.RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    /// <summary>What the plain single-sequence Generator gives for <see cref="Complete"/>'s request i.</summary>
    private static string CompleteAlone(int i)
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 256 });
        var tok = Tokenizer.FromGguf(model.File);
        var sb = new StringBuilder();
        new Generator(model, tok).Generate(tok.Encode(Prompts[i], addBos: true), new GenerateOptions
        {
            MaxTokens = MaxTokens, Sampler = new SamplerOptions() with { Temperature = 0, PresencePenalty = 0, FrequencyPenalty = 0 },
        }, t => { sb.Append(t); return true; });
        return sb.ToString();
    }

    [Fact]
    public async Task Requests_that_end_together_start_their_next_prompts_in_one_step()
    {
        int n = ParallelServerFixture.Slots;
        var expected = new string[n];
        for (int i = 0; i < n; i++) expected[i] = CompleteAlone(i);
        using var http = f.Client();
        // Long enough that the scheduler surely waits for every returning client (the test times nothing).
        f.Engine.GatherWaitOverride = TimeSpan.FromMinutes(5);
        try
        {
            // Four requests end: four completions, which the next four requests answer (older ones are pushed out).
            await Together(n, () => Task.WhenAll(Enumerable.Range(4, n).Select(i => Complete(http, i))));
            f.Engine.MaxStepPrompts = 0;
            var results = new Task<string>[n];
            // The first client comes back alone; wait until the scheduler has taken its request (it holds a slot and
            // nothing is queued), so that without the wait its prompt would run alone.
            results[0] = Task.Run(() => Complete(http, 0));
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while ((f.Engine.Busy < 1 || f.Engine.Pending > 0) && DateTime.UtcNow < deadline) await Task.Delay(5);
            Assert.Equal(1, f.Engine.Busy);
            Assert.Equal(0, f.Engine.Pending);
            for (int i = 1; i < n; i++)
            {
                int k = i;
                results[k] = Task.Run(() => Complete(http, k));
            }
            for (int i = 0; i < n; i++) Assert.Equal(expected[i], await results[i]);
            // All four prompts ran in one step, not the first alone and the other three a step later.
            Assert.Equal(n, f.Engine.MaxStepPrompts);
            Assert.True(f.Engine.GatherSeconds > 0);
        }
        finally
        {
            f.Engine.GatherWaitOverride = null;
        }
    }

    [Fact]
    public async Task A_long_prompt_prefilled_in_chunks_beside_decoding_slots_changes_nothing()
    {
        // ~150 prompt tokens: prefilled over several steps, each chunk sharing the batch with the other slot's token.
        string story = string.Join(" ", Enumerable.Repeat("Lily and Tom went to the park to play with a big red ball.", 6));
        string longJson = $$"""{"messages":[{"role":"user","content":"{{story}}"}],"temperature":0,"max_tokens":16,"stream":true}""";
        string shortJson = $$"""{"messages":[{"role":"user","content":"{{Prompts[3]}}"}],"temperature":0,"max_tokens":60,"stream":true}""";
        int promptTokens = f.Engine.Tokenizer.Encode(ChatTemplates.Render(ChatTemplateKind.ChatMl, [new EdgeLlm.Generation.ChatMessage("user", story)], true),
            f.Engine.Tokenizer.Vocab.AddBos, parseSpecial: true).Length;
        Assert.InRange(promptTokens, 2 * f.Model.MaxBatch, f.Model.ContextSize - 20);
        string expectedLong = Generate(story, 16), expectedShort = Generate(Prompts[3], 60);
        using var http = f.Client();
        async Task<string> Send(string json)
        {
            using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = ServerFixture.Body(json) };
            using var r = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
            var (chunks, done) = await ServerTests.ReadSse(r);
            Assert.True(done);
            return ServerTests.ChatText(chunks);
        }
        Task<string>? a = null, b = null;
        await Together(2, () =>
        {
            a = Task.Run(() => Send(shortJson));
            b = Task.Run(() => Send(longJson));
            return Task.WhenAll(a, b);
        });
        Assert.Equal(expectedShort, await a!);
        Assert.Equal(expectedLong, await b!);
    }

    private static string Generate(string user, int maxTokens)
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 256 });
        var tok = Tokenizer.FromGguf(model.File);
        int[] prompt = tok.Encode(ChatTemplates.Render(ChatTemplateKind.ChatMl, [new EdgeLlm.Generation.ChatMessage("user", user)], true), tok.Vocab.AddBos, parseSpecial: true);
        var sb = new StringBuilder();
        new Generator(model, tok).Generate(prompt, new GenerateOptions
        {
            MaxTokens = maxTokens, Sampler = SamplerOptions.Greedy, StopTokens = ChatSession.StopTokenIds(tok.Vocab, ChatTemplateKind.ChatMl),
        }, t => { sb.Append(t); return true; });
        return sb.ToString();
    }

    [Fact]
    public async Task Eight_concurrent_openai_client_streams_equal_the_generator()
    {
        var client = new ChatClient("any-name", new ApiKeyCredential(ServerFixture.Key), new OpenAIClientOptions { Endpoint = new Uri(f.Server.BaseAddress, "/v1") });
        var expected = new string[Prompts.Length];
        for (int i = 0; i < Prompts.Length; i++) expected[i] = Alone(i);
        var results = new Task<string>[Prompts.Length];
        await Together(ParallelServerFixture.Slots, () =>
        {
            for (int i = 0; i < results.Length; i++)
            {
                int k = i;
                results[k] = Task.Run(async () =>
                {
#pragma warning disable OPENAI001 // Seed is marked experimental in the client
                    var o = new ChatCompletionOptions { MaxOutputTokenCount = MaxTokens, Temperature = k % 2 == 0 ? 0f : 0.9f, Seed = k % 2 == 0 ? null : 100 + k };
#pragma warning restore OPENAI001
                    var sb = new StringBuilder();
                    await foreach (var u in client.CompleteChatStreamingAsync([new UserChatMessage(Prompts[k])], o))
                        foreach (var p in u.ContentUpdate) sb.Append(p.Text);
                    return sb.ToString();
                });
            }
            return Task.WhenAll(results);
        });
        for (int i = 0; i < results.Length; i++) Assert.Equal(expected[i], await results[i]);
    }

    [Fact]
    public async Task A_client_that_leaves_frees_its_slot_while_others_continue()
    {
        string expected = Alone(0);
        using var http = f.Client();
        f.Engine.TextHook = () => Thread.Sleep(5);
        try
        {
            var other = Task.Run(() => Stream(http, 0));
            using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = ServerFixture.Body(Request(2, true).Replace("\"max_tokens\":24", "\"max_tokens\":200")) };
            using (var r = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead))
            {
                using var reader = new StreamReader(await r.Content.ReadAsStreamAsync());
                Assert.StartsWith("data: ", await reader.ReadLineAsync());
            } // the client goes away mid-stream
            Assert.Equal(expected, await other);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while ((f.Engine.Admitted != 0 || f.Engine.Busy != 0) && DateTime.UtcNow < deadline) await Task.Delay(10);
            Assert.Equal(0, f.Engine.Admitted);
            Assert.Equal(0, f.Engine.Busy);
        }
        finally
        {
            f.Engine.TextHook = null;
        }
    }

    [Fact]
    public async Task Embeddings_endpoint_matches_the_float64_oracle()
    {
        string[] texts = ["The little dog ran home.", "Once upon a time"];
        using var http = f.Client();
        var r = await http.PostAsync("/v1/embeddings", ServerFixture.Body($$"""{"model":"x","input":["{{texts[0]}}","{{texts[1]}}"]}"""));
        string body = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, body);
        var j = JsonDocument.Parse(body).RootElement;
        Assert.Equal("list", j.GetProperty("object").GetString());
        int total = 0;
        var b64 = await http.PostAsync("/v1/embeddings", ServerFixture.Body($$"""{"input":"{{texts[0]}}","encoding_format":"base64"}"""));
        Assert.Equal(HttpStatusCode.OK, b64.StatusCode);
        string packed = JsonDocument.Parse(await b64.Content.ReadAsStringAsync()).RootElement.GetProperty("data")[0].GetProperty("embedding").GetString()!;
        byte[] bytes = System.Convert.FromBase64String(packed);
        for (int i = 0; i < texts.Length; i++)
        {
            var item = j.GetProperty("data")[i];
            Assert.Equal(i, item.GetProperty("index").GetInt32());
            float[] v = item.GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()).ToArray();
            int[] tokens = f.Engine.Tokenizer.Encode(texts[i], addBos: f.Engine.Tokenizer.Vocab.AddBos);
            total += tokens.Length;
            EmbeddingTests.Close(EmbeddingTests.Reference(TestPaths.Stories260K, tokens), v, texts[i]);
            if (i == 0)
            {
                var fromB64 = new float[bytes.Length / 4];
                Buffer.BlockCopy(bytes, 0, fromB64, 0, bytes.Length);
                Assert.Equal(v, fromB64);
            }
        }
        Assert.Equal(total, j.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        var client = new EmbeddingClient("any", new ApiKeyCredential(ServerFixture.Key), new OpenAIClientOptions { Endpoint = new Uri(f.Server.BaseAddress, "/v1") });
        OpenAIEmbedding e = await client.GenerateEmbeddingAsync(texts[1]);
        int[] t1 = f.Engine.Tokenizer.Encode(texts[1], addBos: f.Engine.Tokenizer.Vocab.AddBos);
        EmbeddingTests.Close(EmbeddingTests.Reference(TestPaths.Stories260K, t1), e.ToFloats().ToArray(), "openai client");
    }

    [Theory]
    [InlineData("""{"input":[]}""", "input")]
    [InlineData("""{"input":""}""", "input")]
    [InlineData("""{"input":[1,2,3]}""", "input")]
    [InlineData("""{"input":"x","encoding_format":"int8"}""", "encoding_format")]
    [InlineData("""{"input":"x","dimensions":3}""", "dimensions")]
    [InlineData("""{"model":"m"}""", "input")]
    public async Task Bad_embedding_requests_are_refused_by_name(string json, string param)
    {
        using var http = f.Client();
        var r = await http.PostAsync("/v1/embeddings", ServerFixture.Body(json));
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        var err = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(param, err.GetProperty("param").GetString());
    }

    [Fact]
    public async Task Embeddings_are_off_unless_asked_for()
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 64 });
        using var engine = new InferenceEngine(model, "stories260K", ChatTemplateKind.ChatMl, queueLimit: 1);
        await using var server = await EdgeLlmServer.StartAsync(engine, new ServerOptions { Port = 0, LogProvider = new CapturingLoggerProvider() });
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        var r = await http.PostAsync("/v1/embeddings", ServerFixture.Body("""{"input":"x"}"""));
        Assert.Equal(HttpStatusCode.NotImplemented, r.StatusCode);
        Assert.Contains("--embeddings", await r.Content.ReadAsStringAsync());
    }
}
