using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;

namespace EdgeLlm.Cli.Store;

/// <summary>What the hub says about one file: where to download it, and the sha256 and size it published.</summary>
public sealed record RemoteFile(string Repo, string Path, Uri DownloadUrl, string Sha256, long Size);

/// <summary>
/// Downloads GGUF files from Hugging Face's public file API (or whatever $HF_ENDPOINT points at):
/// <c>GET /api/models/ORG/REPO</c> for the file list, <c>HEAD /ORG/REPO/resolve/main/FILE</c> for the sha256
/// (X-Linked-Etag) and size (X-Linked-Size) and the redirect to the CDN, then a ranged GET that resumes a
/// .partial file. $HF_TOKEN is sent as a Bearer token to the hub itself (never to the CDN it redirects to).
/// TLS is only loaded when an https URL is actually requested.
/// </summary>
public sealed class HubClient : IDisposable
{
    public const string EndpointVariable = "HF_ENDPOINT";
    public const string TokenVariable = "HF_TOKEN";
    public const string DefaultEndpoint = "https://huggingface.co";

    private readonly HttpClient _http;
    private readonly Uri _base;
    private readonly string? _token;

    /// <summary>Tries per download: a dropped connection is resumed (Range) this many times in all.</summary>
    public int Attempts { get; init; } = 3;

    /// <summary>A download with no bytes for this long counts as a dropped connection.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Told (bytes so far, total) as the download goes; also once at the start of each attempt.</summary>
    public Action<long, long>? OnProgress { get; init; }

    /// <summary>Told one line when a dropped download is resumed.</summary>
    public Action<string>? OnNotice { get; init; }

    public HubClient(string? endpoint = null, string? token = null)
    {
        string e = string.IsNullOrEmpty(endpoint) ? DefaultEndpoint : endpoint.TrimEnd('/');
        if (!Uri.TryCreate(e + "/", UriKind.Absolute, out var u) || (u.Scheme != "http" && u.Scheme != "https"))
            throw new EdgeLlmException($"${EndpointVariable} '{endpoint}' is not an http(s) URL");
        _base = u;
        _token = string.IsNullOrEmpty(token) ? null : token;
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false, // redirects are followed by hand: the hub's own response carries the checksum
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = TimeSpan.FromSeconds(30),
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        };
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("edgellm", VersionInfo.Version));
    }

    /// <summary>$HF_ENDPOINT and $HF_TOKEN.</summary>
    public static HubClient FromEnvironment(Action<long, long>? progress = null, Action<string>? notice = null)
        => new(Environment.GetEnvironmentVariable(EndpointVariable), Environment.GetEnvironmentVariable(TokenVariable))
        { OnProgress = progress, OnNotice = notice };

    public Uri Endpoint => _base;

    /// <summary>The repository's file paths (the "siblings" of <c>/api/models/ORG/REPO</c>).</summary>
    public async Task<List<string>> ListFilesAsync(string repo, CancellationToken cancel = default)
    {
        var url = new Uri(_base, "api/models/" + repo);
        using var response = await SendAsync(HttpMethod.Get, url, null, cancel).ConfigureAwait(false);
        Check(response, $"hf:{repo}");
        byte[] body = await response.Content.ReadAsByteArrayAsync(cancel).ConfigureAwait(false);
        HubModelInfo? info;
        try { info = JsonSerializer.Deserialize(body, StoreJson.Default.HubModelInfo); }
        catch (JsonException) { throw new EdgeLlmException($"hf:{repo}: the hub's file list at {url} is not valid JSON"); }
        var files = new List<string>();
        if (info?.Siblings is { } siblings)
            foreach (var s in siblings)
                if (!string.IsNullOrEmpty(s.RFilename)) files.Add(s.RFilename);
        return files;
    }

    /// <summary>HEAD on the file's resolve URL: the published sha256 and size, and the download URL it redirects to.</summary>
    public async Task<RemoteFile> ResolveAsync(string repo, string path, CancellationToken cancel = default)
    {
        var url = new Uri(_base, $"{repo}/resolve/main/{EscapePath(path)}");
        string what = $"hf:{repo}:{path}";
        for (int hop = 0; hop < 8; hop++)
        {
            using var response = await SendAsync(HttpMethod.Head, url, null, cancel).ConfigureAwait(false);
            int code = (int)response.StatusCode;
            string? sha = Sha256Of(response);
            long size = SizeOf(response);
            if (code is >= 300 and < 400)
            {
                var location = response.Headers.Location ?? throw new EdgeLlmException($"{what}: the hub answered {code} without a Location");
                var next = location.IsAbsoluteUri ? location : new Uri(url, location);
                if (next.Scheme != "http" && next.Scheme != "https") throw new EdgeLlmException($"{what}: the hub redirected to a non-http URL");
                // The hub's redirect of an LFS file to its CDN carries the checksum; other redirects (a renamed repository) are followed.
                if (sha is not null)
                    return new RemoteFile(repo, path, next, sha, size >= 0 ? size : throw new EdgeLlmException($"{what}: the hub published no size (X-Linked-Size)"));
                url = next;
                continue;
            }
            Check(response, what);
            if (sha is null)
                throw new EdgeLlmException($"{what}: the hub published no sha256 for this file (not an LFS file?), so it cannot be verified");
            if (size < 0) size = response.Content.Headers.ContentLength ?? throw new EdgeLlmException($"{what}: the hub published no size");
            return new RemoteFile(repo, path, url, sha, size);
        }
        throw new EdgeLlmException($"{what}: too many redirects");
    }

    /// <summary>
    /// Downloads <paramref name="file"/> into <paramref name="partialPath"/>, resuming what is already there (Range,
    /// If-Range with the server's ETag), retrying a dropped connection up to <see cref="Attempts"/> times, and checks the
    /// size and sha256 the hub published. On a checksum mismatch the partial file is deleted. Returns the sha256.
    /// </summary>
    public async Task<string> DownloadAsync(RemoteFile file, string partialPath, CancellationToken cancel = default)
    {
        string what = $"hf:{file.Repo}:{file.Path}";
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                await DownloadOnceAsync(file, partialPath, what, cancel).ConfigureAwait(false);
                break;
            }
            catch (Exception e) when (IsDropped(e, cancel))
            {
                long have = File.Exists(partialPath) ? new FileInfo(partialPath).Length : 0;
                if (attempt >= Attempts)
                    throw new EdgeLlmException($"{what}: the download broke off at {have} of {file.Size} bytes ({Reason(e)}); " +
                        "run the same pull again to resume");
                OnNotice?.Invoke($"connection lost at {have} of {file.Size} bytes ({Reason(e)}); resuming");
            }
        }
        File.Delete(ResumeInfoPath(partialPath));
        long got = new FileInfo(partialPath).Length;
        if (got != file.Size)
        {
            File.Delete(partialPath);
            throw new EdgeLlmException($"{what}: downloaded {got} bytes but the hub published {file.Size}; the download was deleted");
        }
        string sha;
        using (var s = new FileStream(partialPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20))
            sha = Convert.ToHexStringLower(await SHA256.HashDataAsync(s, cancel).ConfigureAwait(false));
        if (sha != file.Sha256)
        {
            File.Delete(partialPath);
            throw new EdgeLlmException($"{what}: sha256 mismatch (expected {file.Sha256}, got {sha}); the download was deleted");
        }
        return sha;
    }

    /// <summary>
    /// Beside NAME.gguf.partial: the sha256 the partial file is a prefix of, and the download server's own ETag for
    /// If-Range (a CDN's ETag is usually not the sha256). A partial file of another version is discarded.
    /// </summary>
    public static string ResumeInfoPath(string partialPath) => partialPath + ".etag";

    private async Task DownloadOnceAsync(RemoteFile file, string partialPath, string what, CancellationToken cancel)
    {
        string infoPath = ResumeInfoPath(partialPath);
        string? serverETag = null;
        long have = File.Exists(partialPath) ? new FileInfo(partialPath).Length : 0;
        if (have > 0)
        {
            string[] info = File.Exists(infoPath) ? File.ReadAllLines(infoPath) : [];
            if (info.Length < 1 || info[0] != file.Sha256 || have > file.Size) { File.Delete(partialPath); have = 0; }
            else if (info.Length > 1 && info[1].Length > 0) serverETag = info[1];
        }
        OnProgress?.Invoke(have, file.Size);
        if (have == file.Size) // complete already (an earlier run stopped before the check), or an empty file
        {
            if (have == 0) File.WriteAllBytes(partialPath, []);
            return;
        }

        var url = file.DownloadUrl;
        for (int hop = 0; ; hop++)
        {
            using var response = await SendAsync(HttpMethod.Get, url, have > 0 ? (have, serverETag) : null, cancel, download: true).ConfigureAwait(false);
            int code = (int)response.StatusCode;
            if (code is >= 300 and < 400 && hop < 8 && response.Headers.Location is { } loc)
            {
                url = loc.IsAbsoluteUri ? loc : new Uri(url, loc);
                continue;
            }
            if (code == 416) { File.Delete(partialPath); throw new IOException("the server refused the resume range (416); starting over"); }
            Check(response, what);
            bool append = false;
            if (code == 206)
            {
                var range = response.Content.Headers.ContentRange;
                if (range?.From != have) { File.Delete(partialPath); throw new IOException($"the server resumed at {range?.From} instead of {have}; starting over"); }
                append = true;
            }
            // 200: the whole file (the server ignored Range, or If-Range saw a changed file): start over.
            if (!append) have = 0;
            // A strong ETag only: If-Range may not carry a weak one.
            var etag = response.Headers.ETag;
            File.WriteAllLines(infoPath, [file.Sha256, etag is { IsWeak: false } ? etag.Tag : ""]);
            await using var output = new FileStream(partialPath, append ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
            await using var input = await response.Content.ReadAsStreamAsync(cancel).ConfigureAwait(false);
            byte[] buffer = new byte[1 << 16];
            while (true)
            {
                using var idle = CancellationTokenSource.CreateLinkedTokenSource(cancel);
                idle.CancelAfter(IdleTimeout);
                int n = await input.ReadAsync(buffer, idle.Token).ConfigureAwait(false);
                if (n == 0) break;
                if (have + n > file.Size) throw new EdgeLlmException($"{what}: the server sent more than the {file.Size} bytes the hub published");
                await Local(output.WriteAsync(buffer.AsMemory(0, n), cancel).AsTask(), partialPath).ConfigureAwait(false);
                have += n;
                OnProgress?.Invoke(have, file.Size);
            }
            await Local(output.FlushAsync(cancel), partialPath).ConfigureAwait(false);
            if (have < file.Size) throw new IOException($"the connection closed after {have} of {file.Size} bytes");
            return;
        }
    }

    /// <summary>
    /// A write to the partial download: a refused one (a full disk, the file-size limit) is the one-line
    /// <see cref="OutputWriteException"/>, not an <see cref="IOException"/>, so it is not taken for a dropped
    /// connection and retried; the partial file stays for a later pull to resume.
    /// </summary>
    private static async Task Local(Task write, string partialPath)
    {
        try { await write.ConfigureAwait(false); }
        catch (Exception e) when (EdgeLlm.IO.WriteFailure.Is(e))
        {
            throw new EdgeLlm.IO.OutputWriteException(partialPath, EdgeLlm.IO.WriteFailure.Reason(e), "the partial download is kept (pull again to resume)");
        }
    }

    private static bool IsDropped(Exception e, CancellationToken cancel)
        => !cancel.IsCancellationRequested && e is IOException or HttpRequestException or OperationCanceledException;

    private static string Reason(Exception e) => e is OperationCanceledException ? "no data for too long" : EdgeLlm.IO.ErrorText.OneLine(e);

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, Uri url, (long From, string? ETag)? resume, CancellationToken cancel, bool download = false)
    {
        using var request = new HttpRequestMessage(method, url);
        // The token goes to the hub only, never to a CDN or another host a redirect points at.
        if (_token is not null && SameOrigin(url, _base)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _token);
        if (resume is { } r)
        {
            request.Headers.Range = new RangeHeaderValue(r.From, null);
            // Without the server's ETag (an older partial file) the sha256 check after the download still guards the bytes.
            if (r.ETag is not null) request.Headers.IfRange = new RangeConditionHeaderValue(new EntityTagHeaderValue(r.ETag));
        }
        try
        {
            return await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel).ConfigureAwait(false);
        }
        catch (HttpRequestException e) when (!download)
        {
            throw new EdgeLlmException($"{url.GetLeftPart(UriPartial.Authority)}: {EdgeLlm.IO.ErrorText.OneLine(e)}");
        }
    }

    private static bool SameOrigin(Uri a, Uri b)
        => a.Scheme == b.Scheme && string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port;

    /// <summary>Turns an error status into one line that says what to do.</summary>
    private void Check(HttpResponseMessage response, string what)
    {
        int code = (int)response.StatusCode;
        if (code is >= 200 and < 300) return;
        string hint = code switch
        {
            401 or 403 => _token is null
                ? $"access denied ({code}): the repository is private or gated (or does not exist); set ${TokenVariable} to a token that may read it"
                : $"access denied ({code}): ${TokenVariable} may not read this repository (gated: accept its terms on the hub first)",
            404 => "not found (404): check the organisation, repository and file names",
            429 => "the hub is rate-limiting requests (429); try again later",
            _ => $"the hub answered {code} {response.ReasonPhrase}",
        };
        throw new EdgeLlmException($"{what}: {hint}");
    }

    /// <summary>The sha256 in X-Linked-Etag (LFS files), else in ETag when it is 64 hex digits; null otherwise.</summary>
    internal static string? Sha256Of(HttpResponseMessage response)
    {
        foreach (string header in new[] { "X-Linked-Etag", "ETag" })
        {
            if (!response.Headers.TryGetValues(header, out var values)) continue;
            foreach (string raw in values)
            {
                string v = raw.Trim();
                if (v.StartsWith("W/", StringComparison.Ordinal)) v = v[2..];
                v = v.Trim('"').ToLowerInvariant();
                if (v.Length == 64 && IsHex(v)) return v;
            }
        }
        return null;
    }

    private static long SizeOf(HttpResponseMessage response)
    {
        if (response.Headers.TryGetValues("X-Linked-Size", out var values))
            foreach (string v in values)
                if (long.TryParse(v.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long n)) return n;
        return -1;
    }

    private static bool IsHex(string s)
    {
        foreach (char c in s) if (!char.IsAsciiHexDigit(c)) return false;
        return true;
    }

    private static string EscapePath(string path)
    {
        var parts = path.Split('/');
        for (int i = 0; i < parts.Length; i++) parts[i] = Uri.EscapeDataString(parts[i]);
        return string.Join('/', parts);
    }

    public void Dispose() => _http.Dispose();
}
