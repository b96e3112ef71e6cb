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
    public static Result PublishedWithEnv(IEnumerable<KeyValuePair<string, string>> env, params string[] args) =>
        PublishedWith(env, "", null, PublishedBinary, args);

    /// <summary>
    /// Runs <paramref name="binary"/> (default the published one) with only the given environment, <paramref name="stdin"/>
    /// piped in (then closed: "" is an empty pipe, so nothing waits on the test host's own stdin), in
    /// <paramref name="workingDirectory"/> (default the repository root).
    /// </summary>
    public static Result PublishedWith(IEnumerable<KeyValuePair<string, string>> env, string stdin, string? workingDirectory, string? binary, params string[] args) =>
        PublishedWithin(120, env, stdin, workingDirectory, binary, args);

    /// <summary>
    /// <see cref="PublishedWith"/> with a watchdog of <paramref name="seconds"/> (a hang guard, not a timing: a run that
    /// needs much CPU, such as compiling every kernel, gets more room on a loaded 2-core CI machine).
    /// </summary>
    public static Result PublishedWithin(int seconds, IEnumerable<KeyValuePair<string, string>> env, string stdin, string? workingDirectory, string? binary, params string[] args)
    {
        binary ??= PublishedBinary;
        Assert.True(File.Exists(binary), $"{binary} is missing: run tools/publish.sh linux-x64 (tools/test.sh does)");
        var psi = new ProcessStartInfo("/usr/bin/env")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
            WorkingDirectory = workingDirectory ?? TestPaths.RepoRoot,
        };
        psi.ArgumentList.Add("-i");
        foreach (var (name, value) in env) psi.ArgumentList.Add($"{name}={value}");
        psi.ArgumentList.Add(binary);
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        try { p.StandardInput.Write(stdin); p.StandardInput.Close(); }
        catch (IOException) { }   // the program exited without reading its input
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(seconds * 1000)) { p.Kill(true); throw new TimeoutException($"edgellm did not finish in {seconds} s"); }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }
}
