using System.Globalization;

namespace EdgeLlm.Cli;

/// <summary>A command-line mistake: printed as one line with a pointer to --help, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>One option a subcommand accepts: its names (e.g. "-n", "--n-predict") and whether it takes a value.</summary>
public sealed record OptionSpec(string[] Names, bool TakesValue, string? Value, string Help);

/// <summary>
/// Parses a subcommand's arguments against the options it declares. Unknown options, missing values and
/// malformed numbers become <see cref="UsageException"/>s that name the option.
/// </summary>
public sealed class CliArgs
{
    private readonly string _command;
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
    private readonly Dictionary<string, OptionSpec> _byName = new(StringComparer.Ordinal);

    public List<string> Positionals { get; } = new();

    public CliArgs(string command, IReadOnlyList<string> args, IEnumerable<OptionSpec> specs)
    {
        _command = command;
        foreach (var spec in specs)
            foreach (string n in spec.Names) _byName[n] = spec;

        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (a.Length > 1 && a[0] == '-' && !IsNumber(a))
            {
                string name = a;
                string? inline = null;
                int eq = a.IndexOf('=');
                if (a.StartsWith("--", StringComparison.Ordinal) && eq > 2) { name = a[..eq]; inline = a[(eq + 1)..]; }
                if (!_byName.TryGetValue(name, out var spec))
                    throw new UsageException($"unknown option '{name}' for 'edgellm {command}'");
                string key = spec.Names[^1];
                if (spec.TakesValue)
                {
                    if (inline is null)
                    {
                        if (i + 1 >= args.Count) throw new UsageException($"option '{name}' needs a value ({spec.Value})");
                        inline = args[++i];
                    }
                    _values[key] = inline;
                }
                else
                {
                    if (inline is not null) throw new UsageException($"option '{name}' takes no value");
                    _values[key] = null;
                }
            }
            else
            {
                Positionals.Add(a);
            }
        }
    }

    private static bool IsNumber(string s) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out _);

    private string Key(string name) => _byName.TryGetValue(name, out var s) ? s.Names[^1]
        : throw new InvalidOperationException($"option {name} was not declared for {_command}");

    public bool Has(string name) => _values.ContainsKey(Key(name));

    public string? GetString(string name) => _values.TryGetValue(Key(name), out var v) ? v : null;

    public int GetInt(string name, int defaultValue, int min = int.MinValue, int max = int.MaxValue)
    {
        string? s = GetString(name);
        if (s is null) return defaultValue;
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v))
            throw new UsageException($"option '{name}' expects an integer, got '{s}'");
        if (v < min || v > max)
            throw new UsageException($"option '{name}' must be between {min} and {max}, got {v}");
        return v;
    }

    public long GetLong(string name, long defaultValue)
    {
        string? s = GetString(name);
        if (s is null) return defaultValue;
        if (!long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v))
            throw new UsageException($"option '{name}' expects an integer, got '{s}'");
        return v;
    }

    public float GetFloat(string name, float defaultValue, float min = float.NegativeInfinity, float max = float.PositiveInfinity)
    {
        string? s = GetString(name);
        if (s is null) return defaultValue;
        if (!float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out float v) || float.IsNaN(v))
            throw new UsageException($"option '{name}' expects a number, got '{s}'");
        if (v < min || v > max)
            throw new UsageException($"option '{name}' must be between {min.ToString(CultureInfo.InvariantCulture)} and {max.ToString(CultureInfo.InvariantCulture)}, got {s}");
        return v;
    }

    public void NoPositionals()
    {
        if (Positionals.Count > 0) throw new UsageException($"unexpected argument '{Positionals[0]}' for 'edgellm {_command}'");
    }
}
