using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace EdgeLlm.Tests.Store;

/// <summary>
/// A loopback HTTP/1.1 server that answers like the Hugging Face hub: <c>/api/models/ORG/REPO</c> lists the files,
/// <c>/ORG/REPO/resolve/main/FILE</c> answers 302 to a CDN URL on another host name with the sha256 in X-Linked-Etag and ETag and the size
/// in X-Linked-Size, and the CDN path serves the bytes with Range/If-Range (206). It can drop a connection part way
/// through a file, publish a wrong checksum, and demand a token (401). Written on a raw socket so a dropped
/// connection is exactly that.
/// </summary>
internal sealed class FakeHub : IDisposable
{
    public sealed record Request(string Method, string Path, Dictionary<string, string> Headers);

    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    /// <summary>repo -> (file -> bytes).</summary>
    public Dictionary<string, Dictionary<string, byte[]>> Repos { get; } = new();
    /// <summary>file -> the sha256 the hub publishes instead of the real one.</summary>
    public Dictionary<string, string> PublishedShaOverride { get; } = new();
    /// <summary>When set, the hub (not the CDN) answers 401 unless this Bearer token is sent.</summary>
    public string? RequiredToken { get; set; }
    /// <summary>The next this-many CDN responses close the connection after <see cref="DropAfterBytes"/> body bytes.</summary>
    public int DropsLeft { get; set; }
    public long DropAfterBytes { get; set; }
    public ConcurrentQueue<Request> Requests { get; } = new();

    public FakeHub()
    {
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _loop = Task.Run(AcceptLoop);
    }

    public string Endpoint => $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

    /// <summary>The redirects name the CDN by another host name (localhost), as the real hub names another host.</summary>
    public string CdnBase => $"http://localhost:{((IPEndPoint)_listener.LocalEndpoint).Port}";

    /// <summary>The CDN's own ETag: not the sha256 (as on the real CDN), so If-Range must echo what the CDN sent.</summary>
    public static string CdnETag(byte[] data) => $"\"cdn-{Sha256(data)[..16]}\"";

    public static string Sha256(byte[] data) => System.Convert.ToHexStringLower(SHA256.HashData(data));

    public List<Request> CdnRequests()
    {
        var list = new List<Request>();
        foreach (var r in Requests) if (r.Path.StartsWith("/cdn/", StringComparison.Ordinal)) list.Add(r);
        return list;
    }

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch { return; }
            _ = Task.Run(async () =>
            {
                using (client)
                {
                    try { await Handle(client.GetStream()); }
                    catch (IOException) { }
                    catch (SocketException) { }
                }
            });
        }
    }

    private async Task Handle(NetworkStream stream)
    {
        var head = new StringBuilder();
        var one = new byte[1];
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            if (await stream.ReadAsync(one) == 0) return;
            head.Append((char)one[0]);
        }
        string[] lines = head.ToString().Split("\r\n");
        string[] first = lines[0].Split(' ');
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        for (int i = 1; i < lines.Length; i++)
        {
            int c = lines[i].IndexOf(':');
            if (c > 0) headers[lines[i][..c].Trim()] = lines[i][(c + 1)..].Trim();
        }
        string method = first[0], path = Uri.UnescapeDataString(first[1]);
        Requests.Enqueue(new Request(method, path, headers));

        if (path.StartsWith("/cdn/", StringComparison.Ordinal))
        {
            await ServeCdn(stream, method, path["/cdn/".Length..], headers);
            return;
        }
        if (RequiredToken is not null && (!headers.TryGetValue("Authorization", out var auth) || auth != "Bearer " + RequiredToken))
        {
            await Write(stream, 401, "Unauthorized", [], "{\"error\":\"Invalid username or password.\"}"u8.ToArray(), method);
            return;
        }
        if (path.StartsWith("/api/models/", StringComparison.Ordinal))
        {
            string repo = path["/api/models/".Length..];
            if (!Repos.TryGetValue(repo, out var files)) { await Write(stream, 404, "Not Found", [], "{\"error\":\"Repository not found\"}"u8.ToArray(), method); return; }
            var json = new StringBuilder($"{{\"id\":\"{repo}\",\"private\":false,\"siblings\":[");
            int k = 0;
            foreach (string f in files.Keys) json.Append(k++ > 0 ? "," : "").Append($"{{\"rfilename\":\"{f}\"}}");
            json.Append("]}");
            await Write(stream, 200, "OK", [("Content-Type", "application/json")], Encoding.UTF8.GetBytes(json.ToString()), method);
            return;
        }
        int resolve = path.IndexOf("/resolve/main/", StringComparison.Ordinal);
        if (resolve > 0)
        {
            string repo = path[1..resolve], file = path[(resolve + "/resolve/main/".Length)..];
            if (!Repos.TryGetValue(repo, out var files) || !files.TryGetValue(file, out var data))
            {
                await Write(stream, 404, "Not Found", [("X-Error-Code", "EntryNotFound")], [], method);
                return;
            }
            string sha = PublishedShaOverride.TryGetValue(file, out var o) ? o : Sha256(data);
            await Write(stream, 302, "Found",
                [("Location", $"{CdnBase}/cdn/{repo}/{file}"), ("X-Linked-Etag", $"\"{sha}\""), ("X-Linked-Size", data.Length.ToString()),
                 ("ETag", $"\"{sha}\""), ("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")], [], method);
            return;
        }
        await Write(stream, 404, "Not Found", [], [], method);
    }

    private async Task ServeCdn(NetworkStream stream, string method, string key, Dictionary<string, string> headers)
    {
        int slash = key.LastIndexOf('/');
        string repo = key[..slash], file = key[(slash + 1)..];
        if (!Repos.TryGetValue(repo, out var files) || !files.TryGetValue(file, out var data)) { await Write(stream, 404, "Not Found", [], [], method); return; }
        string etag = CdnETag(data);
        long from = 0;
        bool partial = false;
        if (headers.TryGetValue("Range", out var range) && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-')
            && (!headers.TryGetValue("If-Range", out var ifRange) || ifRange == etag))
        {
            from = long.Parse(range[6..^1]);
            if (from >= data.Length) { await Write(stream, 416, "Range Not Satisfiable", [("Content-Range", $"bytes */{data.Length}")], [], method); return; }
            partial = true;
        }
        var body = data.AsMemory((int)from);
        var extra = new List<(string, string)> { ("ETag", etag), ("Accept-Ranges", "bytes"), ("Content-Type", "application/octet-stream") };
        if (partial) extra.Add(("Content-Range", $"bytes {from}-{data.Length - 1}/{data.Length}"));
        bool drop = false;
        lock (this) if (DropsLeft > 0 && method == "GET") { DropsLeft--; drop = true; }
        await WriteHead(stream, partial ? 206 : 200, partial ? "Partial Content" : "OK", extra, body.Length);
        if (method == "HEAD") return;
        if (drop)
        {
            int n = (int)Math.Min(DropAfterBytes, body.Length);
            await stream.WriteAsync(body[..n]);
            await stream.FlushAsync();
            return; // the connection closes with the body unfinished
        }
        await stream.WriteAsync(body);
    }

    private static async Task Write(NetworkStream s, int code, string reason, (string, string)[] headers, byte[] body, string method)
    {
        await WriteHead(s, code, reason, headers, body.Length);
        if (method != "HEAD") await s.WriteAsync(body);
    }

    private static async Task WriteHead(NetworkStream s, int code, string reason, IEnumerable<(string Name, string Value)> headers, long length)
    {
        var sb = new StringBuilder($"HTTP/1.1 {code} {reason}\r\nConnection: close\r\nContent-Length: {length}\r\n");
        foreach (var (n, v) in headers) sb.Append(n).Append(": ").Append(v).Append("\r\n");
        sb.Append("\r\n");
        await s.WriteAsync(Encoding.ASCII.GetBytes(sb.ToString()));
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        try { _loop.Wait(2000); } catch (AggregateException) { }
        _stop.Dispose();
    }
}
