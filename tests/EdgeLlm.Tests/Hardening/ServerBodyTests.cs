using System.Text;
using System.Text.Json;
using EdgeLlm.Cli.Server;
using EdgeLlm.Tests.Server;

namespace EdgeLlm.Tests.Hardening;

/// <summary>
/// Request bodies checked as a whole before any field is read: a string that is not text anywhere in the body (message
/// content, prompt, a response_format schema's enum or property names) is one 400 naming its line and byte, the same on
/// every endpoint (the AOT build answered 500 "internal error" for these, its InvalidOperationException not carrying
/// the mark the JIT build's does); a body that is JSON but not an object says so (it was "not valid JSON").
/// </summary>
[Collection("Server")]
public class ServerBodyTests(ServerFixture f)
{
    private async Task<(int Status, JsonElement Error)> Post(string path, string body)
    {
        var r = await f.Http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
        string text = await r.Content.ReadAsStringAsync();
        return ((int)r.StatusCode, JsonDocument.Parse(text).RootElement.GetProperty("error").Clone());
    }

    [Theory]
    [InlineData("/v1/completions", "{\"prompt\":\"\\udc00\",\"max_tokens\":2}", 11)]
    [InlineData("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a \\udfff\"}]}],\"max_tokens\":2}", 62)]
    [InlineData("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2,\n\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"object\",\"properties\":{\"\\ud800\":{}}}}}}", 107)]
    public async Task A_string_that_is_not_text_is_a_400_naming_where(string path, string body, int byteInLine)
    {
        var (status, e) = await Post(path, body);
        Assert.Equal(400, status);
        Assert.Equal("invalid_json", e.GetProperty("code").GetString());
        int line = 1 + body.Take(body.IndexOf("\\u", StringComparison.Ordinal)).Count(c => c == '\n');
        Assert.Equal($"the request body has a string that is not valid text (an unpaired \\uD800-\\uDFFF escape or invalid UTF-8) at line {line}, byte {byteInLine}",
            e.GetProperty("message").GetString());
    }

    [Theory]
    [InlineData("[1]")]
    [InlineData("\"hello\"")]
    [InlineData("5")]
    [InlineData("null")]
    public async Task A_body_that_is_not_an_object_says_so(string body)
    {
        var (status, e) = await Post("/v1/chat/completions", body);
        Assert.Equal(400, status);
        Assert.Equal("the request body must be a JSON object", e.GetProperty("message").GetString());
    }

    [Theory]
    [InlineData("{\"a\":\"x\\ud83d\\ude00y\",\"\\u00e9\":[\"\\u0041\"]}", null)]
    [InlineData("{\"a\":\"\\ud83dx\"}", "1,6")]
    [InlineData("{\n  \"ok\": 1,\n  \"\\udfff\": 2}", "3,3")]
    [InlineData("{\"a\": [1, 2", null)] // malformed before any bad string: the deserializer reports it
    public void FirstStringNotText_finds_the_first_bad_string(string json, string? where)
    {
        var at = Endpoints.FirstStringNotText(Encoding.UTF8.GetBytes(json));
        Assert.Equal(where, at is { } p ? $"{p.Line},{p.Byte}" : null);
    }
}
