using System.Diagnostics;
using System.Text;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.IO;
using EdgeLlm.Tests.Cli;
using EdgeLlm.Tests.Convert;
using EdgeLlm.Tests.Model;

namespace EdgeLlm.Tests.Hardening;

/// <summary>Issue 13: each defect of the attack pass, reproduced against the fixed code (each test failed before the fix).</summary>
public class HardeningTests
{
    private static string Edgellm => CliRunner.PublishedBinary;
    private static string Converter => Path.Combine(TestPaths.RepoRoot, "dist", "linux-x64", "edgellm-convert");

    // ---- 2. Ctrl-C during a long prompt ----

    [Fact]
    public void CtrlCDuringPrefillStopsWithinABatch()
    {
        Assert.True(File.Exists(Edgellm), $"{Edgellm} is missing (tools/test.sh publishes it)");
        string prompt = TestPaths.TempFile("long-prompt.txt");
        File.WriteAllText(prompt, string.Join(' ', Enumerable.Repeat("Once upon a time there was a little girl.", 3000)));
        var psi = SignalDefaults.For(Edgellm);
        psi.RedirectStandardOutput = psi.RedirectStandardError = psi.RedirectStandardInput = true;
        foreach (string a in new[] { "run", "-m", TestPaths.Stories260K, "-f", prompt, "-c", "40000", "-n", "1", "-v", "-t", "1" }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = new StringBuilder();
        var promptLogged = new ManualResetEventSlim();
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (err) err.AppendLine(e.Data);
            if (e.Data.Contains("prompt", StringComparison.Ordinal) && e.Data.Contains("tokens", StringComparison.Ordinal)) promptLogged.Set();
        };
        p.BeginErrorReadLine();
        var stdout = p.StandardOutput.ReadToEndAsync();
        Assert.True(promptLogged.Wait(60_000), "the prefill never started: " + err);
        Thread.Sleep(1000); // well inside a prefill of ~33k tokens (tens of seconds)
        var sw = Stopwatch.StartNew();
        Assert.Equal(0, Kill(p.Id, "INT"));
        bool exited = p.WaitForExit(20_000);
        if (!exited) p.Kill(true);
        Assert.True(exited, $"still running 20 s after SIGINT: {err}");
        p.WaitForExit();
        Assert.Equal(130, p.ExitCode);
        lock (err) Assert.Contains("stopped: interrupted", err.ToString());
        Assert.True(sw.Elapsed.TotalSeconds < 20);
    }

    [Fact]
    public void NPredictZeroGeneratesNothing()
    {
        var r = CliRunner.InProcess("run", "-m", TestPaths.Stories260K, "-p", "Once upon a time", "-n", "0", "--temp", "0");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("", r.Stdout.Trim());
        Assert.Contains("generation: 0 tokens", r.Stderr);
    }

    // ---- 3. closed and broken standard streams ----

    private static CliRunner.Result Bash(string script, params string[] args)
    {
        var psi = new ProcessStartInfo("/bin/bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(60_000), "timed out");
        return new CliRunner.Result(p.ExitCode, o.Result, e.Result);
    }

    private static void AssertOneLineError(CliRunner.Result r, string expected)
    {
        Assert.Equal(1, r.ExitCode);
        string[] lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, "expected one line on stderr, got: " + r.Stderr);
        Assert.Contains(expected, lines[0]);
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.DoesNotContain("Unhandled", r.Stderr);
    }

    [Theory]
    [InlineData("edgellm")]
    [InlineData("edgellm-convert")]
    public void ClosedStdoutIsAOneLineError(string tool)
    {
        string bin = tool == "edgellm" ? Edgellm : Converter;
        Assert.True(File.Exists(bin), $"{bin} is missing (tools/test.sh publishes it)");
        var r = Bash("exec \"$0\" --version >&-", bin);
        AssertOneLineError(r, "standard output is closed");
    }

    [Fact]
    public void ClosedStdoutIsAOneLineErrorWhenGenerating()
    {
        // The SIGXFSZ registration at start must not let the runtime's signal pipe take the closed descriptor 1
        // (tokens would then vanish into the pipe with exit 0).
        var r = Bash("exec \"$0\" run -m \"$1\" -p 'Once upon a time' -n 8 --temp 0 -t 1 >&-", Edgellm, TestPaths.Stories260K);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("standard output is closed", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public void ClosedStdinIsAOneLineErrorInChat()
    {
        var r = Bash("exec \"$0\" chat -m \"$1\" --chat-template chatml <&- >/dev/null", Edgellm, TestPaths.Stories260K);
        Assert.Equal(1, r.ExitCode);
        string[] lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("error: standard input is closed", lines[^1]);
        Assert.Single(lines, l => l.Contains("error", StringComparison.Ordinal));
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public void BrokenPipeStopsGeneration()
    {
        // `edgellm run ... | head -c 10`: head exits after 10 bytes; edgellm must stop at its next write.
        var r = Bash("set -o pipefail; \"$0\" run -m \"$1\" -p 'Once upon a time' -c 4000 -n 3900 --ignore-eos --temp 0 -t 1 | head -c 10 >/dev/null; echo \"rc=${PIPESTATUS[0]}\" >&2",
            Edgellm, TestPaths.Stories260K);
        Assert.Contains("rc=1", r.Stderr);
        Assert.Contains("standard output was closed", r.Stderr);
        Assert.DoesNotContain("generation: 3900 tokens", r.Stderr);
    }

    // ---- 4. converter output paths ----

    [Fact]
    public void ConverterRefusesADeviceNodeAsOutput()
    {
        var r = ConvertTestKit.ConvertCliRun(ConvertTestKit.Llama2cBin, "-o", "/dev/null", "--type", "f32");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("character device", r.Stderr);
        Assert.Equal(FileKind.CharacterDevice, FileKinds.Of("/dev/null"));
    }

    [Fact]
    public void ConverterRefusesADirectoryOrALinkAsOutput()
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        var r = ConvertTestKit.ConvertCliRun(ConvertTestKit.Llama2cBin, "-o", dir, "--type", "f32");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("a directory", r.Stderr);

        string victim = Path.Combine(dir, "victim.txt");
        File.WriteAllText(victim, "keep me");
        string link = Path.Combine(dir, "out.gguf");
        File.CreateSymbolicLink(link, victim);
        r = ConvertTestKit.ConvertCliRun(ConvertTestKit.Llama2cBin, "-o", link, "--type", "f32");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("symbolic link", r.Stderr);
        Assert.Equal("keep me", File.ReadAllText(victim));
    }

    [Fact]
    public void ConverterNeverWritesThroughAPlantedPartialLink()
    {
        string output = TestPaths.TempFile("out.gguf");
        string victim = Path.Combine(Path.GetDirectoryName(output)!, "victim.txt");
        File.WriteAllText(victim, "keep me");
        File.CreateSymbolicLink(output + ".partial", victim);
        var r = ConvertTestKit.ConvertCliRun(ConvertTestKit.Llama2cBin, "-o", output, "--type", "f32");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("keep me", File.ReadAllText(victim));
        Assert.False(File.Exists(output + ".partial"));
        Assert.Equal(FileKind.Regular, FileKinds.Of(output));
        using var f = GgufFile.Open(output);
        Assert.Equal("llama", f.GetString("general.architecture"));
    }

    /// <summary>
    /// A file-size limit (ulimit -f, as systemd's LimitFSIZE) crossed mid-conversion: the write fails (SIGXFSZ handled,
    /// EFBIG) and the converter says so in one line and deletes its partial output, as on a full disk; before, SIGXFSZ
    /// killed it (exit 153) and left OUTPUT.partial (and with the signal handled, EFBIG's ArgumentOutOfRangeException
    /// escaped OutputFile.Dispose, which left it too).
    /// </summary>
    [Fact]
    public void ConverterOverAFileSizeLimitLeavesNoPartialFile()
    {
        Assert.True(File.Exists(Converter), $"{Converter} is missing (tools/test.sh publishes it)");
        string output = TestPaths.TempFile("limited.gguf");
        var r = Bash("ulimit -f 64; exec \"$0\" \"$1\" -o \"$2\" --type f32", Converter, TestPaths.Stories260K, output);
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode}: {r.Stderr}");
        string[] errors = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.Contains("error", StringComparison.Ordinal)).ToArray();
        Assert.True(errors.Length == 1 && errors[0].Contains("file size limit", StringComparison.Ordinal) && errors[0].Contains(output, StringComparison.Ordinal),
            "expected one error line naming the file: " + r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.False(File.Exists(output));
        Assert.False(File.Exists(output + ".partial"));
    }

    [Theory]
    [InlineData("TERM")]
    [InlineData("HUP")]
    public async Task ConverterCleansUpOnSignal(string signal)
    {
        Assert.True(File.Exists(Converter), $"{Converter} is missing (tools/test.sh publishes it)");
        string input = BigModel.Value;
        string output = TestPaths.TempFile("signalled.gguf");
        var psi = SignalDefaults.For(Converter);
        psi.RedirectStandardOutput = psi.RedirectStandardError = true;
        foreach (string a in new[] { input, "-o", output, "--type", "q4_k_m", "-t", "1" }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var err = new StringBuilder();
        var firstTensor = new ManualResetEventSlim();
        p.ErrorDataReceived += (_, ev) =>
        {
            if (ev.Data is null) return;
            lock (err) err.AppendLine(ev.Data);
            if (ev.Data.Contains("[   1/39]", StringComparison.Ordinal)) firstTensor.Set();
        };
        p.BeginErrorReadLine();
        Assert.True(firstTensor.Wait(120_000), "the conversion never got going: " + err);
        Assert.False(p.HasExited, "the conversion ended before it could be signalled: " + err);
        Assert.True(File.Exists(output + ".partial"), "no partial file while converting");
        int killed = Kill(p.Id, signal);
        Assert.True(killed == 0, $"kill -s {signal} failed (exited: {p.HasExited}): {err}");
        Assert.True(p.WaitForExit(60_000), "still running 60 s after the signal");
        Assert.NotEqual(0, p.ExitCode);
        p.WaitForExit();
        await o;
        lock (err) Assert.Contains("interrupted", err.ToString());
        Assert.False(File.Exists(output + ".partial"), "the partial file was left behind");
        Assert.False(File.Exists(output));
    }

    /// <summary>A random F32 llama model big enough (~270 MB) that a q4_k_m conversion runs for seconds.</summary>
    private static readonly Lazy<string> BigModel = new(() => RandomModel.Write(new RandomModelSpec
    {
        Dim = 1024, Layers = 4, Heads = 8, KvHeads = 8, Ffn = 2816, Vocab = 8192, ContextLength = 256,
    }, TestPaths.TempFile("big-f32.gguf")));

    // ---- 5. hostile tokenizer.json ----

    [Theory]
    [InlineData(50_000_000)]
    [InlineData(int.MaxValue)]
    public void TokenizerJsonIdsAreBoundedByTheVocabulary(int id)
    {
        string json = TestPaths.TempFile("tokenizer.json");
        File.WriteAllText(json, "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]},\"added_tokens\":[{\"id\":" + id + ",\"content\":\"<x>\",\"special\":true}]}");
        var sw = Stopwatch.StartNew();
        var r = ConvertTestKit.ConvertCliRun(ConvertTestKit.Llama2cBin, "-o", TestPaths.TempFile("t.gguf"), "--type", "f32", "--tokenizer", json);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"id {id}", r.Stderr);
        Assert.Contains("added_tokens", r.Stderr);
        Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.Contains("error"));
    }

    // ---- 6. NaN weights ----

    [Fact]
    public unsafe void NanWeightsAreAnErrorNotGarbage()
    {
        string path = RandomModel.Write(new RandomModelSpec());
        long at;
        using (var f = GgufFile.Open(path))
        {
            var t = f.FindTensor("output_norm.weight")!;
            at = f.DataOffset + t.Offset;
        }
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            fs.Position = at;
            fs.Write(BitConverter.GetBytes(float.NaN));
        }
        var logits = CliRunner.InProcess("logits", "-m", path, "--tokens", "1,2,3");
        Assert.Equal(1, logits.ExitCode);
        Assert.Contains("non-finite logits", logits.Stderr);
        Assert.DoesNotContain("NaN", logits.Stdout);
        var run = CliRunner.InProcess("run", "-m", path, "-p", "a", "-n", "4");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("non-finite logits", run.Stderr);
    }

    // ---- 7. messages and `info` ----

    [Theory]
    [InlineData("run", "-m", "/nonexistent/model.gguf")]
    [InlineData("run", "-f", "/nonexistent/prompt.txt")]
    [InlineData("info", "-m", "/tmp")]
    [InlineData("run", "-n", "99999999999999999999")]
    public void ErrorsNeverShowResourceKeys(params string[] args)
    {
        var r = CliRunner.Published(args);
        Assert.NotEqual(0, r.ExitCode);
        Assert.DoesNotMatch(@"\b[A-Z][A-Za-z0-9]+_[A-Za-z0-9_]+\b", r.Stderr.Replace("EDGELLM_", ""));
        Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    public static TheoryData<string, string> NotRunnable => new()
    {
        { "omit", "token_embd.weight" },
        { "heads", "llama.attention.head_count" },
        { "embedding", "does not match the expected" },
    };

    [Theory]
    [MemberData(nameof(NotRunnable))]
    public void InfoSaysWhyAValidGgufIsNotRunnable(string defect, string named)
    {
        var spec = defect switch
        {
            "omit" => new RandomModelSpec { Omit = ["token_embd.weight"] },
            "heads" => new RandomModelSpec { Overrides = [("llama.attention.head_count", GgufValue.Of(0u))] },
            _ => new RandomModelSpec { Overrides = [("llama.embedding_length", GgufValue.Of(96u))] },
        };
        string path = RandomModel.Write(spec);
        var r = CliRunner.InProcess("info", "-m", path);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("runnable:      no:", r.Stdout);
        Assert.Contains(named, r.Stderr);
        var ok = CliRunner.InProcess("info", "-m", RandomModel.Write(new RandomModelSpec()));
        Assert.Equal(0, ok.ExitCode);
        Assert.Contains("runnable:      yes", ok.Stdout);
    }

    [Fact]
    public void InfoEscapesTerminalSequencesInModelText()
    {
        string path = RandomModel.Write(new RandomModelSpec { Overrides = [("general.name", GgufValue.Of("evil\u001b[2J\u001b]0;owned\u0007name"))] });
        var r = CliRunner.InProcess("info", "-m", path);
        Assert.DoesNotContain('\u001b', r.Stdout);
        Assert.DoesNotContain('\u0007', r.Stdout);
        Assert.Contains("evil\\x1b[2J\\x1b]0;owned\\x07name", r.Stdout);
    }

    /// <summary>Sends a signal with kill(1); returns its exit code (0 when delivered).</summary>
    private static int Kill(int pid, string signal)
    {
        var psi = new ProcessStartInfo("kill") { RedirectStandardError = true };
        foreach (string a in new[] { "-s", signal, pid.ToString(System.Globalization.CultureInfo.InvariantCulture) }) psi.ArgumentList.Add(a);
        using var k = Process.Start(psi)!;
        k.WaitForExit();
        return k.ExitCode;
    }
}

/// <summary>
/// Issue 13 item 1: tokenizing and templating are linear. Each test times 1 MiB against 2 MiB of hostile text in one
/// run (best of several, interleaved); quadratic work gives a ratio near 4, linear near 2, the bar is 3. The
/// collection runs alone, after the parallel tests, so other tests do not load the cores while it measures.
/// </summary>
[Collection(LinearTimeCollection.Name)]
public class LinearTimeTests
{
    // ---- 1. linear special-token partition and chat templating ----

    /// <summary>Best-of-N seconds of each action, measured interleaved (a1, a2, a1, a2, ...) so a busy minute hits both.</summary>
    private static (double T1, double T2) BestSeconds(Action a1, Action a2, int reps)
    {
        double b1 = double.MaxValue, b2 = double.MaxValue;
        for (int i = 0; i < reps; i++)
        {
            b1 = Math.Min(b1, Time(a1));
            b2 = Math.Min(b2, Time(a2));
        }
        return (b1, b2);

        static double Time(Action a)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            var sw = Stopwatch.StartNew();
            a();
            return sw.Elapsed.TotalSeconds;
        }
    }

    [Fact]
    public void SpecialTokenPartitionIsLinear()
    {
        using var f = GgufFile.Open(TestPaths.Data("ggml-vocab-llama-spm.gguf"));
        var tok = Tokenizer.FromGguf(f);
        string unit = "<unk>a</s>b";
        string oneMiB = new StringBuilder().Insert(0, unit, (1 << 20) / unit.Length).ToString();
        string twoMiB = oneMiB + oneMiB;
        int[] ids = tok.Encode(unit + unit, addBos: false, parseSpecial: true);
        Assert.Equal(new[] { 0, ids[1], 2, ids[3], 0, ids[1], 2, ids[3] }, ids); // <unk> = 0, </s> = 2 in the Llama 2 vocabulary
        Assert.Equal(2, tok.Vocab.Eos);
        tok.Encode(oneMiB, addBos: false, parseSpecial: true); // warm up
        var (t1, t2) = BestSeconds(() => tok.Encode(oneMiB, addBos: false, parseSpecial: true), () => tok.Encode(twoMiB, addBos: false, parseSpecial: true), 5);
        Assert.True(t2 / t1 < 3.0, $"1 MiB: {t1:F3} s, 2 MiB: {t2:F3} s, ratio {t2 / t1:F2} (quadratic would be ~4)");
        Assert.Equal(4 * ((1 << 20) / unit.Length), tok.Encode(oneMiB, addBos: false, parseSpecial: true).Length);
    }

    [Fact]
    public void GemmaTemplateWithManySystemMessagesIsLinear()
    {
        // 1 MiB and 2 MiB of system text in 1 KiB messages (the attack used many small system messages).
        string kib = new string('s', 1023) + ".";
        static List<ChatMessage> Of(int n, string content)
        {
            var m = new List<ChatMessage>(n + 1);
            for (int i = 0; i < n; i++) m.Add(new ChatMessage("system", content));
            m.Add(new ChatMessage("user", "hi"));
            return m;
        }
        var small = Of(1024, kib);
        var large = Of(2048, kib);
        ChatTemplates.Render(ChatTemplateKind.Gemma, small, true);
        // The attack's cost was re-copying the merged system text once per message: quadratic bytes copied. Bytes
        // allocated count that exactly and do not depend on the machine's load (timings did: a busy CI host made a
        // linear renderer look 3.7x slower for twice the text).
        static long Allocated(List<ChatMessage> m)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            ChatTemplates.Render(ChatTemplateKind.Gemma, m, true);
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }
        long a1 = Allocated(small), a2 = Allocated(large);
        Assert.True(a1 > 1 << 20, $"rendering 1 MiB of system text allocated only {a1} bytes");
        Assert.True((double)a2 / a1 < 2.5, $"1 MiB: {a1} bytes allocated, 2 MiB: {a2} bytes, ratio {(double)a2 / a1:F2} (quadratic would be ~4)");
        static List<ChatMessage> Messages(int n) => Of(n, "0123456789abcdef");
        string text = ChatTemplates.Render(ChatTemplateKind.Gemma, Messages(3), true);
        Assert.Equal("<start_of_turn>user\n0123456789abcdef0123456789abcdef0123456789abcdef\n\nhi<end_of_turn>\n<start_of_turn>model\n", text);
    }

}

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LinearTimeCollection
{
    public const string Name = "linear-time measurements";
}

/// <summary>Issue 13 items 2 and 7, on the server and the converter.</summary>
public class HardeningServerAndConverterTests
{
    [Fact]
    public async Task ServerFreesADisconnectedSlotWithinOneBatch()
    {
        using var model = EdgeLlm.Model.LlamaModel.Load(TestPaths.Stories260K, new EdgeLlm.Compute.BackendOptions { Threads = 1, ContextSize = 40000 });
        var engine = new EdgeLlm.Cli.Server.InferenceEngine(model, "stories260K", ChatTemplateKind.ChatMl, queueLimit: 4);
        await using var server = await EdgeLlm.Cli.Server.EdgeLlmServer.StartAsync(engine, new EdgeLlm.Cli.Server.ServerOptions { Port = 0, MaxBodyBytes = 4 << 20 });
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        // ~33k prompt tokens: a prefill of tens of seconds on this model at this context.
        string prompt = string.Join(' ', Enumerable.Repeat("Once upon a time there was a little girl.", 3000));
        string body = "{\"model\":\"x\",\"prompt\":" + System.Text.Json.JsonSerializer.Serialize(prompt, EdgeLlm.Fuzz.FuzzJsonForTests.Default.String) + ",\"max_tokens\":1}";
        using var cts = new CancellationTokenSource();
        var first = http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"), cts.Token);
        var sw = Stopwatch.StartNew();
        while (engine.Busy == 0 && sw.Elapsed < TimeSpan.FromSeconds(60)) await Task.Delay(20);
        Assert.Equal(1, engine.Busy);
        await Task.Delay(1000);
        cts.Cancel(); // the client goes away during the prefill
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first);
        sw.Restart();
        while (engine.Busy != 0 && sw.Elapsed < TimeSpan.FromSeconds(20)) await Task.Delay(20);
        Assert.True(engine.Busy == 0, $"the slot is still busy {sw.Elapsed.TotalSeconds:F1} s after the client left");
        using var second = await http.PostAsync("/v1/completions", new StringContent("{\"model\":\"x\",\"prompt\":\"Once\",\"max_tokens\":2}", Encoding.UTF8, "application/json"));
        Assert.Equal(System.Net.HttpStatusCode.OK, second.StatusCode);
    }

    [Fact]
    public void ConverterNeverWritesAFileItsRuntimeRefuses()
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        string hf = Path.Combine(dir, "hf");
        Directory.CreateDirectory(hf);
        foreach (string f in Directory.GetFiles(ConvertTestKit.HfDir)) File.Copy(f, Path.Combine(hf, Path.GetFileName(f)));
        string config = File.ReadAllText(Path.Combine(hf, "config.json")).Replace("\"rope_theta\": 10000.0", "\"rope_theta\": 0.5");
        Assert.Contains("0.5", config);
        File.WriteAllText(Path.Combine(hf, "config.json"), config);
        string output = Path.Combine(dir, "out.gguf");
        var r = ConvertTestKit.ConvertCliRun(hf, "-o", output, "--type", "f32", "--tokenizer", ConvertTestKit.Tok512);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("freq_base", r.Stderr);
        Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.Contains("error", StringComparison.Ordinal));
        Assert.False(File.Exists(output));
        Assert.False(File.Exists(output + ".partial"));
    }
}
