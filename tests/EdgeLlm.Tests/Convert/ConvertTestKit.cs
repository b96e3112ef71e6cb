using System.Text.Json;
using EdgeLlm.Convert;
using EdgeLlm.Convert.Sources;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Convert;

/// <summary>Shared pieces of the converter tests: paths, running the CLI in-process, greedy decoding, fake sources.</summary>
internal static class ConvertTestKit
{
    public static string HfDir => TestPaths.Data("stories260K-hf");
    public static string Llama2cBin => TestPaths.Data(Path.Combine("stories260K-llama2c", "stories260K.bin"));
    public static string Tok512 => TestPaths.Data(Path.Combine("stories260K-llama2c", "tok512.bin"));

    public sealed record Run(int ExitCode, string Stdout, string Stderr);

    public static Run ConvertCliRun(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = ConvertCli.Execute(args, o, e, progressBar: false, CancellationToken.None);
        return new Run(rc, o.ToString(), e.ToString());
    }

    /// <summary>Converts with the CLI and asserts success; returns the output path.</summary>
    public static string ConvertWithCli(string input, string type, params string[] extra)
    {
        string output = TestPaths.TempFile($"out-{type}.gguf");
        var r = ConvertCliRun([input, "-o", output, "--type", type, "-t", "2", .. extra]);
        Assert.True(r.ExitCode == 0, $"convert failed ({r.ExitCode}): {r.Stderr}");
        Assert.True(File.Exists(output));
        Assert.False(File.Exists(output + ".partial"));
        return output;
    }

    public static int[] ReferenceGreedy()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(TestPaths.Data("stories260K.reference_greedy.json")));
        return json.RootElement.GetProperty("generated_token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
    }

    /// <summary>Greedy argmax from BOS (1) for n positions.</summary>
    public static int[] Greedy(string model, int n)
    {
        using var m = LlamaModel.Load(model, new BackendOptions { Threads = 2, ContextSize = n });
        var logits = new float[m.VocabSize];
        var got = new int[n];
        int token = 1;
        for (int pos = 0; pos < n; pos++)
        {
            m.Forward(token, pos, logits);
            token = ArgMax(logits);
            got[pos] = token;
        }
        return got;
    }

    /// <summary>All logits when the model is fed BOS then the given tokens (teacher forcing), one row per position.</summary>
    public static float[][] TeacherForcedLogits(string model, int[] tokens)
    {
        using var m = LlamaModel.Load(model, new BackendOptions { Threads = 2, ContextSize = tokens.Length + 1 });
        var rows = new float[tokens.Length][];
        int token = 1;
        for (int pos = 0; pos < tokens.Length; pos++)
        {
            rows[pos] = new float[m.VocabSize];
            m.Forward(token, pos, rows[pos]);
            token = tokens[pos];
        }
        return rows;
    }

    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    public static byte[] TensorBytes(GgufFile f, string name) => f.GetTensor(name)!.Value.Span.ToArray();

    /// <summary>A checkpoint held in memory, for driving <see cref="Converter"/> directly.</summary>
    public sealed class FakeSource(LlamaParams p, TokenizerData tok, List<SourceTensor> tensors) : CheckpointSource
    {
        public override string Format => "test";
        public override LlamaParams Params => p;
        public override TokenizerData Tokenizer => tok;
        public override IReadOnlyList<SourceTensor> Tensors => tensors;
    }

    /// <summary>A tensor of given values; optionally throws when rows at or past <see cref="FailAtRow"/> are read.</summary>
    public sealed class FakeTensor : SourceTensor
    {
        public required float[] Data { get; init; }
        public long FailAtRow { get; init; } = long.MaxValue;

        public override void ReadRows(long row, int count, Span<float> dst)
        {
            if (row + count > FailAtRow) throw new IOException($"{Name}: simulated read error at row {FailAtRow}");
            Data.AsSpan((int)(row * RowLength), (int)(count * RowLength)).CopyTo(dst);
        }
    }

    public static TokenizerData TinyVocab(int n) => new()
    {
        Model = "llama",
        Tokens = Enumerable.Range(0, n).Select(i => i switch { 0 => "<unk>", 1 => "<s>", 2 => "</s>", _ => $"t{i}" }).ToArray(),
        Scores = new float[n],
        TokenTypes = Enumerable.Range(0, n).Select(i => i == 0 ? 2 : i < 3 ? 3 : 1).ToArray(),
        Unknown = 0, Bos = 1, Eos = 2,
    };

    /// <summary>A complete random llama checkpoint (all tensors present) of the given shape.</summary>
    public static FakeSource RandomSource(LlamaParams p, int seed = 7, string? failTensor = null)
    {
        var rng = new Random(seed);
        var tensors = new List<SourceTensor>();
        void Add(string name, params long[] shape)
        {
            long n = 1;
            foreach (long d in shape) n *= d;
            var data = new float[n];
            for (int i = 0; i < n; i++) data[i] = (float)(rng.NextDouble() * 2 - 1) * (name.Contains("norm") ? 1f : 0.1f);
            tensors.Add(new FakeTensor { Name = name, Shape = shape, DType = SourceDType.F32, Data = data, FailAtRow = name == failTensor ? shape[0] / 2 : long.MaxValue });
        }
        var shape = p.Shape;
        void AddOf(string name)
        {
            var dims = shape.Dims(name)!;
            Array.Reverse(dims); // PyTorch order
            Add(name, dims);
        }
        AddOf(TensorNames.TokenEmbd);
        AddOf(TensorNames.OutputNorm);
        AddOf(TensorNames.Output);
        for (int i = 0; i < shape.Layers; i++)
            foreach (string t in shape.Family.BlockTensors) AddOf(TensorNames.Block(i, t));
        return new FakeSource(p, TinyVocab(shape.Vocab), tensors);
    }

    public static LlamaParams SmallParams(int layers = 2, int dim = 64, int ffn = 96) => new()
    {
        Shape = new ModelShape { Dim = dim, Layers = layers, Heads = 4, KvHeads = 2, Ffn = ffn, Vocab = 40, RmsEps = 1e-5f, Context = 64 },
        Name = "random",
    };
}
