namespace EdgeLlm.Cli.Store;

/// <summary>`edgellm rm NAME`: deletes a stored model (its file, manifest and any partial download).</summary>
public sealed class RmCommand : Command
{
    public override string Name => "rm";
    public override string Summary => "delete a model from the model store";
    public override string Usage => "rm NAME";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        if (args.Positionals.Count != 1) throw new UsageException("give the name of one stored model (see 'edgellm list')");
        var m = ModelStore.Default().Remove(args.Positionals[0]);
        ctx.Out.WriteLine($"{m.Name}: removed");
        return 0;
    }
}
