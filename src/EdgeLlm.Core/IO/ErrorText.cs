using System.Text.RegularExpressions;

namespace EdgeLlm.IO;

/// <summary>
/// One line for the user from an exception. The native binaries are built with UseSystemResourceKeys (smaller files),
/// so .NET's own messages arrive as resource keys with their arguments ("IO_PathNotFound_Path, /x/y"); those are
/// rewritten as plain text for the exception types that reach the user. Our own messages pass through unchanged.
/// </summary>
public static partial class ErrorText
{
    [GeneratedRegex(@"^[A-Z][A-Za-z0-9]*_[A-Za-z0-9_]+(, (?<args>.*))?$", RegexOptions.Singleline)]
    private static partial Regex ResourceKey();

    public static string OneLine(Exception e)
    {
        string msg = e.Message;
        var m = ResourceKey().Match(msg);
        string? args = m.Success && m.Groups["args"].Success ? m.Groups["args"].Value : null;
        bool raw = m.Success;
        string text = e switch
        {
            FileNotFoundException f => raw ? $"{f.FileName ?? args ?? "file"}: no such file" : msg,
            DirectoryNotFoundException => raw ? $"{args ?? "path"}: no such directory" : msg,
            PathTooLongException => raw ? $"{args ?? "path"}: the path is too long" : msg,
            UnauthorizedAccessException => raw ? $"{args ?? "path"}: permission denied" : msg,
            OverflowException => raw ? "a number is too large for its type" : msg,
            FormatException => raw ? "a value is not in the expected format" : msg,
            System.Text.Json.JsonException j => raw || msg.Contains("BytePositionInLine", StringComparison.Ordinal)
                ? $"invalid JSON{(j.Path is { Length: > 2 } p && p.StartsWith("$.", StringComparison.Ordinal) ? $" at '{p[2..]}'" : "")}{(j.LineNumber is { } l ? $" (line {l + 1}, byte {j.BytePositionInLine + 1})" : "")}"
                : msg,
            _ when raw => $"{e.GetType().Name}{(args is null ? "" : $": {args}")}",
            _ => msg,
        };
        return text.ReplaceLineEndings(" ");
    }
}
