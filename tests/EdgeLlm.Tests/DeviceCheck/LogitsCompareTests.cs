using System.Globalization;
using System.Text.Json;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.DeviceCheck;

/// <summary>
/// `edgellm logits --compare FILE` (what the GPU check uses to judge CUDA against CPU logits computed beforehand) and
/// `bench -d` (decode at depth). The expected numbers are recomputed here from the two files, not taken from the
/// command.
/// </summary>
public sealed class LogitsCompareTests
{
    private const string Tokens = "1,403,407,261,300,20,50,99,120,340,22,415";

    private static (int[] Ids, float[] Logits)[] Parse(string jsonl) =>
        jsonl.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line =>
        {
            using var d = JsonDocument.Parse(line);
            var top = d.RootElement.GetProperty("top").EnumerateArray().ToArray();
            return (top.Select(p => p[0].GetInt32()).ToArray(), top.Select(p => p[1].GetSingle()).ToArray());
        }).ToArray();

    private static Dictionary<string, string> Fields(string line)
    {
        Assert.StartsWith("compare: ", line);
        return line["compare: ".Length..].Trim().Split(' ').Select(f => f.Split('=')).ToDictionary(f => f[0], f => f[1]);
    }

    [Fact]
    public void CompareReportsTheNmseAndLargestDifferenceOverTheReferenceIds()
    {
        // The whole vocabulary (512) at every position, batched: what the comparison reads from "this run".
        var full = CliRunner.InProcess("logits", "--tokens", Tokens, "--top", "512");
        Assert.Equal(0, full.ExitCode);
        var all = Parse(full.Stdout);

        // A reference: the top 16 of each position, with one logit moved by +0.75 (position 5, its 3rd id).
        var refLines = CliRunner.InProcess("logits", "--tokens", Tokens, "--top", "16").Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var reference = Parse(string.Join('\n', refLines));
        reference[5].Logits[2] += 0.75f;
        string path = TestPaths.TempFile("ref.jsonl");
        string pairs = string.Join(',', reference[5].Ids.Zip(reference[5].Logits, (i, v) => $"[{i},{v.ToString("R", CultureInfo.InvariantCulture)}]"));
        refLines[5] = refLines[5][..refLines[5].IndexOf("\"top\":", StringComparison.Ordinal)] + "\"top\":[" + pairs + "]}";
        File.WriteAllLines(path, refLines);

        // Expected, from the two files: per position sum (run - ref)^2 / sum ref^2 over the reference's ids.
        double worst = 0; int worstPos = -1; double maxAbs = 0; int maxPos = -1, maxId = -1;
        for (int p = 0; p < reference.Length; p++)
        {
            var row = all[p].Ids.Zip(all[p].Logits).ToDictionary(x => x.First, x => (double)x.Second);
            double num = 0, den = 0;
            for (int i = 0; i < reference[p].Ids.Length; i++)
            {
                double d = row[reference[p].Ids[i]] - reference[p].Logits[i];
                num += d * d; den += (double)reference[p].Logits[i] * reference[p].Logits[i];
                if (Math.Abs(d) > maxAbs) { maxAbs = Math.Abs(d); maxPos = p; maxId = reference[p].Ids[i]; }
            }
            if (num / den > worst) { worst = num / den; worstPos = p; }
        }

        foreach (string batch in new[] { "1", "5" })
        {
            var r = CliRunner.InProcess("logits", "--compare", path, "-b", batch);
            Assert.True(r.ExitCode == 0, r.Stderr);
            var f = Fields(r.Stdout.Trim());
            Assert.Equal("12", f["positions"]);
            Assert.Equal("12", f["top1_agree"]);
            Assert.Equal(5, worstPos);
            Assert.Equal(worstPos.ToString(CultureInfo.InvariantCulture), f["worst_pos"]);
            Assert.Equal(worst, double.Parse(f["worst_nmse"], CultureInfo.InvariantCulture), worst * 1e-2);
            Assert.Equal(0.75, double.Parse(f["max_abs_diff"], CultureInfo.InvariantCulture), 1e-3);
            Assert.Equal(maxPos.ToString(CultureInfo.InvariantCulture), f["max_abs_pos"]);
            Assert.Equal(maxId.ToString(CultureInfo.InvariantCulture), f["max_abs_id"]);
        }
    }

    [Fact]
    public void DecodeAndPrefillAgreeOnTheCpu()
    {
        string path = TestPaths.TempFile("ref.jsonl");
        File.WriteAllText(path, CliRunner.InProcess("logits", "--tokens", Tokens, "--top", "64").Stdout);
        var f = Fields(CliRunner.InProcess("logits", "--compare", path, "-b", "1").Stdout.Trim());
        Assert.Equal("12", f["top1_agree"]);
        Assert.True(double.Parse(f["worst_nmse"], CultureInfo.InvariantCulture) < 1e-8, f["worst_nmse"]);
    }

    [Theory]
    [InlineData("{\"pos\":0,\"token\":1,\"top\":[[403,1.5]]}\n{\"pos\":2,\"token\":5,\"top\":[[403,1.5]]}\n", ":2: \"pos\" is 2, expected 1")]
    [InlineData("{\"pos\":0,\"token\":1,\"top\":[[99999,1.5]]}\n", "token id 99999, outside the vocabulary of 512")]
    [InlineData("{\"pos\":0,\"token\":1,\"top\":[[-3,1.5]]}\n", ":1: top: token id -3 is negative")]
    [InlineData("{\"pos\":0,\"token\":1,\"top\":[]}\n", ":1: \"top\" is missing or empty")]
    [InlineData("{\"pos\":0,\"token\":1,\"top\":[[4,1.5]\n", ":1: not a JSON object")]
    [InlineData("\n\n", "no logits lines")]
    [InlineData("{\"pos\":0,\"token\":9999999,\"top\":[[4,1.5]]}\n", "token id 9999999 is outside the vocabulary")]
    public void HostileReferenceFilesAreOneLineErrors(string content, string expected)
    {
        string path = TestPaths.TempFile("bad.jsonl");
        File.WriteAllText(path, content);
        var r = CliRunner.InProcess("logits", "--compare", path);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains(expected, r.Stderr);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void CompareRefusesOtherTokensAndAMissingFile()
    {
        string path = TestPaths.TempFile("ref.jsonl");
        File.WriteAllText(path, CliRunner.InProcess("logits", "--tokens", "1,2,3", "--top", "4").Stdout);
        var r = CliRunner.InProcess("logits", "--compare", path, "--tokens", "1,2,4");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("differ from the 3 tokens", r.Stderr);
        r = CliRunner.InProcess("logits", "--compare", path + ".missing");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("ref.jsonl.missing: no such file", r.Stderr);
    }

    [Fact]
    public void BenchAtDepthStartsFromAFilledCache()
    {
        var r = CliRunner.InProcess("bench", "-p", "8", "-n", "4", "-d", "24", "-r", "1", "--bw-mib", "0", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Matches(@"\|\s+pp8 @ d24\s+\|", r.Stdout);
        Assert.Matches(@"\|\s+tg4 @ d24\s+\|", r.Stdout);
        using var j = JsonDocument.Parse(r.Stdout.Trim().Split('\n')[^1]);
        Assert.Equal(24, j.RootElement.GetProperty("n_depth").GetInt32());
        Assert.Equal(24 + 8, j.RootElement.GetProperty("ctx").GetInt32());
        Assert.True(j.RootElement.GetProperty("logits_finite").GetBoolean());
        Assert.True(j.RootElement.GetProperty("tg_tok_s").GetDouble() > 0);

        var bad = CliRunner.InProcess("bench", "-p", "8", "-n", "4", "-d", "99999999");
        Assert.Equal(2, bad.ExitCode);
    }
}
