using System.Text.Json;
using EdgeLlm.Generation;
using EdgeLlm.Model;
using EdgeLlm.Tests.Cli;
using EdgeLlm.Tests.Model;

namespace EdgeLlm.Tests.Slots;

/// <summary>
/// Embeddings (mean of the final-normed last hidden states, L2-normalized) against the float64 oracle's hidden
/// states pooled in double, for the library, the `embed` command and (in <see cref="ParallelServerTests"/>) the server.
/// </summary>
public class EmbeddingTests
{
    internal const double Tolerance = 2e-4;

    internal static string PathOf(string name) => name == "stories260K" ? TestPaths.Stories260K : TestPaths.Data(Path.Combine("models-visible", name));

    /// <summary>The oracle's embedding: every token run in double, hidden states after the final norm pooled and normalized.</summary>
    internal static double[] Reference(string path, ReadOnlySpan<int> tokens, PoolingKind pooling = PoolingKind.Mean)
    {
        var r = new ReferenceTransformer(path, quantizeActivations: true);
        double[]? sum = null;
        for (int t = 0; t < tokens.Length; t++)
        {
            r.Forward(tokens[t]);
            double[] h = r.LastHidden;
            sum ??= new double[h.Length];
            bool take = pooling switch { PoolingKind.Cls => t == 0, PoolingKind.Last => t == tokens.Length - 1, _ => true };
            if (take) for (int i = 0; i < h.Length; i++) sum[i] += h[i] / tokens.Length;
        }
        double[] m = sum!;
        double norm = Math.Sqrt(m.Sum(x => x * x));
        return m.Select(x => x / norm).ToArray();
    }

    internal static void Close(double[] expected, IReadOnlyList<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Count);
        double worst = 0, len = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
            len += (double)actual[i] * actual[i];
        }
        Assert.True(worst <= Tolerance, $"{what}: max |diff| {worst:E3} > {Tolerance}");
        Assert.InRange(Math.Sqrt(len), 1 - 1e-5, 1 + 1e-5);
    }

    [Theory]
    [InlineData("stories260K", "Once upon a time, there was a little cat.")]
    [InlineData("llama.gguf", "hello world")]
    [InlineData("qwen2.gguf", "a b c d e f")]
    [InlineData("gemma2.gguf", "the sliding window is twelve positions long, so this text is longer than that")]
    public void Mean_pooling_matches_the_float64_oracle(string name, string text)
    {
        string path = PathOf(name);
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 2, ContextSize = 128, MaxBatch = 8 }); // several batches
        var tok = Tokenizer.FromGguf(model.File);
        var e = new Embedder(model, tok);
        Assert.Equal(PoolingKind.Mean, e.Pooling);
        int[] tokens = tok.Encode(text, addBos: tok.Vocab.AddBos);
        Assert.True(tokens.Length > 1);
        float[] got = e.Embed(text, out int count);
        Assert.Equal(tokens.Length, count);
        Close(Reference(path, tokens), got, name);
        // The embedder's cache is its own: the model's cache is untouched, and a second call gives the same vector.
        Assert.Equal(0, model.Cache.Filled);
        Assert.Equal(got, e.Embed(tokens));
    }

    [Theory]
    [InlineData(2L, PoolingKind.Cls)]
    [InlineData(3L, PoolingKind.Last)]
    [InlineData(1L, PoolingKind.Mean)]
    public void The_pooling_key_chooses_the_pooling(long value, PoolingKind kind)
    {
        string path = WithKey(PathOf("llama.gguf"), "llama.pooling_type", value);
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 1, ContextSize = 64 });
        var tok = Tokenizer.FromGguf(model.File);
        var e = new Embedder(model, tok);
        Assert.Equal(kind, e.Pooling);
        int[] tokens = tok.Encode("pooling test text", addBos: tok.Vocab.AddBos);
        Close(Reference(path, tokens, kind), e.Embed(tokens), kind.ToString());
    }

    [Fact]
    public void An_unknown_pooling_type_is_refused_by_name()
    {
        string path = WithKey(PathOf("llama.gguf"), "llama.pooling_type", 4);
        using var model = LlamaModel.Load(path, new BackendOptions { Threads = 1, ContextSize = 64 });
        var x = Assert.Throws<ModelFormatException>(() => new Embedder(model, Tokenizer.FromGguf(model.File)));
        Assert.Contains("llama.pooling_type", x.Message);
        Assert.Contains(path, x.Message);
    }

    [Fact]
    public void Embed_command_prints_the_vector_as_a_json_array()
    {
        const string text = "The little dog ran home.";
        var r = CliRunner.InProcess("embed", "-m", TestPaths.Stories260K, "--device", "cpu", "-t", "1", "-ctk", "f32", "-ctv", "f32", "-p", text); // f32 rows, as the float64 reference
        Assert.True(r.ExitCode == 0, r.Stderr);
        float[] v = JsonSerializer.Deserialize<float[]>(r.Stdout)!;
        using var f = EdgeLlm.Gguf.GgufFile.Open(TestPaths.Stories260K);
        var tok = Tokenizer.FromGguf(f);
        Close(Reference(TestPaths.Stories260K, tok.Encode(text, addBos: tok.Vocab.AddBos)), v, "embed command");

        var empty = CliRunner.InProcess("embed", "-m", TestPaths.Stories260K, "-p", "");
        Assert.NotEqual(0, empty.ExitCode);
        Assert.Contains("empty", empty.Stderr);
    }

    /// <summary>A copy of a GGUF with one more (or a replaced) unsigned integer metadata key.</summary>
    internal static string WithKey(string source, string key, long value)
    {
        string path = TestPaths.TempFile(Path.GetFileName(source));
        using var f = EdgeLlm.Gguf.GgufFile.Open(source);
        var w = new EdgeLlm.Gguf.GgufWriter(f.Alignment).CopyMetadataFrom(f).Set(key, (uint)value);
        foreach (var t in f.Tensors)
        {
            var info = t;
            w.AddTensor(t.Name, t.Type, t.Dims, s => s.Write(f.GetTensor(info).Span));
        }
        w.Write(path);
        return path;
    }
}
