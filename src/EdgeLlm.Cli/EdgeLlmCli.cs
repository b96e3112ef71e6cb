using EdgeLlm.Gguf;

namespace EdgeLlm.Cli;

/// <summary>
/// Entry point: picks the subcommand, turns every failure into one line on stderr and an exit code
/// (2 for a command-line mistake, 1 for anything else), never a stack trace unless -v is given.
/// </summary>
public static class EdgeLlmCli
{
    public static IReadOnlyList<Command> Commands { get; } =
    [
        new RunCommand(),
        new ChatCommand(),
        new ServeCommand(),
        new TokenizeCommand(),
        new EmbedCommand(),
        new LogitsCommand(),
        new PerplexityCommand(),
        new BenchCommand(),
        new InfoCommand(),
        new DevicesCommand(),
        new Store.PullCommand(),
        new Store.ImportCommand(),
        new Store.ListCommand(),
        new Store.RmCommand(),
        new DoctorCommand(),
    ];

    public static int Execute(string[] args, TextWriter stdout, TextWriter stderr, TextReader? stdin = null, Terminal? terminal = null)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            if (args.Length > 1 && Find(args[1]) is { } c) { stdout.Write(c.HelpText()); return 0; }
            stdout.Write(GeneralHelp());
            return args.Length == 0 ? 2 : 0;
        }
        if (args[0] is "--version" or "version")
        {
            stdout.WriteLine(VersionInfo.Describe());
            return 0;
        }
        var command = Find(args[0]);
        if (command is null)
        {
            string hint = CliArgs.DidYouMean(args[0], Commands.Select(c => c.Name));
            stderr.WriteLine($"edgellm: unknown command '{args[0]}'{hint} (see 'edgellm --help')");
            return 2;
        }
        var rest = args.AsSpan(1).ToArray();
        bool verbose = CliArgs.AsksForVerbose(rest);
        try
        {
            if (CliArgs.AsksForHelp(rest)) { stdout.Write(command.HelpText()); return 0; }
            var parsed = new CliArgs("edgellm " + command.Name, rest, command.Options);
            using var ctx = new CliContext(stdout, stderr, verbose) { In = stdin ?? Console.In, Terminal = terminal ?? Terminal.None };
            int rc = command.Run(parsed, ctx);
            stdout.Flush();
            return rc;
        }
        catch (UsageException e)
        {
            stderr.WriteLine(e.Line("edgellm " + command.Name));
            return UsageException.ExitCode;
        }
        catch (Exception e) when (IsUserFacing(e))
        {
            stderr.WriteLine($"edgellm {command.Name}: error: {OneLine(e)}");
            if (verbose) stderr.WriteLine(e.ToString());
            return 1;
        }
        catch (Exception e)
        {
            stderr.WriteLine($"edgellm {command.Name}: internal error: {e.GetType().Name}: {OneLine(e)}");
            if (verbose) stderr.WriteLine(e.ToString());
            return 1;
        }
    }

    private static bool IsUserFacing(Exception e) => e is GgufFormatException or IOException or UnauthorizedAccessException
        or EdgeLlmException or OperationCanceledException;

    private static string OneLine(Exception e) => EdgeLlm.IO.ErrorText.OneLine(e);

    private static Command? Find(string name)
    {
        foreach (var c in Commands) if (c.Name == name) return c;
        return null;
    }

    private static string GeneralHelp()
    {
        var sb = new System.Text.StringBuilder();
        sb.Append("edgellm: run Llama-family GGUF models offline on the CPU or a CUDA GPU\n\nusage: edgellm <command> [options]\n\ncommands:\n");
        foreach (var c in Commands) sb.Append("  ").Append(c.Name.PadRight(12)).Append(c.Summary).Append('\n');
        sb.Append("\n'edgellm <command> --help' lists a command's options; 'edgellm --version' prints the build.\n");
        return sb.ToString();
    }
}
