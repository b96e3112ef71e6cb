using EdgeLlm.Convert;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Cli;
using static EdgeLlm.Tests.Convert.ConvertTestKit;

namespace EdgeLlm.Tests.Convert;

/// <summary>`edgellm info --verify` on converted files, and the converter's failure modes: never a file that looks valid.</summary>
public class VerifyAndFailureTests
{
    [Fact]
    public void VerifyPassesOnAConvertedFileAndFlagsAFlippedByte()
    {
        string path = ConvertWithCli(Llama2cBin, "q8_0");
        var ok = CliRunner.InProcess("info", "-m", path, "--verify");
        Assert.Equal(0, ok.ExitCode);
        Assert.Contains("verify: all 47 tensors OK", ok.Stdout);
        Assert.Contains("  OK        blk.2.attn_k.weight", ok.Stdout);

        long at;
        using (var f = GgufFile.Open(path)) at = f.DataOffset + f.FindTensor("blk.2.attn_k.weight")!.Offset + 5;
        byte[] bytes = File.ReadAllBytes(path);
        bytes[at] ^= 0x01;
        string bad = TestPaths.TempFile("flipped.gguf");
        File.WriteAllBytes(bad, bytes);
        var r = CliRunner.InProcess("info", "-m", bad, "--verify");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("  MISMATCH  blk.2.attn_k.weight (stored ", r.Stdout);
        Assert.Single(r.Stdout.Split('\n'), l => l.Contains("MISMATCH  "));
        Assert.Contains("verify: 1 of 47 tensors MISMATCH", r.Stdout);
    }

    [Fact]
    public void VerifyWithoutChecksumsIsAnError()
    {
        var r = CliRunner.InProcess("info", "-m", TestPaths.Stories260K, "--verify");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("no tensor checksums", r.Stderr);
    }

    [Fact]
    public void ChecksumsAreStoredInTensorOrder()
    {
        string path = ConvertWithCli(HfDir, "f16", "--tokenizer", Tok512);
        using var f = GgufFile.Open(path);
        var stored = f.GetArray<ulong>(TensorChecksums.MetadataKey)!;
        Assert.Equal(f.Tensors.Count, stored.Length);
        for (int i = 0; i < stored.Length; i++)
            Assert.Equal(System.IO.Hashing.XxHash64.HashToUInt64(f.GetTensor(f.Tensors[i]).Span), stored[i]);
    }

    private static void AssertNoOutput(string output)
    {
        Assert.False(File.Exists(output), $"{output} exists");
        Assert.False(File.Exists(output + ".partial"), $"{output}.partial exists");
    }

    private static void AssertOneLine(string stderr) =>
        Assert.True(stderr.TrimEnd('\n').Split('\n').Length == 1 && stderr.StartsWith("edgellm-convert: ", StringComparison.Ordinal), $"not one line: {stderr}");

    [Fact]
    public void MissingInputFails()
    {
        string output = TestPaths.TempFile("o.gguf");
        var r = ConvertCliRun(Path.Combine(Path.GetDirectoryName(output)!, "nope.bin"), "-o", output);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("not found", r.Stderr);
        AssertOneLine(r.Stderr);
        AssertNoOutput(output);
    }

    [Theory]
    [InlineData("--type", "q5_k")]
    [InlineData("--bogus", "1")]
    [InlineData("-t", "zero")]
    public void CommandLineMistakesExitWith2(string opt, string value)
    {
        string output = TestPaths.TempFile("o.gguf");
        var r = ConvertCliRun(Llama2cBin, "-o", output, opt, value);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(opt, r.Stderr);
        AssertOneLine(r.Stderr);
        AssertNoOutput(output);
        Assert.Equal(2, ConvertCliRun(Llama2cBin).ExitCode); // no -o
        Assert.Equal(2, ConvertCliRun().ExitCode);           // no input
    }

    [Fact]
    public void HelpAndVersion()
    {
        var h = ConvertCliRun("--help");
        Assert.Equal(0, h.ExitCode);
        Assert.Contains("q4_k_m", h.Stdout);
        var v = ConvertCliRun("--version");
        Assert.Equal(0, v.ExitCode);
        Assert.StartsWith("edgellm-convert ", v.Stdout);
    }

    private static string CopyHfDir(Func<byte[], byte[]> editSafetensors, Func<string, string>? editConfig = null)
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        string config = File.ReadAllText(Path.Combine(HfDir, "config.json"));
        File.WriteAllText(Path.Combine(dir, "config.json"), editConfig is null ? config : editConfig(config));
        File.WriteAllBytes(Path.Combine(dir, "model.safetensors"), editSafetensors(File.ReadAllBytes(Path.Combine(HfDir, "model.safetensors"))));
        return dir;
    }

    [Theory]
    [InlineData(4000, "truncated: the 4856-byte JSON header runs past the end")]
    [InlineData(6, "truncated: 6 bytes")]
    [InlineData(500_000, "outside the")]
    public void TruncatedSafetensorsFails(int keep, string message)
    {
        string dir = CopyHfDir(b => b[..keep]);
        string output = Path.Combine(dir, "out.gguf");
        var r = ConvertCliRun(dir, "-o", output, "--tokenizer", Tok512);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(message, r.Stderr);
        AssertOneLine(r.Stderr);
        AssertNoOutput(output);
    }

    [Fact]
    public void ConfigThatDisagreesWithTheTensorsFails()
    {
        string dir = CopyHfDir(b => b, c => c.Replace("\"intermediate_size\": 172", "\"intermediate_size\": 160"));
        string output = Path.Combine(dir, "out.gguf");
        var r = ConvertCliRun(dir, "-o", output, "--tokenizer", Tok512);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("tensor 'blk.0.ffn_gate.weight' has shape [172, 64], the hyperparameters imply [160, 64]", r.Stderr);
        AssertNoOutput(output);
    }

    [Fact]
    public void HfDirectoryWithoutTokenizerNeedsOne()
    {
        string output = TestPaths.TempFile("o.gguf");
        var r = ConvertCliRun(HfDir, "-o", output);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("no tokenizer.model or tokenizer.json (pass --tokenizer)", r.Stderr);
        AssertNoOutput(output);
    }

    [Fact]
    public void TruncatedLlama2cCheckpointFails()
    {
        string path = TestPaths.TempFile("cut.bin");
        File.WriteAllBytes(path, File.ReadAllBytes(Llama2cBin)[..500_000]);
        string output = path + ".gguf";
        var r = ConvertCliRun(path, "-o", output, "--tokenizer", Tok512);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("truncated", r.Stderr);
        AssertNoOutput(output);
    }

    [Fact]
    public void MetaDirectoryIsRecognized()
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        File.WriteAllText(Path.Combine(dir, "params.json"), "{}");
        var r = ConvertCliRun(dir, "-o", Path.Combine(dir, "o.gguf"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("params.json", r.Stderr);
    }

    [Fact]
    public void FailureMidwayLeavesNothing()
    {
        string output = TestPaths.TempFile("mid.gguf");
        var src = RandomSource(SmallParams(), failTensor: "blk.1.ffn_up.weight");
        var e = Assert.Throws<IOException>(() => Converter.Convert(src, output, new ConvertOptions { Type = OutputType.Q8_0, Threads = 2, ChunkFloats = 64 * 8 }, TextWriter.Null));
        Assert.Contains("simulated read error", e.Message);
        AssertNoOutput(output);
    }

    [Fact]
    public void CancellationMidwayLeavesNothingAndKeepsAnOlderFile()
    {
        string output = TestPaths.TempFile("cancel.gguf");
        File.WriteAllText(output, "older file");
        using var cts = new CancellationTokenSource();
        var src = RandomSource(SmallParams());
        var log = new CancelAfterLines(cts, 5);
        Assert.ThrowsAny<OperationCanceledException>(() =>
            Converter.Convert(src, output, new ConvertOptions { Type = OutputType.Q4_0, Threads = 2 }, log, cts.Token));
        Assert.Equal("older file", File.ReadAllText(output));
        Assert.False(File.Exists(output + ".partial"));
    }

    /// <summary>A log that cancels the conversion after a number of per-tensor lines.</summary>
    private sealed class CancelAfterLines(CancellationTokenSource cts, int lines) : StringWriter
    {
        private int _n;
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (++_n == lines) cts.Cancel();
        }
    }
}
