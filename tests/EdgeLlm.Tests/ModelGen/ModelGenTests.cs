using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.ModelGen;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.ModelGen;

/// <summary>The random-model generator: determinism, the file it writes, and that the engine runs it sanely.</summary>
public class ModelGenTests
{
    private static readonly ModelShape Tiny = ModelShape.Preset("tiny")!;

    private static string Generate(WeightFormat format, ulong seed = 1, int threads = 0, ModelShape? shape = null, string? name = null)
    {
        string path = TestPaths.TempFile(name ?? $"gen-{WeightFormats.Name(format)}-{seed}.gguf");
        ModelGenerator.Write(new ModelGenOptions { Shape = shape ?? Tiny, Format = format, Seed = seed, Threads = threads }, path);
        return path;
    }

    [Fact]
    public void SameSeedGivesIdenticalBytesWhateverTheThreadCount()
    {
        byte[] a = File.ReadAllBytes(Generate(WeightFormat.Q4_K_M, seed: 7, threads: 1));
        byte[] b = File.ReadAllBytes(Generate(WeightFormat.Q4_K_M, seed: 7, threads: 2));
        Assert.Equal(a, b);
    }

    [Fact]
    public void CommandLineRunsAreReproducible()
    {
        string p1 = TestPaths.TempFile("cli1.gguf"), p2 = TestPaths.TempFile("cli2.gguf");
        foreach (string p in new[] { p1, p2 })
        {
            var o = new StringWriter();
            var e = new StringWriter();
            Assert.Equal(0, ModelGenCli.Execute(["--shape", "tiny", "--type", "q6_k", "--layers", "3", "--seed", "99", "-q", "-o", p], o, e));
            Assert.Equal("", e.ToString());
            Assert.StartsWith($"wrote {p}: dim 256, layers 3", o.ToString());
        }
        Assert.Equal(File.ReadAllBytes(p1), File.ReadAllBytes(p2));
        Assert.False(File.Exists(p1 + ".partial"));
    }

    [Fact]
    public void DifferentSeedsGiveDifferentWeights()
    {
        using var a = GgufFile.Open(Generate(WeightFormat.Q4_0, seed: 1));
        using var b = GgufFile.Open(Generate(WeightFormat.Q4_0, seed: 2));
        Assert.Equal(a.Tensors.Count, b.Tensors.Count);
        foreach (var t in a.Tensors)
        {
            var ta = a.GetTensor(t);
            var tb = b.GetTensor(t.Name)!.Value;
            Assert.False(ta.Span.SequenceEqual(tb.Span), $"tensor {t.Name} is the same for seeds 1 and 2");
        }
        // Within one file, no two tensors of the same size repeat each other's bytes either.
        var q = a.GetTensor("blk.0.ffn_gate.weight")!.Value.Span;
        var u = a.GetTensor("blk.0.ffn_up.weight")!.Value.Span;
        Assert.False(q.SequenceEqual(u));
    }

    public static TheoryData<string> AllFormats() => new(WeightFormats.Names);

    [Theory]
    [MemberData(nameof(AllFormats))]
    public void FileHasTheRequestedShapeTypesAndMetadata(string formatName)
    {
        Assert.True(WeightFormats.TryParse(formatName, out var format));
        var shape = Tiny with { Layers = 8, KvHeads = 1 };
        using var f = GgufFile.Open(Generate(format, shape: shape));

        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.Equal(256, f.GetInt("llama.embedding_length"));
        Assert.Equal(8, f.GetInt("llama.block_count"));
        Assert.Equal(4, f.GetInt("llama.attention.head_count"));
        Assert.Equal(1, f.GetInt("llama.attention.head_count_kv"));
        Assert.Equal(512, f.GetInt("llama.feed_forward_length"));
        Assert.Equal(512, f.GetInt("llama.vocab_size"));
        Assert.Equal(512, f.GetInt("llama.context_length"));
        Assert.Equal(64, f.GetInt("llama.rope.dimension_count"));
        Assert.Equal((int)WeightFormats.FileType(format), f.GetInt("general.file_type"));
        Assert.Equal(512, f.GetArray<string>("tokenizer.ggml.tokens")!.Length);

        Assert.Equal(3 + 9 * 8, f.Tensors.Count);
        GgmlType main = WeightFormats.BaseType(format);
        foreach (var t in f.Tensors)
        {
            if (t.Name.EndsWith("norm.weight", StringComparison.Ordinal))
            {
                Assert.Equal(GgmlType.F32, t.Type);
                Assert.Equal([256L], t.Dims);
                continue;
            }
            GgmlType expected = t.Name switch
            {
                "output.weight" => format.IsFloat || format == WeightFormat.Q8_0 ? main : GgmlType.Q6_K,
                _ when format.Mix && (t.Name.EndsWith("attn_v.weight") || t.Name.EndsWith("ffn_down.weight"))
                    // 8 layers: use_more_bits picks layer 0 (first eighth), 7 (last eighth) and 3, 6 ((i - 1) % 3 == 2).
                    && int.Parse(t.Name.Split('.')[1]) is 0 or 3 or 6 or 7 => GgmlType.Q6_K,
                _ => main,
            };
            Assert.True(expected == t.Type, $"{t.Name}: {t.Type}, expected {expected}");
        }
        Assert.Equal([256L, 512], f.FindTensor("token_embd.weight")!.Dims);
        Assert.Equal([256L, 64], f.FindTensor("blk.3.attn_k.weight")!.Dims);
        Assert.Equal([256L, 256], f.FindTensor("blk.7.attn_q.weight")!.Dims);
        Assert.Equal([512L, 256], f.FindTensor("blk.0.ffn_down.weight")!.Dims);

        using var model = new LlamaModel(f, new EdgeLlm.Backends.Cpu.CpuBackend(1), new BackendOptions(), ownsFile: false);
        Assert.Equal(256, model.Config.Dim);
        Assert.Equal(1, model.Config.KvHeadCount);
        Assert.Equal(8, model.Config.LayerCount);
    }

    [Theory]
    [MemberData(nameof(AllFormats))]
    public void TinyModelRuns128TokensWithSaneLogits(string formatName)
    {
        Assert.True(WeightFormats.TryParse(formatName, out var format));
        using var model = LlamaModel.Load(Generate(format), new BackendOptions { Threads = 2, ContextSize = 128 });
        int vocab = model.VocabSize;
        var rng = new Random(5);
        var tokens = new int[128];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = rng.Next(vocab);

        var prefill = new float[64 * vocab];
        model.Forward(tokens.AsSpan(0, 64), 0, prefill, allLogits: true);
        for (int i = 0; i < 64; i++) AssertSane(prefill.AsSpan(i * vocab, vocab), $"{formatName} prefill token {i}");
        var logits = new float[vocab];
        for (int i = 64; i < 128; i++)
        {
            model.Forward(tokens[i], i, logits);
            AssertSane(logits, $"{formatName} decode position {i}");
        }
    }

    /// <summary>Finite, and spread like logits of a model whose matmuls keep unit scale (not collapsed, not exploding).</summary>
    private static void AssertSane(ReadOnlySpan<float> logits, string where)
    {
        double sum = 0, sum2 = 0;
        foreach (float x in logits)
        {
            Assert.True(float.IsFinite(x), $"{where}: non-finite logit {x}");
            sum += x;
            sum2 += (double)x * x;
        }
        double mean = sum / logits.Length;
        double std = Math.Sqrt(sum2 / logits.Length - mean * mean);
        Assert.InRange(std, 0.1, 10.0);
    }

    [Theory]
    [MemberData(nameof(AllFormats))]
    public unsafe void WeightsHaveTheIntendedStandardDeviation(string formatName)
    {
        Assert.True(WeightFormats.TryParse(formatName, out var format));
        using var f = GgufFile.Open(Generate(format));
        foreach (string name in new[] { "blk.0.attn_q.weight", "blk.1.ffn_down.weight", "output.weight", "token_embd.weight" })
        {
            var t = f.GetTensor(name)!.Value;
            var row = new float[t.Ne0];
            double sum = 0, sum2 = 0;
            long count = 0;
            fixed (float* r = row)
                for (long i = 0; i < t.Rows; i++)
                {
                    QuantRef.DequantizeRow(t.Type, t.Row(i), r, t.Ne0);
                    foreach (float x in row) { sum += x; sum2 += (double)x * x; }
                    count += row.Length;
                }
            double mean = sum / count;
            double std = Math.Sqrt(sum2 / count - mean * mean);
            double sigma = 1 / Math.Sqrt(t.Ne0);
            Assert.InRange(std / sigma, 0.85, 1.15);
            Assert.InRange(Math.Abs(mean) / sigma, 0, 0.05);
        }
        var norm = f.GetTensor("blk.0.attn_norm.weight")!.Value;
        var v = new float[norm.Ne0];
        norm.Span.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan()));
        Assert.All(v, x => Assert.InRange(x, 0.8f, 1.2f));
    }

    [Fact]
    public void Q8_0BlocksNeverHoldMinus128()
    {
        using var f = GgufFile.Open(Generate(WeightFormat.Q8_0));
        var t = f.GetTensor("token_embd.weight")!.Value.Span;
        int lows = 0;
        for (int b = 0; b < t.Length; b += 34)
            for (int i = 2; i < 34; i++)
            {
                Assert.NotEqual(0x80, t[b + i]);
                if (t[b + i] == 0x81) lows++;
            }
        Assert.True(lows > 0, "-127 should still occur");
        Assert.Equal(0x8181818181818181UL, RandomBlocks.No128(0x8080808080808080UL));
        Assert.Equal(0x017F8100FF818281UL, RandomBlocks.No128(0x017F8000FF808280UL));
    }

    [Fact]
    public unsafe void Q4_KScalePackingIsTheInverseOfGgmlUnpacking()
    {
        var rng = new Random(3);
        byte* sc = stackalloc byte[8], m = stackalloc byte[8], packed = stackalloc byte[12];
        for (int trial = 0; trial < 200; trial++)
        {
            for (int j = 0; j < 8; j++) { sc[j] = (byte)rng.Next(64); m[j] = (byte)rng.Next(64); }
            RandomBlocks.PackScaleMin(sc, m, packed);
            for (int j = 0; j < 8; j++)
            {
                Q4_K.GetScaleMin(j, packed, out int s, out int mm);
                Assert.Equal(sc[j], s);
                Assert.Equal(m[j], mm);
            }
        }
    }

    [Fact]
    public void PresetsHaveTheRealParameterCountsAndSizes()
    {
        // Llama-2-7B: 6,738,415,616 parameters; TinyLlama-1.1B: 1,100,048,384; Llama-2-70B: 68,976,648,192.
        Assert.Equal(6_738_415_616L, ModelShape.Preset("7b")!.ParameterCount);
        Assert.Equal(1_100_048_384L, ModelShape.Preset("1.1b")!.ParameterCount);
        Assert.Equal(68_976_648_192L, ModelShape.Preset("70b")!.ParameterCount);

        // llama.cpp's 7B Q4_0: 3.56 GiB of tensors (Q4_0 everywhere but a Q6_K output).
        var plan = ModelGenerator.Plan(new ModelGenOptions { Shape = ModelShape.Preset("7b")!, Format = WeightFormat.Q4_0 });
        long bytes = 0, elements = 0;
        foreach (var t in plan) { bytes += t.Bytes; elements += t.Dims[0] * (t.Dims.Length > 1 ? t.Dims[1] : 1); }
        Assert.Equal(6_738_415_616L, elements);
        long q4 = (6_738_415_616L - 4096L * 32000 - 4096 * 65) / 32 * 18, q6 = 4096L * 32000 / 256 * 210, norms = 4096L * 65 * 4;
        Assert.Equal(q4 + q6 + norms, bytes);
        Assert.Equal(3.56, Math.Round(bytes / (double)(1L << 30), 2));
        Assert.Equal(291, plan.Count);
    }

    [Fact]
    public void Llama2VocabIsCopiedForVocab32000()
    {
        string path = Generate(WeightFormat.Q4_0, shape: Tiny with { Vocab = 32000, Layers = 1 });
        using var f = GgufFile.Open(path);
        using var src = GgufFile.Open(TestPaths.Data("ggml-vocab-llama-spm.gguf"));
        Assert.Equal(src.GetArray<string>("tokenizer.ggml.tokens"), f.GetArray<string>("tokenizer.ggml.tokens"));
        Assert.Equal(src.GetArray<float>("tokenizer.ggml.scores"), f.GetArray<float>("tokenizer.ggml.scores"));
        var a = Tokenizer.FromGguf(src);
        var b = Tokenizer.FromGguf(f);
        const string text = "Hello world, this is a test of the random model.";
        Assert.Equal(a.Encode(text, addBos: true), b.Encode(text, addBos: true));
        Assert.Equal(text, b.Decode(b.Encode(text, addBos: false)));
    }

    [Fact]
    public void SyntheticVocabTokenizesAndRuns()
    {
        string path = Generate(WeightFormat.Q4_K);
        using (var f = GgufFile.Open(path))
        {
            var tok = Tokenizer.FromGguf(f);
            const string text = "hello world: 42 ümlaut";
            int[] ids = tok.Encode(text, addBos: true);
            Assert.Equal(1, ids[0]);
            Assert.Equal(text, tok.Decode(ids.AsSpan(1)));
        }
        var r = CliRunner.InProcess("run", "-m", path, "-p", "Hello", "-n", "8", "--temp", "0", "--ignore-eos");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("generation: 8 tokens", r.Stderr);
    }

    private static (int Rc, string Err) Cli(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = ModelGenCli.Execute(args, o, e);
        return (rc, e.ToString());
    }

    [Theory]
    [InlineData(2, "unknown type 'iq2_xxs'", "--type", "iq2_xxs")]
    [InlineData(2, "unknown shape '13b'", "--shape", "13b")]
    [InlineData(2, "unknown option '--bogus'", "--bogus")]
    [InlineData(2, "option '--dim' needs a value", "--dim")]
    [InlineData(2, "option '--dim' expects an integer, got 'big'", "--dim", "big")]
    [InlineData(2, "option '--layers' must be between 1 and", "--layers", "0")]
    [InlineData(2, "invalid shape: 3 heads do not divide dim 256", "--heads", "3")]
    [InlineData(2, "invalid shape: 3 kv heads do not divide 4 heads", "--kv-heads", "3")]
    [InlineData(2, "option '--seed' expects an unsigned integer, got '-1'", "--seed", "-1")]
    [InlineData(2, "unknown output type 'q4_k_m'", "--output-type", "q4_k_m")]
    [InlineData(2, "unknown output type 'q5_k_m'", "--output-type", "q5_k_m")]
    [InlineData(2, "give the file to write with -o FILE")]
    [InlineData(1, "tensor 'token_embd.weight' has rows of 80, not a multiple of the Q6_K block size 256", "--type", "q6_k", "--dim", "80", "--heads", "2")]
    [InlineData(1, "tensor 'token_embd.weight' has rows of 48, not a multiple of the Q4_0 block size 32", "--dim", "48", "--heads", "2")]
    [InlineData(1, "a synthetic vocab needs at least 259 tokens", "--vocab", "100")]
    [InlineData(1, "has 32000 tokens but the model's vocab is 512", "--tokenizer", "tests/data/ggml-vocab-llama-spm.gguf")]
    [InlineData(1, "/nonexistent/tok.gguf: tokenizer file not found", "--tokenizer", "/nonexistent/tok.gguf")]
    public void BadRequestsFailWithOneLine(int rc, string message, params string[] args)
    {
        string outPath = TestPaths.TempFile("bad.gguf");
        var full = new List<string>();
        if (message != "give the file to write with -o FILE") full.AddRange(["-o", outPath]);
        full.AddRange(args.Select(a => a.StartsWith("tests/", StringComparison.Ordinal) ? Path.Combine(TestPaths.RepoRoot, a) : a));
        var (code, err) = Cli([.. full]);
        Assert.Equal(rc, code);
        Assert.Contains(message, err);
        Assert.DoesNotContain('\n', err.TrimEnd('\n'));
        Assert.False(File.Exists(outPath));
        Assert.False(File.Exists(outPath + ".partial"));
    }

    [Fact]
    public void UnwritableDirectoryLeavesNothing()
    {
        var (code, err) = Cli("-q", "-o", "/nonexistent-dir/x.gguf");
        Assert.Equal(1, code);
        Assert.Contains("/nonexistent-dir/x.gguf.partial", err);
        Assert.DoesNotContain('\n', err.TrimEnd('\n'));
    }
}
