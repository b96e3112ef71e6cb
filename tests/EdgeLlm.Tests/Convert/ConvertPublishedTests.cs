using System.Diagnostics;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.Convert;

/// <summary>The Native AOT edgellm-convert that tools/publish.sh puts beside edgellm (tools/test.sh publishes it first).</summary>
public class ConvertPublishedTests
{
    private static string Binary => Path.Combine(TestPaths.RepoRoot, "dist", "linux-x64", "edgellm-convert");

    [Fact]
    public async Task PublishedConverterWritesAFileThatPublishedEdgellmVerifiesAndRuns()
    {
        Assert.True(File.Exists(Binary), $"{Binary} is missing: run tools/publish.sh linux-x64 (tools/test.sh does)");
        string output = TestPaths.TempFile("published.gguf");
        var psi = new ProcessStartInfo("/usr/bin/env") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = TestPaths.RepoRoot };
        foreach (string a in new[] { "-i", Binary, ConvertTestKit.Llama2cBin, "-o", output, "--type", "q8_0" }) psi.ArgumentList.Add(a);
        using (var p = Process.Start(psi)!)
        {
            var stderrTask = p.StandardError.ReadToEndAsync();
            string stdout = await p.StandardOutput.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(120_000);
            await p.WaitForExitAsync(timeout.Token);
            string stderr = await stderrTask;
            Assert.True(p.ExitCode == 0, stderr);
            Assert.Equal(output, stdout.Trim());
            Assert.Contains("[  47/47] blk.4.ffn_norm.weight", stderr); // plain log lines: stderr is not a terminal
        }
        var verify = CliRunner.Published("info", "-m", output, "--verify");
        Assert.Equal(0, verify.ExitCode);
        Assert.Contains("verify: all 47 tensors OK", verify.Stdout);
        var run = CliRunner.Published("run", "-m", output, "-n", "12", "--temp", "0");
        Assert.Equal(0, run.ExitCode);
        Assert.StartsWith("Once upon a time", run.Stdout.TrimStart());
    }
}
