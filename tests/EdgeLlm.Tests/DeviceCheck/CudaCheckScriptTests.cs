using System.Diagnostics;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.DeviceCheck;

/// <summary>
/// perf/cuda-check.sh end to end on the CPU (CI has no GPU): `--prepare --quick` writes the references with the
/// published binary, `--prebuilt --quick --device cpu` regenerates every model from its seed, checks its sha256 and
/// compares the logits, so the plumbing a GPU machine runs is exercised here; a tampered reference must fail.
/// </summary>
public sealed class CudaCheckScriptTests
{
    private static string ModelGenDll => Path.Combine(TestPaths.RepoRoot, "tools", "EdgeLlm.ModelGen", "bin", "Release", "net10.0", "edgellm-modelgen.dll");

    private static (int Code, string Output) Script(string refDir, string workDir, params string[] args)
    {
        Assert.True(File.Exists(CliRunner.PublishedBinary), $"{CliRunner.PublishedBinary} is missing (tools/test.sh publishes it)");
        Assert.True(File.Exists(ModelGenDll), $"{ModelGenDll} is missing (the solution build makes it)");
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = TestPaths.RepoRoot };
        psi.ArgumentList.Add(Path.Combine(TestPaths.RepoRoot, "perf", "cuda-check.sh"));
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["NO_PUBLISH"] = "1";
        psi.Environment["EDGELLM_CHECK_REF"] = refDir;
        psi.Environment["EDGELLM_CHECK_DIR"] = workDir;
        psi.Environment["EDGELLM_MODELGEN"] = "dotnet " + ModelGenDll;
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(600_000)) { p.Kill(true); throw new TimeoutException("cuda-check.sh did not finish in 10 minutes"); }
        return (p.ExitCode, o.Result + e.Result);
    }

    [Fact]
    public void PreparedReferencesPassOnTheCpuAndATamperedOneFails()
    {
        string root = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        string refDir = Path.Combine(root, "ref"), work = Path.Combine(root, "work");
        var prep = Script(refDir, work, "--prepare", "--quick");
        Assert.True(prep.Code == 0, prep.Output);
        string[] manifest = File.ReadAllLines(Path.Combine(refDir, "manifest.tsv"));
        Assert.Equal(15, manifest.Length);

        var run = Script(refDir, work, "--prebuilt", "--quick", "--device", "cpu");
        Assert.True(run.Code == 0, run.Output);
        Assert.Contains("cuda-check: all checks passed (cpu)", run.Output);
        foreach (string line in manifest)
        {
            string name = line.Split('\t')[0];
            Assert.Matches($@"(?m)^{name} prefill +nmse .* PASS$", run.Output);
            Assert.Matches($@"(?m)^{name} decode +nmse .* PASS$", run.Output);
        }
        Assert.Matches(@"(?m)^greedy +identical .*PASS$", run.Output);
        Assert.Matches(@"(?m)^greedy step by step +identical .*PASS$", run.Output);
        Assert.Matches(@"(?m)^sampled chain +identical, device vs host sampler +PASS$", run.Output);   // device vs host sampler (both host on the CPU)
        Assert.Matches(@"(?m)^sampled top-p +identical, device vs host sampler +PASS$", run.Output);

        // One model only, its reference logits moved by 10% at one position: the comparison must fail it.
        string bad = Path.Combine(root, "bad");
        Directory.CreateDirectory(bad);
        string entry = manifest.Single(l => l.StartsWith("tiny-q4_k\t", StringComparison.Ordinal));
        File.WriteAllLines(Path.Combine(bad, "manifest.tsv"), [entry]);
        foreach (string f in new[] { "build.txt", "greedy.txt", "quick" }) File.Copy(Path.Combine(refDir, f), Path.Combine(bad, f));
        var lines = File.ReadAllLines(Path.Combine(refDir, "tiny-q4_k.jsonl"));
        lines[7] = System.Text.RegularExpressions.Regex.Replace(lines[7], @"\[(\d+),(-?[0-9.eE+-]+)\]",
            m => $"[{m.Groups[1].Value},{(double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture) * 1.1).ToString("R", System.Globalization.CultureInfo.InvariantCulture)}]");
        File.WriteAllLines(Path.Combine(bad, "tiny-q4_k.jsonl"), lines);
        var fail = Script(bad, work, "--prebuilt", "--quick", "--device", "cpu");
        Assert.Equal(1, fail.Code);
        Assert.Matches(@"(?m)^tiny-q4_k prefill +nmse .* FAIL$", fail.Output);
        Assert.Contains("check(s) failed", fail.Output);

        // A model that no longer matches the recorded sha256 (another generator) is refused, not compared.
        File.WriteAllLines(Path.Combine(bad, "manifest.tsv"), [string.Join('\t', entry.Split('\t')[..3]) + "\t" + new string('0', 64)]);
        var differs = Script(bad, work, "--prebuilt", "--quick", "--device", "cpu");
        Assert.Equal(1, differs.Code);
        Assert.Contains("regenerated model differs", differs.Output);
    }
}
