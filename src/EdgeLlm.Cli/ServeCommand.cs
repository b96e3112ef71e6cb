using EdgeLlm.Cli.Server;
using EdgeLlm.Generation;

namespace EdgeLlm.Cli;

/// <summary>`edgellm serve`: an OpenAI-compatible HTTP server over one model (Kestrel, loopback by default).</summary>
public sealed class ServeCommand : Command
{
    private static readonly OptionSpec Host = new(["--host"], true, "IP", "address to listen on (default 127.0.0.1)");
    private static readonly OptionSpec Port = new(["--port"], true, "N", "TCP port (default 8080)");
    private static readonly OptionSpec ApiKey = new(["--api-key"], true, "KEY", "require 'Authorization: Bearer KEY' on every request");
    private static readonly OptionSpec Queue = new(["--queue"], true, "N", "requests that may wait for the model; more get 503 (default 8)");
    private static readonly OptionSpec Template = new(["--chat-template"], true, "NAME", "force a chat format (default: from the model, else chatml)");
    private static readonly OptionSpec Alias = new(["--alias"], true, "NAME[,NAME]", "more model names listed in /v1/models (any name is accepted)");
    private static readonly OptionSpec Cors = new(["--cors"], true, "ORIGIN|*", "allow browser calls from ORIGIN (or any); off by default");
    private static readonly OptionSpec Parallel = new(["--parallel"], true, "N", "requests generated at once, decoded together as one batch; each slot has its own KV cache of -c positions (default 1)");
    private static readonly OptionSpec Embeddings = new(["--embeddings"], false, null, "serve POST /v1/embeddings (mean pooling of the last hidden state, or the model's pooling key; normalized)");
    private static readonly OptionSpec LogFormat = new(["--log-format"], true, "simple|json", "request log lines on stderr as text or JSON (default simple)");

    public override string Name => "serve";
    public override string Summary => "OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions)";
    public override string Usage => "serve [-m MODEL] [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--queue N] [--chat-template NAME] [--alias NAME] [--cors ORIGIN|*] [--log-format simple|json] [--parallel N] [--embeddings] [--cache-type-k T] [--cache-type-v T] [-t THREADS] [-c CTX]";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Model, Host, Port, ApiKey, Queue, Parallel, Embeddings, Template, Alias, Cors, LogFormat, Threads, Ctx, Device, GpuLayers, CacheTypeK, CacheTypeV, Mmap, NoMmap, Mlock, Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.ModelPositional();
        var options = new ServerOptions
        {
            Host = args.GetString("--host") ?? "127.0.0.1",
            Port = args.GetInt("--port", 8080, 0, 65535),
            ApiKey = args.GetString("--api-key"),
            Verbose = ctx.Verbose,
            Aliases = (args.GetString("--alias") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            Cors = args.GetString("--cors"),
            LogFormat = args.GetString("--log-format") ?? "simple",
        };
        if (options.ApiKey is { Length: 0 }) throw new UsageException("--api-key must not be empty");
        if (options.Cors is { Length: 0 }) throw new UsageException("--cors needs an origin (https://host:port) or *");
        if (options.LogFormat is not ("simple" or "json")) throw new UsageException($"--log-format must be simple or json, got '{options.LogFormat}'");
        int queue = args.GetInt("--queue", 8, 0, 10_000);
        int parallel = args.GetInt("--parallel", 1, 1, 64);
        string? forced = args.GetString("--chat-template");
        if (forced is not null && ChatTemplates.FromName(forced) is null)
            throw new UsageException($"unknown chat template '{forced}' (known: {string.Join(", ", ChatTemplates.KnownNames)})");

        // Several slots decode in one batch: each stream must equal itself alone, so every batch size computes alike.
        using var model = ModelOptions.Load(args, ctx, batchInvariant: parallel > 1);
        var kind = ChatTemplates.Resolve(model.File.GetString("tokenizer.chat_template"), forced, out string? warning);
        if (warning is not null) ctx.Err.WriteLine($"edgellm serve: warning: {warning}");
        using var engine = new InferenceEngine(model, ModelId(model.File.Path), kind, queue, parallel, args.Has("--embeddings"));
        var server = EdgeLlmServer.StartAsync(engine, options).GetAwaiter().GetResult();
        try
        {
            ctx.Err.WriteLine($"edgellm serve: model '{engine.ModelId}' (chat template {ChatTemplates.Name(kind)}, {parallel} slot{(parallel == 1 ? "" : "s")}{(engine.Embedder is null ? "" : ", embeddings")}) on {server.BaseAddress}; Ctrl-C stops");
            ctx.Err.Flush();
            server.WaitForShutdownAsync().GetAwaiter().GetResult();
        }
        finally
        {
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        return 0;
    }

    /// <summary>The model's id in the API: its file name without the extension.</summary>
    public static string ModelId(string path) => Path.GetFileNameWithoutExtension(path);
}
