using System.Text;

namespace EdgeLlm.Cli;

/// <summary>
/// The chat's line editor on a terminal: keys in, one line out. Left/Right, Home/End and Ctrl-A/Ctrl-E move;
/// Backspace, Delete, Ctrl-U (to the start) and Ctrl-K (to the end) delete; Up/Down (and Ctrl-P/Ctrl-N) walk the
/// history; Enter submits; Ctrl-D on an empty line is end of input. Every change redraws the line with plain ANSI
/// sequences (carriage return, erase to end of line, cursor left). The key source is a delegate, so tests feed keys.
/// </summary>
public sealed class LineEditor
{
    private readonly Func<ConsoleKeyInfo> _readKey;
    private readonly TextWriter _out;
    private readonly List<string> _history;
    private readonly StringBuilder _line = new();
    private int _cursor;

    /// <summary>Most history entries kept (in memory and in the file).</summary>
    public const int MaxHistory = 1000;

    public LineEditor(Func<ConsoleKeyInfo> readKey, TextWriter output, List<string>? history = null)
    {
        _readKey = readKey;
        _out = output;
        _history = history ?? new List<string>();
    }

    public IReadOnlyList<string> History => _history;

    /// <summary>Adds a submitted entry (not empty, not a repeat of the last one), dropping the oldest past <see cref="MaxHistory"/>.</summary>
    public void Remember(string entry)
    {
        if (entry.Length == 0 || (_history.Count > 0 && _history[^1] == entry)) return;
        _history.Add(entry);
        if (_history.Count > MaxHistory) _history.RemoveRange(0, _history.Count - MaxHistory);
    }

    /// <summary>Reads one line after showing <paramref name="prompt"/>; null at end of input (Ctrl-D on an empty line).</summary>
    public string? ReadLine(string prompt)
    {
        _line.Clear();
        _cursor = 0;
        int browse = _history.Count;   // index into the history; Count = the line being typed
        string typed = "";
        _out.Write(prompt);
        _out.Flush();
        while (true)
        {
            var k = _readKey();
            bool ctrl = (k.Modifiers & ConsoleModifiers.Control) != 0;
            switch (k.Key)
            {
                case ConsoleKey.Enter:
                    _out.Write("\r\n");
                    _out.Flush();
                    return _line.ToString();
                case ConsoleKey.LeftArrow: if (_cursor > 0) _cursor--; break;
                case ConsoleKey.RightArrow: if (_cursor < _line.Length) _cursor++; break;
                case ConsoleKey.Home: _cursor = 0; break;
                case ConsoleKey.End: _cursor = _line.Length; break;
                case ConsoleKey.A when ctrl: _cursor = 0; break;
                case ConsoleKey.E when ctrl: _cursor = _line.Length; break;
                case ConsoleKey.B when ctrl: if (_cursor > 0) _cursor--; break;
                case ConsoleKey.F when ctrl: if (_cursor < _line.Length) _cursor++; break;
                case ConsoleKey.Backspace:
                    if (_cursor > 0) { _line.Remove(_cursor - 1, 1); _cursor--; }
                    break;
                case ConsoleKey.H when ctrl:
                    if (_cursor > 0) { _line.Remove(_cursor - 1, 1); _cursor--; }
                    break;
                case ConsoleKey.Delete:
                    if (_cursor < _line.Length) _line.Remove(_cursor, 1);
                    break;
                case ConsoleKey.D when ctrl:
                    if (_line.Length == 0)
                    {
                        _out.Write("\r\n");
                        _out.Flush();
                        return null;
                    }
                    if (_cursor < _line.Length) _line.Remove(_cursor, 1);
                    break;
                case ConsoleKey.U when ctrl: _line.Remove(0, _cursor); _cursor = 0; break;
                case ConsoleKey.K when ctrl: _line.Remove(_cursor, _line.Length - _cursor); break;
                case ConsoleKey.UpArrow:
                case ConsoleKey.P when ctrl:
                    if (browse > 0)
                    {
                        if (browse == _history.Count) typed = _line.ToString();
                        browse--;
                        SetLine(_history[browse]);
                    }
                    break;
                case ConsoleKey.DownArrow:
                case ConsoleKey.N when ctrl:
                    if (browse < _history.Count)
                    {
                        browse++;
                        SetLine(browse == _history.Count ? typed : _history[browse]);
                    }
                    break;
                default:
                    if (k.KeyChar >= ' ' && k.KeyChar != '\u007f' && !ctrl)
                    {
                        _line.Insert(_cursor, k.KeyChar);
                        _cursor++;
                    }
                    else continue;   // other control keys: nothing to redraw
                    break;
            }
            Redraw(prompt);
        }
    }

    private void SetLine(string text)
    {
        _line.Clear().Append(text);
        _cursor = _line.Length;
    }

    private void Redraw(string prompt)
    {
        // A history entry may hold line breaks (multi-line messages); they are shown as the ⏎ sign while editing.
        _out.Write("\r\u001b[K" + prompt + _line.ToString().Replace('\n', '\u23ce'));
        int back = _line.Length - _cursor;
        if (back > 0) _out.Write($"\u001b[{back}D");
        _out.Flush();
    }

    // ------------------------------------------------------------------ history file

    /// <summary>$XDG_STATE_HOME/edgellm/history, else ~/.local/state/edgellm/history (null when there is no home).</summary>
    public static string? HistoryPath()
    {
        string? state = Environment.GetEnvironmentVariable("XDG_STATE_HOME");
        if (string.IsNullOrEmpty(state))
        {
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            if (string.IsNullOrEmpty(home)) return null;
            state = Path.Combine(home, ".local", "state");
        }
        return Path.Combine(state, "edgellm", "history");
    }

    /// <summary>One entry per line; a backslash escapes line breaks (\n) and itself (\\).</summary>
    public static string Escape(string entry) => entry.Replace("\\", "\\\\").Replace("\r", "\\r").Replace("\n", "\\n");

    public static string Unescape(string line)
    {
        var sb = new StringBuilder(line.Length);
        for (int i = 0; i < line.Length; i++)
        {
            char c = line[i];
            if (c == '\\' && i + 1 < line.Length)
            {
                char n = line[++i];
                sb.Append(n switch { 'n' => '\n', 'r' => '\r', _ => n });
            }
            else sb.Append(c);
        }
        return sb.ToString();
    }

    /// <summary>The last <see cref="MaxHistory"/> entries of the history file (none when it is missing or unreadable).</summary>
    public static List<string> LoadHistory(string? path)
    {
        var list = new List<string>();
        if (path is null) return list;
        try
        {
            if (!File.Exists(path)) return list;
            foreach (string line in File.ReadLines(path))
                if (line.Length > 0) list.Add(Unescape(line));
        }
        catch (IOException) { return list; }
        catch (UnauthorizedAccessException) { return list; }
        if (list.Count > MaxHistory) list.RemoveRange(0, list.Count - MaxHistory);
        return list;
    }

    /// <summary>Appends one entry to the history file, creating its folder; best effort (an unwritable home costs only the history).</summary>
    public static void AppendHistory(string? path, string entry)
    {
        if (path is null || entry.Length == 0) return;
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.AppendAllText(path, Escape(entry) + "\n");
        }
        catch (IOException) { }
        catch (ArgumentOutOfRangeException e) when (IO.FileSizeLimit.IsExceeded(e)) { } // past the file-size limit
        catch (UnauthorizedAccessException) { }
    }
}
