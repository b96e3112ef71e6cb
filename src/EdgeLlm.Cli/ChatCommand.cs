using System.Runtime.InteropServices;
using EdgeLlm.Generation;

namespace EdgeLlm.Cli;

/// <summary>
/// `edgellm chat`: an interactive conversation on stdin/stdout with the model's chat template. The KV
/// cache carries over between turns; Ctrl-C stops the current answer; `/reset` starts over, `/exit` or
/// end of input quits.
/// </summary>
public sealed class ChatCommand : Command
{
    private static readonly OptionSpec System_ = new(["--system"], true, "TEXT", "system prompt");
    private static readonly OptionSpec Template = new(["--chat-template"], true, "NAME",
        "force a chat format: " + string.Join(", ", ChatTemplates.KnownNames) + " (default: from the model, else chatml)");

    public override string Name => "chat";
    public override string Summary => "chat with an instruction-tuned model in the terminal";
    public override string Usage => "chat [-m MODEL] [--system TEXT] [--chat-template NAME] [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S] [-t THREADS] [-c CTX]";
    public override IReadOnlyList<OptionSpec> Options { get; } =
        [Model, System_, Template, .. RunCommand.SamplingSpecs, Threads, Ctx, Device, GpuLayers, CacheTypeK, CacheTypeV, Mmap, NoMmap, Mlock, Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.NoPositionals();
        int n = args.GetInt("-n", -1, -1);
        var sampling = RunCommand.SamplingOptions(args);
        string? forced = args.GetString("--chat-template");
        if (forced is not null && ChatTemplates.FromName(forced) is null)
            throw new UsageException($"unknown chat template '{forced}' (known: {string.Join(", ", ChatTemplates.KnownNames)})");

        using var model = ModelOptions.Load(args, ctx);
        var tokenizer = Tokenizer.FromGguf(model.File);
        string? jinja = model.File.GetString("tokenizer.chat_template");
        var kind = ChatTemplates.Resolve(jinja, forced, out string? warning);
        if (warning is not null) ctx.Err.WriteLine($"edgellm chat: warning: {warning}");
        var session = new ChatSession(model, tokenizer, kind, args.GetString("--system"))
        {
            OnTruncated = dropped => ctx.Err.WriteLine($"[context full: dropped the {dropped} oldest messages]"),
        };
        var options = new GenerateOptions { MaxTokens = n, Sampler = sampling };
        ctx.Err.WriteLine($"chat template {ChatTemplates.Name(kind)}, context {model.ContextSize} tokens; /reset starts over, /exit quits, Ctrl-C stops an answer");

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
                ctx.Out.Write("> ");
                ctx.Out.Flush();
                string? line = ctx.In.ReadLine();
                if (line is null) { ctx.Out.WriteLine(); break; }
                string text = line.Trim();
                if (text.Length == 0) continue;
                if (text == "/exit" || text == "/quit") break;
                if (text == "/reset")
                {
                    session.Reset();
                    ctx.Err.WriteLine("[conversation reset]");
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
                    ctx.Err.WriteLine($"[prefill {session.LastPrefillTokens} of {stats.PromptTokens} tokens, {stats.GeneratedTokens} generated]");
            }
        }
        ctx.Out.Flush();
        return 0;
    }
}
