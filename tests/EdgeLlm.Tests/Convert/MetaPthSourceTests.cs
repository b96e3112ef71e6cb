using EdgeLlm.Convert.Sources;
using EdgeLlm.TestSupport;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// Random Meta-format checkpoints written by <see cref="RandomCheckpointWriter"/> (real torch.save zips with
/// protocol-2 pickles) read back through <see cref="MetaPthSource"/>: 1 shard and 8 shards must give exactly the
/// original values (bit for bit), whatever the row chunking; params.json and shapes are validated.
/// </summary>
public class MetaPthSourceTests
{
    /// <summary>GQA, 8 shards: wq 2 heads, wk/wv 1 KV head per shard; tok_embeddings split along columns (Llama-2).</summary>
    internal static readonly RandomCheckpointSpec Small = new()
    {
        Dim = 128, Layers = 2, Heads = 16, KvHeads = 8, VocabSize = 256, MultipleOf = 64, Seed = 42,
    };

    internal static string Write(RandomCheckpointSpec spec, int shards, bool forceZip64 = false, string archive = "archive")
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        RandomCheckpointWriter.WriteMeta(spec, dir, shards, forceZip64, archive);
        return dir;
    }

    /// <summary>A stand-in for the SentencePiece loader: N pieces named t0..tN-1.</summary>
    internal static Func<string, TokenizerData> FakeTokenizer(int pieces, List<string>? calls = null) => path =>
    {
        calls?.Add(path);
        var tokens = new string[pieces];
        for (int i = 0; i < pieces; i++) tokens[i] = "t" + i;
        return new TokenizerData { Model = "llama", Tokens = tokens, TokenTypes = new int[pieces] };
    };

    private static float[] ReadAll(SourceTensor t, int chunk)
    {
        var all = new float[t.Rows * t.RowLength];
        for (long r = 0; r < t.Rows; r += chunk)
        {
            int n = (int)Math.Min(chunk, t.Rows - r);
            t.ReadRows(r, n, all.AsSpan((int)(r * t.RowLength), (int)(n * t.RowLength)));
        }
        return all;
    }

    private static float[] Expected(RandomCheckpointSpec spec, RandomTensor t)
    {
        var all = new float[t.Rows * t.Cols];
        RandomCheckpointWriter.ExpectedRows(spec, t, 0, (int)t.Rows, all);
        return all;
    }

    private static void AssertBitIdentical(float[] expected, float[] actual, string name)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToUInt32Bits(expected[i]) != BitConverter.SingleToUInt32Bits(actual[i]))
                Assert.Fail($"{name}[{i}]: expected {expected[i]:R}, read {actual[i]:R}");
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(8, false)]
    [InlineData(8, true)] // Llama-3 style: tok_embeddings split along rows
    [InlineData(2, false)]
    public void Shards_read_back_the_original_values_bit_for_bit(int shards, bool embeddingsSplitRows)
    {
        var spec = Small with { EmbeddingsSplitRows = embeddingsSplitRows };
        using var src = MetaPthSource.Open(Write(spec, shards));
        Assert.Equal(shards, src.ShardCount);
        if (shards > 1) Assert.Equal(embeddingsSplitRows ? 0 : 1, src.EmbeddingSplitAxis);

        var expected = RandomCheckpointWriter.Tensors(spec);
        Assert.Equal(expected.Count, src.Tensors.Count); // rope.freqs is in every shard but is skipped
        for (int i = 0; i < expected.Count; i++)
        {
            var e = expected[i];
            var t = src.Tensors[i];
            Assert.Equal(e.GgufName, t.Name);
            Assert.Equal(e.Shape, t.Shape);
            Assert.Equal(SourceDType.BF16, t.DType);
            var want = Expected(spec, e);
            AssertBitIdentical(want, ReadAll(t, (int)t.Rows), t.Name);
            AssertBitIdentical(want, ReadAll(t, 3), t.Name + " (3-row chunks, across shard boundaries)");
        }
    }

    /// <summary>
    /// tests/data/meta-tiny: 2 shards written by CPython's own pickle and zipfile modules (make.py beside it),
    /// shard 1 with ZIP64 local extra fields, so neither the pickle opcodes nor the zip layout come from our writer.
    /// </summary>
    [Fact]
    public void A_checkpoint_written_by_CPython_pickle_and_zipfile_reads_correctly()
    {
        using var src = MetaPthSource.Open(TestPaths.Data("meta-tiny"));
        Assert.Equal(2, src.ShardCount);
        Assert.Equal(1, src.EmbeddingSplitAxis);
        var p = src.Params.Shape;
        Assert.Equal((8, 1, 2, 2, 24, 16), (p.Dim, p.Layers, p.Heads, p.KvHeads, p.Ffn, p.Vocab));
        Assert.Equal(1e-6f, p.RmsEps);
        Assert.Equal(2048, p.Context); // Llama-1 guess from norm_eps 1e-6
        // make.py's tensor numbers t; element i of tensor t is ((37t + 11i) mod 251 - 125) / 64.
        string[] order = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
            "blk.0.attn_output.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_down.weight", "blk.0.ffn_up.weight",
            "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "output_norm.weight", "output.weight"];
        Assert.Equal(order.Order(), src.Tensors.Select(t => t.Name).Order());
        foreach (var t in src.Tensors)
        {
            int n = Array.IndexOf(order, t.Name);
            var got = ReadAll(t, 5);
            for (int i = 0; i < got.Length; i++)
                Assert.Equal(((37 * n + 11 * i) % 251 - 125) / 64f, got[i]);
        }
    }

    [Fact]
    public void Eight_shards_merge_to_the_same_tensors_as_one()
    {
        using var one = MetaPthSource.Open(Write(Small, 1));
        using var eight = MetaPthSource.Open(Write(Small, 8));
        Assert.Equal(one.Params, eight.Params with { Name = one.Params.Name });
        Assert.Equal(one.Tensors.Count, eight.Tensors.Count);
        for (int i = 0; i < one.Tensors.Count; i++)
        {
            Assert.Equal(one.Tensors[i].Name, eight.Tensors[i].Name);
            Assert.Equal(one.Tensors[i].Shape, eight.Tensors[i].Shape);
            AssertBitIdentical(ReadAll(one.Tensors[i], 7), ReadAll(eight.Tensors[i], 5), one.Tensors[i].Name);
        }
    }

    [Fact]
    public void Params_come_from_params_json_and_the_shapes()
    {
        using var src = MetaPthSource.Open(Write(Small, 8));
        var p = src.Params.Shape;
        Assert.Equal(128, p.Dim);
        Assert.Equal(2, p.Layers);
        Assert.Equal(16, p.Heads);
        Assert.Equal(8, p.KvHeads);
        Assert.Equal(384, p.Ffn); // int(8*128/3) = 341 -> multiple of 64 -> 384
        Assert.Equal(256, p.Vocab);
        Assert.Equal(1e-5f, p.RmsEps);
        Assert.Equal(10000f, p.RopeBase);
        Assert.Equal(4096, p.Context); // Llama-2 guess from norm_eps 1e-5
        Assert.Null(src.Params.RopeFreqFactors);
        Assert.Equal("meta-pth", src.Format);
        Assert.Throws<EdgeLlmException>(() => src.Tokenizer); // no loader given
    }

    [Fact]
    public void Vocab_size_minus_one_is_taken_from_the_tokenizer()
    {
        string dir = Write(Small with { VocabFromTokenizer = true }, 2);
        File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), [0]);
        var calls = new List<string>();
        using var src = MetaPthSource.Open(dir, FakeTokenizer(256, calls));
        Assert.Equal(256, src.Params.Shape.Vocab);
        Assert.Equal([Path.Combine(dir, "tokenizer.model")], calls);
        Assert.Equal(256, src.Tokenizer.Tokens.Length);

        var e = Assert.Throws<EdgeLlmException>(() => MetaPthSource.Open(dir, FakeTokenizer(300)));
        Assert.Equal($"{dir}: the vocabulary size is 300 (tokenizer.model pieces) but output.weight has 256 rows", e.Message);

        // With vocab_size in params.json, the tokenizer must agree with it.
        string dir2 = Write(Small, 1);
        File.WriteAllBytes(Path.Combine(dir2, "tokenizer.model"), [0]);
        e = Assert.Throws<EdgeLlmException>(() => MetaPthSource.Open(dir2, FakeTokenizer(255)));
        Assert.Equal($"{dir2}: tokenizer.model has 255 pieces but params.json says vocab_size 256", e.Message);
    }

    [Fact]
    public void Vocab_size_minus_one_without_a_tokenizer_comes_from_the_output_matrix()
    {
        using var src = MetaPthSource.Open(Write(Small with { VocabFromTokenizer = true }, 8));
        Assert.Equal(256, src.Params.Shape.Vocab);
    }

    [Fact]
    public void A_missing_tokenizer_model_is_an_error_when_a_loader_is_given()
    {
        string dir = Write(Small, 1);
        var e = Assert.Throws<EdgeLlmException>(() => MetaPthSource.Open(dir, FakeTokenizer(256)));
        Assert.Contains("tokenizer.model not found", e.Message);
    }

    [Theory]
    [InlineData(4096, 256, null, 11008)]   // Llama-2-7B
    [InlineData(5120, 256, null, 13824)]   // Llama-2-13B
    [InlineData(8192, 4096, 1.3, 28672)]   // Llama-2-70B
    [InlineData(4096, 1024, 1.3, 14336)]   // Llama-3-8B
    [InlineData(8192, 256, 1.0, 22016)]    // Code Llama 34B
    [InlineData(6656, 256, null, 17920)]   // Llama-1-33B
    public void Ffn_size_is_derived_as_in_Metas_code(int dim, int multipleOf, double? multiplier, int expected) =>
        Assert.Equal(expected, MetaPthSource.DeriveFfnDim(dim, multipleOf, multiplier));

    [Fact]
    public void Ffn_size_that_disagrees_with_w1_is_an_error()
    {
        string dir = Write(Small, 2);
        File.WriteAllText(Path.Combine(dir, "params.json"),
            """{"dim": 128, "multiple_of": 256, "n_heads": 16, "n_kv_heads": 8, "n_layers": 2, "norm_eps": 1e-05, "vocab_size": 256}""");
        var e = Assert.Throws<EdgeLlmException>(() => MetaPthSource.Open(dir));
        Assert.Contains("is 512 but layers.0.feed_forward.w1 has 384 rows", e.Message);
    }

    [Theory]
    [InlineData("""{"multiple_of": 64, "n_heads": 16, "n_layers": 2, "norm_eps": 1e-05, "vocab_size": 256}""", "required key 'dim' is missing")]
    [InlineData("""{"dim": "128", "multiple_of": 64, "n_heads": 16, "n_layers": 2}""", "'dim' is not an integer")]
    [InlineData("""{"dim": 128, "multiple_of": 64, "n_heads": 12, "n_layers": 2}""", "dim 128 is not n_heads 12 times an even head size")]
    [InlineData("""{"dim": 128, "multiple_of": 64, "n_heads": 16, "n_kv_heads": 3, "n_layers": 2}""", "n_heads 16 is not a multiple of n_kv_heads 3")]
    [InlineData("""{"dim": 128, "multiple_of": 64, "n_heads": 16, "n_kv_heads": 4, "n_layers": 2, "vocab_size": 256}""", "tensor 'layers.0.attention.wk.weight' has shape [32, 128] in this shard; params.json needs [32, 128], i.e. [16, 128] per shard (rows of 2 shards concatenated)")]
    [InlineData("""{"dim": 128, "multiple_of": 64, "n_heads": 16, "n_kv_heads": 8, "n_layers": 1, "vocab_size": 256}""", "tensor 'layers.1.attention_norm.weight' is beyond n_layers 1")]
    [InlineData("""{"dim": 128, "multiple_of": 64, "n_heads": 16, "n_kv_heads": 8, "n_layers": 3, "vocab_size": 256}""", "tensor 'layers.2.attention_norm.weight' is missing")]
    [InlineData("""[1, 2]""", "params.json is not a JSON object")]
    [InlineData("""{"dim": 128,""", "invalid JSON")]
    public void Bad_params_json_is_a_one_line_error(string json, string message)
    {
        string dir = Write(Small, 2);
        File.WriteAllText(Path.Combine(dir, "params.json"), json);
        var e = Assert.Throws<EdgeLlmException>(() => MetaPthSource.Open(dir));
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void A_missing_shard_is_named()
    {
        string dir = Write(Small, 8);
        File.Delete(Path.Combine(dir, "consolidated.03.pth"));
        var e = Assert.Throws<EdgeLlmException>(() => MetaPthSource.Open(dir));
        Assert.Contains("consolidated.03.pth is missing", e.Message);
    }

    [Fact]
    public void Shards_from_different_splits_are_rejected_with_the_tensor_named()
    {
        string dir = Write(Small, 8);
        string other = Write(Small, 4);
        // Shard 0 of a 4-way split has twice the rows of an 8-way slice.
        File.Copy(Path.Combine(other, "consolidated.00.pth"), Path.Combine(dir, "consolidated.00.pth"), overwrite: true);
        var e = Assert.Throws<EdgeLlmException>(() => MetaPthSource.Open(dir));
        Assert.Contains("consolidated.00.pth", e.Message);
        Assert.Contains("tok_embeddings.weight", e.Message);
    }

    [Fact]
    public void Llama31_scaled_rope_gives_frequency_factors()
    {
        string dir = Write(Small, 1);
        File.WriteAllText(Path.Combine(dir, "params.json"),
            """{"dim": 128, "multiple_of": 64, "n_heads": 16, "n_kv_heads": 8, "n_layers": 2, "norm_eps": 1e-05, "vocab_size": 256, "rope_theta": 500000.0, "use_scaled_rope": true}""");
        using var src = MetaPthSource.Open(dir);
        Assert.Equal(131072, src.Params.Shape.Context);
        Assert.Equal(500000f, src.Params.Shape.RopeBase);
        var f = src.Params.RopeFreqFactors!;
        Assert.Equal(4, f.Length); // head_dim 8 / 2
        // freq_i = 500000^(-i/4): wavelengths 2π·{1, 26.6, 707.1, 18803}. Below 8192/4 the factor is 1, above
        // 8192 it is the scale 8, and between (2π·707.1 = 4442.9) it blends: smooth = (8192/λ - 1)/(4 - 1),
        // factor = 1/((1 - smooth)/8 + smooth).
        double lambda = 2 * Math.PI * Math.Sqrt(500000), smooth = (8192 / lambda - 1) / 3;
        Assert.Equal(1f, f[0]);
        Assert.Equal(1f, f[1]);
        Assert.Equal(1 / ((1 - smooth) / 8 + smooth), f[2], 1e-5);
        Assert.Equal(2.6945, f[2], 1e-3);
        Assert.Equal(8f, f[3]);

        // Llama-3.1-8B (head_dim 128, theta 500000): the blend region holds factors strictly between 1 and 8.
        var g = MetaPthSource.Llama31RopeFactors(128, 500000f);
        Assert.Equal(1f, g[0]);
        Assert.Equal(8f, g[63]);
        Assert.Contains(g, x => x > 1f && x < 8f);
        for (int i = 1; i < g.Length; i++) Assert.True(g[i] >= g[i - 1]);
    }

    [Fact]
    public void Meta_names_map_to_gguf_names()
    {
        Assert.Equal("token_embd.weight", MetaPthSource.GgufName("tok_embeddings.weight"));
        Assert.Equal("output_norm.weight", MetaPthSource.GgufName("norm.weight"));
        Assert.Equal("output.weight", MetaPthSource.GgufName("output.weight"));
        Assert.Equal("blk.79.attn_output.weight", MetaPthSource.GgufName("layers.79.attention.wo.weight"));
        Assert.Equal("blk.0.ffn_gate.weight", MetaPthSource.GgufName("layers.0.feed_forward.w1.weight"));
        Assert.Equal("blk.0.ffn_up.weight", MetaPthSource.GgufName("layers.0.feed_forward.w3.weight"));
        Assert.Equal("blk.3.ffn_down.weight", MetaPthSource.GgufName("layers.3.feed_forward.w2.weight"));
        Assert.Null(MetaPthSource.GgufName("rope.freqs"));
        Assert.Null(MetaPthSource.GgufName("layers.x.attention.wq.weight"));
        Assert.Null(MetaPthSource.GgufName("layers.0.attention.wz.weight"));
    }

    [Fact]
    public void ReadRows_checks_its_arguments()
    {
        using var src = MetaPthSource.Open(Write(Small, 2));
        var t = src.Tensors[0];
        Assert.Throws<ArgumentOutOfRangeException>(() => t.ReadRows(t.Rows - 1, 2, new float[2 * t.RowLength]));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.ReadRows(-1, 1, new float[t.RowLength]));
        Assert.Throws<ArgumentException>(() => t.ReadRows(0, 2, new float[t.RowLength]));
    }

    [Fact]
    public void ReadRows_is_thread_safe()
    {
        using var src = MetaPthSource.Open(Write(Small, 8));
        var t = src.Tensors.First(x => x.Name == "blk.1.ffn_down.weight"); // a column-split tensor
        var want = Expected(Small, RandomCheckpointWriter.Tensors(Small).First(x => x.GgufName == t.Name));
        Parallel.For(0, 16, i =>
        {
            var got = new float[want.Length];
            for (long r = i % 5; r < t.Rows; r += 5) t.ReadRows(r, 1, got.AsSpan((int)(r * t.RowLength), (int)t.RowLength));
            for (long r = i % 5; r < t.Rows; r += 5)
                for (long c = 0; c < t.RowLength; c++)
                    Assert.Equal(want[r * t.RowLength + c], got[r * t.RowLength + c]);
        });
    }
}
