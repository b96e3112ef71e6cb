using System.Globalization;
using System.Numerics;

namespace EdgeLlm.CommandLine;

/// <summary>
/// Parses a command's arguments against the options it declares. Unknown options, missing values and malformed
/// numbers become <see cref="UsageException"/>s that name the option. "--name=value" gives a long option its value;
/// an argument that starts with '-' but reads as a number ("-1") is a positional argument.
/// </summary>
public sealed class CliArgs
{
    private readonly string _program;
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
    private readonly Dictionary<string, OptionSpec> _byName = new(StringComparer.Ordinal);

    public List<string> Positionals { get; } = new();

    /// <param name="program">How the messages name the command: "edgellm run", "edgellm-convert".</param>
    public CliArgs(string program, IReadOnlyList<string> args, IEnumerable<OptionSpec> specs)
    {
        _program = program;
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
                    throw new UsageException($"unknown option '{name}' for '{program}'{DidYouMean(name, _byName.Keys)}");
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

    /// <summary>
    /// Whether any argument is -h or --help: help wins over every other mistake on the line (checked before parsing).
    /// </summary>
    public static bool AsksForHelp(IReadOnlyList<string> args)
    {
        foreach (string a in args) if (a is "-h" or "--help") return true;
        return false;
    }

    /// <summary>Whether any argument is -v or --verbose (checked before parsing, so a failed parse still knows).</summary>
    public static bool AsksForVerbose(IReadOnlyList<string> args)
    {
        foreach (string a in args) if (a is "-v" or "--verbose") return true;
        return false;
    }

    /// <summary>
    /// "; did you mean 'X'?" naming the closest of <paramref name="known"/> to <paramref name="given"/> (<see cref="EditDistance"/>
    /// at most a third of the longer name, at least 1, at most 3; ties: the first in order), or "" when none is close.
    /// </summary>
    public static string DidYouMean(string given, IEnumerable<string> known)
    {
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (string k in known)
        {
            int d = EditDistance(given, k);
            int limit = Math.Clamp(Math.Max(given.Length, k.Length) / 3, 1, 3);
            if (d <= limit && d < bestDistance) { best = k; bestDistance = d; }
        }
        return best is null ? "" : $"; did you mean '{best}'?";
    }

    /// <summary>
    /// Edit distance with insertions, deletions, substitutions and swaps of two neighbours each costing 1 (optimal
    /// string alignment: "rnu" is 1 from "run"), ordinal.
    /// </summary>
    public static int EditDistance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
            {
                int v = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) v = Math.Min(v, d[i - 2, j - 2] + 1);
                d[i, j] = v;
            }
        return d[a.Length, b.Length];
    }

    private static bool IsNumber(string s) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out _);

    private string Key(string name) => _byName.TryGetValue(name, out var s) ? s.Names[^1]
        : throw new InvalidOperationException($"option {name} was not declared for {_program}");

    public bool Has(string name) => _values.ContainsKey(Key(name));

    public string? GetString(string name) => _values.TryGetValue(Key(name), out var v) ? v : null;

    public int GetInt(string name, int defaultValue, int min = int.MinValue, int max = int.MaxValue)
    {
        int v = GetInteger(name, defaultValue, NumberStyles.Integer, "an integer");
        if (GetString(name) is not null && (v < min || v > max))
            throw new UsageException($"option '{name}' must be between {min} and {max}, got {v}");
        return v;
    }

    public long GetLong(string name, long defaultValue) => GetInteger(name, defaultValue, NumberStyles.Integer, "an integer");

    /// <summary>An unsigned 64-bit value written in decimal digits only (no sign, no spaces).</summary>
    public ulong GetULong(string name, ulong defaultValue) => GetInteger(name, defaultValue, NumberStyles.None, "an unsigned integer");

    private T GetInteger<T>(string name, T defaultValue, NumberStyles style, string what) where T : struct, IBinaryInteger<T>
    {
        string? s = GetString(name);
        if (s is null) return defaultValue;
        if (!T.TryParse(s, style, CultureInfo.InvariantCulture, out T v))
            throw new UsageException($"option '{name}' expects {what}, got '{s}'");
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

    /// <summary>Gives an option a value from elsewhere (a positional argument), as if it had been typed.</summary>
    public void Set(string name, string? value) => _values[Key(name)] = value;

    public void NoPositionals()
    {
        if (Positionals.Count > 0) throw new UsageException($"unexpected argument '{Positionals[0]}' for '{_program}'");
    }
}
