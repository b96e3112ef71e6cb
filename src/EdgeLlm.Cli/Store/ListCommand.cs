using System.Globalization;

namespace EdgeLlm.Cli.Store;

/// <summary>`edgellm list`: the models in the store, one a line: name, size, date, source, aliases.</summary>
public sealed class ListCommand : Command
{
    public override string Name => "list";
    public override string Summary => "list the models in the model store";
    public override string Usage => "list";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Verbose, Help];

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.NoPositionals();
        var store = ModelStore.Default();
        var all = store.List();
        if (all.Count == 0)
        {
            ctx.Err.WriteLine($"no models in {store.Root} (add one with 'edgellm pull hf:ORG/REPO:QUANT' or 'edgellm import FILE')");
            return 0;
        }
        int w = 4;
        foreach (var m in all) w = Math.Max(w, m.Name.Length);
        ctx.Out.WriteLine($"{"NAME".PadRight(w)}  {"SIZE",10}  {"ADDED",-20}  SOURCE");
        foreach (var m in all)
        {
            string aliases = m.Aliases.Length > 0 ? $"  (also: {string.Join(", ", m.Aliases)})" : "";
            ctx.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{m.Name.PadRight(w)}  {PullCommand.Size(m.Size),10}  {m.Date,-20}  {m.Source}{aliases}"));
        }
        return 0;
    }
}
