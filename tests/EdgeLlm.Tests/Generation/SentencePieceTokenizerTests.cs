using EdgeLlm.Generation;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Generation;

public class SentencePieceTokenizerTests
{
    private const string LlamaSpm = "ggml-vocab-llama-spm.gguf";

    private static readonly Lazy<Tokenizer> Llama = new(() =>
    {
        using var f = GgufFile.Open(TestPaths.Data(LlamaSpm));
        return Tokenizer.FromGguf(f);
    });

    public static TheoryData<int> LlamaVectors => VocabTestVectors.Indices(LlamaSpm);

    [Theory]
    [MemberData(nameof(LlamaVectors))]
    public void LlamaCppVectorEncodes(int index)
    {
        var (input, expected) = VocabTestVectors.Load(LlamaSpm)[index];
        int[] ids = Llama.Value.Encode(input, addBos: false);
        Assert.Equal(expected, ids);
    }

    [Theory]
    [MemberData(nameof(LlamaVectors))]
    public void LlamaCppVectorDecodesBackToInput(int index)
    {
        var (input, expected) = VocabTestVectors.Load(LlamaSpm)[index];
        Assert.Equal(input, Llama.Value.Decode(expected));
    }
}
