using System.Text.RegularExpressions;
using EdgeLlm.Cli;

namespace EdgeLlm.Tests.Cli;

/// <summary>Issue 16.5, chat: the line editor, history, multi-line messages, /help, unknown /commands, per-turn tok/s.</summary>
public class ChatEditingTests
{
    private static ConsoleKeyInfo Ch(char c) => new(c, c is >= 'a' and <= 'z' ? ConsoleKey.A + (c - 'a') : c == ' ' ? ConsoleKey.Spacebar : 0, false, false, false);
    private static ConsoleKeyInfo K(ConsoleKey k) => new('\0', k, false, false, false);
    private static ConsoleKeyInfo Ctrl(char c) => new((char)(c - 'a' + 1), ConsoleKey.A + (c - 'a'), false, false, true);
    private static readonly ConsoleKeyInfo Enter = new('\r', ConsoleKey.Enter, false, false, false);

    private static Func<ConsoleKeyInfo> Keys(params object[] items)
    {
        var q = new Queue<ConsoleKeyInfo>();
        foreach (object o in items)
        {
            if (o is string s) foreach (char c in s) q.Enqueue(Ch(c));
            else q.Enqueue((ConsoleKeyInfo)o);
        }
        return () => q.Dequeue();
    }

    [Fact]
    public void EditingKeysMoveInsertAndDelete()
    {
        var screen = new StringWriter();
        var ed = new LineEditor(Keys(
            "world", Ctrl('a'), "hello ", Ctrl('e'), "!",                          // hello world!
            K(ConsoleKey.LeftArrow), K(ConsoleKey.LeftArrow), K(ConsoleKey.Backspace), // the l before "d!" goes
            Enter), screen);
        Assert.Equal("hello word!", ed.ReadLine("> "));
        Assert.StartsWith("> ", screen.ToString());
        Assert.EndsWith("\r\u001b[K> hello word!\u001b[2D\r\n", screen.ToString());   // the last redraw puts the cursor 2 left of the end

        var kill = new LineEditor(Keys("abcdef", K(ConsoleKey.LeftArrow), K(ConsoleKey.LeftArrow), Ctrl('k'), K(ConsoleKey.Home), K(ConsoleKey.Delete),
            K(ConsoleKey.End), "X", K(ConsoleKey.LeftArrow), Ctrl('u'), Enter), TextWriter.Null);
        Assert.Equal("X", kill.ReadLine("> "));   // abcdef -> abcd -> bcd -> bcdX -> (cursor before X) Ctrl-U -> X
    }

    [Fact]
    public void UpAndDownWalkTheHistoryAndKeepTheTypedLine()
    {
        var ed = new LineEditor(Keys(
            "draft", K(ConsoleKey.UpArrow), K(ConsoleKey.UpArrow), K(ConsoleKey.UpArrow), K(ConsoleKey.DownArrow), Enter,   // second -> "second"
            "xy", K(ConsoleKey.UpArrow), K(ConsoleKey.DownArrow), "z", Enter), TextWriter.Null, ["first", "second"]);
        Assert.Equal("second", ed.ReadLine("> "));   // up past the oldest stays there; down comes back one
        Assert.Equal("xyz", ed.ReadLine("> "));
    }

    [Fact]
    public void CtrlDOnAnEmptyLineEndsInput()
    {
        var ed = new LineEditor(Keys("ab", Ctrl('d'), K(ConsoleKey.Backspace), K(ConsoleKey.Backspace), Ctrl('d')), TextWriter.Null);
        Assert.Null(ed.ReadLine("> "));
    }

    [Fact]
    public void HistoryFileRoundTripsMultiLineEntries()
    {
        string path = Path.Combine(Path.GetDirectoryName(TestPaths.TempFile("x"))!, "state", "edgellm", "history");
        LineEditor.AppendHistory(path, "one");
        LineEditor.AppendHistory(path, "two\nlines with a \\ backslash");
        Assert.Equal("one\ntwo\\nlines with a \\\\ backslash\n", File.ReadAllText(path));
        Assert.Equal(["one", "two\nlines with a \\ backslash"], LineEditor.LoadHistory(path));
        Assert.Empty(LineEditor.LoadHistory(path + ".missing"));
    }

    [Fact]
    public void ContinuationLinesAndTripleQuoteBlocksMakeOneMessage()
    {
        var prompts = new StringWriter();
        var input = ChatInput.Plain(new StringReader("first \\\nsecond\n\"\"\"\na\n\n  b\n\"\"\"\nplain\n"), prompts);
        Assert.Equal("first \nsecond", input.ReadMessage());
        Assert.Equal("a\n\n  b", input.ReadMessage());
        Assert.Equal("plain", input.ReadMessage());
        Assert.Null(input.ReadMessage());
        Assert.Equal("> . > . . . . > > ", prompts.ToString());
    }

    [Fact]
    public void EditedInputRemembersMessagesInTheHistoryFile()
    {
        string path = Path.Combine(Path.GetDirectoryName(TestPaths.TempFile("x"))!, "history");
        var ed = new LineEditor(Keys("one \\", Enter, "two", Enter, "three", Enter, K(ConsoleKey.UpArrow), K(ConsoleKey.UpArrow), Enter), TextWriter.Null);
        var input = ChatInput.Edited(ed, path);
        Assert.Equal("one \ntwo", input.ReadMessage());
        Assert.Equal("three", input.ReadMessage());
        Assert.Equal("one \ntwo", input.ReadMessage());   // recalled as one entry
        Assert.Equal(["one \ntwo", "three", "one \ntwo"], LineEditor.LoadHistory(path));
    }

    [Fact]
    public void ChatHelpAndUnknownCommands()
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = EdgeLlmCli.Execute(["chat", "--temp", "0", "-n", "6", "-c", "256", "-v"], o, e,
            new StringReader("/help\n/rest\n/frobnicate now\n//reset is a word\nHello \\\nthere\n"));
        Assert.Equal(0, rc);
        string err = e.ToString();
        Assert.Contains("/help          this list\n", err);
        Assert.Contains("edgellm chat: unknown command '/rest'; did you mean '/reset'?; /help lists the commands", err);
        Assert.Contains("edgellm chat: unknown command '/frobnicate'; /help lists the commands", err);
        Assert.DoesNotContain("[conversation reset]", err);
        // Two messages reached the model ("/reset is a word" and the joined two lines), each with its speed.
        Assert.Equal(2, Regex.Matches(err, @"\[prefill \d+ of \d+ tokens, \d+ generated, [0-9.]+ tok/s\]").Count);
    }

    [Fact]
    public void PublishedChatEditsLinesOnATerminalAndKeepsHistory()
    {
        Assert.True(File.Exists(CliRunner.PublishedBinary), "tools/test.sh publishes dist/linux-x64/edgellm");
        string state = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        var env = new Dictionary<string, string> { ["XDG_STATE_HOME"] = state, ["TERM"] = "xterm" };
        // Type "world", Ctrl-A, "Hello ", Enter; then Up arrow (recalls it), Ctrl-E, "!", Enter; then Ctrl-D.
        string keys = "world\u0001Hello \r\u001b[A\u0005!\r\u0004";
        string screen = CliPolishTests.Script($"'{CliRunner.PublishedBinary}' chat -n 2 --temp 0 -c 256", keys, env, prompt: "> ");
        string history = Path.Combine(state, "edgellm", "history");
        Assert.True(File.Exists(history), screen);
        Assert.Equal("Hello world\nHello world!\n", File.ReadAllText(history));
    }
}
