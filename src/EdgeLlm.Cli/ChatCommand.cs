using System.Runtime.InteropServices;
using EdgeLlm.Generation;

namespace EdgeLlm.Cli;

/// <summary>
/// `edgellm chat`: an interactive conversation on stdin/stdout with the model's chat template. The KV
/// cache carries over between turns; Ctrl-C stops the current answer; `/reset` starts over, `/exit` or
/// end of input quits, `/help` lists the commands and any other `/word` is refused (`//` sends a leading slash).
/// On a terminal lines are edited with <see cref="LineEditor"/> and kept in the history file; elsewhere they are
/// read as plain lines. A line ending in a backslash continues on the next; a line of three double quotes opens
/// a block that a second such line closes.
/// </summary>
public sealed class ChatCommand : Command
{
    private static readonly OptionSpec System_ = new(["--system"], true, "TEXT", "system prompt");
    private static readonly OptionSpec Template = new(["--chat-template"], true, "NAME",
        "force a chat format: " + string.Join(", ", ChatTemplates.KnownNames) + " (default: from the model, else chatml)");

    public override string Name => "chat";
    public override string Summary => "chat with an instruction-tuned model in the terminal";
    public override string Usage => "chat [MODEL | -m MODEL] [--system TEXT] [--chat-template NAME] [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S] [-t THREADS] [-c CTX]";
    public override IReadOnlyList<OptionSpec> Options { get; } =
        [Model, System_, Template, .. RunCommand.SamplingSpecs, Threads, Ctx, Device, GpuLayers, CacheTypeK, CacheTypeV, Mmap, NoMmap, Mlock, Verbose, Help];

    /// <summary>The chat's own commands (what /help lists).</summary>
    internal static readonly string[] ChatCommands = ["/help", "/reset", "/exit", "/quit"];

    private const string HelpLines =
        "/help          this list\n" +
        "/reset         forget the conversation (the system prompt stays)\n" +
        "/exit, /quit   leave (so does Ctrl-D on an empty line)\n" +
        "//text         send a message that starts with /text\n" +
        "line\\         end a line with a backslash to go on with the message on the next line\n" +
        "\"\"\"            a line of three double quotes starts a multi-line block; another one ends it\n" +
        "Ctrl-C stops an answer; on a terminal: arrows, Home/End, Ctrl-A/E/U/K edit, Up/Down recall earlier messages\n";

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.ModelPositional();
        int n = args.GetInt("-n", -1, -1);
        var sampling = RunCommand.SamplingOptions(args);
        string? forced = args.GetString("--chat-template");
        if (forced is not null && ChatTemplates.FromName(forced) is null)
            throw new UsageException($"unknown chat template '{forced}' (known: {string.Join(", ", ChatTemplates.KnownNames)})");

        using var model = ModelOptions.Load(args, ctx);
        var tokenizer = Tokenizer.For(model);
        string? jinja = model.File.GetString("tokenizer.chat_template");
        var kind = ChatTemplates.Resolve(jinja, forced, out string? warning);
        if (warning is not null) ctx.Err.WriteLine($"edgellm chat: warning: {warning}");
        var session = new ChatSession(model, tokenizer, kind, args.GetString("--system"))
        {
            OnTruncated = dropped => ctx.Err.WriteLine($"[context full: dropped the {dropped} oldest messages]"),
        };
        var options = new GenerateOptions { MaxTokens = n, Sampler = sampling };
        ctx.Err.WriteLine($"chat template {ChatTemplates.Name(kind)}, context {model.ContextSize} tokens; /help lists the commands, /exit quits, Ctrl-C stops an answer");
        var input = ChatInput.For(ctx);

        CancellationTokenSource? current = null;
        // Stop the answer being written, not the program; outside an answer Ctrl-C quits as usual. (A POSIX signal
        // registration, not Console.CancelKeyPress, which opens Console.Out and fails when stdout is closed.)
        using var onCancel = PosixSignalRegistration.Create(PosixSignal.SIGINT, e =>
        {
            var c = Volatile.Read(ref current);
            if (c is null) return;
            e.Cancel = true;
            c.Cancel();
        });
        {
            while (true)
            {
                string? line = input.ReadMessage();
                if (line is null) { if (!input.Editing) ctx.Out.WriteLine(); break; }
                string text = line.Trim();
                if (text.Length == 0) continue;
                if (text.StartsWith("//", StringComparison.Ordinal)) line = line.TrimStart()[1..];   // "//x" sends "/x"
                else if (text.StartsWith('/') && !text.Contains('\n'))
                {
                    string word = text.Split(' ', 2)[0];
                    if (word is "/exit" or "/quit") break;
                    if (word == "/reset")
                    {
                        session.Reset();
                        ctx.Err.WriteLine("[conversation reset]");
                    }
                    else if (word == "/help") ctx.Err.Write(HelpLines);
                    else
                        ctx.Err.WriteLine($"edgellm chat: unknown command '{word}'{CliArgs.DidYouMean(word, ChatCommands)}; /help lists the commands, // sends a line that starts with /");
                    continue;
                }
                using var cts = new CancellationTokenSource();
                Volatile.Write(ref current, cts);
                GenerationStats stats;
                try
                {
                    stats = session.Send(line, options, t => { ctx.Out.Write(t); ctx.Out.Flush(); }, cts.Token);
                }
                catch (EdgeLlmException e) when (e is not IO.OutputClosedException)
                {
                    ctx.Err.WriteLine($"edgellm chat: {e.Message}");
                    continue;
                }
                finally
                {
                    Volatile.Write(ref current, null);
                }
                ctx.Out.WriteLine();
                ctx.Out.Flush();
                if (stats.Stop == StopReason.Cancelled) ctx.Err.WriteLine("[stopped]");
                else if (stats.Stop == StopReason.ContextFull) ctx.Err.WriteLine("[context full: the next message drops the oldest turns]");
                if (ctx.Verbose)
                    ctx.Err.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                        $"[prefill {session.LastPrefillTokens} of {stats.PromptTokens} tokens, {stats.GeneratedTokens} generated, {stats.GenerationTokensPerSecond:F1} tok/s]"));
            }
        }
        ctx.Out.Flush();
        return 0;
    }
}
