using System.Globalization;
using System.Text.RegularExpressions;
using EdgeLlm.Cli;

namespace EdgeLlm.Tests.Cli;

/// <summary>Issue 16.5: positional model and prompt, stdin prompts, "did you mean", -t warning, progress, doctor.</summary>
public class CliPolishTests
{
    private const string Story = "Once upon a time";

    // ---- did you mean ----

    [Fact]
    public void UnknownCommandAndOptionSuggestTheNearestName()
    {
        var cmd = CliRunner.InProcess("rnu", "-n", "1");
        Assert.Equal(2, cmd.ExitCode);
        Assert.Equal("edgellm: unknown command 'rnu'; did you mean 'run'? (see 'edgellm --help')\n", cmd.Stderr);
        var opt = CliRunner.InProcess("run", "--tmep", "0");
        Assert.Equal(2, opt.ExitCode);
        Assert.Equal("edgellm run: unknown option '--tmep' for 'edgellm run'; did you mean '--temp'? (see 'edgellm run --help')\n", opt.Stderr);
        var far = CliRunner.InProcess("run", "--bogus");
        Assert.Equal("edgellm run: unknown option '--bogus' for 'edgellm run' (see 'edgellm run --help')\n", far.Stderr);
    }

    [Fact]
    public void PublishedBinarySuggestsToo()
    {
        var r = CliRunner.Published("serv");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("edgellm: unknown command 'serv'; did you mean 'serve'? (see 'edgellm --help')\n", r.Stderr);
        var o = CliRunner.Published("info", "--verfy");
        Assert.Equal(2, o.ExitCode);
        Assert.Contains("unknown option '--verfy' for 'edgellm info'; did you mean '--verify'?", o.Stderr);
    }

    // ---- positional model and prompt ----

    [Fact]
    public void PositionalPromptAndModelMeanWhatTheOptionsMean()
    {
        var byOption = CliRunner.InProcess("run", "-m", TestPaths.Stories260K, "-p", Story, "-n", "24", "--temp", "0");
        Assert.Equal(0, byOption.ExitCode);
        var noPrompt = CliRunner.InProcess("run", "-n", "24", "--temp", "0");
        Assert.NotEqual(noPrompt.Stdout, byOption.Stdout);   // the prompt changes the text, so the checks below see it

        var promptOnly = CliRunner.InProcess("run", Story, "-n", "24", "--temp", "0");
        Assert.Equal(byOption.Stdout, promptOnly.Stdout);
        var both = CliRunner.InProcess("run", TestPaths.Stories260K, Story, "-n", "24", "--temp", "0");
        Assert.Equal(byOption.Stdout, both.Stdout);
        var words = CliRunner.InProcess("run", "-n", "24", "--temp", "0", "Once", "upon", "a", "time");   // unquoted words join
        Assert.Equal(byOption.Stdout, words.Stdout);
        var byName = CliRunner.InProcess("run", "stories260K", Story, "-n", "24", "--temp", "0");
        Assert.Equal(byOption.Stdout, byName.Stdout);
    }

    [Fact]
    public void PositionalPromptWithDashPIsAUsageError()
    {
        var r = CliRunner.InProcess("run", "extra words", "-p", Story);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("unexpected argument 'extra words': the prompt is already given with -p", r.Stderr);
        var missing = CliRunner.InProcess("run", "/nonexistent/model.gguf", Story);
        Assert.Equal(1, missing.ExitCode);
        Assert.StartsWith("edgellm run: error: /nonexistent/model.gguf: model file not found", missing.Stderr);
        Assert.Single(missing.Stderr.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void InfoTakesTheFileAsAnArgument()
    {
        var r = CliRunner.InProcess("info", TestPaths.Stories260K);
        Assert.Equal(0, r.ExitCode);
        Assert.StartsWith($"file:          {TestPaths.Stories260K}\nsize:          1,185,376 bytes\n", r.Stdout);
        // SOURCES.md: 260,032 parameters with tied embeddings; this GGUF also stores the 512 x 64 output matrix.
        Assert.Contains("parameters:    292,800\n", r.Stdout);
        var two = CliRunner.InProcess("info", TestPaths.Stories260K, "-m", TestPaths.Stories260K);
        Assert.Equal(2, two.ExitCode);
        Assert.Contains($"unexpected argument '{TestPaths.Stories260K}'", two.Stderr);
    }

    [Fact]
    public void PublishedInfoAndChatTakeTheModelAsAnArgument()
    {
        var info = CliRunner.Published("info", "models/stories260K.gguf");
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.StartsWith("file:          models/stories260K.gguf\n", info.Stdout);
        var chat = CliRunner.PublishedWith([], "Hello\n", null, null, "chat", "models/stories260K.gguf", "-n", "4", "--temp", "0");
        Assert.True(chat.ExitCode == 0, chat.Stderr);
        Assert.Contains("chat template chatml", chat.Stderr);
    }

    // ---- prompt from stdin ----

    [Fact]
    public void PipedStdinAndDashFAreThePrompt()
    {
        var byOption = CliRunner.Published("run", "-p", Story, "-n", "24", "--temp", "0");
        Assert.True(byOption.ExitCode == 0, byOption.Stderr);
        var piped = CliRunner.PublishedWith([], Story + "\n", null, null, "run", "-n", "24", "--temp", "0");
        Assert.True(piped.ExitCode == 0, piped.Stderr);
        Assert.Equal(byOption.Stdout, piped.Stdout);
        Assert.Contains("prompt: 5 tokens", piped.Stderr);    // BOS + 4 (the echo-style newline dropped)
        var dashF = CliRunner.PublishedWith([], Story + "\n", null, null, "run", "-f", "-", "-n", "24", "--temp", "0");
        Assert.Equal(byOption.Stdout, dashF.Stdout);
        // An empty pipe is an empty prompt: the story from BOS, as with no prompt at all.
        var empty = CliRunner.Published("run", "-n", "24", "--temp", "0");
        Assert.Equal(CommandTests.ReferenceText(24) + "\n", empty.Stdout);
    }

    [Fact]
    public void DashFDashReadsTheReaderInProcess()
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = EdgeLlmCli.Execute(["tokenize", "-f", "-"], o, e, new StringReader("Once upon\n"));
        Assert.Equal(0, rc);
        var direct = CliRunner.InProcess("tokenize", "-p", "Once upon");
        Assert.Equal(direct.Stdout, o.ToString());
    }

    // ---- -t warning ----

    [Fact]
    public void ThreadsBeyondTheCoresWarn()
    {
        int cores = Environment.ProcessorCount;
        var over = CliRunner.InProcess("run", "-t", (cores + 1).ToString(CultureInfo.InvariantCulture), "-n", "1");
        Assert.Equal(0, over.ExitCode);
        Assert.Contains($"edgellm: warning: -t {cores + 1} is more than the {cores} cores this process can use", over.Stderr);
        var fine = CliRunner.InProcess("run", "-t", "1", "-n", "1");
        Assert.DoesNotContain("warning", fine.Stderr);
        var bench = CliRunner.InProcess("bench", "-p", "8", "-n", "0", "-r", "1", "--bw-mib", "0", "-t", (cores + 3).ToString(CultureInfo.InvariantCulture));
        Assert.Contains($"-t {cores + 3} is more than the {cores} cores", bench.Stderr);
    }

    // ---- progress ----

    [Fact]
    public void LoadProgressIsWholeLinesWithVerboseAndNothingWithout()
    {
        var v = CliRunner.InProcess("run", "-m", TestPaths.Stories260K, "--no-mmap", "-n", "1", "-v");
        Assert.Equal(0, v.ExitCode);
        Assert.Single(Regex.Matches(v.Stderr, "loading stories260K.gguf: "));
        Assert.Contains("loading stories260K.gguf: 100% (1.1/1.1 MiB)\n", v.Stderr);
        Assert.DoesNotContain("\r", v.Stderr);
        Assert.DoesNotContain("\u001b", v.Stderr);
        var quiet = CliRunner.InProcess("run", "-m", TestPaths.Stories260K, "--no-mmap", "-n", "1");
        Assert.DoesNotContain("loading", quiet.Stderr);
    }

    [Fact]
    public void ProgressOnATerminalRedrawsOneLineAndErasesIt()
    {
        var err = new StringWriter();
        using var ctx = new CliContext(TextWriter.Null, err, verbose: false) { Terminal = new Terminal(false, false, true, false) };
        var p = new ProgressLine(ctx, "loading m.gguf", ProgressLine.Bytes);
        p.Report(0, 3L << 30);
        p.Report(3L << 30, 3L << 30);
        p.Done();
        Assert.Equal("\r\u001b[Kloading m.gguf: 0% (0.0/3.0 GiB)\r\u001b[Kloading m.gguf: 100% (3.0/3.0 GiB)\r\u001b[K", err.ToString());

        var lines = new StringWriter();
        using var vctx = new CliContext(TextWriter.Null, lines, verbose: true);
        var q = new ProgressLine(vctx, "perplexity");
        for (int i = 0; i <= 8; i++) q.Report(i, 8);
        q.Done();
        Assert.Equal("perplexity: 0% (0/8)\nperplexity: 25% (2/8)\nperplexity: 50% (4/8)\nperplexity: 75% (6/8)\nperplexity: 100% (8/8)\n", lines.ToString());

        var none = new StringWriter();
        using var nctx = new CliContext(TextWriter.Null, none, verbose: false);
        new ProgressLine(nctx, "x").Report(1, 2);
        Assert.Equal("", none.ToString());
    }

    [Fact]
    public void PerplexityReportsProgressWithVerbose()
    {
        string text = string.Join(' ', Enumerable.Repeat("Once upon a time there was a little girl named Lily.", 20));
        string path = TestPaths.TempFile("story.txt");
        File.WriteAllText(path, text);
        var r = CliRunner.InProcess("perplexity", "-f", path, "-c", "32", "--chunks", "4", "-v");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("perplexity: 0% (chunk 0/4)\n", r.Stderr);
        Assert.Matches(@"perplexity: 100% \(chunk 4/4, 0 s left\)\n", r.Stderr);
        Assert.Equal(4, Regex.Matches(r.Stdout, @"\[\d\][0-9.]+,").Count);   // stdout keeps llama.cpp's format only
    }

    [Fact]
    public void PublishedBinaryDrawsLoadProgressOnATerminalOnly()
    {
        Assert.True(File.Exists(CliRunner.PublishedBinary), "tools/test.sh publishes dist/linux-x64/edgellm");
        // script(1) gives the program a pseudo-terminal for stdout and stderr.
        var tty = Script($"'{CliRunner.PublishedBinary}' run -m models/stories260K.gguf --no-mmap -p Once -n 1 --temp 0");
        Assert.Contains("\r\u001b[Kloading stories260K.gguf: 100% (1.1/1.1 MiB)\r\u001b[K", tty);
        var pipe = CliRunner.Published("run", "-m", "models/stories260K.gguf", "--no-mmap", "-p", "Once", "-n", "1", "--temp", "0");
        Assert.DoesNotContain("loading", pipe.Stderr);
        Assert.DoesNotContain("\u001b", pipe.Stderr + pipe.Stdout);
    }

    /// <summary>Runs a shell command under script(1) (a pseudo-terminal) in the repo root; returns what it printed.</summary>
    /// <summary>
    /// Runs <paramref name="command"/> under a pseudo-terminal (script(1)) and types <paramref name="input"/> into it.
    /// With <paramref name="prompt"/>, each line (up to a carriage return) is typed only once the program has printed
    /// that prompt one more time than before, so no keystroke reaches the program while it is busy (no sleeps that a
    /// slow machine could outrun).
    /// </summary>
    internal static string Script(string command, string input = "", IEnumerable<KeyValuePair<string, string>>? env = null, string? prompt = null)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("script")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, WorkingDirectory = TestPaths.RepoRoot,
        };
        foreach (string a in new[] { "-qec", command, "/dev/null" }) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = System.Diagnostics.Process.Start(psi)!;
        var screen = new System.Text.StringBuilder();
        var reader = Task.Run(() =>
        {
            var buffer = new char[256];
            int n;
            while ((n = p.StandardOutput.Read(buffer, 0, buffer.Length)) > 0)
                lock (screen) screen.Append(buffer, 0, n);
        });
        var e = p.StandardError.ReadToEndAsync();
        // Prompts printed so far: the first one, then one after each answer (at a line start; the line editor's redraws
        // of the current line start with a carriage return, not a new line, so they are not counted).
        int Prompts()
        {
            if (prompt is null) return 0;
            lock (screen)
            {
                string text = screen.ToString();
                return (text.Contains(prompt, StringComparison.Ordinal) ? 1 : 0) + CountOf(text, "\n" + prompt);
            }
        }
        int lines = 0;
        bool lineStart = true;
        foreach (char c in input)
        {
            if (lineStart && prompt is not null)
            {
                lines++;
                var clock = System.Diagnostics.Stopwatch.StartNew();
                while (Prompts() < lines && !p.HasExited && clock.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(20);
            }
            p.StandardInput.Write(c);
            p.StandardInput.Flush();
            lineStart = c == '\r';
        }
        if (prompt is not null)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!p.HasExited && clock.Elapsed < TimeSpan.FromSeconds(5)) Thread.Sleep(20);
        }
        else Thread.Sleep(300);
        p.StandardInput.Close();
        Assert.True(p.WaitForExit(60_000), "script did not finish");
        reader.Wait(10_000);
        lock (screen) return screen.ToString() + e.Result;
    }

    private static int CountOf(string text, string what)
    {
        int count = 0;
        for (int i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal)) count++;
        return count;
    }

    // ---- doctor ----

    [Fact]
    public void DoctorReportsEachCheckOnOneLineAndExitsZero()
    {
        string cache = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        File.WriteAllBytes(Path.Combine(cache, "a.cubin"), new byte[3000]);
        File.WriteAllBytes(Path.Combine(cache, "b.ptx"), new byte[2144]);
        string store = Path.Combine(cache, "store-not-there");
        var r = CliRunner.PublishedWithEnv([new("EDGELLM_KERNEL_CACHE", cache), new("EDGELLM_MODELS", store)], "doctor");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("", r.Stderr);
        var lines = r.Stdout.TrimEnd('\n').Split('\n');
        string[] keys = ["edgellm", "cpu", "kernels", "huge pages", "memlock limit", "cuda driver", "nvrtc", "kernel cache", "model store", "built-in model"];
        Assert.Equal(keys.Length, lines.Length);
        for (int i = 0; i < keys.Length; i++) Assert.StartsWith((keys[i] + ":").PadRight(22), lines[i]);
        string Value(string key) => lines.Single(l => l.StartsWith(key + ":", StringComparison.Ordinal))[22..];

        Assert.StartsWith("edgellm 0.1.0 (commit ", Value("edgellm"));
        Assert.Contains($"{Environment.ProcessorCount} cores usable", Value("cpu"));
        Assert.Equal($"{cache} (2 files, 5 KiB)", Value("kernel cache"));   // 5144 bytes
        Assert.StartsWith($"{store} (not created yet): ", Value("model store"));
        Assert.Equal("stories260K (1.2 MB, MIT), used when no -m is given", Value("built-in model"));
        const string thp = "/sys/kernel/mm/transparent_hugepage/enabled";
        if (File.Exists(thp))
        {
            string setting = File.ReadAllText(thp);
            string selected = setting[(setting.IndexOf('[') + 1)..setting.IndexOf(']')];
            Assert.StartsWith($"{selected} ({thp})", Value("huge pages"));
        }
        // The child inherits this process's limits.
        string limit = File.ReadLines("/proc/self/limits").Single(l => l.StartsWith("Max locked memory", StringComparison.Ordinal))["Max locked memory".Length..].Trim().Split(' ')[0];
        if (limit == "unlimited") Assert.StartsWith("unlimited", Value("memlock limit"));
        else Assert.StartsWith(DoctorCommand.FormatBytes(long.Parse(limit, CultureInfo.InvariantCulture)) + ":", Value("memlock limit"));
        Assert.Matches(@"^(not found \(|\d+\.\d+ \()", Value("nvrtc"));
    }

    [Fact]
    public void DoctorParsesSysfsChoicesAndSizes()
    {
        Assert.Equal("madvise", DoctorCommand.Selected("always [madvise] never\n"));
        Assert.Equal("never", DoctorCommand.Selected("always madvise [never]"));
        Assert.Equal("8.0 MiB", DoctorCommand.FormatBytes(8 << 20));
        Assert.Equal("64 KiB", DoctorCommand.FormatBytes(65536));
        Assert.Equal("1.5 GiB", DoctorCommand.FormatBytes(3L << 29));
    }
}
