using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.Speculative;

/// <summary>`run` with --lookup / --draft-model prints what plain greedy `run` prints (itself checked against the reference story).</summary>
public class SpeculativeCliTests
{
    private static string Visible(string name) => Path.Combine(TestPaths.Data("models-visible"), name);

    [Fact]
    public void RunWithLookupOrDraft_PrintsThePlainGreedyText()
    {
        string[] common = ["run", "-p", "Once upon a time, there was a little girl. Once upon a time", "-n", "80", "--temp", "0", "-t", "1"];
        var plain = CliRunner.InProcess(common);
        Assert.Equal(0, plain.ExitCode);
        var lookup = CliRunner.InProcess([.. common, "--lookup", "6"]);
        Assert.Equal(0, lookup.ExitCode);
        Assert.Equal(plain.Stdout, lookup.Stdout);
        Assert.Matches(@"speculative: \d+ drafted, \d+ accepted \([0-9.]+%\), \d+ target passes", lookup.Stderr);
        var draft = CliRunner.InProcess([.. common, "--draft-model", TestPaths.Stories260K, "--draft-max", "3", "--draft-p-min", "0"]);
        Assert.Equal(0, draft.ExitCode);
        Assert.Equal(plain.Stdout, draft.Stdout);
        Assert.Contains("generation: 80 tokens", draft.Stderr);
    }

    [Theory]
    [InlineData(new[] { "run", "--lookup", "4", "--draft-model", "x.gguf" }, 2, "give one")]
    [InlineData(new[] { "run", "--draft-max", "4" }, 2, "--draft-max and --draft-p-min need --draft-model")]
    [InlineData(new[] { "run", "--lookup", "0" }, 2, "'--lookup' must be between 1 and 256")]
    [InlineData(new[] { "run", "--lookup", "4", "--context-shift" }, 2, "does not combine with --prompt-cache or --context-shift")]
    [InlineData(new[] { "run", "--gpu-layers", "half" }, 2, "--gpu-layers 'half' is not auto, all or a number of layers")]
    [InlineData(new[] { "run", "-ngl", "-3" }, 2, "--gpu-layers '-3' is not auto")]
    public void BadFlags_GiveOneLineErrors(string[] args, int exitCode, string message)
    {
        var r = CliRunner.InProcess(args);
        Assert.Equal(exitCode, r.ExitCode);
        Assert.Contains(message, r.Stderr);
        Assert.Single(r.Stderr.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void DraftWithAnotherVocabulary_IsOneLineRefusal()
    {
        var r = CliRunner.InProcess("run", "-n", "4", "--draft-model", Visible("llama.gguf"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("llama.gguf: the draft model's vocabulary has 1200 tokens but the target's has 512", r.Stderr);
        Assert.Single(r.Stderr.TrimEnd('\n').Split('\n'));
    }
}
