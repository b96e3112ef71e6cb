using System.Globalization;
using System.Reflection;
using EdgeLlm.CommandLine;
using EdgeLlm.Convert.Sources;
using EdgeLlm.Gguf;
using EdgeLlm.IO;

namespace EdgeLlm.Convert;

/// <summary>
/// Entry point of edgellm-convert: parses the command line, opens the checkpoint, converts it, and turns every
/// failure into one line on stderr with exit code 2 (command-line mistake) or 1 (anything else), like edgellm.
/// </summary>
public static class ConvertCli
{
    public const string Usage = "usage: edgellm-convert INPUT -o OUTPUT.gguf [--type T] [--tokenizer PATH] [--name NAME] [-t THREADS] [--ctx N] [--allow-requantize] [-v]\n"
        + "       edgellm-convert --vocab-only TOKENIZER -o VOCAB.gguf";

    public static string HelpText() => $"""
        edgellm-convert: turn a checkpoint into a GGUF file that edgellm and llama.cpp run

        {Usage}

        INPUT is detected from the path:
          DIR with config.json        Hugging Face checkpoint (*.safetensors, F32/F16/BF16; tokenizer.model or tokenizer.json) of
                                      Llama (2, 3.x, SmolLM), Mistral, Qwen2, Qwen3, Phi-3/Phi-4-mini, Gemma, Gemma 2, Gemma 3 (text)
          DIR with params.json        Meta's original release (consolidated.*.pth + tokenizer.model)
          FILE.bin                    llama2.c checkpoint (v0, v1, v2) with tokenizer.bin or tok<vocab>.bin beside it
          FILE.gguf                   an existing GGUF, re-quantized (metadata and tokenizer copied)

        With --vocab-only, INPUT is a tokenizer (tokenizer.json, tokenizer.model, or a Hugging Face directory
        holding one) and OUTPUT a GGUF with only the tokenizer.* keys, no tensors ('edgellm tokenize' reads it).

        options:
        {OptionTable.Format(Options, 27)}
        Every tensor's XXH64 is stored under '{TensorChecksums.MetadataKey}'; 'edgellm info -m FILE --verify' checks them.

        """;

    public static int Execute(string[] args, TextWriter stdout, TextWriter stderr) =>
        Execute(args, stdout, stderr, ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected, CancellationToken.None);

    public static int Execute(string[] args, TextWriter stdout, TextWriter stderr, bool progressBar, CancellationToken ct)
    {
        bool verbose = CliArgs.AsksForVerbose(args);
        Command? cmd = null;
        try
        {
            if (CliArgs.AsksForHelp(args)) { stdout.Write(HelpText()); return 0; }
            cmd = Parse(args);
            if (cmd.Version) { stdout.WriteLine($"{Program} {Version()}"); return 0; }
            return Run(cmd, stdout, stderr, progressBar, ct);
        }
        catch (UsageException e)
        {
            stderr.WriteLine(e.Line(Program));
            return UsageException.ExitCode;
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine("edgellm-convert: interrupted; no output written");
            return 1;
        }
        catch (Exception e) when (e is EdgeLlmException or GgufFormatException or IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"edgellm-convert: error: {ErrorText.OneLine(e)}");
            if (verbose) stderr.WriteLine(e.ToString());
            return 1;
        }
        catch (ArgumentOutOfRangeException e) when (e.ParamName == "value" && cmd is not null)
        {
            // .NET reports a write refused with EFBIG (past the file-size limit, ulimit -f) this way, not as IOException.
            stderr.WriteLine($"edgellm-convert: error: {cmd.Output}: the output is over the file size limit (ulimit -f); no output written");
            if (verbose) stderr.WriteLine(e.ToString());
            return 1;
        }
        catch (Exception e)
        {
            stderr.WriteLine($"edgellm-convert: internal error: {e.GetType().Name}: {ErrorText.OneLine(e)}");
            if (verbose) stderr.WriteLine(e.ToString());
            return 1;
        }
    }

    private static int Run(Command cmd, TextWriter stdout, TextWriter stderr, bool progressBar, CancellationToken ct)
    {
        OutputFile.CheckTarget(Path.GetFullPath(cmd.Output)); // before any work: never replace a device, link or directory
        if (cmd.VocabOnly)
        {
            var (path, count) = VocabOnly.Write(cmd.Input, cmd.Output, cmd.Name);
            stderr.WriteLine($"edgellm-convert: wrote {path}: vocabulary only, {count} tokens");
            stdout.WriteLine(path);
            return 0;
        }
        using var source = CheckpointSources.Open(cmd.Input);
        var p = source.Params;
        var tok = cmd.Tokenizer is null ? null : TokenizerLoader.Load(cmd.Tokenizer, p.Shape.Vocab);
        stderr.WriteLine($"edgellm-convert: {source.Format} {cmd.Input}: dim {p.Shape.Dim}, {p.Shape.Layers} layers, {p.Shape.Heads}/{p.Shape.KvHeads} heads, ffn {p.Shape.Ffn}, vocab {p.Shape.Vocab}, {source.Tensors.Count} tensors -> {QuantPolicy.Name(cmd.Type)}");
        var result = Converter.Convert(source, cmd.Output, new ConvertOptions
        {
            Type = cmd.Type,
            Name = cmd.Name,
            Threads = cmd.Threads,
            ContextLength = cmd.Context,
            Tokenizer = tok,
            AllowRequantize = cmd.AllowRequantize,
            ProgressBar = progressBar,
        }, stderr, ct);
        var byType = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (var t in result.Tensors) byType[GgmlTypes.Name(t.Type)] = byType.GetValueOrDefault(GgmlTypes.Name(t.Type)) + 1;
        double secs = Math.Max(1e-3, result.Elapsed.TotalSeconds);
        stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"edgellm-convert: wrote {result.Path}: {result.FileBytes / 1048576.0:F1} MiB, {result.Tensors.Count} tensors ({string.Join(", ", byType.Select(kv => $"{kv.Key} x{kv.Value}"))}) in {secs:F1} s, {result.InputBytes / 1e6 / secs:F1} MB/s input"));
        stdout.WriteLine(result.Path);
        return 0;
    }

    private sealed record Command(string Input, string Output, OutputType Type, string? Tokenizer, string? Name, int Threads, int? Context, bool Version,
        bool VocabOnly = false, bool AllowRequantize = false);

    private const string Program = "edgellm-convert";

    private static readonly OptionSpec OutputOption = new(["-o", "--output"], true, "FILE", "output GGUF (written to FILE.partial, renamed when complete)");
    private static readonly OptionSpec TypeOption = new(["--type"], true, "T", $"{string.Join("|", QuantPolicy.Names)} (default f16); the quantized\n"
        + "types follow llama-quantize's per-tensor mixes (e.g. q4_k_m: Q4_K with Q6_K attn_v/ffn_down)");
    private static readonly OptionSpec VocabOnlyOption = new(["--vocab-only"], "write only the tokenizer (INPUT: tokenizer.json, tokenizer.model or a directory)");
    private static readonly OptionSpec TokenizerOption = new(["--tokenizer"], true, "PATH", "tokenizer.model, tokenizer.json, llama2.c tokenizer .bin or a .gguf to take the vocabulary from");
    private static readonly OptionSpec NameOption = new(["--name"], true, "NAME", "general.name (default: the checkpoint's name)");
    private static readonly OptionSpec ThreadsOption = new(["-t", "--threads"], true, "N", "quantization threads (default: all cores)");
    private static readonly OptionSpec CtxOption = new(["--ctx"], true, "N", "ARCH.context_length to write (default: the checkpoint's)");
    private static readonly OptionSpec AllowRequantizeOption = new(["--allow-requantize"], "let a GGUF input's already quantized tensors be quantized to another type");
    private static readonly OptionSpec VerboseOption = new(["-v", "--verbose"], "details and stack traces on errors");
    private static readonly OptionSpec HelpOption = new(["-h", "--help"], "show this help");
    private static readonly OptionSpec VersionOption = new(["--version"], "print the version");

    /// <summary>The options edgellm-convert accepts, in the order --help lists them.</summary>
    internal static IReadOnlyList<OptionSpec> Options { get; } =
        [OutputOption, TypeOption, VocabOnlyOption, TokenizerOption, NameOption, ThreadsOption, CtxOption, AllowRequantizeOption, VerboseOption, HelpOption, VersionOption];

    private static Command Parse(string[] args)
    {
        var a = new CliArgs(Program, args, Options);
        var type = OutputType.F16;
        string? ts = a.GetString("--type");
        if (ts is not null && !QuantPolicy.TryParse(ts, out type))
            throw new UsageException($"unknown --type '{ts}' (expected {string.Join(", ", QuantPolicy.Names)})");
        int threads = a.GetInt("-t", Environment.ProcessorCount, 1);
        int? ctx = a.Has("--ctx") ? a.GetInt("--ctx", 0, 1) : null;
        if (a.Has("--version")) return new Command("", "", type, null, null, threads, null, true);
        bool vocabOnly = a.Has("--vocab-only");
        if (a.Positionals.Count > 1) throw new UsageException($"unexpected argument '{a.Positionals[1]}' (one INPUT only)");
        string input = a.Positionals.Count == 1 ? a.Positionals[0] : throw new UsageException(vocabOnly
            ? "missing INPUT (tokenizer.json, tokenizer.model or a Hugging Face directory)"
            : "missing INPUT (a Hugging Face or Meta directory, a llama2.c .bin or a .gguf)");
        string output = a.GetString("-o") ?? throw new UsageException("missing -o OUTPUT.gguf");
        string? tokenizer = a.GetString("--tokenizer");
        if (vocabOnly && tokenizer is not null) throw new UsageException("--vocab-only takes the tokenizer as INPUT, not --tokenizer");
        return new Command(input, output, type, tokenizer, a.GetString("--name"), threads, ctx, false, vocabOnly, a.Has("--allow-requantize"));
    }

    private static string Version() =>
        typeof(ConvertCli).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

}
