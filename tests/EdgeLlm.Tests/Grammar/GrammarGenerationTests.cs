using System.Text;
using System.Text.Json;
using EdgeLlm.Generation;
using EdgeLlm.Model;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.Grammar;

/// <summary>Grammar-constrained sampling: the mask in the sampler, and `run --json-schema` answers validated against their schemas.</summary>
public class GrammarGenerationTests
{
    public static string RandomModel => TestPaths.Data(Path.Combine("models-visible", "llama.gguf"));

    /// <summary>
    /// Checks one answer: a finished one parses and validates; one cut by the token limit must at least be a
    /// live prefix of the grammar (and is only allowed for the unbounded schemas).
    /// </summary>
    internal static void CheckAnswer(TestSchemas.Case c, string text, bool finished, List<string> failures, string label)
    {
        var grammar = JsonSchemaCompiler.Compile(c.Schema);
        if (!finished)
        {
            if (c.Bounded) failures.Add($"{label} {c.Name}: did not finish: {text}");
            else if (!GrammarMatcher.IsLivePrefix(grammar, Encoding.UTF8.GetBytes(text))) failures.Add($"{label} {c.Name}: cut-off text is not a grammar prefix: {text}");
            return;
        }
        try
        {
            using var value = JsonDocument.Parse(text);
            using var schema = JsonDocument.Parse(c.Schema);
            if (MiniSchemaValidator.Validate(value.RootElement, schema.RootElement) is { } why) failures.Add($"{label} {c.Name}: {why}: {text}");
        }
        catch (JsonException e)
        {
            failures.Add($"{label} {c.Name}: does not parse ({e.Message}): {text}");
        }
    }

    [Theory]
    [InlineData("stories260K")]
    [InlineData("random-llama")]
    public void Run_json_schema_answers_validate(string which)
    {
        string model = which == "stories260K" ? TestPaths.Stories260K : RandomModel;
        var failures = new List<string>();
        int finished = 0;
        for (int i = 0; i < TestSchemas.All.Length; i++)
        {
            var c = TestSchemas.All[i];
            string file = TestPaths.TempFile(c.Name + ".json");
            File.WriteAllText(file, c.Schema);
            var r = CliRunner.InProcess("run", "-m", model, "--json-schema", file, "-p", c.Prompt, "-s", (100 + i).ToString(),
                "-n", "300", "-t", "1", "-c", "512");
            Assert.True(r.ExitCode == 0, $"{c.Name}: {r.Stderr}");
            Assert.EndsWith("\n", r.Stdout);
            bool done = r.Stderr.Contains("stopped: end of text");
            Assert.True(done || r.Stderr.Contains("stopped: token limit"), r.Stderr);
            if (done) finished++;
            CheckAnswer(c, r.Stdout[..^1], done, failures, which);
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.True(finished >= TestSchemas.All.Count(c => c.Bounded), $"{finished} finished");
    }

    [Fact]
    public void Run_grammar_json_gives_an_object_and_bad_schemas_are_one_line_errors()
    {
        var r = CliRunner.InProcess("run", "-m", TestPaths.Stories260K, "--grammar", "json", "-p", "Once", "-s", "7", "-n", "400", "-t", "1");
        Assert.Equal(0, r.ExitCode);
        if (r.Stderr.Contains("stopped: end of text"))
            Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(r.Stdout).RootElement.ValueKind);
        else
            Assert.True(GrammarMatcher.IsLivePrefix(EdgeLlm.Generation.Grammar.JsonObject, Encoding.UTF8.GetBytes(r.Stdout[..^1])), r.Stdout);

        string bad = TestPaths.TempFile("bad.json");
        File.WriteAllText(bad, """{"type":"string","pattern":"^x"}""");
        var e = CliRunner.InProcess("run", "-m", TestPaths.Stories260K, "--json-schema", bad, "-n", "5");
        Assert.Equal(1, e.ExitCode);
        Assert.Contains(bad + ": JSON schema at #: keyword 'pattern' is not supported", e.Stderr);
        var g = CliRunner.InProcess("run", "-m", TestPaths.Stories260K, "--grammar", "yaml", "-n", "5");
        Assert.Equal(2, g.ExitCode); // a usage error
        Assert.Contains("--grammar takes 'json'", g.Stderr);
    }

    [Fact]
    public void Greedy_under_a_grammar_picks_the_best_allowed_token_and_end_only_when_complete()
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 64 });
        var tok = Tokenizer.FromGguf(model.File);
        int v = tok.Vocab.Count;
        var grammar = JsonSchemaCompiler.Compile("""{"enum":["ab"]}""");
        var constraint = new TokenConstraint(grammar, tok);
        var sampler = new Sampler(v, SamplerOptions.Greedy);
        var logits = new float[v];
        for (int i = 0; i < v; i++) logits[i] = i; // the highest id is the best
        int eos = tok.Vocab.Eos;
        logits[eos] = 1e6f;                        // and end of text better than all

        // Expected, straight from the pieces: the highest id whose text is a prefix of "\"ab\"".
        int Expected(string done)
        {
            for (int id = v - 1; id >= 0; id--)
            {
                string piece = Encoding.UTF8.GetString(tok.TokenPiece(id));
                if (piece.Length > 0 && "\"ab\"".StartsWith(done + piece, StringComparison.Ordinal)) return id;
            }
            return -1;
        }
        string text = "";
        while (text != "\"ab\"")
        {
            int t = sampler.Sample(logits, [], constraint);
            Assert.Equal(Expected(text), t);
            constraint.Accept(t);
            text += Encoding.UTF8.GetString(tok.TokenPiece(t));
        }
        Assert.True(constraint.Finished);
        Assert.Equal(eos, sampler.Sample(logits, [], constraint)); // complete: end of text is allowed (and best)
    }

    [Fact]
    public void Sampled_tokens_always_keep_the_grammar_alive()
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 64 });
        var tok = Tokenizer.FromGguf(model.File);
        int v = tok.Vocab.Count;
        var rng = new Random(5);
        var logits = new float[v];
        var sampler = new Sampler(v, new SamplerOptions { Seed = 3, Temperature = 1.5f, TopK = 0, MinP = 0, TopP = 1 });
        var reference = new GrammarMatcher(EdgeLlm.Generation.Grammar.JsonObject);
        var constraint = new TokenConstraint(EdgeLlm.Generation.Grammar.JsonObject, tok);
        for (int step = 0; step < 300 && !constraint.Finished; step++)
        {
            for (int i = 0; i < v; i++) logits[i] = (float)(rng.NextDouble() * 4);
            int t = sampler.Sample(logits, [], constraint);
            if (tok.Vocab.IsEndOfGeneration(t))
            {
                Assert.True(reference.IsAccepting);
                break;
            }
            Assert.True(reference.Accept(tok.TokenPiece(t)), $"step {step}: token {t} '{Encoding.UTF8.GetString(tok.TokenPiece(t))}'");
            constraint.Accept(t);
        }
    }
}

/// <summary>The whole-vocabulary mask (walked in byte order, shared prefixes reused) equals checking every token alone.</summary>
public class TokenMaskTests
{
    [Theory]
    [InlineData("ggml-vocab-llama-spm.gguf")]
    [InlineData("ggml-vocab-gpt-2.gguf")]
    public void Mask_equals_per_token_checks_along_a_json_text(string vocabFile)
    {
        using var file = EdgeLlm.Gguf.GgufFile.Open(TestPaths.Data(vocabFile));
        var tok = Tokenizer.FromGguf(file);
        var g = JsonSchemaCompiler.Compile("""{"type":"object","properties":{"name":{"type":"string"},"n":{"type":"number"},"tags":{"type":"array","items":{"enum":["a b","c"]}}},"required":["name"]}""");
        var c = new TokenConstraint(g, tok);
        string text = "{\"name\": \"caf\u00e9 x\", \"n\": -1.5e3, \"tags\": [\"a b\"]}";
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        int checkedStates = 0;
        for (int i = 0; i <= bytes.Length; i++)
        {
            bool[] mask = c.ComputeMask();
            for (int id = 0; id < tok.Vocab.Count; id++)
                Assert.True(mask[id] == c.Allows(id), $"after '{Encoding.UTF8.GetString(bytes, 0, i)}': token {id} '{Encoding.UTF8.GetString(tok.TokenPiece(id))}' mask {mask[id]}");
            checkedStates++;
            if (i < bytes.Length) Assert.True(c.Matcher.Accept(bytes.AsSpan(i, 1)));
        }
        Assert.True(c.Finished);
        Assert.Equal(bytes.Length + 1, checkedStates);
        Assert.True(c.ComputeMask()[tok.Vocab.Eos]); // complete: end of text allowed
    }
}
