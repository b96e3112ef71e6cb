using EdgeLlm.Fuzz;

namespace EdgeLlm.Tests.Hardening;

/// <summary>
/// A short pass of each fuzzer (tests/EdgeLlm.Fuzz) on every CI run, fixed seed: every mutated input is accepted or
/// refused with one line, none crashes the parser, none hangs. Longer passes: `dotnet run --project tests/EdgeLlm.Fuzz
/// -c Release -- [target] --cases N --seed S`.
/// </summary>
public class FuzzShortPassTests
{
    [Theory]
    [InlineData("gguf", 400)]
    [InlineData("pth", 400)]
    [InlineData("safetensors", 400)]
    [InlineData("tokenizer", 400)]
    [InlineData("http", 200)]
    public void EveryMutatedInputIsAcceptedOrRefusedInOneLine(string target, int cases)
    {
        var report = Targets.Run(target, TestPaths.RepoRoot, cases, seed: 20261205, Path.Combine(Path.GetTempPath(), "edgellm-fuzz-failures"), TimeSpan.FromSeconds(20));
        Assert.True(report.Failures.Count == 0, report + "\n" + string.Join("\n", report.Failures));
        Assert.Equal(cases, report.Accepted + report.Refused);
        Assert.True(report.Refused > 0 && report.Accepted > 0, $"the mutations should hit both paths: {report}");
    }
}
