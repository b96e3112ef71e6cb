using EdgeLlm.Convert;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using static EdgeLlm.Tests.Convert.ConvertTestKit;

namespace EdgeLlm.Tests.Convert;

/// <summary>The bytes the converter writes: the reference quantizers' (ggml's), whatever the chunking and threads.</summary>
public class ConverterOutputTests
{
    private static string ConvertToFile(EdgeLlm.Convert.Sources.CheckpointSource src, OutputType type, int threads = 2, long chunk = TensorEncoder.DefaultChunkFloats)
    {
        string path = TestPaths.TempFile($"c-{type}.gguf");
        Converter.Convert(src, path, new ConvertOptions { Type = type, Threads = threads, ChunkFloats = chunk }, TextWriter.Null);
        return path;
    }

    [Theory]
    [InlineData(OutputType.Q8_0, 64)]
    [InlineData(OutputType.Q4_0, 64)]
    [InlineData(OutputType.Q4_K_M, 256)]
    [InlineData(OutputType.F16, 64)]
    [InlineData(OutputType.BF16, 64)]
    public void EveryTensorIsTheReferenceQuantizersBytes(OutputType type, int dim)
    {
        var src = RandomSource(SmallParams(dim: dim, ffn: 2 * dim));
        using var f = GgufFile.Open(ConvertToFile(src, type));
        var kinds = new HashSet<GgmlType>();
        foreach (FakeTensor t in src.Tensors)
        {
            var info = f.FindTensor(t.Name)!;
            kinds.Add(info.Type);
            long ne0 = t.Shape[^1];
            var expected = new List<byte>();
            for (long r = 0; r < t.Data.Length / ne0; r++)
                expected.AddRange(QuantRef.QuantizeRow(info.Type, t.Data.AsSpan((int)(r * ne0), (int)ne0)));
            Assert.True(expected.ToArray().AsSpan().SequenceEqual(TensorBytes(f, t.Name)), $"{t.Name} ({info.Type}) differs from QuantRef");
        }
        var want = type switch
        {
            OutputType.Q8_0 => new[] { GgmlType.Q8_0, GgmlType.F32 },
            OutputType.Q4_0 => [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.F32], // output rows of 64: Q8_0, not Q6_K
            OutputType.Q4_K_M => [GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.F32],
            OutputType.F16 => [GgmlType.F16, GgmlType.F32],
            _ => [GgmlType.BF16, GgmlType.F32],
        };
        Assert.Equal(want.OrderBy(x => x), kinds.OrderBy(x => x));
    }

    /// <summary>Hand-made rows: ties round away from zero (Q8_0), Q4_0's truncation and clamp at 15, all-zero blocks.</summary>
    [Fact]
    public void HandMadeRowsGiveLlamaCppBlocks()
    {
        var src = RandomSource(SmallParams());
        var q = (FakeTensor)src.Tensors.First(t => t.Name == "blk.0.attn_q.weight");
        Array.Clear(q.Data, 0, 64);
        float[] q8row = [-127f, 2.5f, -2.5f, 0.5f, -0.5f];
        q8row.CopyTo(q.Data, 0);
        var k = (FakeTensor)src.Tensors.First(t => t.Name == "blk.0.attn_k.weight");
        Array.Clear(k.Data, 0, 64);
        float[] q4row = [-8f, 0.5f, 7f, 7.5f, -4f];
        q4row.CopyTo(k.Data, 0);

        using (var f = GgufFile.Open(ConvertToFile(src, OutputType.Q8_0)))
        {
            byte[] row = TensorBytes(f, "blk.0.attn_q.weight")[..68];
            var want = new byte[68];
            want[1] = 0x3C; // d = 1.0 (fp16 0x3C00); block 2 is all zero: d = 0, q = 0
            sbyte[] qs = [-127, 3, -3, 1, -1];
            for (int i = 0; i < qs.Length; i++) want[2 + i] = (byte)qs[i];
            Assert.Equal(want, row);
        }
        using (var f = GgufFile.Open(ConvertToFile(src, OutputType.Q4_0)))
        {
            byte[] row = TensorBytes(f, "blk.0.attn_k.weight")[..36];
            // d = -8 / -8 = 1; q = min(15, (int)(x + 8.5)): -8 -> 0, 0.5 -> 9, 7 -> 15, 7.5 -> 16 -> 15, -4 -> 4, 0 -> 8;
            // qs[j] = q[j] | q[j + 16] << 4 with q[16..31] = 8. The all-zero block: d = 0 / -8 = -0.0 (fp16 0x8000,
            // as ggml's float division gives), every q = 8.
            byte[] want = [0x00, 0x3C, 0x80, 0x89, 0x8F, 0x8F, 0x84, .. Enumerable.Repeat((byte)0x88, 11),
                           0x00, 0x80, .. Enumerable.Repeat((byte)0x88, 16)];
            Assert.Equal(want, row);
        }
    }

    [Fact]
    public void ChunkSizeAndThreadsDoNotChangeTheFile()
    {
        var src = RandomSource(SmallParams());
        byte[] a = File.ReadAllBytes(ConvertToFile(src, OutputType.Q4_0));
        byte[] b = File.ReadAllBytes(ConvertToFile(src, OutputType.Q4_0, threads: 1, chunk: 100)); // 1 row per chunk
        byte[] c = File.ReadAllBytes(ConvertToFile(src, OutputType.Q4_0, threads: 3, chunk: 1000));
        Assert.Equal(a, b);
        Assert.Equal(a, c);
    }

    [Fact]
    public void GgufInputIsCopiedWhenTheTypeIsUnchangedAndRequantizedOtherwise()
    {
        string f32 = ConvertWithCli(TestPaths.Stories260K, "f32");
        using (var got = GgufFile.Open(f32))
        using (var want = GgufFile.Open(TestPaths.Stories260K))
        {
            Assert.Equal(want.Tensors.Count, got.Tensors.Count);
            foreach (var t in want.Tensors) Assert.Equal(TensorBytes(want, t.Name), TensorBytes(got, t.Name));
            foreach (string key in want.Keys) Assert.Equal(want.Get(key)!.ToString(), got.Get(key)!.ToString());
            Assert.Equal(0, got.GetInt("general.file_type"));
        }
        // GGUF -> Q8_0 equals HF -> Q8_0 for every tensor both have (the bundled file also has output.weight).
        string fromGguf = ConvertWithCli(TestPaths.Stories260K, "q8_0");
        string fromHf = ConvertWithCli(HfDir, "q8_0", "--tokenizer", Tok512);
        using var g = GgufFile.Open(fromGguf);
        using var h = GgufFile.Open(fromHf);
        Assert.Equal(2, g.GetInt("general.quantization_version"));
        Assert.Equal(GgmlType.Q8_0, g.FindTensor("output.weight")!.Type);
        foreach (var t in h.Tensors)
        {
            if (t.Name == "token_embd.weight") continue; // tied in HF (output policy), untied in the bundled file: both Q8_0 here
            Assert.Equal(t.Type, g.FindTensor(t.Name)!.Type);
            Assert.Equal(TensorBytes(h, t.Name), TensorBytes(g, t.Name));
        }
        Assert.Equal(TensorBytes(h, "token_embd.weight"), TensorBytes(g, "token_embd.weight"));
    }

    [Fact]
    public void NameContextAndTokenizerOptionsAreWritten()
    {
        string path = ConvertWithCli(Llama2cBin, "f16", "--name", "tiny stories", "--ctx", "256", "--tokenizer", TestPaths.Stories260K);
        using var f = GgufFile.Open(path);
        Assert.Equal("tiny stories", f.GetString("general.name"));
        Assert.Equal(256, f.GetInt("llama.context_length"));
        Assert.Equal(1, f.GetInt("general.file_type"));
        Assert.Null(f.Get("general.quantization_version"));
        using var reference = GgufFile.Open(TestPaths.Stories260K);
        Assert.Equal(reference.GetArray<string>("tokenizer.ggml.tokens"), f.GetArray<string>("tokenizer.ggml.tokens"));

        // Re-quantizing a GGUF keeps its metadata and rewrites only what was asked.
        string again = ConvertWithCli(path, "q8_0", "--name", "again");
        using var g = GgufFile.Open(again);
        Assert.Equal("again", g.GetString("general.name"));
        Assert.Equal(256, g.GetInt("llama.context_length"));
        Assert.Equal(7, g.GetInt("general.file_type"));
        Assert.Equal(2, g.GetInt("general.quantization_version"));
    }
}
