using System.Globalization;
using System.Text.Json;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Model;

namespace EdgeLlm.Tests.Cli;

/// <summary>The subcommands end to end, checked against the stories260K reference and the float64 reference model.</summary>
public class CommandTests
{
    private static readonly JsonElement Reference =
        JsonDocument.Parse(File.ReadAllText(TestPaths.Data("stories260K.reference_greedy.json"))).RootElement;

    private static int[] ReferenceIds(int n) =>
        Reference.GetProperty("generated_token_ids").EnumerateArray().Take(n).Select(e => e.GetInt32()).ToArray();

    /// <summary>The text `run` must print for the first n reference tokens (decoded by our tokenizer, leading space stripped after BOS).</summary>
    internal static string ReferenceText(int n)
    {
        using var f = GgufFile.Open(TestPaths.Stories260K);
        var tok = Tokenizer.FromGguf(f);
        var dec = tok.CreateDecoder(stripLeadingSpace: true);
        var sb = new System.Text.StringBuilder();
        foreach (int id in ReferenceIds(n)) sb.Append(dec.Append(id));
        sb.Append(dec.Flush());
        string text = sb.ToString();
        // Independent check of the decoding itself: the reference file's own text starts with it.
        Assert.StartsWith(text, Reference.GetProperty("generated_text").GetString());
        return text;
    }

    [Fact]
    public void RunGreedyPrintsTheReferenceStory()
    {
        var r = CliRunner.InProcess("run", "-n", "64", "--temp", "0");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(ReferenceText(64) + "\n", r.Stdout);
        Assert.Contains("generation: 64 tokens", r.Stderr);
    }

    [Fact]
    public void PublishedBinaryRunsWithNoDotnetInTheEnvironment()
    {
        var r = CliRunner.Published("run", "-n", "32", "--temp", "0");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(ReferenceText(32) + "\n", r.Stdout);
        Assert.Matches(@"generation: 32 tokens in [0-9.]+ ms \([0-9.]+ tok/s\)", r.Stderr);
        Assert.False(File.Exists(Path.Combine(Path.GetDirectoryName(CliRunner.PublishedBinary)!, "edgellm.dll")));
    }

    [Fact]
    public void SameSeedSameTextAtAnyThreadCount()
    {
        string[] common = ["run", "-p", "Once upon a time", "-n", "40", "--seed", "1234"];
        var t1 = CliRunner.InProcess([.. common, "-t", "1"]);
        var t2 = CliRunner.InProcess([.. common, "-t", "2"]);
        var t3 = CliRunner.InProcess([.. common, "-t", "3"]);
        var other = CliRunner.InProcess("run", "-p", "Once upon a time", "-n", "40", "--seed", "99");
        Assert.Equal(0, t1.ExitCode);
        Assert.True(t1.Stdout.Length > 40);
        Assert.Equal(t1.Stdout, t2.Stdout);
        Assert.Equal(t1.Stdout, t3.Stdout);
        Assert.NotEqual(t1.Stdout, other.Stdout);
    }

    [Fact]
    public void LogitsMatchTheReferenceAtStepZero()
    {
        var r = CliRunner.InProcess("logits", "--tokens", "1,403,407", "--top", "5");
        Assert.Equal(0, r.ExitCode);
        string[] lines = r.Stdout.TrimEnd('\n').Split('\n');
        Assert.Equal(3, lines.Length);
        var first = JsonDocument.Parse(lines[0]).RootElement;
        Assert.Equal(0, first.GetProperty("pos").GetInt32());
        Assert.Equal(1, first.GetProperty("token").GetInt32());
        var top = first.GetProperty("top").EnumerateArray().ToArray();
        var expected = Reference.GetProperty("step0_top5_logits").EnumerateArray().ToArray();
        Assert.Equal(5, top.Length);
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(expected[i].GetProperty("token_id").GetInt32(), top[i][0].GetInt32());
            Assert.Equal(expected[i].GetProperty("logit").GetDouble(), top[i][1].GetDouble(), 1e-3);
        }
        // Position 1 predicts the reference's second token.
        Assert.Equal(ReferenceIds(2)[1], JsonDocument.Parse(lines[1]).RootElement.GetProperty("top")[0][0].GetInt32());
    }

    [Fact]
    public void PerplexityMatchesTheFloat64Reference()
    {
        string text = Reference.GetProperty("generated_text").GetString()!;
        string path = TestPaths.TempFile("story.txt");
        File.WriteAllText(path, text);
        const int ctx = 32;
        var r = CliRunner.InProcess("perplexity", "-f", path, "-c", ctx.ToString(CultureInfo.InvariantCulture), "--chunks", "3");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var m = System.Text.RegularExpressions.Regex.Match(r.Stdout, @"^PPL = ([0-9.]+) \+/- ([0-9.]+)$", System.Text.RegularExpressions.RegexOptions.Multiline);
        Assert.True(m.Success, r.Stdout);
        double ppl = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);

        // llama.cpp's procedure, spelled out against the float64 reference model.
        int[] tokens;
        using (var f = GgufFile.Open(TestPaths.Stories260K)) tokens = Tokenizer.FromGguf(f).Encode(text, addBos: true);
        double nll = 0;
        int count = 0;
        for (int c = 0; c < 3; c++)
        {
            var reference = new ReferenceTransformer(TestPaths.Stories260K);
            for (int j = 0; j < ctx - 1; j++)
            {
                int input = j == 0 ? 1 : tokens[c * ctx + j];
                double[] logits = reference.Forward(input);
                if (j < ctx / 2) continue;
                double max = logits.Max();
                double lse = max + Math.Log(logits.Sum(l => Math.Exp(l - max)));
                nll += lse - logits[tokens[c * ctx + j + 1]];
                count++;
            }
        }
        Assert.Equal(3 * (ctx - ctx / 2 - 1), count);
        Assert.Equal(Math.Exp(nll / count), ppl, 1e-3);
        Assert.Equal(3, System.Text.RegularExpressions.Regex.Matches(r.Stdout, @"\[\d\][0-9.]+,").Count);
    }

    [Fact]
    public void TokenizePrintsLlamaCppIds()
    {
        var r = CliRunner.InProcess("tokenize", "-m", TestPaths.Data("ggml-vocab-llama-spm.gguf"), "-p", "Hello world");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("[1, 15043, 3186]\n", r.Stdout);
        var noBos = CliRunner.InProcess("tokenize", "-m", TestPaths.Data("ggml-vocab-llama-spm.gguf"), "-p", "Hello world", "--no-bos");
        Assert.Equal("[15043, 3186]\n", noBos.Stdout);
    }

    [Theory]
    [InlineData(new[] { "run", "--temp", "hot" }, 2, "option '--temp' expects a number, got 'hot'")]
    [InlineData(new[] { "run", "--top-p", "1.5" }, 2, "option '--top-p' must be between 0 and 1")]
    [InlineData(new[] { "run", "-n", "-5" }, 2, "option '-n' must be between -1 and")]
    [InlineData(new[] { "run", "-p", "a", "-f", "b" }, 2, "give either -p or -f, not both")]
    [InlineData(new[] { "run", "-f", "/nonexistent/prompt.txt" }, 1, "/nonexistent/prompt.txt: prompt file not found")]
    [InlineData(new[] { "run", "-f", "/tmp" }, 1, "/tmp: the prompt file is a directory")]
    [InlineData(new[] { "run", "-c", "4", "-p", "Once upon a time there was" }, 1, "does not fit in the context of 4 tokens")]
    [InlineData(new[] { "logits", "--tokens", "1,x" }, 2, "'x' is not a token id")]
    [InlineData(new[] { "logits", "--tokens", "1,9999" }, 2, "token id 9999 is outside the vocabulary of 512")]
    [InlineData(new[] { "perplexity" }, 2, "give the text file with -f FILE")]
    [InlineData(new[] { "tokenize" }, 2, "give the text with -p TEXT or -f FILE")]
    public void BadArgumentsGiveOneLineErrors(string[] args, int exitCode, string message)
    {
        var r = CliRunner.InProcess(args);
        Assert.Equal(exitCode, r.ExitCode);
        Assert.Contains(message, r.Stderr);
        Assert.Single(r.Stderr.TrimEnd('\n').Split('\n'));
    }
}
