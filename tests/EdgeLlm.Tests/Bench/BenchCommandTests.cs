using System.Text.Json;
using EdgeLlm.Cli;
using EdgeLlm.Diagnostics;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.ModelGen;
using EdgeLlm.Tests.Cli;
using EdgeLlm.Tests.Model;

namespace EdgeLlm.Tests.Bench;

/// <summary>`edgellm bench`: the JSON contract, the weight-traffic arithmetic, the statistics, and its errors. No timing assertions.</summary>
public class BenchCommandTests
{
    /// <summary>Weight bytes per decoded token computed from the tensor table alone: everything but the embedding table, plus one of its rows (tied: the whole table too).</summary>
    private static long ExpectedBytesPerToken(string path)
    {
        using var f = GgufFile.Open(path);
        long bytes = 0;
        var embd = f.FindTensor("token_embd.weight")!;
        foreach (var t in f.Tensors)
            if (t.Name is not ("token_embd.weight" or "rope_freqs.weight")) bytes += t.ByteSize;
        if (f.FindTensor("output.weight") is null) bytes += embd.ByteSize;
        return bytes + embd.ByteSize / embd.Dims[1];
    }

    private static JsonElement LastLineJson(string stdout)
    {
        string[] lines = stdout.TrimEnd('\n').Split('\n');
        return JsonDocument.Parse(lines[^1]).RootElement;
    }

    [Fact]
    public void JsonLastLineHasEveryFieldAndTheWeightTraffic()
    {
        var r = CliRunner.InProcess("bench", "-m", TestPaths.Stories260K, "-p", "8", "-n", "4", "-r", "2", "-t", "1", "--bw-mib", "8", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("", r.Stderr);
        var j = LastLineJson(r.Stdout);

        foreach (string key in new[] { "pp_tok_s", "tg_tok_s", "tg_gb_s", "mem_bw_gb_s", "tg_bw_fraction", "pp_tok_s_min", "pp_tok_s_max", "tg_tok_s_min", "tg_tok_s_max" })
            Assert.True(j.GetProperty(key).GetDouble() > 0, $"{key} = {j.GetProperty(key)}");
        Assert.Equal(1, j.GetProperty("threads").GetInt32());
        Assert.Equal(8, j.GetProperty("p").GetInt32());
        Assert.Equal(4, j.GetProperty("n").GetInt32());
        Assert.Equal(2, j.GetProperty("reps").GetInt32());
        Assert.Equal(8, j.GetProperty("ctx").GetInt32()); // depth 0 + max(p, n): pp and tg each start at the depth
        Assert.Equal(8, j.GetProperty("batch").GetInt32());
        Assert.Equal("F32", j.GetProperty("type").GetString());
        Assert.Equal(1_171_200, j.GetProperty("size").GetInt64());
        Assert.Equal(292_800, j.GetProperty("params").GetInt64());
        Assert.Equal(8L << 20, j.GetProperty("mem_bw_bytes").GetInt64());
        Assert.True(j.GetProperty("logits_finite").GetBoolean());

        long bytesPerToken = j.GetProperty("bytes_per_token").GetInt64();
        Assert.Equal(ExpectedBytesPerToken(TestPaths.Stories260K), bytesPerToken);
        // stories260K by hand (dim 64, 4 of 8 heads for k/v so kv dim 32, ffn 172): 5 layers x (q, o 64x64; k, v 64x32;
        // gate, up, down 64x172; two norms) floats, output 64x512, final norm, one embedding row.
        Assert.Equal(4L * (5 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 172 + 2 * 64) + 64 * 512 + 64 + 64), bytesPerToken);

        double tg = j.GetProperty("tg_tok_s").GetDouble();
        Assert.Equal(bytesPerToken * tg / 1e9, j.GetProperty("tg_gb_s").GetDouble(), 9);
        Assert.Equal(j.GetProperty("tg_gb_s").GetDouble() / j.GetProperty("mem_bw_gb_s").GetDouble(), j.GetProperty("tg_bw_fraction").GetDouble(), 9);
        Assert.InRange(tg, j.GetProperty("tg_tok_s_min").GetDouble(), j.GetProperty("tg_tok_s_max").GetDouble());

        Assert.Matches(@"\|\s+pp8\s+\|", r.Stdout);
        Assert.Matches(@"\|\s+tg4\s+\|", r.Stdout);
        Assert.Contains("weights read per generated token: 1,040,384 bytes", r.Stdout);
    }

    [Fact]
    public void WithoutJsonTheTableIsAllThereIs()
    {
        var r = CliRunner.InProcess("bench", "-p", "4", "-n", "0", "-r", "1", "-t", "1", "--bw-mib", "0");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.DoesNotContain("{", r.Stdout);
        Assert.Matches(@"\|\s+pp4\s+\|", r.Stdout);
        Assert.DoesNotMatch(@"\|\s+tg", r.Stdout);
        Assert.DoesNotContain("memory read bandwidth", r.Stdout);
    }

    [Fact]
    public void SkippedPhasesReportZero()
    {
        var r = CliRunner.InProcess("bench", "-p", "0", "-n", "3", "-r", "1", "-t", "1", "--bw-mib", "0", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = LastLineJson(r.Stdout);
        Assert.Equal(0, j.GetProperty("pp_tok_s").GetDouble());
        Assert.True(j.GetProperty("tg_tok_s").GetDouble() > 0);
        Assert.Equal(0, j.GetProperty("mem_bw_gb_s").GetDouble());
        Assert.Equal(0, j.GetProperty("tg_bw_fraction").GetDouble());
        Assert.Equal(3, j.GetProperty("ctx").GetInt32());
    }

    [Theory]
    [InlineData(false, GgmlType.Q4_0)]
    [InlineData(true, GgmlType.Q8_0)]
    [InlineData(true, GgmlType.Q6_K)]
    public void BytesPerTokenMatchesTheTensorTable(bool tied, GgmlType type)
    {
        string path = RandomModel.Write(new RandomModelSpec { Dim = 256, Ffn = 512, Heads = 4, KvHeads = 2, Tied = tied, WeightType = type, RopeFreqs = true });
        using var f = GgufFile.Open(path);
        var c = LlamaConfig.FromGguf(f);
        long got = WeightTraffic.BytesPerToken(new LlamaWeights(f, c));
        Assert.Equal(ExpectedBytesPerToken(path), got);
        long row = GgmlTypes.RowBytes(type, 256);
        // By hand: per layer q, o (256 rows), k, v (128 rows), gate, up (512 rows) of a 256-wide row; down 256 rows of 512; two norms.
        long perLayer = (256 + 256 + 128 + 128 + 512 + 512) * row + 256 * GgmlTypes.RowBytes(type, 512) + 2 * 256 * 4;
        long output = 300 * row; // vocab 300: the output matrix, or the tied embedding table
        Assert.Equal(2 * perLayer + output + 256 * 4 + row, got);
        var (bytes, _) = WeightTraffic.FileTotals(f);
        long rope = f.FindTensor("rope_freqs.weight")!.ByteSize;
        Assert.Equal(got - row + (tied ? 0 : 300 * row) + rope, bytes);
    }

    [Fact]
    public void DominantTypeIgnoresTheQ6_KOutputOfAQ4_0File()
    {
        string path = TestPaths.TempFile("q40.gguf");
        ModelGenerator.Write(new ModelGenOptions { Shape = ModelShape.Preset("tiny")!, Format = WeightFormat.Q4_0 }, path);
        using var f = GgufFile.Open(path);
        Assert.Equal(GgmlType.Q6_K, f.FindTensor("output.weight")!.Type);
        Assert.Equal(GgmlType.Q4_0, WeightTraffic.DominantType(f));
    }

    [Fact]
    public void StatsAreMedianExtremesAndSampleDeviation()
    {
        var odd = BenchCommand.Stats.Of([3, 1, 2]);
        Assert.Equal(new BenchCommand.Stats(2, 1, 3, 1), odd);
        var even = BenchCommand.Stats.Of([10, 4, 2, 8]);
        Assert.Equal(6, even.Median);
        Assert.Equal(2, even.Min);
        Assert.Equal(10, even.Max);
        Assert.Equal(Math.Sqrt(40.0 / 3), even.StdDev, 12);
        Assert.Equal(new BenchCommand.Stats(5, 5, 5, 0), BenchCommand.Stats.Of([5]));
    }

    [Fact]
    public unsafe void BandwidthProbeSumsEveryByteAndReportsPositiveRates()
    {
        var data = new ulong[4096];
        var rng = new Random(9);
        ulong expected = 0;
        for (int i = 0; i < data.Length; i++) { data[i] = (ulong)rng.NextInt64(); expected += data[i]; }
        fixed (ulong* p = data) Assert.Equal(expected, MemoryBandwidth.Sum((byte*)p, data.Length * 8));

        var r = MemoryBandwidth.Measure(2, 4L << 20, 3);
        Assert.Equal(4L << 20, r.Bytes);
        Assert.Equal(2, r.Threads);
        Assert.Equal(3, r.Passes);
        Assert.True(r.BestGBps > 0 && r.MedianGBps > 0 && r.BestGBps >= r.MedianGBps);
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryBandwidth.Measure(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryBandwidth.Measure(1, 1000));
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryBandwidth.Measure(1, 1L << 20, 0));
    }

    [Theory]
    [InlineData(2, "option '-p' must be between 0 and", "-p", "-1")]
    [InlineData(2, "option '-n' expects an integer, got 'many'", "-n", "many")]
    [InlineData(2, "option '-r' must be between 1 and 1000, got 0", "-r", "0")]
    [InlineData(2, "nothing to measure: -p and -n are both 0", "-p", "0", "-n", "0")]
    [InlineData(2, "unknown option '--bogus'", "--bogus")]
    [InlineData(2, "option '--bw-mib' must be between 0 and", "--bw-mib", "-5")]
    [InlineData(2, "unexpected argument 'extra'", "stories260K", "extra")]   // the first argument is the model (bench MODEL)
    [InlineData(1, "extra: model file not found", "extra")]
    [InlineData(1, "/nonexistent/m.gguf: model file not found", "-m", "/nonexistent/m.gguf")]
    public void BadFlagsGiveOneLineErrors(int rc, string message, params string[] args)
    {
        var r = CliRunner.InProcess(["bench", .. args]);
        Assert.Equal(rc, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Contains(message, r.Stderr);
        Assert.DoesNotContain('\n', r.Stderr.TrimEnd('\n'));
    }

    [Fact]
    public void PublishedBinaryPrintsJson()
    {
        var r = CliRunner.Published("bench", "-p", "8", "-n", "4", "-r", "1", "-t", "2", "--bw-mib", "16", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = LastLineJson(r.Stdout);
        Assert.Equal(2, j.GetProperty("threads").GetInt32());
        Assert.True(j.GetProperty("tg_tok_s").GetDouble() > 0);
        Assert.True(j.GetProperty("mem_bw_gb_s").GetDouble() > 0);
        Assert.Equal(ExpectedBytesPerToken(TestPaths.Stories260K), j.GetProperty("bytes_per_token").GetInt64());
    }
}
