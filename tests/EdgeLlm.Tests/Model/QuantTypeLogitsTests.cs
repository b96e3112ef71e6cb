using Xunit.Abstractions;

namespace EdgeLlm.Tests.Model;

/// <summary>
/// Issue 12's acceptance for every weight type: the same F16 model requantized by llama.cpp to TYPE, run by EdgeLlm on
/// the CPU, is as close to llama.cpp's F16 logits as llama.cpp's own run of the file (RMS over the top 10 within 10%,
/// top-1 agreement within 3 of 40). See <see cref="QuantTypeLogits"/>.
/// </summary>
public class QuantTypeLogitsTests(ITestOutputHelper output)
{
    private static string Dir => TestPaths.Data("models-visible");

    public static TheoryData<string> Types() => new(QuantTypeLogits.Types);

    [Theory]
    [MemberData(nameof(Types))]
    public void LogitsAreAsCloseToF16AsLlamaCpps(string type)
    {
        var r = QuantTypeLogits.Check(Dir, type);
        output.WriteLine(r.ToString());
        Assert.True(r.Compared >= 100, $"only {r.Compared} logits in both top-10 lists");
        Assert.True(r.Passes, r.ToString());
    }
}
