using System.Text;

namespace EdgeLlm.CommandLine;

/// <summary>The option table of a --help text, made from the options the parser accepts so the two never differ.</summary>
public static class OptionTable
{
    /// <summary>
    /// One row per listed option: two spaces, <see cref="OptionSpec.Synopsis"/> padded to <paramref name="width"/>, a
    /// space, the help; the help's further lines are indented to the same column.
    /// </summary>
    public static string Format(IEnumerable<OptionSpec> options, int width)
    {
        var sb = new StringBuilder();
        string indent = new(' ', width + 3);
        foreach (var o in options)
        {
            if (!o.Listed) continue;
            sb.Append("  ").Append(o.Synopsis.PadRight(width)).Append(' ');
            string[] lines = o.Help.Split('\n');
            sb.Append(lines[0]).Append('\n');
            for (int i = 1; i < lines.Length; i++) sb.Append(indent).Append(lines[i]).Append('\n');
        }
        return sb.ToString();
    }
}
