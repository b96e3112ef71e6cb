using System.Diagnostics;
using EdgeLlm.Cli;

namespace EdgeLlm.Tests.Cli;

/// <summary>Runs `edgellm` in-process (fast) or as the published native binary (the real thing).</summary>
internal static class CliRunner
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result InProcess(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = EdgeLlmCli.Execute(args, o, e);
        return new Result(rc, o.ToString(), e.ToString());
    }

    /// <summary>dist/linux-x64/edgellm, which tools/test.sh publishes before running the tests.</summary>
    public static string PublishedBinary => Path.Combine(TestPaths.RepoRoot, "dist", "linux-x64", "edgellm");

    /// <summary>Runs the published binary with an empty environment (env -i): no dotnet anywhere.</summary>
    public static Result Published(params string[] args) => PublishedWithEnv([], args);

    /// <summary>Runs the published binary with only the given environment variables (env -i NAME=VALUE ...).</summary>
    public static Result PublishedWithEnv(IEnumerable<KeyValuePair<string, string>> env, params string[] args)
    {
        Assert.True(File.Exists(PublishedBinary), $"{PublishedBinary} is missing: run tools/publish.sh linux-x64 (tools/test.sh does)");
        var psi = new ProcessStartInfo("/usr/bin/env") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = TestPaths.RepoRoot };
        psi.ArgumentList.Add("-i");
        foreach (var (name, value) in env) psi.ArgumentList.Add($"{name}={value}");
        psi.ArgumentList.Add(PublishedBinary);
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(true); throw new TimeoutException("edgellm did not finish in 120 s"); }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }
}
