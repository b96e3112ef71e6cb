using EdgeLlm.TestSupport;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// The converter end to end on Meta's format: one random checkpoint written as 1 and as 8 consolidated.NN.pth shards,
/// and as Hugging Face safetensors (rotate-half q/k, several files), with the real Llama-2 tokenizer.model, converts
/// through `edgellm-convert` to files whose tensors are byte-identical: sharding and source format change nothing.
/// </summary>
public class MetaEndToEndTests
{
    private static readonly RandomCheckpointSpec Spec = new()
    {
        Dim = 128, Layers = 2, Heads = 16, KvHeads = 8, VocabSize = 32000, MultipleOf = 64, Seed = 7,
    };

    private static string Checkpoint(Action<string> write)
    {
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        write(dir);
        File.Copy(TestPaths.Data("llama2-tokenizer.model"), Path.Combine(dir, "tokenizer.model"));
        return dir;
    }

    private static string Convert(string input, string type)
    {
        string output = TestPaths.TempFile("out.gguf");
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = EdgeLlm.Convert.ConvertCli.Execute([input, "-o", output, "--type", type], o, e);
        Assert.True(rc == 0, e.ToString());
        return output;
    }

    private static Dictionary<string, byte[]> TensorBytes(string path)
    {
        using var f = GgufFile.Open(path);
        var d = new Dictionary<string, byte[]>();
        foreach (var t in f.Tensors) d[t.Name] = f.GetTensor(t).Span.ToArray();
        return d;
    }

    [Theory]
    [InlineData("f32")]
    [InlineData("q4_0")]
    public void OneShardEightShardsAndSafetensorsGiveIdenticalTensors(string type)
    {
        string one = Checkpoint(d => RandomCheckpointWriter.WriteMeta(Spec, d, 1));
        string eight = Checkpoint(d => RandomCheckpointWriter.WriteMeta(Spec, d, 8));
        string hf = Checkpoint(d => RandomCheckpointWriter.WriteHf(Spec, d, maxShardBytes: 4 << 20));
        Assert.Equal(8, Directory.GetFiles(eight, "consolidated.*.pth").Length);
        Assert.True(Directory.GetFiles(hf, "*.safetensors").Length > 1);

        var a = TensorBytes(Convert(one, type));
        var b = TensorBytes(Convert(eight, type));
        var c = TensorBytes(Convert(hf, type));
        Assert.Equal(3 + 2 * 9, a.Count); // token_embd, output_norm, output, then 9 per layer
        foreach (var (name, bytes) in a)
        {
            Assert.True(bytes.AsSpan().SequenceEqual(b[name]), $"{name}: 8 shards differ from 1 shard");
            Assert.True(bytes.AsSpan().SequenceEqual(c[name]), $"{name}: safetensors differ from the Meta checkpoint");
        }
    }

    [Fact]
    public void MetaF32TensorsAreTheWrittenValues()
    {
        string eight = Checkpoint(d => RandomCheckpointWriter.WriteMeta(Spec, d, 8));
        string path = Convert(eight, "f32");
        using var f = GgufFile.Open(path);
        Assert.Equal(32000, f.GetArray<string>("tokenizer.ggml.tokens")!.Length);
        foreach (var t in RandomCheckpointWriter.Tensors(Spec))
        {
            var info = f.FindTensor(t.GgufName);
            if (info is null) { Assert.Equal("rope_freqs.weight", t.GgufName); continue; }
            var want = new float[t.Rows * t.Cols];
            RandomCheckpointWriter.ExpectedRows(Spec, t, 0, (int)t.Rows, want);
            var got = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.GetTensor(info).Span);
            Assert.True(got.SequenceEqual(want), $"{t.GgufName} differs from the values written");
        }
    }

    [Theory]
    [InlineData("hostile")]
    [InlineData("truncated")]
    public void BadShardFailsWithOneLineAndNoOutput(string kind)
    {
        string dir = Checkpoint(d => RandomCheckpointWriter.WriteMeta(Spec with { VocabSize = 32000 }, d, 2));
        string shard = Path.Combine(dir, "consolidated.01.pth");
        string marker = TestPaths.TempFile("pwned");
        if (kind == "truncated")
        {
            var bytes = File.ReadAllBytes(shard);
            File.WriteAllBytes(shard, bytes.AsSpan(0, bytes.Length / 2).ToArray());
        }
        else
        {
            // os.system("touch marker") as the whole state dict of shard 1.
            var pkl = new List<byte> { 0x80, 2, (byte)'c' };
            pkl.AddRange("os\nsystem\n"u8.ToArray());
            pkl.Add((byte)'X');
            var cmd = System.Text.Encoding.ASCII.GetBytes("touch " + marker);
            pkl.AddRange(BitConverter.GetBytes(cmd.Length));
            pkl.AddRange(cmd);
            pkl.AddRange([0x85, (byte)'R', (byte)'.']);
            using var w = new ZipStoreWriter(shard);
            w.Add("consolidated/data.pkl", pkl.ToArray());
            w.Add("consolidated/version", "3\n"u8);
            w.Finish();
        }
        string output = TestPaths.TempFile("bad.gguf");
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = EdgeLlm.Convert.ConvertCli.Execute([dir, "-o", output, "--type", "q4_0"], o, e);
        Assert.Equal(1, rc);
        string err = e.ToString().TrimEnd('\n');
        Assert.DoesNotContain('\n', err);
        Assert.Contains(kind == "hostile" ? "GLOBAL 'os.system' is not allowed" : "consolidated.01.pth", err);
        Assert.False(File.Exists(output));
        Assert.False(File.Exists(output + ".partial"));
        Assert.False(File.Exists(marker));
    }
}
