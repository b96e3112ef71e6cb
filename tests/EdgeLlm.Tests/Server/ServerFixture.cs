using System.Net.Http.Headers;
using System.Text;
using EdgeLlm.Cli.Server;
using EdgeLlm.Generation;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Server;

/// <summary>The bundled model behind a server on a free loopback port, shared by the server tests (run one at a time).</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public const string Key = "test-key";
    public const string Alias = "gpt-4o-mini";
    public const string Origin = "https://ui.example";
    public CapturingLoggerProvider Logs { get; } = new();
    public LlamaModel Model { get; private set; } = null!;
    public EdgeLlmServer Server { get; private set; } = null!;
    public InferenceEngine Engine => Server.Engine;
    public HttpClient Http { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 256 });
        var engine = new InferenceEngine(Model, "stories260K", ChatTemplateKind.ChatMl, queueLimit: 2);
        Server = await EdgeLlmServer.StartAsync(engine, new ServerOptions
        {
            Port = 0, ApiKey = Key, MaxBodyBytes = 64 * 1024, Aliases = [Alias], Cors = Origin, LogProvider = Logs,
        });
        Http = Client();
    }

    public HttpClient Client()
    {
        var c = new HttpClient { BaseAddress = Server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        c.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        return c;
    }

    public static StringContent Body(string json) => new(json, Encoding.UTF8, "application/json");

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Server.Engine.Dispose();
        Model.Dispose();
    }

    /// <summary>The greedy continuation the plain Generator gives for the chatml rendering of one user message.</summary>
    public string GreedyChat(string user, int maxTokens)
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 256 });
        var tok = Tokenizer.FromGguf(model.File);
        int[] prompt = tok.Encode(ChatTemplates.Render(ChatTemplateKind.ChatMl, [new ChatMessage("user", user)], true), tok.Vocab.AddBos, parseSpecial: true);
        var sb = new StringBuilder();
        new Generator(model, tok).Generate(prompt, new GenerateOptions
        {
            MaxTokens = maxTokens, Sampler = SamplerOptions.Greedy, StopTokens = ChatSession.StopTokenIds(tok.Vocab, ChatTemplateKind.ChatMl),
        }, t => { sb.Append(t); return true; });
        return sb.ToString();
    }
}

/// <summary>Keeps every log entry (category, level, formatted text, structured values) for the tests to read.</summary>
public sealed class CapturingLoggerProvider : Microsoft.Extensions.Logging.ILoggerProvider
{
    public sealed record Entry(string Category, Microsoft.Extensions.Logging.LogLevel Level, string Text, IReadOnlyDictionary<string, object?> Values);

    private readonly List<Entry> _entries = new();

    public IReadOnlyList<Entry> Entries { get { lock (_entries) return _entries.ToArray(); } }

    public Microsoft.Extensions.Logging.ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose() { }

    private sealed class Logger(CapturingLoggerProvider owner, string category) : Microsoft.Extensions.Logging.ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state,
            Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var values = new Dictionary<string, object?>();
            if (state is IEnumerable<KeyValuePair<string, object?>> kv)
                foreach (var p in kv) values[p.Key] = p.Value;
            lock (owner._entries) owner._entries.Add(new Entry(category, logLevel, formatter(state, exception), values));
        }
    }
}

[CollectionDefinition("Server", DisableParallelization = true)]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>;
