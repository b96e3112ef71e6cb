using EdgeLlm.Generation;
using EdgeLlm.Model;
using EdgeLlm.Tests.Cli;

namespace EdgeLlm.Tests.Kv;

/// <summary>
/// --prompt-cache: a saved prompt is reused by longest prefix and gives the same output as a run without it (same seed,
/// sampled); a truncated, corrupted, other-model or other-cache-type file is refused in one line naming the file.
/// </summary>
public class PromptCacheTests
{
    private const string Prompt = "Once upon a time, there was a little girl named Lily. She loved to";

    private static BackendOptions Options(KvCacheType type = KvCacheType.F16) => new() { Threads = 2, ContextSize = 128, CacheTypeK = type, CacheTypeV = type };

    private static (string Text, int Prefilled) Run(string? cacheFile, string prompt, KvCacheType type = KvCacheType.F16)
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, Options(type));
        var tokenizer = Tokenizer.FromGguf(model.File);
        int[] tokens = tokenizer.Encode(prompt, addBos: true);
        var generator = new Generator(model, tokenizer);
        if (cacheFile is not null && File.Exists(cacheFile)) generator.AdoptCache(PromptCache.Load(cacheFile, model));
        var text = new System.Text.StringBuilder();
        var o = new GenerateOptions
        {
            MaxTokens = 40,
            Sampler = new SamplerOptions { Temperature = 0.9f, Seed = 1234 },
            ReuseCache = true,
            OnPromptEvaluated = cacheFile is null ? null : () => PromptCache.Save(cacheFile, model, tokens),
        };
        generator.Generate(tokens, o, t => { text.Append(t); return true; });
        return (text.ToString(), generator.LastPrefillTokens);
    }

    [Theory]
    [InlineData(KvCacheType.F16)]
    [InlineData(KvCacheType.Q8_0)]
    [InlineData(KvCacheType.F32)]
    public void ReusedPromptGivesTheSameOutputAsNoCache(KvCacheType type)
    {
        string file = TestPaths.TempFile("prompt.cache");
        var (plain, plainPrefill) = Run(null, Prompt, type);
        var (first, firstPrefill) = Run(file, Prompt, type);
        Assert.True(File.Exists(file));
        Assert.False(File.Exists(file + ".partial"));
        var (second, secondPrefill) = Run(file, Prompt, type);
        Assert.Equal(plainPrefill, firstPrefill);
        Assert.Equal(1, secondPrefill); // only the last prompt token runs again (its logits are needed)
        Assert.Equal(plain, first);
        Assert.Equal(plain, second);
        Assert.True(plain.Length > 20, plain);

        // A longer prompt reuses the saved prefix and evaluates only its own tail.
        string longer = Prompt + " play with her toys";
        var (noCache, longerPrefill) = Run(null, longer, type);
        var (cached, tailPrefill) = Run(file, longer, type);
        Assert.Equal(noCache, cached);
        Assert.True(tailPrefill < longerPrefill && tailPrefill >= 3, $"{tailPrefill} of {longerPrefill} tokens evaluated");
    }

    private static string Saved()
    {
        string file = TestPaths.TempFile("prompt.cache");
        Run(file, Prompt);
        return file;
    }

    private static void AssertRefused(string file, string because, BackendOptions? options = null, string? model = null)
    {
        using var m = LlamaModel.Load(model ?? TestPaths.Stories260K, options ?? Options());
        var e = Assert.Throws<EdgeLlmException>(() => PromptCache.Load(file, m));
        Assert.StartsWith($"{file}: prompt cache refused: ", e.Message);
        Assert.Contains(because, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void TruncatedFileIsRefused()
    {
        string file = Saved();
        byte[] all = File.ReadAllBytes(file);
        File.WriteAllBytes(file, all[..^1]);
        AssertRefused(file, "truncated");
        File.WriteAllBytes(file, all[..(all.Length / 2)]);
        AssertRefused(file, "truncated");
        File.WriteAllBytes(file, all[..40]);
        AssertRefused(file, "shorter than");
        File.WriteAllBytes(file, [.. all, 0]);
        AssertRefused(file, "header implies");
    }

    [Fact]
    public void FlippedByteIsRefused()
    {
        string file = Saved();
        byte[] all = File.ReadAllBytes(file);
        foreach (int at in new[] { all.Length / 2, 100, all.Length - 40, 20 })
        {
            byte[] bad = (byte[])all.Clone();
            bad[at] ^= 0x10;
            File.WriteAllBytes(file, bad);
            AssertRefused(file, at == 20 ? "checksum mismatch" : "checksum mismatch (corrupted)");
        }
        byte[] magic = (byte[])all.Clone();
        magic[0] ^= 1;
        File.WriteAllBytes(file, magic);
        AssertRefused(file, "bad magic");
    }

    [Fact]
    public void OtherModelIsRefused()
    {
        string file = Saved();
        // A model with the same shapes is told apart too: two random llamas that differ only in their weights.
        string a = Model.RandomModel.Write(new Model.RandomModelSpec { Seed = 1 });
        string b = Model.RandomModel.Write(new Model.RandomModelSpec { Seed = 2 });
        AssertRefused(file, "saved for another model", model: a);
        int[] ids = [1, 40, 41, 42, 43];
        using (var ma = LlamaModel.Load(a, Options()))
        {
            ma.Forward(ids, 0, new float[ma.VocabSize]);
            PromptCache.Save(file, ma, ids);
        }
        AssertRefused(file, "saved for another model", model: b);
        using var again = LlamaModel.Load(a, Options());
        Assert.Equal(ids, PromptCache.Load(file, again)); // and its own model takes it
        Assert.Equal(ids.Length, again.Cache.Filled);
    }

    [Fact]
    public void OtherCacheTypeIsRefused()
    {
        string file = Saved();
        AssertRefused(file, "saved with cache types K f16, V f16; this run uses K q8_0, V q8_0", Options(KvCacheType.Q8_0));
        AssertRefused(file, "this run uses K f32, V f16", new BackendOptions { Threads = 1, ContextSize = 128, CacheTypeK = KvCacheType.F32, CacheTypeV = KvCacheType.F16 });
    }

    [Fact]
    public void CliRefusesInOneLineWithExitCode1()
    {
        string file = Saved();
        byte[] all = File.ReadAllBytes(file);
        File.WriteAllBytes(file, all[..^7]);
        var r = CliRunner.InProcess("run", "-m", TestPaths.Stories260K, "-p", "Once", "-n", "4", "-t", "1", "--prompt-cache", file);
        Assert.Equal(1, r.ExitCode);
        string err = r.Stderr.TrimEnd('\n');
        Assert.DoesNotContain('\n', err);
        Assert.Contains($"{file}: prompt cache refused", err);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void ModelReadIntoMemoryHasTheIdentityOfTheMappedFile()
    {
        // The identity of a model read into memory comes from its own bytes (no file to reopen: the embedded model has
        // none); of a mapped one from the file through a stream. Both must name the same file the same way.
        using var mapped = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 16, Load = new EdgeLlm.Gguf.GgufLoadOptions { Mode = EdgeLlm.Gguf.GgufLoadMode.Map } });
        using var read = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 1, ContextSize = 16, Load = new EdgeLlm.Gguf.GgufLoadOptions { Mode = EdgeLlm.Gguf.GgufLoadMode.Read } });
        Assert.False(mapped.File.InMemory);
        Assert.True(read.File.InMemory);
        byte[] id = PromptCache.ModelIdentity(mapped);
        Assert.Equal(id, PromptCache.ModelIdentity(read));
        // and an independent XXH128 over the same ranges of the file on disk
        byte[] file = File.ReadAllBytes(TestPaths.Stories260K);
        var h = new System.IO.Hashing.XxHash128();
        h.Append(BitConverter.GetBytes((long)file.Length));
        int data = (int)mapped.File.DataOffset, sample = 64 * 1024;
        h.Append(file.AsSpan(0, data));
        h.Append(file.AsSpan(data, Math.Min(file.Length, data + sample) - data));
        int tail = Math.Max(data, file.Length - sample);
        h.Append(file.AsSpan(tail));
        Assert.Equal(h.GetCurrentHash(), id);
    }

    [Fact]
    public void TheEmbeddedModelSavesAndReusesAPromptCache()
    {
        // run without -m takes the model built into the binary, which has no file on disk
        string file = TestPaths.TempFile("embedded.cache");
        var first = CliRunner.InProcess("run", "-p", Prompt, "-n", "8", "-t", "1", "--temp", "0", "--prompt-cache", file);
        Assert.True(first.ExitCode == 0, first.Stderr);
        Assert.True(File.Exists(file));
        var second = CliRunner.InProcess("run", "-p", Prompt, "-n", "8", "-t", "1", "--temp", "0", "--prompt-cache", file);
        Assert.True(second.ExitCode == 0, second.Stderr);
        Assert.Equal(first.Stdout, second.Stdout);
        Assert.Equal(first.Stdout, CliRunner.InProcess("run", "-p", Prompt, "-n", "8", "-t", "1", "--temp", "0").Stdout);
    }
}
