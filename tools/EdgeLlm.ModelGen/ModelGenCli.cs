using System.Globalization;
using EdgeLlm.CommandLine;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.ModelGen;

/// <summary>
/// `edgellm-modelgen`: command line over <see cref="ModelGenerator"/>. Every failure is one line on stderr
/// (exit 2 for a command-line mistake, 1 for anything else).
/// </summary>
public static class ModelGenCli
{
    private const string Program = "edgellm-modelgen";

    private static readonly OptionSpec OutputOption = new(["-o", "--output"], true, "FILE", "file to write (through FILE.partial, renamed when complete)");
    private static readonly OptionSpec ShapeOption = new(["--shape"], true, "NAME",
        "preset (default tiny): tiny = dim 256, 2 layers, 4/2 heads, ffn 512, vocab 512;\n" +
        "1.1b = 2048, 22, 32/4, 5632, 32000; 7b = 4096, 32, 32/32, 11008, 32000;\n" +
        "70b = 8192, 80, 64/8, 28672, 32000 (all llama);\n" +
        "llama3.2-1b = 2048, 16, 32/8, 8192, 128256, tied, rope_freqs;\n" +
        "qwen2.5-1.5b = qwen2 1536, 28, 12/2, 8960, 151936, tied;\n" +
        "qwen3-1.7b = qwen3 2048, 28, 16/8 x 128, 6144, 151936, tied;\n" +
        "phi3-mini = phi3 3072, 32, 32/32, 8192, 32064;\n" +
        "gemma2-2b = gemma2 2304, 26, 8/4 x 256, 9216, 256000, window 4096;\n" +
        "gemma3-1b = gemma3 1152, 26, 4/1 x 256, 6912, 262144, window 512");
    private static readonly OptionSpec ArchOption = new(["--arch"], true, "ARCH", "family layout and metadata (default: the preset's): " + string.Join(", ", LlamaConfig.SupportedArchitectures));

    /// <summary>The numbers a preset's shape is made of, each overridable; one help row lists them all.</summary>
    private static readonly string[] ShapeNumbers = ["--dim", "--layers", "--heads", "--kv-heads", "--head-dim", "--ffn", "--vocab", "--ctx"];

    private static readonly OptionSpec TypeOption = new(["--type"], true, "TYPE",
        "weight format (default q4_0): " + string.Join(", ", WeightFormats.Names) + ";\n" +
        "quantized formats except q8_0 store output.weight as Q6_K like llama.cpp;\n" +
        "q4_k_m and q5_k_m are llama.cpp's Q4_K_M and Q5_K_M mixes");
    private static readonly OptionSpec OutputTypeOption = new(["--output-type"], true, "TYPE", "type of output.weight instead (any --type but the mixes)");
    private static readonly OptionSpec SeedOption = new(["--seed"], true, "S", "unsigned 64-bit seed (default 1)");
    private static readonly OptionSpec TokenizerOption = new(["--tokenizer"], true, "FILE",
        "copy tokenizer.* from this GGUF (default: tests/data/ggml-vocab-llama-spm.gguf for\n" +
        "vocab 32000, else a synthetic SentencePiece vocab)");
    private static readonly OptionSpec ThreadsOption = new(["-j", "--threads"], true, "N", "threads drawing weights (default: all cores; the output does not depend on it)");
    private static readonly OptionSpec QuietOption = new(["-q", "--quiet"], "no progress on stderr");
    private static readonly OptionSpec HelpOption = new(["-h", "--help"], "show this help") { Listed = false };

    /// <summary>The options edgellm-modelgen accepts, in the order --help lists them.</summary>
    internal static IReadOnlyList<OptionSpec> Options { get; } =
    [
        OutputOption, ShapeOption, ArchOption,
        .. ShapeNumbers.Select((n, i) => new OptionSpec([n], true, "N", "override one number of the preset")
            { Listed = i == 0, Synopsis = string.Join(" ", ShapeNumbers) + " N" }),
        TypeOption, OutputTypeOption, SeedOption, TokenizerOption, ThreadsOption, QuietOption, HelpOption,
    ];

    public static readonly string Usage =
        "usage: edgellm-modelgen -o FILE [--shape NAME] [--arch ARCH] [--dim N] [--layers N] [--heads N] [--kv-heads N]\n" +
        "                        [--head-dim N] [--ffn N] [--vocab N] [--ctx N] [--type TYPE]\n" +
        "                        [--output-type TYPE] [--seed S] [--tokenizer FILE] [-j THREADS] [-q]\n\n" +
        "Writes a random-weight GGUF model of any family the engine runs. Same options -> identical bytes.\n\n" +
        OptionTable.Format(Options, 20);

    public static int Execute(string[] args, TextWriter stdout, TextWriter stderr)
    {
        try
        {
            if (CliArgs.AsksForHelp(args)) { stdout.Write(Usage); return 0; }
            var values = new CliArgs(Program, args, Options);
            values.NoPositionals();
            bool quiet = values.Has("-q");
            var options = Parse(values);
            string path = values.GetString("-o") ?? throw new UsageException("give the file to write with -o FILE");

            int lastTenth = -1;
            Action<long, long>? progress = quiet ? null : (done, total) =>
            {
                int tenth = (int)(done * 10 / Math.Max(1, total));
                if (tenth == lastTenth) return;
                lastTenth = tenth;
                stderr.WriteLine($"edgellm-modelgen: {tenth * 10}% ({done / (1 << 20)} / {total / (1 << 20)} MiB)");
            };
            var summary = ModelGenerator.Write(options, path, progress);
            var inv = CultureInfo.InvariantCulture;
            double secs = summary.Elapsed.TotalSeconds;
            stdout.WriteLine(string.Format(inv,
                "wrote {0}: {1}, {2} ({3} tensors, {4:N0} bytes, {5:F2} GiB) in {6:F1} s ({7:F0} MB/s); vocab: {8}",
                summary.Path, options.Shape, WeightFormats.Name(options.Format), summary.TensorCount, summary.FileBytes,
                summary.FileBytes / (double)(1L << 30), secs, summary.FileBytes / 1e6 / Math.Max(secs, 1e-9), summary.VocabOrigin));
            return 0;
        }
        catch (UsageException e)
        {
            stderr.WriteLine(e.Line(Program));
            return UsageException.ExitCode;
        }
        catch (EdgeLlmException e)
        {
            stderr.WriteLine($"edgellm-modelgen: error: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException or InvalidDataException or GgufFormatException)
        {
            stderr.WriteLine($"edgellm-modelgen: error: {e.Message.ReplaceLineEndings(" ")}");
            return 1;
        }
    }

    /// <summary>Turns option values into generator options; a UsageException names the bad option.</summary>
    private static ModelGenOptions Parse(CliArgs v)
    {
        string shapeName = v.GetString("--shape") ?? "tiny";
        var shape = ModelShape.Preset(shapeName)
            ?? throw new UsageException($"unknown shape '{shapeName}' (expected {string.Join(", ", ModelShape.PresetNames)})");
        if (v.GetString("--arch") is { } arch)
        {
            if (Array.IndexOf(LlamaConfig.SupportedArchitectures, arch) < 0)
                throw new UsageException($"unknown architecture '{arch}' (expected {string.Join(", ", LlamaConfig.SupportedArchitectures)})");
            shape = shape with { Arch = arch };
        }
        shape = shape with
        {
            KeyLength = v.Has("--head-dim") ? Int(v, "--head-dim", 0) : shape.KeyLength,
            Dim = Int(v, "--dim", shape.Dim),
            Layers = Int(v, "--layers", shape.Layers),
            Heads = Int(v, "--heads", shape.Heads),
            KvHeads = Int(v, "--kv-heads", shape.KvHeads),
            Ffn = Int(v, "--ffn", shape.Ffn),
            Vocab = Int(v, "--vocab", shape.Vocab),
            Context = Int(v, "--ctx", shape.Context),
        };
        if (shape.Problem() is { } why) throw new UsageException($"invalid shape: {why}");

        var format = WeightFormat.Q4_0;
        if (v.GetString("--type") is { } t && !WeightFormats.TryParse(t, out format))
            throw new UsageException($"unknown type '{t}' (expected {string.Join(", ", WeightFormats.Names)})");
        GgmlType? outputType = null;
        if (v.GetString("--output-type") is { } ot)
        {
            if (!WeightFormats.TryParse(ot, out var of) || of.Mix)
                throw new UsageException($"unknown output type '{ot}' (expected {string.Join(", ", WeightFormats.Names.Except(WeightFormats.MixNames))})");
            outputType = WeightFormats.BaseType(of);
        }
        ulong seed = v.GetULong("--seed", 1);
        int threads = Int(v, "--threads", 0, max: 1024);
        return new ModelGenOptions
        {
            Shape = shape,
            Format = format,
            Seed = seed,
            OutputType = outputType,
            TokenizerFile = v.GetString("--tokenizer"),
            Threads = threads,
            Name = $"random-{shape.Arch}-{shapeName}-{WeightFormats.Name(format)}",
        };
    }

    /// <summary>A count option: 1 to <paramref name="max"/>.</summary>
    private static int Int(CliArgs v, string name, int fallback, int max = int.MaxValue) => v.GetInt(name, fallback, 1, max);
}
