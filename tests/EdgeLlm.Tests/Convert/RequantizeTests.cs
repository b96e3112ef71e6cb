using EdgeLlm.Gguf;
using EdgeLlm.Quant;
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

    [Theory]
    [InlineData("qwen2")]
    [InlineData("gemma2")]
    public void AGgufOfAnotherFamilyIsRequantizedWithItsMetadata(string family)
    {
        string f16 = HfFamilyConvertTests.ConvertFamily(HfFamilyCheckpoint.Create(family), "f16");
        using var src = GgufFile.Open(f16);
        using var q8 = GgufFile.Open(ConvertWithCli(f16, "q8_0"));
        Assert.Equal(family, q8.GetString("general.architecture"));
        foreach (string key in src.Keys.Where(k => k.StartsWith(family + ".", StringComparison.Ordinal)))
            Assert.Equal(src.Get(key)!.Value, q8.Get(key)!.Value);
        Assert.Equal(src.Tensors.Select(t => t.Name), q8.Tensors.Select(t => t.Name));
        foreach (var t in q8.Tensors)
        {
            var s = src.GetTensor(src.Tensors.First(x => x.Name == t.Name));
            var want = s.Type == GgmlType.F32 ? GgmlType.F32 : GgmlType.Q8_0;
            Assert.True(want == t.Type, $"{t.Name}: {t.Type}, {want} expected");
            if (t.Type != GgmlType.Q8_0) continue;
            // Each row is the reference Q8_0 quantization of the F16 source row.
            long ne0 = s.Ne0, rows = s.ByteLength / s.RowBytes;
            var view = q8.GetTensor(t);
            for (long r = 0; r < rows; r++)
            {
                var f = new float[ne0];
                QuantRef.DequantizeRow(GgmlType.F16, s.Span.Slice((int)(r * s.RowBytes), (int)s.RowBytes), f);
                Assert.Equal(QuantRef.QuantizeRow(GgmlType.Q8_0, f), view.Span.Slice((int)(r * view.RowBytes), (int)view.RowBytes).ToArray());
            }
        }
    }

    [Fact]
    public void AnUnquantizedGgufIsQuantizedWithoutTheFlag()
    {
        string f16 = ConvertWithCli(Llama2cBin, "f16");
        using var f = GgufFile.Open(ConvertWithCli(f16, "q8_0"));
        Assert.Contains(f.Tensors, t => t.Type == GgmlType.Q8_0);
    }
}
