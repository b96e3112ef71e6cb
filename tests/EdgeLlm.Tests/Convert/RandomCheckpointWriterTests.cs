using System.Buffers.Binary;
using System.Text.Json;
using EdgeLlm.TestSupport;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// The Hugging Face side of the random checkpoint writer: sharded safetensors with a consistent index and
/// config.json, bf16 values equal to <see cref="RandomCheckpointWriter.ExpectedRows"/>, q_proj/k_proj rows in
/// rotate-half order exactly as llama.cpp's permute undoes it.
/// </summary>
public class RandomCheckpointWriterTests
{
    private static readonly RandomCheckpointSpec Spec = MetaPthSourceTests.Small with { Seed = 7 };

    private sealed record StTensor(string File, string Dtype, long[] Shape, long Begin, long End, long DataStart);

    /// <summary>Parses the headers of every safetensors file in dir.</summary>
    private static Dictionary<string, StTensor> ReadHeaders(string dir)
    {
        var all = new Dictionary<string, StTensor>();
        foreach (string file in Directory.GetFiles(dir, "*.safetensors"))
        {
            using var fs = File.OpenRead(file);
            var len = new byte[8];
            fs.ReadExactly(len);
            long n = BinaryPrimitives.ReadInt64LittleEndian(len);
            Assert.Equal(0, n % 8);
            var json = new byte[n];
            fs.ReadExactly(json);
            using var doc = JsonDocument.Parse(json);
            long expectBegin = 0;
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__") continue;
                var offs = p.Value.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt64()).ToArray();
                Assert.Equal(expectBegin, offs[0]); // contiguous, in order
                expectBegin = offs[1];
                all.Add(p.Name, new StTensor(Path.GetFileName(file), p.Value.GetProperty("dtype").GetString()!,
                    p.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(), offs[0], offs[1], 8 + n));
            }
            Assert.Equal(fs.Length, 8 + n + expectBegin);
        }
        return all;
    }

    private static float[] ReadRow(string dir, StTensor t, long row)
    {
        long cols = t.Shape.Length > 1 ? t.Shape[1] : 1;
        using var fs = File.OpenRead(Path.Combine(dir, t.File));
        fs.Position = t.DataStart + t.Begin + row * cols * 2;
        var b = new byte[cols * 2];
        fs.ReadExactly(b);
        var r = new float[cols];
        for (int i = 0; i < cols; i++) r[i] = BitConverter.UInt32BitsToSingle((uint)BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(2 * i)) << 16);
        return r;
    }

    [Fact]
    public void Sharded_safetensors_hold_the_values_with_q_and_k_in_rotate_half_order()
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        RandomCheckpointWriter.WriteHf(Spec, dir, maxShardBytes: 100_000);

        var headers = ReadHeaders(dir);
        var tensors = RandomCheckpointWriter.Tensors(Spec);
        Assert.Equal(tensors.Select(t => t.HfName).Order(), headers.Keys.Order());
        Assert.True(headers.Values.Select(h => h.File).Distinct().Count() > 2);

        using (var index = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "model.safetensors.index.json"))))
        {
            var map = index.RootElement.GetProperty("weight_map");
            foreach (var (name, h) in headers) Assert.Equal(h.File, map.GetProperty(name).GetString());
            Assert.Equal(headers.Values.Sum(h => h.End - h.Begin), index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        }
        using (var config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json"))))
        {
            var c = config.RootElement;
            Assert.Equal(128, c.GetProperty("hidden_size").GetInt32());
            Assert.Equal(384, c.GetProperty("intermediate_size").GetInt32());
            Assert.Equal(16, c.GetProperty("num_attention_heads").GetInt32());
            Assert.Equal(8, c.GetProperty("num_key_value_heads").GetInt32());
            Assert.Equal(2, c.GetProperty("num_hidden_layers").GetInt32());
            Assert.Equal(256, c.GetProperty("vocab_size").GetInt32());
        }

        foreach (var t in tensors)
        {
            var h = headers[t.HfName];
            Assert.Equal("BF16", h.Dtype);
            Assert.Equal(t.Shape, h.Shape);
            int heads = t.HfName.EndsWith("q_proj.weight") ? Spec.Heads : t.HfName.EndsWith("k_proj.weight") ? Spec.KvHeads : 0;
            Assert.Equal(heads, t.RotateHalfHeads);
            long hd = Spec.HeadDim;
            var want = new float[t.Cols];
            for (long m = 0; m < t.Rows; m++)
            {
                // llama.cpp undoes HF's order with reshape(heads, 2, hd/2, cols).swapaxes(1, 2): Meta row
                // (head, j, a) = head·hd + 2j + a comes from HF row (head, a, j) = head·hd + a·hd/2 + j.
                long hfRow = m;
                if (heads > 0)
                {
                    long head = m / hd, j = m % hd / 2, a = m % 2;
                    hfRow = head * hd + a * (hd / 2) + j;
                }
                RandomCheckpointWriter.ExpectedRows(Spec, t, m, 1, want);
                Assert.Equal(want, ReadRow(dir, h, hfRow));
            }
        }
    }

    [Fact]
    public void A_small_checkpoint_is_one_model_safetensors_without_an_index()
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        RandomCheckpointWriter.WriteHf(Spec, dir);
        Assert.Equal(["model.safetensors"], Directory.GetFiles(dir, "*.safetensors").Select(Path.GetFileName));
        Assert.False(File.Exists(Path.Combine(dir, "model.safetensors.index.json")));
        var h = ReadHeaders(dir)["model.embed_tokens.weight"];
        var want = new float[Spec.Dim];
        RandomCheckpointWriter.ExpectedRows(Spec, RandomCheckpointWriter.Tensors(Spec)[0], 200, 1, want);
        Assert.Equal(want, ReadRow(dir, h, 200));
    }

    [Fact]
    public void Values_are_seeded_bf16_exact_and_differ_between_tensors()
    {
        float a = RandomCheckpointWriter.Value(Spec, "blk.0.attn_q.weight", 3, 5);
        Assert.Equal(a, RandomCheckpointWriter.Value(Spec, "blk.0.attn_q.weight", 3, 5));
        Assert.NotEqual(a, RandomCheckpointWriter.Value(Spec with { Seed = 8 }, "blk.0.attn_q.weight", 3, 5));
        Assert.NotEqual(a, RandomCheckpointWriter.Value(Spec, "blk.0.attn_k.weight", 3, 5));
        Assert.Equal(0u, BitConverter.SingleToUInt32Bits(a) & 0xFFFF);
        Assert.InRange(a, -0.05f, 0.05f);
        Assert.InRange(RandomCheckpointWriter.Value(Spec, "output_norm.weight", 7, 0), 0.9f, 1.1f);
    }

    [Fact]
    public void Meta_shards_that_do_not_divide_the_shapes_are_refused()
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        var e = Assert.Throws<ArgumentException>(() => RandomCheckpointWriter.WriteMeta(Spec, dir, 3));
        Assert.Contains("cannot be split into 3 shards", e.Message);
    }
}
