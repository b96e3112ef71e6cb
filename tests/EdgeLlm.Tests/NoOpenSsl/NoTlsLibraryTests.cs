using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using EdgeLlm.Tests.Cli;
using EdgeLlm.Tests.X64Image;

namespace EdgeLlm.Tests.NoOpenSsl;

/// <summary>
/// Issue 14.2: running a model must not need OpenSSL (a distroless root, a minimal Jetson image). The dynamic loader's
/// own trace (LD_DEBUG=libs, glibc) lists every library the published binary looks for; `run` and `serve` (plain HTTP)
/// must not look for libssl or libcrypto, in both x64 images. (tools/test-arm64.sh runs the arm64 binary under qemu in
/// a root holding only the C library.)
/// </summary>
public class NoTlsLibraryTests
{
    public static TheoryData<string> Images => new() { "auto", "avx2" };

    private static void AssertNoTls(string loaderTrace)
    {
        // The trace is real: the binary's own NEEDED libc was searched for.
        Assert.Contains("find library=libc.so.6", loaderTrace);
        foreach (string line in loaderTrace.Split('\n'))
            Assert.False(line.Contains("libssl", StringComparison.Ordinal) || line.Contains("libcrypto", StringComparison.Ordinal), $"a TLS library was looked for: {line.Trim()}");
    }

    [X64LinuxTheory]
    [MemberData(nameof(Images))]
    public void RunLooksForNoTlsLibrary(string isa)
    {
        var env = new Dictionary<string, string> { ["LD_DEBUG"] = "libs", ["EDGELLM_ISA"] = isa };
        // Sampled (random seed) and greedy: the seed source was what loaded OpenSSL.
        var sampled = NativeRun.Run(env, NativeRun.Edgellm, "run", "-n", "16", "--ignore-eos", "-p", "Once", "-m", TestPaths.Stories260K);
        Assert.True(sampled.ExitCode == 0, sampled.Stderr);
        Assert.Contains("generation: 16 tokens", sampled.Stderr);
        AssertNoTls(sampled.Stderr);
        var greedy = NativeRun.Run(env, NativeRun.Edgellm, "run", "-n", "8", "--temp", "0", "-m", TestPaths.Stories260K);
        Assert.True(greedy.ExitCode == 0, greedy.Stderr);
        Assert.Equal(CommandTests.ReferenceText(8) + "\n", greedy.Stdout);
        AssertNoTls(greedy.Stderr);
    }

    [X64LinuxTheory]
    [MemberData(nameof(Images))]
    public async Task ServeAnswersAndLooksForNoTlsLibrary(string isa)
    {
        var psi = SignalDefaults.For(NativeRun.Edgellm);
        psi.RedirectStandardOutput = psi.RedirectStandardError = psi.RedirectStandardInput = true;
        psi.Environment["LD_DEBUG"] = "libs";
        psi.Environment["EDGELLM_ISA"] = isa;
        foreach (string a in new[] { "serve", "-m", TestPaths.Stories260K, "--port", "0" }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = new StringBuilder();
        string? address = null;
        var listening = new ManualResetEventSlim();
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (err) err.AppendLine(e.Data);
            var m = Regex.Match(e.Data, @" on (http://[^;]+); Ctrl-C stops");
            if (m.Success) { address = m.Groups[1].Value; listening.Set(); }
        };
        p.BeginErrorReadLine();
        var stdout = p.StandardOutput.ReadToEndAsync();
        try
        {
            Assert.True(listening.Wait(60_000), "serve never said where it listens: " + err);
            using var http = new HttpClient { BaseAddress = new Uri(address!), Timeout = TimeSpan.FromSeconds(60) };
            var body = new StringContent("{\"prompt\":\"\",\"max_tokens\":8,\"temperature\":0}", Encoding.UTF8, "application/json");
            var response = await http.PostAsync("v1/completions", body);
            string json = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, json);
            Assert.Contains("\"text\":", json);
        }
        finally
        {
            if (!p.HasExited) Assert.Equal(0, Kill(p.Id));
            if (!p.WaitForExit(20_000)) p.Kill(true);
            p.WaitForExit();
        }
        Assert.Equal(0, p.ExitCode);
        lock (err) AssertNoTls(err.ToString());
    }

    private static int Kill(int pid)
    {
        using var k = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-INT", pid.ToString(System.Globalization.CultureInfo.InvariantCulture) } })!;
        k.WaitForExit();
        return k.ExitCode;
    }
}
