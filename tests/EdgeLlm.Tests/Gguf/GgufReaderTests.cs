using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Gguf;

public class GgufReaderTests
{
    [Fact]
    public void ReadsStories260K()
    {
        using var f = GgufFile.Open(TestPaths.Stories260K);
        Assert.Equal(3u, f.Version);
        Assert.Equal(19, f.Keys.Count);
        Assert.Equal(48, f.Tensors.Count);
        Assert.Equal(14176, f.DataOffset);
        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.Equal(64, f.GetInt("llama.embedding_length"));
        Assert.Equal(512, f.GetArray<string>("tokenizer.ggml.tokens")!.Length);
        var emb = f.FindTensor("token_embd.weight")!;
        Assert.Equal(new long[] { 64, 512 }, emb.Dims);
        Assert.Equal(GgmlType.F32, emb.Type);
        var last = f.Tensors[^1];
        Assert.Equal(f.FileSize, f.DataOffset + last.Offset + last.ByteSize);
    }

    [Fact]
    public void ReadsVocabOnlyFileWithNoDataSection()
    {
        using var f = GgufFile.Open(TestPaths.Data("ggml-vocab-llama-spm.gguf"));
        Assert.Empty(f.Tensors);
        Assert.Equal(22, f.Keys.Count);
        Assert.Equal(32000, f.GetArray<string>("tokenizer.ggml.tokens")!.Length);
        Assert.Equal(32000, f.GetArray<float>("tokenizer.ggml.scores")!.Length);
    }

    [Fact]
    public void WriterRoundTripIsByteIdenticalForStories260K()
    {
        using var f = GgufFile.Open(TestPaths.Stories260K);
        var w = new GgufWriter().CopyMetadataFrom(f);
        foreach (var t in f.Tensors)
        {
            var view = f.GetTensor(t);
            w.AddTensor(t.Name, t.Type, t.Dims, view.Span.ToArray());
        }
        string outPath = TestPaths.TempFile("copy.gguf");
        w.Write(outPath);
        Assert.False(File.Exists(outPath + ".partial"));
        Assert.Equal(File.ReadAllBytes(TestPaths.Stories260K), File.ReadAllBytes(outPath));
    }
}
