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
}

/// <summary>
/// The OpenAI-compatible HTTP server: Kestrel with minimal-API routes over one <see cref="InferenceEngine"/>.
/// Built with the slim builder and source-generated JSON so it stays Native AOT and trimmed.
/// </summary>
public sealed class EdgeLlmServer : IAsyncDisposable
{
    private readonly WebApplication _app;

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
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        if (options.Verbose) builder.Logging.AddSimpleConsole(o => o.SingleLine = true).AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            k.AddServerHeader = false;
            k.Listen(ip, options.Port);
        });
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, OpenAiJsonContext.Default));
        var app = builder.Build();

        byte[]? key = options.ApiKey is null ? null : Encoding.UTF8.GetBytes("Bearer " + options.ApiKey);
        if (key is not null)
        {
            app.Use(async (http, next) =>
            {
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
        var endpoints = new Endpoints(engine);
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
