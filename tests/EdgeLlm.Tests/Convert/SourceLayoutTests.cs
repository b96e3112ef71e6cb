using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using EdgeLlm.Convert.Sources;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Quant;
using static EdgeLlm.Tests.Convert.ConvertTestKit;

namespace EdgeLlm.Tests.Convert;

/// <summary>
/// The other layouts of the same stories260K weights, written by the tests from the v0 / single-file originals:
/// llama2.c v1 (fp32, "ak42" header) and v2 (int8 groups + scales), and Hugging Face sharded safetensors with an
/// index in BF16 and F16. Each must convert to the tensors the original gives (exactly, or as rounded/dequantized).
/// </summary>
public class SourceLayoutTests
{
    private const int Dim = 64, Hidden = 172, Layers = 5, Heads = 8, KvHeads = 4, Vocab = 512, SeqLen = 512;
    private const int KvDim = Dim / Heads * KvHeads;

    /// <summary>The v0 file's tensors as float arrays, in v0 order, by llama2.c name.</summary>
    private static Dictionary<string, float[]> ReadV0()
    {
        byte[] b = File.ReadAllBytes(Llama2cBin);
        Assert.Equal([Dim, Hidden, Layers, Heads, KvHeads, Vocab, SeqLen], Enumerable.Range(0, 7).Select(i => BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(4 * i))));
        int at = 28;
        var d = new Dictionary<string, float[]>();
        float[] Take(int n) { var f = new float[n]; Buffer.BlockCopy(b, at, f, 0, n * 4); at += n * 4; return f; }
        d["emb"] = Take(Vocab * Dim);
        foreach (var (name, size) in new[] { ("rms_att", Dim), ("wq", Dim * Dim), ("wk", KvDim * Dim), ("wv", KvDim * Dim), ("wo", Dim * Dim),
                     ("rms_ffn", Dim), ("w1", Hidden * Dim), ("w2", Dim * Hidden), ("w3", Hidden * Dim) })
            for (int l = 0; l < Layers; l++) d[$"{name}{l}"] = Take(size);
        d["rms_final"] = Take(Dim);
        return d;
    }

    private static byte[] Header(int version, int groupSize)
    {
        var h = new byte[256];
        BinaryPrimitives.WriteUInt32LittleEndian(h, 0x616b3432);
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(4), version);
        int[] p = [Dim, Hidden, Layers, Heads, KvHeads, Vocab, SeqLen];
        for (int i = 0; i < 7; i++) BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(8 + 4 * i), p[i]);
        h[36] = 1; // shared classifier
        if (version == 2) BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(37), groupSize);
        return h;
    }

    private static readonly string[] WeightOrder = ["wq", "wk", "wv", "wo", "w1", "w2", "w3"];

    [Fact]
    public void Llama2cVersion1ConvertsToTheSameTensorsAsVersion0()
    {
        var v0 = ReadV0();
        using var ms = new MemoryStream();
        ms.Write(Header(1, 0));
        void W(float[] f) => ms.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(f.AsSpan()));
        for (int l = 0; l < Layers; l++) W(v0[$"rms_att{l}"]);
        for (int l = 0; l < Layers; l++) W(v0[$"rms_ffn{l}"]);
        W(v0["rms_final"]);
        W(v0["emb"]);
        foreach (string w in WeightOrder) for (int l = 0; l < Layers; l++) W(v0[$"{w}{l}"]);
        string v1 = TestPaths.TempFile("v1.bin");
        File.WriteAllBytes(v1, ms.ToArray());

        using (var src = Llama2cSource.Open(v1)) Assert.Equal((1, true), (src.Version, src.SharedClassifier));
        using var a = GgufFile.Open(ConvertWithCli(Llama2cBin, "f32"));
        using var b = GgufFile.Open(ConvertWithCli(v1, "f32", "--tokenizer", Tok512));
        Assert.Equal(a.Tensors.Select(t => t.Name), b.Tensors.Select(t => t.Name));
        foreach (var t in a.Tensors) Assert.Equal(TensorBytes(a, t.Name), TensorBytes(b, t.Name));
    }

    [Fact]
    public void Llama2cVersion2IsDequantizedGroupByGroup()
    {
        const int gs = 64;
        var v0 = ReadV0();
        using var ms = new MemoryStream();
        ms.Write(Header(2, gs));
        void W(float[] f) => ms.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(f.AsSpan()));
        for (int l = 0; l < Layers; l++) W(v0[$"rms_att{l}"]);
        for (int l = 0; l < Layers; l++) W(v0[$"rms_ffn{l}"]);
        W(v0["rms_final"]);
        var expected = new Dictionary<string, float[]>();
        void Q(string key, string gguf)
        {
            // export.py quantize_q80: scale = max|w| / 127 per group, q = round(w / scale) (half to even, as torch.round).
            float[] w = v0[key];
            var q = new sbyte[w.Length];
            var s = new float[w.Length / gs];
            var deq = new float[w.Length];
            for (int g = 0; g < s.Length; g++)
            {
                float amax = 0;
                for (int i = 0; i < gs; i++) amax = Math.Max(amax, Math.Abs(w[g * gs + i]));
                s[g] = amax / 127f;
                for (int i = 0; i < gs; i++)
                {
                    q[g * gs + i] = (sbyte)MathF.Round(w[g * gs + i] / s[g]);
                    deq[g * gs + i] = q[g * gs + i] * s[g];
                }
            }
            ms.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(q.AsSpan()));
            W(s);
            expected[gguf] = deq;
        }
        Q("emb", "token_embd.weight");
        string[] ggufNames = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"];
        for (int w = 0; w < WeightOrder.Length; w++)
            for (int l = 0; l < Layers; l++) Q($"{WeightOrder[w]}{l}", $"blk.{l}.{ggufNames[w]}.weight");
        string v2 = TestPaths.TempFile("v2.bin");
        File.WriteAllBytes(v2, ms.ToArray());

        using var f = GgufFile.Open(ConvertWithCli(v2, "f32", "--tokenizer", Tok512));
        Assert.Equal(47, f.Tensors.Count);
        foreach (var (name, want) in expected)
        {
            var got = new float[want.Length];
            Buffer.BlockCopy(TensorBytes(f, name), 0, got, 0, want.Length * 4);
            Assert.True(want.AsSpan().SequenceEqual(got), $"{name} differs from q x scale");
        }
        using var v0gguf = GgufFile.Open(ConvertWithCli(Llama2cBin, "f32"));
        Assert.Equal(TensorBytes(v0gguf, "blk.3.ffn_norm.weight"), TensorBytes(f, "blk.3.ffn_norm.weight")); // norms stay fp32
    }

    /// <summary>Writes a safetensors file of the given (name, dtype, shape, raw bytes) entries.</summary>
    private static void WriteSafetensors(string path, List<(string Name, string DType, long[] Shape, byte[] Data)> entries)
    {
        var header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        long off = 0;
        foreach (var e in entries)
        {
            header.Append($",\"{e.Name}\":{{\"dtype\":\"{e.DType}\",\"shape\":[{string.Join(",", e.Shape)}],\"data_offsets\":[{off},{off + e.Data.Length}]}}");
            off += e.Data.Length;
        }
        header.Append('}');
        byte[] h = Encoding.UTF8.GetBytes(header.ToString());
        using var fs = File.Create(path);
        var len = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)h.Length);
        fs.Write(len);
        fs.Write(h);
        foreach (var e in entries) fs.Write(e.Data);
    }

    [Fact]
    public void ShardedBf16AndF16SafetensorsWithIndexConvert()
    {
        byte[] file = File.ReadAllBytes(Path.Combine(HfDir, "model.safetensors"));
        long n = BinaryPrimitives.ReadInt64LittleEndian(file);
        using var doc = JsonDocument.Parse(file.AsMemory(8, (int)n));
        string dir = Path.GetDirectoryName(TestPaths.TempFile("x"))!;
        File.Copy(Path.Combine(HfDir, "config.json"), Path.Combine(dir, "config.json"));
        var shards = new[] { new List<(string, string, long[], byte[])>(), new List<(string, string, long[], byte[])>() };
        var map = new StringBuilder("{\"metadata\":{},\"weight_map\":{");
        int i = 0;
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__") continue;
            long[] shape = p.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            long b = p.Value.GetProperty("data_offsets")[0].GetInt64(), e = p.Value.GetProperty("data_offsets")[1].GetInt64();
            var f = new float[(e - b) / 4];
            Buffer.BlockCopy(file, (int)(8 + n + b), f, 0, (int)(e - b));
            int shard = i++ % 2;
            var raw = new byte[f.Length * 2];
            for (int k = 0; k < f.Length; k++)
            {
                ushort h = shard == 0 ? QuantRef.FloatToBF16(f[k]) : BitConverter.HalfToUInt16Bits((Half)f[k]);
                BinaryPrimitives.WriteUInt16LittleEndian(raw.AsSpan(2 * k), h);
            }
            shards[shard].Add((p.Name, shard == 0 ? "BF16" : "F16", shape, raw));
            map.Append(i == 1 ? "" : ",").Append($"\"{p.Name}\":\"model-0000{shard + 1}-of-00002.safetensors\"");
        }
        map.Append("}}");
        for (int s = 0; s < 2; s++) WriteSafetensors(Path.Combine(dir, $"model-0000{s + 1}-of-00002.safetensors"), shards[s]);
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), map.ToString());
        File.WriteAllBytes(Path.Combine(dir, "stray.safetensors"), [1, 2, 3]); // not in the index: must be ignored

        using var reference = GgufFile.Open(ConvertWithCli(HfDir, "f32", "--tokenizer", Tok512));
        using var got = GgufFile.Open(ConvertWithCli(dir, "f32", "--tokenizer", Tok512));
        var dtypes = new Dictionary<string, string>();
        foreach (var s in shards) foreach (var (name, dt, _, _) in s) dtypes[name] = dt;
        Assert.Equal(reference.Tensors.Select(t => t.Name), got.Tensors.Select(t => t.Name));
        foreach (var t in reference.Tensors)
        {
            var hf = dtypes.First(kv => SafetensorsSource.MapName(kv.Key, new LlamaParams { Shape = new ModelShape { Dim = Dim, Layers = Layers, Heads = Heads, KvHeads = KvHeads, Ffn = Hidden, Vocab = Vocab, RmsEps = 1e-5f } })!.Value.Name == t.Name);
            float[] want = new float[t.ElementCount], have = new float[t.ElementCount];
            Buffer.BlockCopy(TensorBytes(reference, t.Name), 0, want, 0, want.Length * 4);
            Buffer.BlockCopy(TensorBytes(got, t.Name), 0, have, 0, have.Length * 4);
            for (int k = 0; k < want.Length; k++)
            {
                // Rounding commutes with the q/k row permutation, so the F32 output rounded must equal the converted rounded input.
                float r = hf.Value == "BF16" ? BitConverter.UInt32BitsToSingle((uint)QuantRef.FloatToBF16(want[k]) << 16) : (float)(Half)want[k];
                Assert.True(r == have[k], $"{t.Name}[{k}] ({hf.Value}): {have[k]} vs {r}");
            }
        }
        // A BF16 checkpoint is still good enough to produce the reference text's opening.
        Assert.Equal(ReferenceGreedy()[..20], Greedy(ConvertWithCli(dir, "f16", "--tokenizer", Tok512), 20));
    }

    [Fact]
    public void RopePermutationUndoesTransformersPermute()
    {
        // transformers: w.view(n_heads, rows/n_heads/2, 2, cols).transpose(1, 2): HF row (h, j, i) = Meta row (h, i, j).
        const int heads = 2, rows = 12, hd = rows / heads;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < hd / 2; i++)
                for (int j = 0; j < 2; j++)
                {
                    int meta = h * hd + i * 2 + j, hf = h * hd + j * (hd / 2) + i;
                    Assert.Equal(hf, RopePermutation.SourceRow(meta, rows, heads));
                }
    }
}
