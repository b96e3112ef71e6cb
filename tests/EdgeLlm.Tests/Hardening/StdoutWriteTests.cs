using System.Diagnostics;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.Hardening;

/// <summary>Standard output of the published binary written with write(2): shared offsets, a full disk.</summary>
public sealed class StdoutWriteTests
{
    private static (int Code, string Err) Shell(string script)
    {
        Assert.True(File.Exists(CliRunner.PublishedBinary), $"{CliRunner.PublishedBinary} is missing (tools/test.sh publishes it)");
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardError = true, RedirectStandardOutput = true, WorkingDirectory = TestPaths.RepoRoot };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        psi.Environment["E"] = CliRunner.PublishedBinary;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(120_000), "the shell did not finish");
        return (p.ExitCode, err.Result);
    }

    [Fact]
    public void OutputGroupedIntoOneFileKeepsEveryWritersLines()
    {
        string f = TestPaths.TempFile("out.txt");
        var (code, err) = Shell($"{{ \"$E\" tokenize -p hello; echo between; \"$E\" tokenize -p hello; }} > '{f}'");
        Assert.True(code == 0, err);
        string[] lines = File.ReadAllLines(f);
        string ids = CliRunner.InProcess("tokenize", "-p", "hello").Stdout.Trim();
        Assert.Equal([ids, "between", ids], lines);
    }

    [Fact]
    public void AFullDiskIsAOneLineError()
    {
        Assert.True(File.Exists("/dev/full"), "/dev/full is missing");
        var (code, err) = Shell("\"$E\" tokenize -p hello > /dev/full");
        Assert.Equal(1, code);
        Assert.Contains("standard output could not be written (No space left on device)", err);
        Assert.Single(err.Trim().Split('\n'));
    }
}
