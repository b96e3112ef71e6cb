using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using EdgeLlm.Tests.Server;

namespace EdgeLlm.Tests.Hardening;

/// <summary>
/// Bad requests that the server answered with 500 (an "internal error" and a stack trace in its log) before: message text
/// with invalid UTF-8 or an unpaired surrogate escape (read as a JsonElement string after the body parsed), and a chunked
/// body whose chunk size overflows (Kestrel's IOException). Each is the client's fault: 400 with a JSON error.
/// </summary>
[Collection("Server")]
public class ServerBadInputTests(ServerFixture f)
{
    private async Task<(int Status, string Code)> Post(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new("application/json");
        var r = await f.Http.PostAsync("/v1/chat/completions", content);
        var e = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(e.GetProperty("message").GetString()));
        return ((int)r.StatusCode, e.GetProperty("code").GetString() ?? "");
    }

    [Theory]
    [InlineData(new byte[] { 0xFF, 0xFE })]       // not UTF-8 at all
    [InlineData(new byte[] { 0xC3 })]             // a truncated two-byte sequence
    [InlineData(new byte[] { 0xED, 0xA0, 0x80 })] // an encoded surrogate (CESU-8), invalid in UTF-8
    public async Task Message_text_that_is_not_UTF8_is_a_400(byte[] bad)
    {
        byte[] body = [.. "{\"messages\":[{\"role\":\"user\",\"content\":\"a"u8, .. bad, .. "b\"}],\"max_tokens\":2}"u8];
        var (status, code) = await Post(body);
        Assert.Equal(400, status);
        Assert.Equal("invalid_json", code);
    }

    [Theory]
    [InlineData("\\ud800")]
    [InlineData("\\udfff x")]
    [InlineData("x \\ud83d")]
    public async Task An_unpaired_surrogate_escape_is_a_400(string escaped)
    {
        var (status, code) = await Post(Encoding.UTF8.GetBytes($$"""{"messages":[{"role":"user","content":"{{escaped}}"}],"max_tokens":2}"""));
        Assert.Equal(400, status);
        Assert.Equal("invalid_json", code);
    }

    [Fact]
    public async Task A_chunk_size_that_overflows_is_a_400()
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(f.Server.BaseAddress.Host, f.Server.BaseAddress.Port);
        using var s = tcp.GetStream();
        string auth = f.Http.DefaultRequestHeaders.Authorization!.ToString();
        byte[] request = Encoding.ASCII.GetBytes(
            $"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n" +
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n");
        await s.WriteAsync(request);
        using var reader = new StreamReader(s, Encoding.ASCII);
        string status = await reader.ReadLineAsync() ?? "";
        Assert.StartsWith("HTTP/1.1 400", status);
    }
}
