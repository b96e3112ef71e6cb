using System.Text;

namespace EdgeLlm.Cli;

/// <summary>
/// Where the chat's messages come from: the line editor with history on a terminal, plain lines otherwise. Joins
/// continued lines (a trailing backslash) and triple-quote blocks into one message.
/// </summary>
public sealed class ChatInput
{
    private readonly Func<string, string?> _readLine;
    private readonly LineEditor? _editor;
    private readonly string? _historyPath;

    /// <summary>The prompt of a new message and of its continuation lines.</summary>
    public const string Prompt = "> ", ContinuationPrompt = ". ";

    private const string Fence = "\"\"\"";

    public bool Editing => _editor is not null;

    private ChatInput(Func<string, string?> readLine, LineEditor? editor, string? historyPath)
    {
        _readLine = readLine;
        _editor = editor;
        _historyPath = historyPath;
    }

    /// <summary>The line editor when stdin and stdout are both a terminal, else plain lines from ctx.In (prompt on stdout).</summary>
    public static ChatInput For(CliContext ctx)
    {
        if (ctx.Terminal.StdinIsTerminal && ctx.Terminal.StdoutIsTerminal)
        {
            string? path = LineEditor.HistoryPath();
            var editor = new LineEditor(() => Console.ReadKey(intercept: true), ctx.Out, LineEditor.LoadHistory(path));
            return new ChatInput(editor.ReadLine, editor, path);
        }
        return Plain(ctx.In, ctx.Out);
    }

    /// <summary>Plain line reading (no editing, no history), the prompt written to <paramref name="output"/>.</summary>
    public static ChatInput Plain(TextReader input, TextWriter output) => new(prompt =>
    {
        output.Write(prompt);
        output.Flush();
        return input.ReadLine();
    }, null, null);

    /// <summary>Over a line editor (tests), with an optional history file.</summary>
    public static ChatInput Edited(LineEditor editor, string? historyPath) => new(editor.ReadLine, editor, historyPath);

    /// <summary>One message (possibly several lines joined with \n), or null at end of input.</summary>
    public string? ReadMessage()
    {
        string? line = _readLine(Prompt);
        if (line is null) return null;
        string message;
        if (line.Trim() == Fence)
        {
            var sb = new StringBuilder();
            while (true)
            {
                string? next = _readLine(ContinuationPrompt);
                if (next is null || next.Trim() == Fence) break;
                if (sb.Length > 0) sb.Append('\n');
                sb.Append(next);
            }
            message = sb.ToString();
        }
        else
        {
            var sb = new StringBuilder();
            while (line is not null && line.EndsWith('\\'))
            {
                sb.Append(line, 0, line.Length - 1).Append('\n');
                line = _readLine(ContinuationPrompt);
            }
            if (line is not null) sb.Append(line);
            message = sb.ToString();
        }
        if (_editor is not null && message.Trim().Length > 0)
        {
            _editor.Remember(message);
            LineEditor.AppendHistory(_historyPath, message);
        }
        return message;
    }
}
