using EdgeLlm.Generation;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Generation;

public class BpeTokenizerTests
{
    private const string Gpt2Vocab = "ggml-vocab-gpt-2.gguf";

    private static readonly Lazy<Tokenizer> Gpt2 = new(() =>
    {
        using var f = GgufFile.Open(TestPaths.Data(Gpt2Vocab));
        return Tokenizer.FromGguf(f);
    });

    public static TheoryData<int> Gpt2Vectors => VocabTestVectors.Indices(Gpt2Vocab);

    [Theory]
    [MemberData(nameof(Gpt2Vectors))]
    public void LlamaCppGpt2VectorEncodes(int index)
    {
        var (input, expected) = VocabTestVectors.Load(Gpt2Vocab)[index];
        Assert.Equal(expected, Gpt2.Value.Encode(input, addBos: false));
    }

    [Theory]
    [MemberData(nameof(Gpt2Vectors))]
    public void LlamaCppGpt2VectorDecodesBackToInput(int index)
    {
        var (input, expected) = VocabTestVectors.Load(Gpt2Vocab)[index];
        Assert.Equal(input, Gpt2.Value.Decode(expected));
    }

    [Fact]
    public void Gpt2VocabularyMetadata()
    {
        var t = Gpt2.Value;
        Assert.IsType<BpeTokenizer>(t);
        var v = t.Vocab;
        Assert.Equal(50257, v.Count);
        Assert.Equal("gpt-2", v.Pre);
        Assert.Equal(PreTokenizerKind.Gpt2, v.PreTokenizer);
        Assert.Equal(50000, v.Merges.Count);
        Assert.False(v.AddSpacePrefix);
        Assert.Equal(50256, v.Eos); // <|endoftext|>
        Assert.True(v.IsEndOfGeneration(50256));
        // "Ġworld" decodes to " world"; byte characters map back to their bytes.
        Assert.Equal(" world"u8.ToArray(), t.TokenBytes(v.Find("Ġworld")));
    }
}
