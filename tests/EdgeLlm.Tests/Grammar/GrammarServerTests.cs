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
using ChatCompletion = OpenAI.Chat.ChatCompletion;

#pragma warning disable OPENAI001 // ChatCompletionOptions.Seed is marked experimental by the client library

namespace EdgeLlm.Tests.Grammar;

/// <summary>response_format json_object / json_schema through the server: raw HTTP (streamed and not) and the official OpenAI client.</summary>
[Collection("Server")]
public class GrammarServerTests(ServerFixture f)
{
    internal static string Escape(string s) => JsonSerializer.Serialize(s);

    /// <summary>Posts and returns the answer's text and finish_reason, reading SSE when streaming.</summary>
    internal static async Task<(string Text, string Finish)> Ask(HttpClient http, string path, string body, bool stream)
    {
        var r = await http.PostAsync(path, ServerFixture.Body(body));
        string raw = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, raw);
        bool chat = path.Contains("chat");
        if (!stream)
        {
            var c = JsonDocument.Parse(raw).RootElement.GetProperty("choices")[0];
            return (chat ? c.GetProperty("message").GetProperty("content").GetString()! : c.GetProperty("text").GetString()!,
                c.GetProperty("finish_reason").GetString()!);
        }
        var text = new StringBuilder();
        string? finish = null;
        bool done = false;
        foreach (string line in raw.Split('\n'))
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            string data = line[6..];
            if (data == "[DONE]") { done = true; continue; }
            var choices = JsonDocument.Parse(data).RootElement.GetProperty("choices");
            if (choices.GetArrayLength() == 0) continue;
            var c = choices[0];
            if (chat && c.GetProperty("delta").TryGetProperty("content", out var piece)) text.Append(piece.GetString());
            if (!chat) text.Append(c.GetProperty("text").GetString());
            if (c.TryGetProperty("finish_reason", out var fr) && fr.ValueKind == JsonValueKind.String) finish = fr.GetString();
        }
        Assert.True(done, raw);
        return (text.ToString(), finish ?? throw new Xunit.Sdk.XunitException("no finish_reason: " + raw));
    }

    internal static string Format(TestSchemas.Case c) => "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"" + c.Name + "\",\"schema\":" + c.Schema + ",\"strict\":true}}";

    private static string Flag(bool b) => b ? "true" : "false";

    [Fact]
    public async Task Chat_json_schema_answers_validate_on_the_bundled_model()
    {
        var failures = new List<string>();
        for (int i = 0; i < TestSchemas.All.Length; i++)
        {
            var c = TestSchemas.All[i];
            bool stream = i % 2 == 1;
            string body = "{\"messages\":[{\"role\":\"user\",\"content\":" + Escape(c.Prompt) + "}],\"seed\":" + (200 + i)
                + ",\"temperature\":1,\"max_tokens\":150,\"stream\":" + Flag(stream) + ",\"response_format\":" + Format(c) + "}";
            var (text, finish) = await Ask(f.Http, "/v1/chat/completions", body, stream);
            Assert.Contains(finish, (string[])["stop", "length"]);
            GrammarGenerationTests.CheckAnswer(c, text, finish == "stop", failures, stream ? "chat/stream" : "chat");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public async Task Json_object_on_both_endpoints_streamed_and_not()
    {
        for (int i = 0; i < 4; i++)
        {
            bool stream = i % 2 == 1;
            string path = i < 2 ? "/v1/chat/completions" : "/v1/completions";
            string input = i < 2 ? "\"messages\":[{\"role\":\"user\",\"content\":\"Give me JSON.\"}]" : "\"prompt\":\"Once upon a time\"";
            var (text, finish) = await Ask(f.Http, path,
                "{" + input + ",\"seed\":" + i + ",\"max_tokens\":120,\"stream\":" + Flag(stream) + ",\"response_format\":{\"type\":\"json_object\"}}", stream);
            if (finish == "stop") Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(text).RootElement.ValueKind);
            else Assert.True(GrammarMatcher.IsLivePrefix(EdgeLlm.Generation.Grammar.JsonObject, Encoding.UTF8.GetBytes(text)), text);
        }
    }

    [Fact]
    public async Task The_openai_client_gets_schema_valid_json_streamed_and_not()
    {
        var client = new ChatClient("gpt-4o-mini", new ApiKeyCredential(ServerFixture.Key),
            new OpenAIClientOptions { Endpoint = new Uri(f.Server.BaseAddress, "/v1") });
        var failures = new List<string>();
        foreach (string name in (string[])["person", "tagged-union", "orders", "enum-with-null"])
        {
            var c = TestSchemas.All.Single(x => x.Name == name);
            var options = new ChatCompletionOptions
            {
                ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat(c.Name, BinaryData.FromString(c.Schema), jsonSchemaIsStrict: true),
                Seed = 11, Temperature = 1, MaxOutputTokenCount = 150,
            };
            ChatCompletion done = await client.CompleteChatAsync([new UserChatMessage(c.Prompt)], options);
            GrammarGenerationTests.CheckAnswer(c, done.Content[0].Text, done.FinishReason == ChatFinishReason.Stop, failures, "client");

            var sb = new StringBuilder();
            ChatFinishReason? finish = null;
            await foreach (var u in client.CompleteChatStreamingAsync([new UserChatMessage(c.Prompt)], options))
            {
                foreach (var part in u.ContentUpdate) sb.Append(part.Text);
                finish ??= u.FinishReason;
            }
            Assert.Equal(done.Content[0].Text, sb.ToString()); // same seed: the same answer
            Assert.Equal(done.FinishReason, finish);
        }
        ChatCompletion obj = await client.CompleteChatAsync([new UserChatMessage("JSON please")],
            new ChatCompletionOptions { ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat(), Seed = 3, MaxOutputTokenCount = 150 });
        if (obj.FinishReason == ChatFinishReason.Stop)
            Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(obj.Content[0].Text).RootElement.ValueKind);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [InlineData("""{"type":"yaml"}""", "response_format.type", "'yaml'")]
    [InlineData("""{"type":"json_schema"}""", "response_format.json_schema", "'response_format.json_schema'")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x"}}""", "response_format.json_schema.schema", "is required")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","pattern":"a+"}}}""", "response_format.json_schema.schema", "keyword 'pattern' is not supported")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x","schema":{"$ref":"https://x/y"}}}""", "response_format.json_schema.schema", "'$ref' 'https://x/y'")]
    [InlineData("\"json\"", "response_format", "must be an object")]
    public async Task Bad_response_formats_are_400s_naming_the_field(string format, string param, string message)
    {
        var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2,\"response_format\":" + format + "}"));
        string raw = await r.Content.ReadAsStringAsync();
        Assert.Equal(400, (int)r.StatusCode);
        var e = JsonDocument.Parse(raw).RootElement.GetProperty("error");
        Assert.Equal(param, e.GetProperty("param").GetString());
        Assert.Contains(message, e.GetProperty("message").GetString());
    }

    [Fact]
    public async Task Json_schema_answers_validate_on_a_random_model_through_its_own_server()
    {
        using var model = LlamaModel.Load(GrammarGenerationTests.RandomModel, new BackendOptions { Threads = 1, ContextSize = 512 });
        using var engine = new InferenceEngine(model, "random", ChatTemplateKind.ChatMl, queueLimit: 2);
        await using var server = await EdgeLlmServer.StartAsync(engine, new ServerOptions { Port = 0 });
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        var failures = new List<string>();
        for (int i = 0; i < TestSchemas.All.Length; i++)
        {
            var c = TestSchemas.All[i];
            bool stream = i % 2 == 0;
            bool chat = i % 4 < 2;
            string input = chat ? "\"messages\":[{\"role\":\"user\",\"content\":" + Escape(c.Prompt) + "}]" : "\"prompt\":" + Escape(c.Prompt);
            string body = "{" + input + ",\"seed\":" + (300 + i) + ",\"max_tokens\":300,\"stream\":" + Flag(stream) + ",\"response_format\":" + Format(c) + "}";
            var (text, finish) = await Ask(http, chat ? "/v1/chat/completions" : "/v1/completions", body, stream);
            GrammarGenerationTests.CheckAnswer(c, text, finish == "stop", failures, $"random {(chat ? "chat" : "completions")}{(stream ? "/stream" : "")}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
