using EdgeLlm.CommandLine;
using EdgeLlm.Convert;
using EdgeLlm.ModelGen;
using EdgeLlm.Tests.Cli;
using EdgeLlm.Tests.Convert;

namespace EdgeLlm.Tests.CommandLine;

/// <summary>
/// edgellm, edgellm-convert and edgellm-modelgen parse with the same parser: the same one-line usage errors (exit 2,
/// "PROGRAM: ... (see 'PROGRAM --help')", "did you mean"), and --help lists every option each one accepts.
/// </summary>
public class ToolUsageTests
{
    private static (int Rc, string Err) ModelGen(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = ModelGenCli.Execute(args, o, e);
        return (rc, e.ToString());
    }

    [Fact]
    public void AMisspelledOptionGetsTheSameLineFromAllThree()
    {
        var run = CliRunner.InProcess("run", "--tmep", "0");
        Assert.Equal(2, run.ExitCode);
        Assert.Equal("edgellm run: unknown option '--tmep' for 'edgellm run'; did you mean '--temp'? (see 'edgellm run --help')\n", run.Stderr);

        var convert = ConvertTestKit.ConvertCliRun("x.bin", "-o", TestPaths.TempFile("u.gguf"), "--tpye", "q4_0");
        Assert.Equal(2, convert.ExitCode);
        Assert.Equal("edgellm-convert: unknown option '--tpye' for 'edgellm-convert'; did you mean '--type'? (see 'edgellm-convert --help')\n", convert.Stderr);
        Assert.Equal("", convert.Stdout);

        var (rc, err) = ModelGen("-o", TestPaths.TempFile("u.gguf"), "--layrs", "3");
        Assert.Equal(2, rc);
        Assert.Equal("edgellm-modelgen: unknown option '--layrs' for 'edgellm-modelgen'; did you mean '--layers'? (see 'edgellm-modelgen --help')\n", err);
    }

    [Fact]
    public void MissingValuesAndBadNumbersReadTheSame()
    {
        Assert.Equal("edgellm run: option '-t' needs a value (N) (see 'edgellm run --help')\n", CliRunner.InProcess("run", "-t").Stderr);
        Assert.Equal("edgellm-convert: option '-t' needs a value (N) (see 'edgellm-convert --help')\n", ConvertTestKit.ConvertCliRun("x.bin", "-t").Stderr);
        Assert.Equal("edgellm-modelgen: option '-j' needs a value (N) (see 'edgellm-modelgen --help')\n", ModelGen("-j").Err);

        Assert.Equal("edgellm run: option '-t' expects an integer, got 'two' (see 'edgellm run --help')\n", CliRunner.InProcess("run", "-t", "two").Stderr);
        Assert.Equal("edgellm-convert: option '-t' expects an integer, got 'two' (see 'edgellm-convert --help')\n",
            ConvertTestKit.ConvertCliRun("x.bin", "-o", TestPaths.TempFile("u.gguf"), "-t", "two").Stderr);
        Assert.Equal("edgellm-modelgen: option '--threads' expects an integer, got 'two' (see 'edgellm-modelgen --help')\n",
            ModelGen("-o", TestPaths.TempFile("u.gguf"), "-j", "two").Err);
        Assert.Equal("edgellm-convert: option '--ctx' must be between 1 and 2147483647, got 0 (see 'edgellm-convert --help')\n",
            ConvertTestKit.ConvertCliRun("x.bin", "-o", TestPaths.TempFile("u.gguf"), "--ctx", "0").Stderr);
    }

    [Fact]
    public void ToolsTakeInlineValuesLikeEdgellm()
    {
        var (rc, err) = ModelGen("--output=" + TestPaths.TempFile("inline.gguf"), "--layers=0");
        Assert.Equal(2, rc);
        Assert.Equal("edgellm-modelgen: option '--layers' must be between 1 and 2147483647, got 0 (see 'edgellm-modelgen --help')\n", err);
        var c = ConvertTestKit.ConvertCliRun("x.bin", "--output=" + TestPaths.TempFile("u.gguf"), "--type=q5_k");
        Assert.Equal(2, c.ExitCode);
        Assert.StartsWith("edgellm-convert: unknown --type 'q5_k' (expected f32, f16,", c.Stderr);
    }

    [Fact]
    public void HelpWinsOverMistakesOnTheLine()
    {
        var c = ConvertTestKit.ConvertCliRun("--bogus", "-h");
        Assert.Equal(0, c.ExitCode);
        Assert.StartsWith("edgellm-convert: turn a checkpoint into a GGUF file", c.Stdout);
        var o = new StringWriter();
        Assert.Equal(0, ModelGenCli.Execute(["--bogus", "--help"], o, new StringWriter()));
        Assert.StartsWith("usage: edgellm-modelgen -o FILE", o.ToString());
    }

    [Fact]
    public void HelpListsEveryOptionTheToolAccepts()
    {
        string convertHelp = ConvertTestKit.ConvertCliRun("--help").Stdout;
        foreach (var o in ConvertCli.Options)
            Assert.Contains("\n  " + o.Synopsis + " ", convertHelp);
        var w = new StringWriter();
        ModelGenCli.Execute(["--help"], w, new StringWriter());
        string genHelp = w.ToString();
        foreach (var o in ModelGenCli.Options)
            foreach (string name in o.Names)
                if (name is not "-h" and not "--help") Assert.Contains(name, genHelp);
        Assert.Contains("\n  --dim --layers --heads --kv-heads --head-dim --ffn --vocab --ctx N override one number of the preset\n", genHelp);
    }
}
