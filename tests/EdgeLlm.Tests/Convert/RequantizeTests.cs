using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Convert.ConvertTestKit;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// A GGUF whose tensors are already quantized is re-quantized to another type only with --allow-requantize (as
/// llama-quantize); without it the conversion stops with one line naming the tensor and its type, and writes
/// nothing. Unquantized (F32/F16/BF16) GGUF inputs and tensors kept in their own type need no flag.
/// </summary>
public class RequantizeTests
{
    [Fact]
    public void AQuantizedSourceNeedsAllowRequantize()
    {
        string q8 = ConvertWithCli(Llama2cBin, "q8_0");
        string output = Path.Combine(Path.GetDirectoryName(q8)!, "q4.gguf");
        var r = ConvertCliRun(q8, "-o", output, "--type", "q4_0", "-t", "2");
        Assert.Equal(1, r.ExitCode);
        string error = Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("edgellm-convert: error:", StringComparison.Ordinal));
        Assert.Contains("already quantized (Q8_0)", error, StringComparison.Ordinal);
        Assert.Contains("--allow-requantize", error, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
        Assert.False(File.Exists(output + ".partial"));

        string ok = ConvertWithCli(q8, "q4_0", "--allow-requantize");
        using var f = GgufFile.Open(ok);
        Assert.Contains(f.Tensors, t => t.Type == GgmlType.Q4_0);
    }

    [Fact]
    public void TheLogNamesTheStoredTypeOfAQuantizedSource()
    {
        string q8 = ConvertWithCli(Llama2cBin, "q8_0");
        string output = Path.Combine(Path.GetDirectoryName(q8)!, "again.gguf");
        var r = ConvertCliRun(q8, "-o", output, "--type", "q8_0", "-t", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        // Q8_0 tensors copied as they are need no flag; the log shows their stored type, not F32.
        Assert.Contains("Q8_0 [64, 512] -> Q8_0", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("F32  [64, 512]", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void AnUnquantizedGgufIsQuantizedWithoutTheFlag()
    {
        string f16 = ConvertWithCli(Llama2cBin, "f16");
        using var f = GgufFile.Open(ConvertWithCli(f16, "q8_0"));
        Assert.Contains(f.Tensors, t => t.Type == GgmlType.Q8_0);
    }
}
