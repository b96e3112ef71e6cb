using System.Diagnostics;
using EdgeLlm.Tests.Cli;
using EdgeLlm.Tests.X64Image;

namespace EdgeLlm.Tests.Hardening;

/// <summary>
/// Writes the system refuses, end to end in child processes: stderr redirected to a file at the file-size limit, and the
/// output files of edgellm-convert and edgellm-modelgen on a full disk (the prompt cache's: FileWriteLimitTests) (a 16 KiB tmpfs in a
/// private mount namespace) and past a file-size limit. Before: edgellm aborted (SIGABRT, exit 134) when its stderr
/// was a file at the limit (the loader's warning went through Console.Error, whose EFBIG escaped), the full-disk
/// errors were .NET's text naming FILE.partial ("No space left on device : '/x/p.cache.partial'"), and ModelGen died
/// of SIGXFSZ (exit 153) leaving FILE.partial.
/// </summary>
public class OutputWriteFailureTests
{
    private static string Edgellm => CliRunner.PublishedBinary;
    private static string Converter => Path.Combine(TestPaths.RepoRoot, "dist", "linux-x64", "edgellm-convert");
    private static string ModelGenDll => Path.Combine(TestPaths.RepoRoot, "tools", "EdgeLlm.ModelGen", "bin", "Release", "net10.0", "edgellm-modelgen.dll");

    /// <summary>bash -c SCRIPT ARGS ($0 is the first), through <paramref name="launcher"/> (unshare -rm --) when given.</summary>
    private static CliRunner.Result Bash(string[] launcher, string script, IEnumerable<KeyValuePair<string, string>>? env, params string[] args)
    {
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

    // ---- stderr that cannot be written ----

    /// <summary>
    /// <c>ulimit -f 0</c> with stderr a file: nothing can be said, so the command stops with exit 1 (not SIGABRT's 134,
    /// nor SIGXFSZ's 153) and the file stays empty. With EDGELLM_ISA=avx2 the command's own error line (a missing model),
    /// or the usage error of an unknown command, is the first write that fails.
    /// </summary>
    [Theory]
    [InlineData("run -m /nonexistent/model.gguf -p hi")]
    [InlineData("--no-such-command")]
    public void Stderr_at_the_file_size_limit_exits_1_and_does_not_abort(string command) =>
        StderrAtLimitExits1("avx2", command);

    /// <summary>
    /// The same with the image chosen by CPU on an AVX-512 host: the AVX-512 image cannot be written into its memfd under
    /// the limit, and the loader's fallback warning is the first write that fails (it went through Console.Error, whose
    /// EFBIG escaped as an unhandled exception: SIGABRT).
    /// </summary>
    [Avx512HostFact]
    public void Stderr_at_the_file_size_limit_exits_1_when_the_loader_warns()
    {
        StderrAtLimitExits1("auto", "--version");
        StderrAtLimitExits1("auto", "run -m /nonexistent/model.gguf -p hi");
    }

    private static void StderrAtLimitExits1(string isa, string command)
    {
        Assert.True(File.Exists(Edgellm), $"{Edgellm} is missing (tools/test.sh publishes it)");
        string err = TestPaths.TempFile("stderr.txt");
        var r = Bash([], $"ulimit -f 0; exec \"$0\" {command} 2>\"$1\"", [new("EDGELLM_ISA", isa)], Edgellm, err);
        Assert.True(r.ExitCode == 1, $"{isa} {command}: exit {r.ExitCode} (134: aborted, 153: killed by SIGXFSZ)");
        Assert.Equal(0L, new FileInfo(err).Length);
    }

    /// <summary>
    /// The AVX-512 image's own streams: a limit above the image (so it loads) and stderr appended to a sparse file already
    /// past the limit, so every stderr write fails. The error line cannot be written: exit 1, the file unchanged.
    /// </summary>
    [Fact]
    public void Stderr_past_the_limit_in_the_avx512_image_exits_1()
    {
        Assert.True(File.Exists(Edgellm), $"{Edgellm} is missing (tools/test.sh publishes it)");
        string err = TestPaths.TempFile("stderr-full.txt");
        var r = Bash([], "truncate -s 48M \"$1\" && ulimit -f 40960 && exec \"$0\" run -m /nonexistent/model.gguf -p hi 2>>\"$1\"", null, Edgellm, err);
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode} (134: aborted, 153: killed by SIGXFSZ)");
        Assert.Equal(48L << 20, new FileInfo(err).Length);
    }

    // ---- output files on a full disk ----

    /// <summary>Runs SCRIPT with $1 a fresh 16 KiB tmpfs; after it, `ls -A` of the tmpfs is the last stdout line.</summary>
    private static CliRunner.Result OnFullDisk(string script, params string[] args)
    {
        string dir = TestPaths.TempFile("full-disk");
        Directory.CreateDirectory(dir);
        return Bash(["unshare", "-rm", "--"], $"mount -t tmpfs -o size=16k tmpfs \"$1\" || exit 99; {script}; rc=$?; echo \"left: $(ls -A \"$1\")\"; exit $rc",
            null, [.. args.Take(1), dir, .. args.Skip(1)]);
    }

    [MountNamespaceFact]
    public void A_conversion_on_a_full_disk_names_the_file_and_the_cause()
    {
        Assert.True(File.Exists(Converter), $"{Converter} is missing (tools/test.sh publishes it)");
        var r = OnFullDisk("\"$0\" \"$2\" -o \"$1/out.gguf\" --type f32", Converter, TestPaths.Stories260K);
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode}: {r.Stderr}");
        Assert.Equal("left: ", Lines(r.Stdout)[^1]);
        string error = Assert.Single(Lines(r.Stderr), l => l.Contains("error", StringComparison.Ordinal));
        Assert.Matches("^edgellm-convert: error: /.*/out\\.gguf: the disk is full \\(no space left on device\\); nothing written$", error);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [MountNamespaceFact]
    public void A_generated_model_on_a_full_disk_names_the_file_and_the_cause()
    {
        Assert.True(File.Exists(ModelGenDll), $"{ModelGenDll} is missing (built with the tests)");
        var r = OnFullDisk("dotnet \"$0\" --shape tiny -q -o \"$1/m.gguf\"", ModelGenDll);
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode}: {r.Stderr}");
        Assert.Equal("left: ", Lines(r.Stdout)[^1]);
        string error = Assert.Single(Lines(r.Stderr));
        Assert.Matches("^edgellm-modelgen: error: /.*/m\\.gguf: the disk is full \\(no space left on device\\); nothing written$", error);
    }

    /// <summary>ModelGen past a file-size limit: one line and no file (before: killed by SIGXFSZ, FILE.partial left).</summary>
    [Fact]
    public void A_generated_model_over_the_file_size_limit_is_one_line_and_no_file()
    {
        Assert.True(File.Exists(ModelGenDll), $"{ModelGenDll} is missing (built with the tests)");
        string output = TestPaths.TempFile("limited-model.gguf");
        // W^X off: the JIT's double mapping of code goes through a file the limit would refuse (CoreCLR would not start).
        var r = Bash([], "ulimit -f 16; exec dotnet \"$0\" --shape tiny -q -o \"$1\"", [new("DOTNET_EnableWriteXorExecute", "0")], ModelGenDll, output);
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode} (153: killed by SIGXFSZ): {r.Stderr}");
        Assert.Equal([$"edgellm-modelgen: error: {output}: the file would pass the file size limit (ulimit -f); nothing written"], Lines(r.Stderr));
        Assert.False(File.Exists(output), "the model was written");
        Assert.False(File.Exists(output + ".partial"), "the partial model was left behind");
    }
}
