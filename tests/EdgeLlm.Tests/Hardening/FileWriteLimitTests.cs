using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using EdgeLlm.Cli;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.Hardening;

/// <summary>
/// The published edgellm's own file writes under a file-size limit (<c>ulimit -f</c>, systemd's LimitFSIZE) and on a
/// full disk: one line, a non-zero exit, no stack trace, no partial file. Before: SIGXFSZ killed every command of the
/// x64 binary at start (exit 153, nothing said) under a limit below the embedded AVX-512 image's size (it is written
/// into a memfd before it is loaded), and with that image bypassed (EDGELLM_ISA=avx2) <c>run --prompt-cache</c> died
/// the same way and left FILE.partial; the server's step log was written in place (a full disk left a truncated CSV)
/// and EFBIG escaped its error handling.
/// </summary>
public class FileWriteLimitTests
{
    private static string Edgellm => CliRunner.PublishedBinary;
    private static string Model => TestPaths.Data(Path.Combine("models-visible", "llama.gguf"));

    private static CliRunner.Result Bash(string script, IEnumerable<KeyValuePair<string, string>>? env = null, params string[] args) =>
        Launch([], script, env, args);

    /// <summary>bash -c SCRIPT ARGS ($0 is the first), run through <paramref name="launcher"/> (e.g. unshare -rm --) when given.</summary>
    private static CliRunner.Result Launch(string[] launcher, string script, IEnumerable<KeyValuePair<string, string>>? env, params string[] args)
    {
        Assert.True(File.Exists(Edgellm), $"{Edgellm} is missing (tools/test.sh publishes it)");
        var psi = new ProcessStartInfo(launcher.Length > 0 ? launcher[0] : "/bin/bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in launcher.Skip(1)) psi.ArgumentList.Add(a);
        if (launcher.Length > 0) psi.ArgumentList.Add("/bin/bash");
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        foreach (string a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? []) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(180_000), "did not finish in 180 s");
        return new CliRunner.Result(p.ExitCode, stdout, err.Result);
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void A_command_runs_under_a_file_size_limit_below_the_embedded_image()
    {
        var r = Bash("ulimit -f 4; exec \"$0\" --version", null, Edgellm);
        Assert.True(r.ExitCode == 0, $"exit {r.ExitCode} (153: killed by SIGXFSZ): {r.Stderr}");
        Assert.StartsWith("edgellm ", r.Stdout);
        if (ImageSelection.CpuHasAvx512(out _))
        {
            // The AVX-512 image cannot be written into its memfd (nor a temp file): the x86-64-v3 image runs, and says why.
            string warning = Assert.Single(Lines(r.Stderr));
            Assert.StartsWith("edgellm: warning: the AVX-512 image did not load (memfd: the file size limit (ulimit -f) is below the image's ", warning);
            Assert.EndsWith("running the x86-64-v3 (AVX2) image", warning);
            Assert.Contains("x86-64-v3 image (AVX2 kernels)", r.Stdout);
        }
        else Assert.Equal("", r.Stderr);
    }

    [Theory]
    [InlineData("auto")]
    [InlineData("avx2")]
    public void A_prompt_cache_over_the_file_size_limit_is_one_line_and_no_file(string isa)
    {
        string cache = TestPaths.TempFile($"limited-{isa}.cache");
        var r = Bash("ulimit -f 4; exec \"$0\" run -m \"$1\" -p \"a prompt long enough that its cache passes four kilobytes\" -n 2 --prompt-cache \"$2\"",
            [new("EDGELLM_ISA", isa)], Edgellm, Model, cache);
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode} (153: killed by SIGXFSZ): {r.Stderr}");
        string[] errors = Lines(r.Stderr).Where(l => !l.StartsWith("edgellm: warning: the AVX-512 image did not load", StringComparison.Ordinal)).ToArray();
        Assert.Equal([$"edgellm run: error: {cache}: the file would pass the file size limit (ulimit -f); nothing written"], errors);
        Assert.False(File.Exists(cache), "the cache file was written");
        Assert.False(File.Exists(cache + ".partial"), "the partial cache file was left behind");
    }

    [MountNamespaceFact]
    public void A_prompt_cache_on_a_full_disk_is_one_line_and_no_file()
    {
        string dir = TestPaths.TempFile("full-disk");
        Directory.CreateDirectory(dir);
        // A 16 KiB tmpfs in a private mount namespace: the cache does not fit.
        var r = Launch(["unshare", "-rm", "--"], "mount -t tmpfs -o size=16k tmpfs \"$2\" || exit 99; \"$0\" run -m \"$1\" -p \"a prompt long enough that its cache passes sixteen kilobytes, a prompt long enough that its cache passes sixteen kilobytes\" -n 2 --prompt-cache \"$2/p.cache\"; rc=$?; ls -A \"$2\"; exit $rc",
            null, Edgellm, Model, dir);
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode}: {r.Stderr}");
        string error = Assert.Single(Lines(r.Stderr));
        Assert.Equal($"edgellm run: error: {dir}/p.cache: the disk is full (no space left on device); nothing written", error);
        Assert.Equal("", r.Stdout.Trim()); // ls of the tmpfs: no cache file, no partial file
    }

    // ---- the server: EDGELLM_STEP_LOG, and request strings that are not text (the AOT build answered 500) ----

    private sealed class Server : IDisposable
    {
        private readonly Process _p;
        private readonly StringBuilder _err = new();
        public readonly HttpClient Http;

        public Server(string limit, IEnumerable<KeyValuePair<string, string>> env, params string[] extra)
        {
            Assert.True(File.Exists(Edgellm), $"{Edgellm} is missing (tools/test.sh publishes it)");
            int port = FreePort();
            var psi = new ProcessStartInfo("/bin/bash") { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add($"ulimit -f {limit}; exec \"$0\" serve -m \"$1\" --port \"$2\" -t 1 -c 256 \"${{@:3}}\"");
            foreach (string a in new[] { Edgellm, Model, port.ToString() }.Concat(extra)) psi.ArgumentList.Add(a);
            foreach (var (k, v) in env) psi.Environment[k] = v;
            _p = Process.Start(psi)!;
            var ready = new ManualResetEventSlim();
            _p.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is null) return;
                lock (_err) _err.AppendLine(e.Data);
                if (e.Data.Contains("Ctrl-C stops", StringComparison.Ordinal)) ready.Set();
            };
            _p.BeginErrorReadLine();
            _p.StandardOutput.ReadToEndAsync();
            Assert.True(ready.Wait(120_000), "the server did not start: " + Stderr);
            Http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(120) };
        }

        public string Stderr
        {
            get { lock (_err) return _err.ToString(); }
        }

        /// <summary>SIGTERM (what systemd and docker stop send), then waits for the exit.</summary>
        public void Stop()
        {
            using (var kill = Process.Start("kill", ["-TERM", _p.Id.ToString()])) kill.WaitForExit();
            Assert.True(_p.WaitForExit(60_000), "the server did not stop on SIGTERM");
            _p.WaitForExit();
        }

        public void Dispose()
        {
            Http.Dispose();
            if (!_p.HasExited) _p.Kill();
            _p.Dispose();
        }

        private static int FreePort()
        {
            using var l = new TcpListener(IPAddress.Loopback, 0);
            l.Start();
            return ((IPEndPoint)l.LocalEndpoint).Port;
        }
    }

    [Fact]
    public async Task A_step_log_over_the_file_size_limit_is_one_line_and_no_file()
    {
        string log = TestPaths.TempFile("steps.csv");
        string stderr;
        using (var s = new Server("0", [new("EDGELLM_STEP_LOG", log)]))
        {
            var r = await s.Http.PostAsync("/v1/completions", new StringContent("{\"prompt\":\"once upon a time\",\"max_tokens\":3}", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            s.Stop();
            stderr = s.Stderr;
        }
        string line = Assert.Single(Lines(stderr), l => l.Contains("step log", StringComparison.Ordinal));
        Assert.Equal($"edgellm serve: cannot write the step log {log}: the file would pass the file size limit (ulimit -f); not written", line);
        Assert.DoesNotContain("   at ", stderr);
        Assert.False(File.Exists(log), "the step log was written");
        Assert.False(File.Exists(log + ".partial"), "the partial step log was left behind");
    }

    [Fact]
    public async Task The_published_server_answers_strings_that_are_not_text_with_a_400()
    {
        string[] bodies =
        [
            "{\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\"}],\"max_tokens\":2}",
            "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a \\udfff\"}]}],\"max_tokens\":2}",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"enum\":[\"\\ud800\"]}}}}",
            "{\"prompt\":\"\\udc00\",\"max_tokens\":2}",
            "{\"input\":\"\\ud83d\"}",
        ];
        string[] paths = ["/v1/chat/completions", "/v1/chat/completions", "/v1/chat/completions", "/v1/completions", "/v1/embeddings"];
        using var s = new Server("unlimited", [], "--embeddings");
        for (int i = 0; i < bodies.Length; i++)
        {
            var r = await s.Http.PostAsync(paths[i], new StringContent(bodies[i], Encoding.UTF8, "application/json"));
            string text = await r.Content.ReadAsStringAsync();
            Assert.True(r.StatusCode == HttpStatusCode.BadRequest, $"{paths[i]} {bodies[i]}: {(int)r.StatusCode} {text}");
            var e = JsonDocument.Parse(text).RootElement.GetProperty("error");
            Assert.Equal("invalid_json", e.GetProperty("code").GetString());
            int at = bodies[i].IndexOf("\\u", StringComparison.Ordinal);
            int quote = bodies[i].LastIndexOf('"', at) + 1; // the string's opening quote, counted from 1
            Assert.Equal($"the request body has a string that is not valid text (an unpaired \\uD800-\\uDFFF escape or invalid UTF-8) at line 1, byte {quote}",
                e.GetProperty("message").GetString());
        }
        Assert.DoesNotContain("internal error", s.Stderr);
    }
}

/// <summary>A fact that needs a private user and mount namespace (<c>unshare -rm</c>) to mount a tiny tmpfs; skipped where there is none.</summary>
public sealed class MountNamespaceFactAttribute : FactAttribute
{
    public MountNamespaceFactAttribute()
    {
        if (!Available.Value) Skip = "no user and mount namespaces here (unshare -rm with a tmpfs mount failed)";
    }

    private static readonly Lazy<bool> Available = new(() =>
    {
        try
        {
            var psi = new ProcessStartInfo("unshare") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in new[] { "-rm", "--", "/bin/sh", "-c", "mount -t tmpfs -o size=16k tmpfs /tmp" }) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            p.StandardOutput.ReadToEnd();
            p.StandardError.ReadToEnd();
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception) { return false; }
    });
}
