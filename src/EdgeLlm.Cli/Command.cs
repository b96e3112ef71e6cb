using Microsoft.Extensions.Logging;

namespace EdgeLlm.Cli;

/// <summary>One `edgellm` subcommand: its name, its options, and what it does.</summary>
public abstract class Command
{
    public abstract string Name { get; }
    public abstract string Summary { get; }
    public abstract string Usage { get; }
    public abstract IReadOnlyList<OptionSpec> Options { get; }

    /// <summary>Runs the command; returns the process exit code.</summary>
    public abstract int Run(CliArgs args, CliContext ctx);

    public string HelpText()
    {
        var sb = new System.Text.StringBuilder();
        sb.Append("usage: edgellm ").Append(Usage).Append("\n\n").Append(Summary).Append("\n\noptions:\n");
        sb.Append(OptionTable.Format(Options, 30));
        return sb.ToString();
    }

    // Options shared by the commands that load a model.
    public static readonly OptionSpec Model = new(["-m", "--model"], true, "FILE", "GGUF model file, or the name of a stored model (see 'edgellm list'; default: the bundled stories260K)");
    public static readonly OptionSpec Threads = new(["-t", "--threads"], true, "N", "CPU threads (default: all cores)");
    public static readonly OptionSpec Ctx = new(["-c", "--ctx-size"], true, "N", "context length (default: the model's, at most 4096)");
    public static readonly OptionSpec Device = new(["--device"], true, "DEV", "auto, cpu, cuda or cuda:N (default auto: CUDA when a usable GPU is found, else the CPU; $EDGELLM_DEVICE overrides the default)");
    public static readonly OptionSpec GpuLayers = new(["-ngl", "--gpu-layers"], true, "N|auto|all", "with CUDA: how many of the last layers run on the GPU, the rest on the CPU (default auto: as many as fit in free device memory; all on an integrated GPU)");
    public static readonly OptionSpec NoMmap = new(["--no-mmap"], false, null, "read the model into memory (2 MiB huge pages where the kernel allows); default: when it fits in half the free memory");
    public static readonly OptionSpec Mmap = new(["--mmap"], false, null, "map the model file instead of reading it in (nothing copied; the kernel may drop pages)");
    public static readonly OptionSpec Mlock = new(["--mlock"], false, null, "lock the model's bytes in RAM so the kernel never drops them (a warning if refused)");
    public static readonly OptionSpec CacheTypeK = new(["--cache-type-k", "-ctk"], true, "TYPE", "KV cache type of the keys: f32, f16 or q8_0 (default f16; the CUDA backend stores f16 only)");
    public static readonly OptionSpec CacheTypeV = new(["--cache-type-v", "-ctv"], true, "TYPE", "KV cache type of the values: f32, f16 or q8_0 (default f16)");
    public static readonly OptionSpec Verbose = new(["-v", "--verbose"], false, null, "log details to stderr");
    public static readonly OptionSpec Help = new(["-h", "--help"], false, null, "show this help");
}

/// <summary>What every command gets: output streams and a logger factory configured from -v.</summary>
public sealed class CliContext : IDisposable
{
    public TextWriter Out { get; }
    public TextWriter Err { get; }
    /// <summary>Standard input (the chat's lines); tests give a StringReader.</summary>
    public TextReader In { get; init; } = Console.In;
    /// <summary>What the standard streams are (terminal, pipe); <see cref="Terminal.None"/> in process.</summary>
    public Terminal Terminal { get; init; } = Terminal.None;
    /// <summary>Whether progress may be drawn on stderr: it is a terminal, or -v asked for it (then as whole lines).</summary>
    public bool ShowProgress => Terminal.StderrIsTerminal || Verbose;
    public ILoggerFactory Logging { get; }
    public bool Verbose { get; }

    public CliContext(TextWriter stdout, TextWriter stderr, bool verbose)
    {
        Out = stdout;
        Err = stderr;
        Verbose = verbose;
        Logging = LoggerFactory.Create(b =>
        {
            b.SetMinimumLevel(verbose ? LogLevel.Debug : LogLevel.Warning);
            b.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
                o.IncludeScopes = false;
            });
            // Logs never mix with generated text: everything goes to stderr.
            b.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        });
    }

    public ILogger Logger(string category) => Logging.CreateLogger(category);

    public void Dispose() => Logging.Dispose();
}
