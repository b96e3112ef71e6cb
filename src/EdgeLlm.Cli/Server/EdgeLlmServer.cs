using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeLlm.Cli.Server;

/// <summary>Where and how `edgellm serve` listens.</summary>
public sealed record ServerOptions
{
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (tests).</summary>
    public int Port { get; init; } = 8080;
    public string? ApiKey { get; init; }
    public long MaxBodyBytes { get; init; } = 1 << 20;
    public bool Verbose { get; init; }
    /// <summary>More names the model answers to, listed in /v1/models (any name is accepted in requests).</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];
    /// <summary>The origin browsers may call from ("*" for any); null: no CORS headers (the default).</summary>
    public string? Cors { get; init; }
    /// <summary>"simple" (one line per entry) or "json" (the console JSON formatter).</summary>
    public string LogFormat { get; init; } = "simple";
    /// <summary>Where log entries go instead of the console (tests capture them here).</summary>
    public ILoggerProvider? LogProvider { get; init; }

    /// <summary>True when the server would be reachable from other machines with no key asked.</summary>
    public static bool ExposedWithoutKey(IPAddress listen, string? apiKey) => apiKey is null && !IPAddress.IsLoopback(listen);
}

/// <summary>
/// The OpenAI-compatible HTTP server: Kestrel with minimal-API routes over one <see cref="InferenceEngine"/>.
/// Built with the slim builder and source-generated JSON so it stays Native AOT and trimmed.
/// </summary>
public sealed class EdgeLlmServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    /// <summary>The category of the server's log lines (short, like the engine's "load").</summary>
    public const string LogCategory = "serve";

    public InferenceEngine Engine { get; }

    /// <summary>The address it actually listens on (the real port when 0 was asked for).</summary>
    public Uri BaseAddress { get; }

    private EdgeLlmServer(WebApplication app, InferenceEngine engine, Uri address)
    {
        _app = app;
        Engine = engine;
        BaseAddress = address;
    }

    public static async Task<EdgeLlmServer> StartAsync(InferenceEngine engine, ServerOptions options, CancellationToken cancel = default)
    {
        IPAddress ip = options.Host == "localhost" ? IPAddress.Loopback
            : IPAddress.TryParse(options.Host, out var parsed) ? parsed
            : throw new EdgeLlmException($"--host '{options.Host}' is not an IP address");
        if (options.LogFormat is not ("simple" or "json"))
            throw new EdgeLlmException($"--log-format must be simple or json, got '{options.LogFormat}'");
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(options.Verbose ? LogLevel.Debug : LogLevel.Information);
        builder.Logging.AddFilter("Microsoft", options.Verbose ? LogLevel.Information : LogLevel.Warning);
        builder.Logging.AddFilter("System", LogLevel.Warning);
        if (options.LogProvider is { } provider) builder.Logging.AddProvider(provider);
        else
        {
            // Every entry on stderr (stdout stays free); the JSON formatter is the framework's own (no reflection).
            builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
            // The simple format is the one the engine's own lines use (CliContext): "HH:mm:ss.fff info: serve[0] ...".
            if (options.LogFormat == "json")
                builder.Logging.AddJsonConsole(o => { o.IncludeScopes = false; o.UseUtcTimestamp = true; o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ"; });
            else builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.IncludeScopes = false; o.TimestampFormat = "HH:mm:ss.fff "; });
        }
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            k.AddServerHeader = false;
            k.Listen(ip, options.Port);
        });
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, OpenAiJsonContext.Default));
        var app = builder.Build();
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(LogCategory);
        if (ServerOptions.ExposedWithoutKey(ip, options.ApiKey))
            log.LogWarning("listening on {Host}, which is not a loopback address, with no --api-key: anyone who can reach this port can use the model", options.Host);
        var metrics = new ServerMetrics();

        // Outermost: one log line and one metrics count per request, once its status is known.
        app.Use(async (http, next) =>
        {
            var info = new RequestInfo("req-" + Guid.NewGuid().ToString("N")[..12]);
            http.Items[RequestInfo.Key] = info;
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            try
            {
                await next(http);
            }
            finally
            {
                int status = http.RequestAborted.IsCancellationRequested && !http.Response.HasStarted ? 499 : http.Response.StatusCode;
                string path = http.Request.Path.Value ?? "";
                metrics.CountRequest(path, status);
                double ms = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                // Probes (/health, /metrics) log at debug so that a load balancer does not flood the log.
                var level = ServerMetrics.EndpointOf(path) is "/health" or "/metrics" ? LogLevel.Debug : LogLevel.Information;
                if (info.Result is { } r)
                    log.Log(level, "request {Id} {Method} {Path} status={Status} prompt={PromptTokens} cached={CachedTokens} completion={CompletionTokens} prefill={PrefillTokensPerSecond:F1} tok/s decode={DecodeTokensPerSecond:F1} tok/s stop={Stop} {Milliseconds:F0} ms",
                        info.Id, http.Request.Method, path, status, r.Stats.PromptTokens, r.CachedTokens, r.Stats.GeneratedTokens,
                        r.PrefillTokensPerSecond, r.Stats.GenerationTokensPerSecond, r.Stats.Stop, ms);
                else
                    log.Log(level, "request {Id} {Method} {Path} status={Status} {Milliseconds:F0} ms", info.Id, http.Request.Method, path, status, ms);
            }
        });

        if (options.Cors is { } origin)
        {
            app.Use(async (http, next) =>
            {
                var h = http.Response.Headers;
                h.AccessControlAllowOrigin = origin;
                if (origin != "*") h.Vary = "Origin";
                if (HttpMethods.IsOptions(http.Request.Method) && http.Request.Headers.ContainsKey("Access-Control-Request-Method"))
                {
                    // A preflight: answered here, before the key check (browsers send no credentials on it).
                    h.AccessControlAllowMethods = "GET, POST, OPTIONS";
                    string asked = http.Request.Headers.AccessControlRequestHeaders.ToString();
                    h.AccessControlAllowHeaders = asked.Length > 0 ? asked : "Authorization, Content-Type";
                    h.AccessControlMaxAge = "600";
                    http.Response.StatusCode = 204;
                    return;
                }
                await next(http);
            });
        }

        byte[]? key = options.ApiKey is null ? null : Encoding.UTF8.GetBytes("Bearer " + options.ApiKey);
        if (key is not null)
        {
            app.Use(async (http, next) =>
            {
                // Health probes (load balancers, orchestrators) carry no key; /health says nothing but "ok".
                if (http.Request.Path.Equals("/health", StringComparison.Ordinal)) { await next(http); return; }
                string given = http.Request.Headers.Authorization.ToString();
                if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), key))
                {
                    await Endpoints.WriteError(http, new ApiError(401, "missing or wrong API key (Authorization: Bearer KEY)",
                        code: "invalid_api_key", type: "authentication_error"));
                    return;
                }
                await next(http);
            });
        }
        var endpoints = new Endpoints(engine, metrics, options.Aliases, log);
        endpoints.Map(app);

        await app.StartAsync(cancel).ConfigureAwait(false);
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        var address = new Uri(addresses.First());
        return new EdgeLlmServer(app, engine, address);
    }

    /// <summary>Runs until the host is stopped (Ctrl-C / SIGTERM).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancel = default) => _app.WaitForShutdownAsync(cancel);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
