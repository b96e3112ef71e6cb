namespace EdgeLlm.Cli.Store;

/// <summary>`edgellm import PATH [--name N]`: adds a local GGUF file to the model store (hard link when possible, else a copy).</summary>
public sealed class ImportCommand : Command
{
    private static readonly OptionSpec NameOpt = new(["--name"], true, "NAME", "store the model under this name (default: the file name without .gguf)");

    public override string Name => "import";
    public override string Summary => "add a local GGUF file to the model store";
    public override string Usage => "import PATH [--name NAME]";
    public override IReadOnlyList<OptionSpec> Options { get; } = [NameOpt, Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        if (args.Positionals.Count != 1) throw new UsageException("give one GGUF file to import");
        string? name = args.GetString("--name");
        if (name is not null && !ModelStore.IsValidName(name)) throw new UsageException($"--name '{name}' is not a valid model name (letters, digits, '.', '_', '-')");
        var store = ModelStore.Default();
        var m = store.Import(args.Positionals[0], name, out bool linked);
        ctx.Out.WriteLine($"{m.Name}: imported {args.Positionals[0]} ({PullCommand.Size(m.Size)}, {(linked ? "hard-linked" : "copied")}, sha256 {m.Sha256}) into {store.Root}");
        return 0;
    }
}
