namespace EdgeLlm.CommandLine;

/// <summary>
/// One option a command accepts: its names (e.g. "-n", "--n-predict"; the last one is its key), whether it takes a
/// value (named <paramref name="Value"/> in the help) and its help text (more lines after '\n').
/// </summary>
public sealed record OptionSpec(string[] Names, bool TakesValue, string? Value, string Help)
{
    /// <summary>A flag: no value.</summary>
    public OptionSpec(string[] names, string help) : this(names, false, null, help) { }

    /// <summary>What the help shows left of <see cref="Help"/>; by default the names and the value ("-o, --output FILE").</summary>
    public string Synopsis { get; init; } = string.Join(", ", Names) + (TakesValue ? " " + Value : "");

    /// <summary>Whether the help lists this option (false for options another row describes).</summary>
    public bool Listed { get; init; } = true;
}
