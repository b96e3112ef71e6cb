using EdgeLlm.Cli.Store;
using EdgeLlm.CommandLine;

namespace EdgeLlm.Tests.Store;

public sealed class HubSpecTests
{
    [Theory]
    [InlineData("hf:org/repo", "org/repo", null, null)]
    [InlineData("hf:TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF:Q4_K_M", "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", null, "Q4_K_M")]
    [InlineData("hf:org/repo:model.q8_0.gguf", "org/repo", "model.q8_0.gguf", null)]
    [InlineData("hf:org/repo:sub/dir/m.gguf", "org/repo", "sub/dir/m.gguf", null)]
    public void Parses(string text, string repo, string? file, string? quant)
        => Assert.Equal(new HubSpec(repo, file, quant), HubSpec.Parse(text));

    [Theory]
    [InlineData("org/repo")]
    [InlineData("hf:repo")]
    [InlineData("hf:a/b/c")]
    [InlineData("hf:org/re po")]
    [InlineData("hf:org/repo:")]
    [InlineData("hf:org/repo:../x.gguf")]
    [InlineData("hf:../repo")]
    public void RefusesMalformedReferences(string text) => Assert.Throws<UsageException>(() => HubSpec.Parse(text));

    private static readonly string[] Files =
        ["README.md", "m-Q4_K_M.gguf", "m-Q4_K_S.gguf", "m-Q4_K.gguf", "m_q8_0.gguf", "m.IQ4_XS.gguf", "m.Q4_K_M.gguf.sha", "config.json"];

    [Theory]
    [InlineData("Q4_K_M", "m-Q4_K_M.gguf")]
    [InlineData("q4_k_s", "m-Q4_K_S.gguf")]
    [InlineData("Q4_K", "m-Q4_K.gguf")]      // not Q4_K_M or Q4_K_S
    [InlineData("Q8_0", "m_q8_0.gguf")]
    [InlineData("IQ4_XS", "m.IQ4_XS.gguf")]
    public void PicksTheQuantAsAWholeWord(string quant, string expected)
        => Assert.Equal(expected, new HubSpec("o/r", null, quant).Pick(Files));

    [Fact]
    public void NoMatchAndOneGgufCases()
    {
        Assert.Equal("o/r has no .gguf file for 'Q2_K' (candidates: m-Q4_K_M.gguf, m-Q4_K_S.gguf, m-Q4_K.gguf, m_q8_0.gguf, m.IQ4_XS.gguf)",
            Assert.Throws<EdgeLlmException>(() => new HubSpec("o/r", null, "Q2_K").Pick(Files)).Message[3..]);
        Assert.Equal("only.gguf", new HubSpec("o/r", null, null).Pick(["a.txt", "only.gguf"]));
        Assert.Contains("has no .gguf file", Assert.Throws<EdgeLlmException>(() => new HubSpec("o/r", null, null).Pick(["a.safetensors"])).Message);
        Assert.Contains("has no file 'x.gguf'", Assert.Throws<EdgeLlmException>(() => new HubSpec("o/r", "x.gguf", null).Pick(Files)).Message);
    }
}
