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
}
