using System.Runtime.InteropServices;
using System.Globalization;
using EdgeLlm.Generation;
using Microsoft.Extensions.Logging;

namespace EdgeLlm.Cli;

/// <summary>`edgellm run`: generate a continuation of a prompt, streamed to stdout; timings to stderr.</summary>
public sealed class RunCommand : Command
{
    private static readonly OptionSpec Prompt = new(["-p", "--prompt"], true, "TEXT", "prompt (default: empty, generation starts from BOS)");
    private static readonly OptionSpec File_ = new(["-f", "--file"], true, "FILE", "read the prompt from a file (- = standard input; piped input is the prompt when none is given)");
    private static readonly OptionSpec N = new(["-n", "--n-predict"], true, "N", "tokens to generate (default -1: until end of text or context)");
    private static readonly OptionSpec Temp = new(["--temp"], true, "T", "temperature; 0 = greedy (default 0.8)");
    private static readonly OptionSpec TopK = new(["--top-k"], true, "K", "keep the K most likely tokens; 0 = off (default 40)");
    private static readonly OptionSpec TopP = new(["--top-p"], true, "P", "nucleus sampling; 1 = off (default 0.95)");
    private static readonly OptionSpec MinP = new(["--min-p"], true, "P", "drop tokens below P x the top probability; 0 = off (default 0.05)");
    private static readonly OptionSpec RepeatPenalty = new(["--repeat-penalty"], true, "R", "penalize repeats of the last N tokens; 1 = off (default 1.0)");
    private static readonly OptionSpec RepeatLastN = new(["--repeat-last-n"], true, "N", "tokens the repeat penalty looks back over (default 64)");
    private static readonly OptionSpec PresencePenalty = new(["--presence-penalty"], true, "P", "presence penalty; 0 = off (default 0)");
    private static readonly OptionSpec FrequencyPenalty = new(["--frequency-penalty"], true, "F", "frequency penalty; 0 = off (default 0)");
    private static readonly OptionSpec Seed = new(["-s", "--seed"], true, "S", "random seed; -1 = random (default -1)");
    private static readonly OptionSpec IgnoreEos = new(["--ignore-eos"], false, null, "keep generating past the end-of-text token");
    private static readonly OptionSpec NoBos = new(["--no-bos"], false, null, "do not add the BOS token to the prompt");
    private static readonly OptionSpec JsonSchema = new(["--json-schema"], true, "FILE", "constrain the output to JSON valid against the JSON schema in FILE");
    private static readonly OptionSpec GrammarOpt = new(["--grammar"], true, "json", "constrain the output: 'json' = any JSON object");
    private static readonly OptionSpec ContextShift = new(["--context-shift"], false, null, "when the context is full, drop the older half of the tokens after --keep and go on (keys re-rotated for their new positions)");
    private static readonly OptionSpec Keep = new(["--keep"], true, "N", "tokens after BOS that a context shift keeps; -1 = the whole prompt (default 0: just BOS)");
    private static readonly OptionSpec PromptCacheFile = new(["--prompt-cache"], true, "FILE", "save the evaluated prompt's KV cache to FILE, and reuse the longest matching prefix from it when it exists");

    /// <summary>The sampling flags, shared with `chat`.</summary>
    internal static OptionSpec[] SamplingSpecs => [N, Temp, TopK, TopP, MinP, RepeatPenalty, RepeatLastN, PresencePenalty, FrequencyPenalty, Seed];

    public override string Name => "run";
    public override string Summary => "generate text from a prompt, streamed to stdout";
    public override string Usage => "run [MODEL] [PROMPT] [-m MODEL] [-p PROMPT | -f FILE|-] [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S] [--draft-model FILE [--draft-max K] | --lookup N] [-t THREADS] [-c CTX] [--device DEV] [--ignore-eos] [--context-shift [--keep N]] [--prompt-cache FILE] [--cache-type-k T] [--cache-type-v T] [--json-schema FILE | --grammar json]";
    public override IReadOnlyList<OptionSpec> Options { get; } =
        [Model, Prompt, File_, N, Temp, TopK, TopP, MinP, RepeatPenalty, RepeatLastN, PresencePenalty, FrequencyPenalty, Seed,
         IgnoreEos, NoBos, JsonSchema, GrammarOpt, ContextShift, Keep, PromptCacheFile, .. SpeculativeOptions.Specs, Threads, Ctx, Device, GpuLayers, CacheTypeK, CacheTypeV, Mmap, NoMmap, Mlock, Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        // `run MODEL "prompt"`, `run "prompt"` (the first argument is text unless it names a model), `-f -`, or piped stdin.
        args.TakeModel();
        string? positional = args.Positionals.Count > 0 ? string.Join(' ', args.Positionals) : null;
        if (positional is not null && (args.Has("-p") || args.Has("-f")))
            throw new UsageException($"unexpected argument '{args.Positionals[0]}': the prompt is already given with {(args.Has("-p") ? "-p" : "-f")}");
        string prompt = positional ?? PromptText.Read(args, "-p", "-f", ctx.In)
            ?? (ctx.Terminal.StdinIsPiped ? PromptText.FromStdin(ctx.In) : "");
        int n = args.GetInt("-n", -1, -1);
        var options = SamplingOptions(args);
        var grammar = ReadGrammar(args);
        int keep = args.GetInt("--keep", 0, -1);
        if (args.Has("--keep") && !args.Has("--context-shift")) throw new UsageException("--keep applies to --context-shift");
        string? promptCache = args.GetString("--prompt-cache");
        if (promptCache is not null) IO.OutputFile.CheckTarget(promptCache);

        using var model = ModelOptions.Load(args, ctx);
        var tokenizer = Tokenizer.For(model);
        int[] tokens = tokenizer.Encode(prompt, addBos: !args.Has("--no-bos"));
        if (tokens.Length == 0) throw new UsageException("the prompt is empty and --no-bos leaves nothing to start from");
        using var draft = SpeculativeOptions.Create(args, ctx, model, tokenizer, options);
        if (draft is not null && (promptCache is not null || args.Has("--context-shift")))
            throw new UsageException("speculative decoding (--draft-model, --lookup) does not combine with --prompt-cache or --context-shift yet");
        var speculative = draft is null ? null : new SpeculativeGenerator(model, tokenizer, draft);
        var generator = new Generator(model, tokenizer);
        if (promptCache is not null && File.Exists(promptCache))
        {
            int[] saved = PromptCache.Load(promptCache, model);
            generator.AdoptCache(saved);
            ctx.Logger("run").LogInformation("prompt cache {File}: {Tokens} tokens restored", promptCache, saved.Length);
        }

        using var cts = new CancellationTokenSource();
        // The first Ctrl-C stops generation (within one prompt batch or token) and prints the summary; a second one,
        // while that is still winding down, ends the process at once. (A POSIX signal registration, not
        // Console.CancelKeyPress, which opens Console.Out and fails when stdout is closed.)
        using var onCancel = PosixSignalRegistration.Create(PosixSignal.SIGINT, c =>
        {
            if (cts.IsCancellationRequested) return;
            c.Cancel = true;
            cts.Cancel();
        });
        GenerationStats stats;
        {
            ulong seed = Sampler.ResolveSeed(options);
            ctx.Logger("run").LogInformation("seed {Seed}, prompt {Tokens} tokens", seed, tokens.Length);
            // The generator builds its own sampler from the options; pin the seed so a random one is logged truthfully.
            var pinned = options with { Seed = (long)seed };
            var go = new GenerateOptions
            {
                MaxTokens = n,
                Sampler = pinned,
                IgnoreEos = args.Has("--ignore-eos"),
                Grammar = grammar,
                ReuseCache = promptCache is not null,
                ContextShift = args.Has("--context-shift"),
                ShiftKeep = keep,
                OnPromptEvaluated = promptCache is null ? null : () =>
                {
                    PromptCache.Save(promptCache, model, tokens);
                    ctx.Logger("run").LogInformation("prompt cache {File}: {Tokens} tokens saved ({Evaluated} evaluated now)", promptCache, tokens.Length, generator.LastPrefillTokens);
                },
            };
            stats = speculative is not null
                ? speculative.Generate(tokens, go, text => { ctx.Out.Write(text); ctx.Out.Flush(); return true; }, cts.Token)
                : generator.Generate(tokens, go, text => { ctx.Out.Write(text); ctx.Out.Flush(); return true; }, cts.Token);
            if (generator.ContextShifts > 0)
                ctx.Logger("run").LogInformation("context shifted {Count} time(s), keeping the first {Keep} tokens", generator.ContextShifts, keep);
        }
        ctx.Out.WriteLine();
        ctx.Out.Flush();
        if (speculative is not null) ctx.Err.WriteLine(SpeculativeOptions.Summary(speculative));
        PrintTimings(ctx.Err, stats, model.ContextSize);
        CudaProfileOutput.Print(model, ctx.Err);
        return stats.Stop == StopReason.Cancelled ? 130 : 0;
    }

    /// <summary>--json-schema FILE or --grammar json; null when neither is given.</summary>
    internal static Grammar? ReadGrammar(CliArgs args)
    {
        string? file = args.GetString("--json-schema");
        string? kind = args.GetString("--grammar");
        if (file is not null && kind is not null) throw new UsageException("give either --json-schema or --grammar, not both");
        if (kind is not null)
            return kind == "json" ? Grammar.JsonObject : throw new UsageException($"--grammar takes 'json' (any JSON object), got '{kind}'");
        if (file is null) return null;
        if (Directory.Exists(file)) throw new EdgeLlmException($"{file}: a directory, not a JSON schema file");
        if (!File.Exists(file)) throw new FileNotFoundException($"{file}: JSON schema file not found");
        try { return JsonSchemaCompiler.Compile(File.ReadAllText(file)); }
        catch (GrammarException e) { throw new GrammarException($"{file}: {e.Message}"); }
    }

    internal static SamplerOptions SamplingOptions(CliArgs args)
    {
        var d = new SamplerOptions();
        var o = d with
        {
            Temperature = args.GetFloat("--temp", d.Temperature, 0f, 100f),
            TopK = args.GetInt("--top-k", d.TopK, 0),
            TopP = args.GetFloat("--top-p", d.TopP, 0f, 1f),
            MinP = args.GetFloat("--min-p", d.MinP, 0f, 1f),
            RepeatPenalty = args.GetFloat("--repeat-penalty", d.RepeatPenalty, 0f, 100f),
            RepeatLastN = args.GetInt("--repeat-last-n", d.RepeatLastN, -1),
            PresencePenalty = args.GetFloat("--presence-penalty", d.PresencePenalty, -100f, 100f),
            FrequencyPenalty = args.GetFloat("--frequency-penalty", d.FrequencyPenalty, -100f, 100f),
            Seed = args.GetLong("-s", d.Seed),
        };
        try { o.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        return o;
    }

    private static void PrintTimings(TextWriter err, GenerationStats s, int contextSize)
    {
        var inv = CultureInfo.InvariantCulture;
        string why = s.Stop switch
        {
            StopReason.EndOfGeneration => "end of text",
            StopReason.TokenLimit => "token limit (-n)",
            StopReason.ContextFull => $"context full ({contextSize} tokens, -c)",
            _ => "interrupted",
        };
        err.WriteLine(string.Format(inv,
            "prompt: {0} tokens in {1:F1} ms ({2:F1} tok/s) | generation: {3} tokens in {4:F1} ms ({5:F1} tok/s) | first token after {6:F1} ms | stopped: {7}",
            s.PromptTokens, s.PromptTime.TotalMilliseconds, s.PromptTokensPerSecond,
            s.GeneratedTokens, s.GenerationTime.TotalMilliseconds, s.GenerationTokensPerSecond,
            s.TimeToFirstToken.TotalMilliseconds, why));
    }
}
