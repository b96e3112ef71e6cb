using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using EdgeLlm.Cli.Server;
using EdgeLlm.Generation;
using OpenAI;
using OpenAI.Chat;
using ChatMessage = EdgeLlm.Generation.ChatMessage;

namespace EdgeLlm.Tests.Server;

/// <summary>Request shapes real clients send: content parts, developer/tool roles, aliases, usage details, refusals by name.</summary>
[Collection("Server")]
public class ServerCompatTests(ServerFixture f)
{
    private static string Chat(string messagesJson, int max, bool stream = false, string extra = "")
        => $$"""{"model":"stories260K","messages":{{messagesJson}},"temperature":0,"max_tokens":{{max}},"stream":{{(stream ? "true" : "false")}}{{extra}}}""";

    private async Task<JsonElement> PostOk(string path, string body)
    {
        var r = await f.Http.PostAsync(path, ServerFixture.Body(body));
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, text);
        return JsonDocument.Parse(text).RootElement;
    }

    private static string Content(JsonElement chat) => chat.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
    private static int Usage(JsonElement j, string name) => j.GetProperty("usage").GetProperty(name).GetInt32();

    private ChatClient Client(string model = ServerFixture.Alias) => new(model, new ApiKeyCredential(ServerFixture.Key),
        new OpenAIClientOptions { Endpoint = new Uri(f.Server.BaseAddress, "/v1") });

    private int Tokens(params ChatMessage[] messages)
        => f.Engine.Tokenizer.Encode(ChatTemplates.Render(ChatTemplateKind.ChatMl, messages, true), f.Engine.Tokenizer.Vocab.AddBos, parseSpecial: true).Length;

    [Fact]
    public async Task Content_parts_give_the_same_text_as_a_plain_string()
    {
        var plain = await PostOk("/v1/chat/completions", Chat("""[{"role":"user","content":"Once upon a time"}]""", 16));
        var parts = await PostOk("/v1/chat/completions", Chat("""[{"role":"user","content":[{"type":"text","text":"Once upon"},{"type":"text","text":" a time"}]}]""", 16));
        string expected = f.GreedyChat("Once upon a time", 16);
        Assert.Equal(expected, Content(plain));
        Assert.Equal(expected, Content(parts));
        Assert.Equal(Usage(plain, "prompt_tokens"), Usage(parts, "prompt_tokens"));

        var client = Client();
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 16 };
        var message = new UserChatMessage(ChatMessageContentPart.CreateTextPart("Once upon"), ChatMessageContentPart.CreateTextPart(" a time"));
        OpenAI.Chat.ChatCompletion done = await client.CompleteChatAsync([message], options);
        Assert.Equal(expected, done.Content[0].Text);
        var sb = new StringBuilder();
        await foreach (var u in client.CompleteChatStreamingAsync([message], options))
            foreach (var p in u.ContentUpdate) sb.Append(p.Text);
        Assert.Equal(expected, sb.ToString());
    }

    [Theory]
    [InlineData("""{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}""", "image_url")]
    [InlineData("""{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}""", "input_audio")]
    [InlineData("""{"type":"file","file":{"file_id":"x"}}""", "file")]
    public async Task Non_text_parts_are_refused_naming_the_part_type(string part, string type)
    {
        var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(
            Chat($$"""[{"role":"user","content":[{"type":"text","text":"What is this?"},{{part}}]}]""", 4)));
        Assert.Equal(400, (int)r.StatusCode);
        var e = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Contains($"'{type}'", e.GetProperty("message").GetString());
        Assert.Equal("messages[0].content[1]", e.GetProperty("param").GetString());
    }

    [Fact]
    public async Task Developer_role_is_rendered_as_system()
    {
        Assert.Equal(new ChatMessage("system", "Be brief."), Endpoints.RenderMessage(ChatTemplateKind.Llama3, "developer", "Be brief.", null));
        var sys = await PostOk("/v1/chat/completions", Chat("""[{"role":"system","content":"You tell stories."},{"role":"user","content":"The cat"}]""", 12));
        var dev = await PostOk("/v1/chat/completions", Chat("""[{"role":"developer","content":"You tell stories."},{"role":"user","content":"The cat"}]""", 12));
        Assert.Equal(Content(sys), Content(dev));
        int expectedTokens = Tokens(new ChatMessage("system", "You tell stories."), new ChatMessage("user", "The cat"));
        Assert.Equal(expectedTokens, Usage(sys, "prompt_tokens"));
        Assert.Equal(expectedTokens, Usage(dev, "prompt_tokens"));

#pragma warning disable OPENAI001 // DeveloperChatMessage is marked experimental in the client; the role itself is part of the API
        var developer = new DeveloperChatMessage("You tell stories.");
#pragma warning restore OPENAI001
        OpenAI.Chat.ChatCompletion viaClient = await Client().CompleteChatAsync(
            [developer, new UserChatMessage("The cat")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 });
        Assert.Equal(Content(sys), viaClient.Content[0].Text);
        Assert.Equal(expectedTokens, viaClient.Usage.InputTokenCount);
    }

    [Fact]
    public async Task Tool_results_use_the_templates_tool_turn_or_a_labelled_user_turn()
    {
        Assert.Equal("<|im_start|>tool\n42<|im_end|>\n",
            ChatTemplates.Render(ChatTemplateKind.ChatMl, [Endpoints.RenderMessage(ChatTemplateKind.ChatMl, "tool", "42", "call_1")], false));
        Assert.Equal("<|start_header_id|>ipython<|end_header_id|>\n\n42<|eot_id|>",
            ChatTemplates.Render(ChatTemplateKind.Llama3, [Endpoints.RenderMessage(ChatTemplateKind.Llama3, "tool", "42", "call_1")], false));
        Assert.Equal(new ChatMessage("user", "Tool result (call_1):\n42"), Endpoints.RenderMessage(ChatTemplateKind.Gemma, "tool", "42", "call_1"));
        Assert.Equal(new ChatMessage("user", "Tool result:\n42"), Endpoints.RenderMessage(ChatTemplateKind.MistralV7, "tool", "42", null));

        var j = await PostOk("/v1/chat/completions", Chat(
            """[{"role":"user","content":"What is six times seven?"},{"role":"assistant","content":"Let me check."},{"role":"tool","tool_call_id":"call_1","content":"42"}]""", 8));
        Assert.Equal(Tokens(new ChatMessage("user", "What is six times seven?"), new ChatMessage("assistant", "Let me check."), new ChatMessage("tool", "42")),
            Usage(j, "prompt_tokens"));

        var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(Chat(
            """[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]}]""", 4)));
        Assert.Equal(400, (int)r.StatusCode);
        Assert.Equal("messages[1].tool_calls", JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task Alias_is_listed_and_any_model_name_is_accepted()
    {
        var m = JsonDocument.Parse(await f.Http.GetStringAsync("/v1/models")).RootElement.GetProperty("data");
        Assert.Equal(["stories260K", ServerFixture.Alias], m.EnumerateArray().Select(e => e.GetProperty("id").GetString()!).ToArray());
        string expected = f.GreedyChat("Once upon a time", 8);
        foreach (string name in new[] { ServerFixture.Alias, "some-other-model" })
        {
            var j = await PostOk("/v1/chat/completions",
                $$"""{"model":"{{name}}","messages":[{"role":"user","content":"Once upon a time"}],"temperature":0,"max_tokens":8}""");
            Assert.Equal(name, j.GetProperty("model").GetString());
            Assert.Equal(expected, Content(j));
        }
        OpenAI.Chat.ChatCompletion done = await Client(ServerFixture.Alias).CompleteChatAsync([new UserChatMessage("Once upon a time")],
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 8 });
        Assert.Equal(ServerFixture.Alias, done.Model);
        Assert.Equal(expected, done.Content[0].Text);
    }

    [Fact]
    public async Task Include_usage_sends_a_final_usage_chunk_equal_to_the_non_streamed_usage()
    {
        const string messages = """[{"role":"user","content":"The little dog"}]""";
        var whole = await PostOk("/v1/chat/completions", Chat(messages, 20));
        var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(Chat(messages, 20, true, ""","stream_options":{"include_usage":true}""")));
        var (chunks, done) = await ServerTests.ReadSse(r);
        Assert.True(done);
        var last = chunks[^1];
        Assert.Equal(0, last.GetProperty("choices").GetArrayLength());
        Assert.Equal(Usage(whole, "prompt_tokens"), last.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(Usage(whole, "completion_tokens"), last.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(Usage(whole, "total_tokens"), last.GetProperty("usage").GetProperty("total_tokens").GetInt32());
        foreach (var c in chunks.Take(chunks.Count - 1)) Assert.False(c.TryGetProperty("usage", out _));
        Assert.Equal(Content(whole), ServerTests.ChatText(chunks.Take(chunks.Count - 1).ToList()));

        // Without include_usage: no usage chunk (every chunk has a choice).
        var (plain, _) = await ServerTests.ReadSse(await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(Chat(messages, 20, true))));
        Assert.All(plain, c => Assert.Equal(1, c.GetProperty("choices").GetArrayLength()));

        // Completions too.
        var cw = await PostOk("/v1/completions", """{"prompt":"The little dog","temperature":0,"max_tokens":10}""");
        var (cc, _) = await ServerTests.ReadSse(await f.Http.PostAsync("/v1/completions", ServerFixture.Body(
            """{"prompt":"The little dog","temperature":0,"max_tokens":10,"stream":true,"stream_options":{"include_usage":true}}""")));
        Assert.Equal(0, cc[^1].GetProperty("choices").GetArrayLength());
        Assert.Equal(Usage(cw, "completion_tokens"), cc[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // The official client asks for the usage when streaming and reads it from that chunk.
        int? streamedOutput = null, streamedInput = null;
        await foreach (var u in Client().CompleteChatStreamingAsync([new UserChatMessage("The little dog")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 20 }))
            if (u.Usage is { } usage) { streamedOutput = usage.OutputTokenCount; streamedInput = usage.InputTokenCount; }
        Assert.Equal(Usage(whole, "completion_tokens"), streamedOutput);
        Assert.Equal(Usage(whole, "prompt_tokens"), streamedInput);
    }

    [Fact]
    public async Task Cached_tokens_equal_the_reused_prefix_of_a_repeated_request()
    {
        string body = Chat("""[{"role":"user","content":"A red ball rolled"}]""", 6);
        await PostOk("/v1/chat/completions", body);
        var second = await PostOk("/v1/chat/completions", body);
        int prompt = Usage(second, "prompt_tokens");
        // The whole prompt is in the cache; all but its last token are reused (that one runs to give the logits).
        Assert.Equal(prompt - 1, second.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());

        OpenAI.Chat.ChatCompletion viaClient = await Client().CompleteChatAsync([new UserChatMessage("A red ball rolled")],
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 6 });
        Assert.Equal(prompt - 1, viaClient.Usage.InputTokenDetails.CachedTokenCount);

        // A different prompt: only its common prefix with what the cache holds (the chat prompt above) is reused.
        var other = await PostOk("/v1/completions", """{"prompt":"Zebra","temperature":0,"max_tokens":2}""");
        int[] chatTokens = f.Engine.Tokenizer.Encode(ChatTemplates.Render(ChatTemplateKind.ChatMl, [new ChatMessage("user", "A red ball rolled")], true),
            f.Engine.Tokenizer.Vocab.AddBos, parseSpecial: true);
        int[] zebra = f.Engine.Tokenizer.Encode("Zebra", addBos: true);
        int common = 0;
        while (common < zebra.Length - 1 && common < chatTokens.Length && chatTokens[common] == zebra[common]) common++;
        Assert.Equal(common, other.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
        Assert.True(common < zebra.Length - 1, "the test needs a prompt that differs from the cached one before its last token");
    }

    [Fact]
    public async Task Prompt_array_of_one_string_equals_the_string_and_more_are_refused()
    {
        var s = await PostOk("/v1/completions", """{"prompt":"Once upon a time","temperature":0,"max_tokens":12}""");
        var a = await PostOk("/v1/completions", """{"prompt":["Once upon a time"],"temperature":0,"max_tokens":12}""");
        Assert.Equal(s.GetProperty("choices")[0].GetProperty("text").GetString(), a.GetProperty("choices")[0].GetProperty("text").GetString());
        foreach (string bad in new[] { """["a","b"]""", "[1,2,3]", "[[1,2]]", "5", "[]" })
        {
            var r = await f.Http.PostAsync("/v1/completions", ServerFixture.Body($$"""{"prompt":{{bad}},"max_tokens":2}"""));
            Assert.Equal(400, (int)r.StatusCode);
            Assert.Equal("prompt", JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("param").GetString());
        }
    }

    [Theory]
    [InlineData("max_tokens")]
    [InlineData("max_completion_tokens")]
    public async Task Zero_max_tokens_is_refused_as_openai_does(string field)
    {
        var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(
            $$"""{"messages":[{"role":"user","content":"hi"}],"{{field}}":0}"""));
        Assert.Equal(400, (int)r.StatusCode);
        var e = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(field, e.GetProperty("param").GetString());
        Assert.Equal("integer_below_min_value", e.GetProperty("code").GetString());
    }

    [Theory]
    [InlineData("/v1/chat/completions", "tools", """[{"type":"function","function":{"name":"f","parameters":{}}}]""")]
    [InlineData("/v1/chat/completions", "tool_choice", "\"required\"")]
    [InlineData("/v1/chat/completions", "functions", """[{"name":"f"}]""")]
    [InlineData("/v1/chat/completions", "function_call", "\"auto\"")]
    [InlineData("/v1/chat/completions", "logit_bias", """{"50":-100}""")]
    [InlineData("/v1/chat/completions", "n", "2")]
    [InlineData("/v1/chat/completions", "audio", """{"voice":"alloy","format":"wav"}""")]
    [InlineData("/v1/chat/completions", "modalities", """["text","audio"]""")]
    [InlineData("/v1/chat/completions", "prediction", """{"type":"content","content":"x"}""")]
    [InlineData("/v1/chat/completions", "web_search_options", "{}")]
    [InlineData("/v1/completions", "echo", "true")]
    [InlineData("/v1/completions", "suffix", "\"end\"")]
    [InlineData("/v1/completions", "best_of", "3")]
    [InlineData("/v1/completions", "logit_bias", """{"50":5}""")]
    [InlineData("/v1/completions", "n", "3")]
    public async Task Unimplemented_fields_are_refused_naming_the_field(string path, string field, string value)
    {
        string input = path == "/v1/completions" ? "\"prompt\":\"hi\"" : "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
        var r = await f.Http.PostAsync(path, ServerFixture.Body($$"""{{{input}},"max_tokens":2,"{{field}}":{{value}}}"""));
        Assert.Equal(400, (int)r.StatusCode);
        var e = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(field, e.GetProperty("param").GetString());
        Assert.Contains($"'{field}'", e.GetProperty("message").GetString());
    }

    [Fact]
    public async Task Default_values_of_unimplemented_fields_and_unknown_fields_are_accepted()
    {
        var j = await PostOk("/v1/chat/completions", Chat("""[{"role":"user","content":"Once upon a time"}]""", 8,
            extra: ""","response_format":{"type":"text"},"logprobs":false,"n":1,"tools":[],"tool_choice":"none","logit_bias":{},"user":"u1","store":false,"metadata":{"a":"b"},"x_vendor_extra":{"deep":[1,2]}"""));
        Assert.Equal(f.GreedyChat("Once upon a time", 8), Content(j));
    }

    [Theory]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}""", "temperature")]
    [InlineData("""{"messages":[{"role":"user","content":5}]}""", "messages[0].content")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":1.5}""", "max_tokens")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}""", "messages[1]")] // cut short: named where it broke off
    [InlineData("""{"messages":[{"role":"user","content":"hi"}]} trailing""", null)]
    public async Task Error_messages_name_fields_not_dotnet_types(string body, string? param)
    {
        var r = await f.Http.PostAsync("/v1/chat/completions", ServerFixture.Body(body));
        Assert.Equal(400, (int)r.StatusCode);
        var e = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        string message = e.GetProperty("message").GetString()!;
        Assert.Equal(param, e.GetProperty("param").GetString());
        foreach (string leak in new[] { "System.", "Nullable", "Deserialize", "BytePositionInLine", "JsonElement", "Int32", "Single", "EdgeLlm.Cli" })
            Assert.DoesNotContain(leak, message);
    }
}
