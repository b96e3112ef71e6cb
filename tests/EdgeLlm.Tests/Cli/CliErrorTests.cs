namespace EdgeLlm.Tests.Cli;

/// <summary>Bad input gets one line on stderr naming what and where, a non-zero exit, and no stack trace.</summary>
public class CliErrorTests
{
    private static void AssertOneLineError(CliRunner.Result r, int exitCode, string mustContain)
    {
        Assert.Equal(exitCode, r.ExitCode);
        Assert.Equal("", r.Stdout);
        string err = r.Stderr.TrimEnd('\n');
        Assert.DoesNotContain('\n', err);
        Assert.Contains(mustContain, err);
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void WeightTypeEdgeLlmLacksNamesTensorAndType()
    {
        // IQ2_XXS (ggml type 16, 256-element blocks of 66 bytes) has no TypeTraits row: loading stops at the tensor.
        string path = Model.RandomModel.Write(new Model.RandomModelSpec
        {
            Dim = 256, Ffn = 256, Heads = 4, KvHeads = 2, Layers = 1,
            RawType = ("blk.0.ffn_down.weight", EdgeLlm.Gguf.GgmlType.IQ2_XXS),
        });
        var r = CliRunner.InProcess("logits", "-m", path, "--tokens", "1,2,3");
        AssertOneLineError(r, 1, "tensor 'blk.0.ffn_down.weight'");
        Assert.Contains("type IQ2_XXS is not supported", r.Stderr);
    }

    [Fact]
    public void UnknownOption() =>
        AssertOneLineError(CliRunner.InProcess("info", "--bogus"), 2, "unknown option '--bogus'");

    [Fact]
    public void UnknownCommand() =>
        AssertOneLineError(CliRunner.InProcess("frobnicate"), 2, "unknown command 'frobnicate'");

    [Fact]
    public void MissingModelFile() =>
        AssertOneLineError(CliRunner.InProcess("info", "-m", "/nonexistent/model.gguf"), 1, "/nonexistent/model.gguf: model file not found");

    [Fact]
    public void DirectoryInsteadOfModel() =>
        AssertOneLineError(CliRunner.InProcess("info", "-m", TestPaths.RepoRoot), 1, "is a directory");

    [Fact]
    public void OptionMissingItsValue() =>
        AssertOneLineError(CliRunner.InProcess("info", "-m"), 2, "option '-m' needs a value");

    [Fact]
    public void TruncatedModelNamesFieldAndOffset()
    {
        string path = TestPaths.TempFile("truncated.gguf");
        File.WriteAllBytes(path, File.ReadAllBytes(TestPaths.Stories260K).AsSpan(0, 5000).ToArray());
        AssertOneLineError(CliRunner.InProcess("info", "-m", path), 1, "invalid GGUF: metadata 'tokenizer.ggml.tokens'[370] length at offset 4996");
    }

    [Fact]
    public void NotAGgufFile()
    {
        string path = TestPaths.TempFile("text.gguf");
        File.WriteAllText(path, "this is not a model file, just some text");
        AssertOneLineError(CliRunner.InProcess("info", "-m", path), 1, "magic at offset 0");
    }

    [Fact]
    public void InfoPrintsTensorTable()
    {
        var r = CliRunner.InProcess("info", "-m", TestPaths.Stories260K);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("architecture:  llama", r.Stdout);
        Assert.Contains("tensors (48):", r.Stdout);
        Assert.Matches(@"token_embd\.weight\s+F32\s+\[64, 512\]\s+131,072", r.Stdout);
        Assert.Contains("parameters:    292,800", r.Stdout);
    }

    [Fact]
    public void VersionNamesTheProduct()
    {
        var r = CliRunner.InProcess("--version");
        Assert.Equal(0, r.ExitCode);
        Assert.StartsWith("edgellm 0.1.0 (", r.Stdout);
    }
}

/// <summary>Every command that loads a model accepts the options ModelOptions.Load reads (-m, -t, -c, --device).</summary>
public class CommandOptionTests
{
    [Fact]
    public void ModelLoadingCommandsDeclareTheSharedModelOptions()
    {
        foreach (var c in EdgeLlm.Cli.EdgeLlmCli.Commands)
        {
            if (!c.Options.Contains(EdgeLlm.Cli.Command.Threads)) continue;
            foreach (var o in new[] { EdgeLlm.Cli.Command.Model, EdgeLlm.Cli.Command.Ctx, EdgeLlm.Cli.Command.Device })
                Assert.True(c.Options.Contains(o) || (c.Name == "bench" && o == EdgeLlm.Cli.Command.Ctx), $"'{c.Name}' does not declare {o.Names[^1]}");
        }
    }

    [Fact]
    public void ChatAcceptsDeviceCpu()
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = EdgeLlm.Cli.EdgeLlmCli.Execute(["chat", "--device", "cpu", "--temp", "0", "-n", "4", "-c", "256"], o, e, new StringReader("Hi\n"));
        Assert.True(rc == 0, e.ToString());
    }
}
