using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Generation;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Kv;

/// <summary>
/// Context shift: the re-rotated cached keys equal keys roped at their new positions (normal and NEOX layouts, partial
/// rotary dims, rope_freqs factors, a linear scale, an attention factor; f32 tight, f16 and q8_0 within their rounding);
/// the logits after a shift equal a fresh evaluation of the shifted sequence; generation continues past the context
/// with the kept prefix intact.
/// </summary>
public unsafe class ContextShiftTests
{
    public static TheoryData<KvCacheType, bool, int, bool, float> RopeCases()
    {
        var data = new TheoryData<KvCacheType, bool, int, bool, float>();
        foreach (var type in new[] { KvCacheType.F32, KvCacheType.F16, KvCacheType.Q8_0 })
        {
            data.Add(type, false, 32, false, 1f);  // llama: normal layout, all dims
            data.Add(type, true, 32, false, 1f);   // qwen2: NEOX
            data.Add(type, true, 16, false, 1f);   // phi-2 style partial rotary (NEOX)
            data.Add(type, false, 24, true, 1.19f); // rope_freqs factors, LongRoPE's attention factor, partial
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(RopeCases))]
    public void ShiftedKeysEqualKeysRopedAtTheirNewPositions(KvCacheType type, bool neox, int dims, bool factors, float attnFactor)
    {
        const int headDim = 32, kvHeads = 2, kvDim = headDim * kvHeads, size = 48, filled = 45, keep = 5, drop = 20;
        float[]? ff = factors ? Enumerable.Range(0, dims / 2).Select(i => 1f + i * 0.37f).ToArray() : null;
        var spec = new RopeSpec(headDim, dims, 10000f, factors ? 2f : 1f, ff, neox, attnFactor);
        using var backend = new CpuBackend(2);
        backend.Prepare(new BackendLimits(size, kvDim, size, headDim, dims));
        var rng = new Random(dims * 7 + (neox ? 1 : 0));
        var raw = new float[filled * kvDim];
        for (int i = 0; i < raw.Length; i++) raw[i] = rng.NextSingle() * 2 - 1;

        // The cache as the forward fills it: keys roped at 0..filled-1.
        var cache = new EdgeLlm.Compute.KvCache(backend, 1, size, kvDim, type, type);
        var k = backend.Allocate((long)size * kvDim);
        var v = backend.Allocate((long)size * kvDim);
        Upload(backend, raw, k);
        Upload(backend, raw.Select(x => -x).ToArray(), v);
        backend.Rope(k, filled, kvHeads, 0, spec);
        backend.StoreKv(cache, 0, 0, filled, k, v);
        cache.Filled = filled;
        float[] keptBefore = Rows(backend, cache, false, 0, keep);
        byte[] vMoved = RowBytes(backend, cache, true, keep + drop, filled - keep - drop);

        backend.ShiftKv(cache, 0, keep, drop, spec);

        // Expected: the raw keys of positions keep+drop.. roped at keep.. (and stored in the same type).
        var want = new EdgeLlm.Compute.KvCache(backend, 1, size, kvDim, type, type);
        int moved = filled - keep - drop;
        Upload(backend, raw.AsSpan((keep + drop) * kvDim, moved * kvDim).ToArray(), k);
        backend.Rope(k, moved, kvHeads, keep, spec);
        backend.StoreKv(want, 0, 0, moved, k, v);
        want.Filled = moved;
        float[] got = Rows(backend, cache, false, keep, moved), exp = Rows(backend, want, false, 0, moved);
        for (int i = 0; i < got.Length; i++)
        {
            // f32: float rounding of a rotation; f16: the stored value rounded to 11 bits, rotated (mixing in its pair
            // partner, |x| <= 1.19 · sqrt 2) and rounded again: 2 · 2^-11 of the pair's size; q8_0: two roundings to a
            // step of amax/127 of the block (amax <= 1.7).
            double tol = type switch { KvCacheType.F32 => 2e-6 + 2e-6 * Math.Abs(exp[i]), KvCacheType.F16 => 2 * 1.7 / 2048, _ => 2.0 * 1.7 / 127 };
            Assert.True(Math.Abs(got[i] - exp[i]) <= tol, $"{type} row {keep + i / kvDim}, element {i % kvDim}: shifted {got[i]}, roped at the new position {exp[i]}");
        }
        Assert.Equal(keptBefore, Rows(backend, cache, false, 0, keep)); // the kept prefix is untouched
        Assert.Equal(vMoved, RowBytes(backend, cache, true, keep, moved)); // values move byte for byte
    }

    public static TheoryData<KvCacheType, double> ModelCases() => new() { { KvCacheType.F32, 2e-4 }, { KvCacheType.F16, 2e-2 } };

    [Theory]
    [MemberData(nameof(ModelCases))]
    public void LogitsAfterAShiftEqualAFreshEvaluationOfTheShiftedSequence(KvCacheType type, double tolerance)
    {
        // A one-layer random llama with rope_freqs and partial rotary dims; 40 positions, keep 4, drop 18. One layer,
        // because there a cached K/V row depends only on its token and position, so the shifted cache must equal a
        // fresh one; in deeper layers the moved rows still carry what the dropped tokens contributed (in every
        // engine's context shift), so only the first layer's rows can be compared with a fresh evaluation.
        string path = Model.RandomModel.Write(new Model.RandomModelSpec { Dim = 128, Heads = 4, KvHeads = 2, Layers = 1, RopeFreqs = true, RopeDims = 24, ContextLength = 64, Seed = 99 });
        var options = new BackendOptions { Threads = 2, ContextSize = 48, MaxBatch = 16, CacheTypeK = type, CacheTypeV = type };
        var rng = new Random(5);
        int[] tokens = Enumerable.Range(0, 41).Select(_ => rng.Next(3, 300)).ToArray();
        tokens[0] = 1;
        const int keep = 4, drop = 18;

        using var shifted = LlamaModel.Load(path, options);
        var a = new float[shifted.VocabSize];
        shifted.Forward(tokens.AsSpan(0, 40), 0, a);
        shifted.ShiftContext(keep, drop);
        Assert.Equal(22, shifted.Cache.Filled);
        shifted.Forward(tokens[40], 22, a);

        using var fresh = LlamaModel.Load(path, options);
        int[] seq = [.. tokens[..keep], .. tokens[(keep + drop)..41]];
        Assert.Equal(23, seq.Length);
        var b = new float[fresh.VocabSize];
        fresh.Forward(seq, 0, b);

        double scale = b.Max(x => Math.Abs(x)), worst = 0;
        for (int i = 0; i < a.Length; i++) worst = Math.Max(worst, Math.Abs(a[i] - b[i]));
        Assert.True(worst <= tolerance * scale, $"{type}: logits differ by {worst} (largest logit {scale})");

        // And not trivially: without the re-rotation (the rows moved but keys left at their old angles) they differ.
        using var unrotated = LlamaModel.Load(path, options);
        unrotated.Forward(tokens.AsSpan(0, 40), 0, a);
        var noRope = new RopeSpec(unrotated.Rope.HeadDim, unrotated.Rope.Dims, unrotated.Rope.Base, 1e30f, null); // theta ~ 0: moves only
        for (int l = 0; l < unrotated.Config.LayerCount; l++) unrotated.Backend.ShiftKv(unrotated.Cache, l, keep, drop, noRope);
        unrotated.Cache.Filled = 22;
        unrotated.Forward(tokens[40], 22, a);
        double off = 0;
        for (int i = 0; i < a.Length; i++) off = Math.Max(off, Math.Abs(a[i] - b[i]));
        // Far outside both the tolerance and the error the shift actually made (a fixed multiple of the tolerance alone
        // depends on the random weights' logit scale: f16's loose tolerance let some seeds fall short of it).
        Assert.True(off > 2 * tolerance * scale && off > 10 * worst,
            $"moving the rows without rotating them changed the logits by only {off} (the shift's own error {worst}, tolerance {tolerance * scale})");
    }

    [Theory]
    [InlineData(KvCacheType.F32)]
    [InlineData(KvCacheType.Q8_0)]
    public void GenerationContinuesPastTheContextWithTheKeptPrefixIntact(KvCacheType type)
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 2, ContextSize = 64, CacheTypeK = type, CacheTypeV = type });
        var tokenizer = Tokenizer.FromGguf(model.File);
        int[] prompt = tokenizer.Encode("Once upon a time, there was a big dog", addBos: true);
        var generator = new Generator(model, tokenizer);
        var greedy = new SamplerOptions { Temperature = 0 };

        var stopped = generator.Generate(prompt, new GenerateOptions { MaxTokens = 150, Sampler = greedy, IgnoreEos = true }, _ => true);
        Assert.Equal(StopReason.ContextFull, stopped.Stop);
        Assert.Equal(0, generator.ContextShifts);

        generator.ResetCache();
        var text = new System.Text.StringBuilder();
        var stats = generator.Generate(prompt, new GenerateOptions { MaxTokens = 150, Sampler = greedy, IgnoreEos = true, ContextShift = true, ShiftKeep = -1 },
            t => { text.Append(t); return true; });
        Assert.Equal(StopReason.TokenLimit, stats.Stop);
        Assert.Equal(150, stats.GeneratedTokens);
        Assert.True(generator.ContextShifts >= 2, $"{generator.ContextShifts} shifts");
        Assert.True(generator.CachedCount < 64);
        Assert.Equal(generator.CachedCount, model.Cache.Filled);
        Assert.Equal(prompt, generator.CachedTokens[..prompt.Length].ToArray()); // the kept prefix (the whole prompt)
        Assert.True(text.Length > 300, text.ToString());
    }

    [Fact]
    public void ChatAnswerLongerThanTheContextShiftsKeepingTheSystemPrompt()
    {
        using var model = LlamaModel.Load(TestPaths.Stories260K, new BackendOptions { Threads = 2, ContextSize = 96 });
        var tok = Tokenizer.FromGguf(model.File);
        var session = new ChatSession(model, tok, ChatTemplateKind.ChatMl, "You tell long stories about a dog.");
        int[] system = tok.Encode(ChatTemplates.Render(ChatTemplateKind.ChatMl, [new ChatMessage("system", "You tell long stories about a dog.")], false),
            addBos: tok.Vocab.AddBos, parseSpecial: true);
        var stats = session.Send("Once upon a time", new GenerateOptions { MaxTokens = 200, Sampler = new SamplerOptions { Temperature = 0 }, IgnoreEos = true }, _ => { });
        Assert.Equal(200, stats.GeneratedTokens);
        Assert.Equal(StopReason.TokenLimit, stats.Stop);
        Assert.True(session.Generator.ContextShifts >= 2, $"{session.Generator.ContextShifts} shifts");
        var held = session.Generator.CachedTokens.ToArray();
        Assert.True(held.Length < 96);
        Assert.True(system.Length > 5);
        Assert.Equal(system, held[..system.Length]); // BOS + the rendered system prompt stay at the front
        // The next turn still fits (old turns dropped) and answers.
        var next = session.Send("And then?", new GenerateOptions { MaxTokens = 8, Sampler = new SamplerOptions { Temperature = 0 } }, _ => { });
        Assert.True(next.PromptTokens < 96);
    }

    [Fact]
    public void RunCommandGoesPastTheContextOnlyWithContextShift()
    {
        string[] common = ["run", "-m", TestPaths.Stories260K, "-p", "Once upon a time", "-n", "120", "-c", "48", "--temp", "0", "-t", "1", "--ignore-eos"];
        var plain = Cli.CliRunner.InProcess(common);
        Assert.Equal(0, plain.ExitCode);
        Assert.Contains("stopped: context full", plain.Stderr);
        var shifted = Cli.CliRunner.InProcess([.. common, "--context-shift", "--keep", "2"]);
        Assert.True(shifted.ExitCode == 0, shifted.Stderr);
        Assert.Contains("generation: 120 tokens", shifted.Stderr);
        Assert.Contains("stopped: token limit", shifted.Stderr);
        Assert.StartsWith(plain.Stdout.TrimEnd(), shifted.Stdout); // identical until the first shift
        Assert.True(shifted.Stdout.Length > plain.Stdout.Length + 100);
        var bad = Cli.CliRunner.InProcess([.. common, "--keep", "2"]);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("--keep applies to --context-shift", bad.Stderr);
    }

    private static void Upload(CpuBackend b, float[] src, BackendBuffer dst)
    {
        fixed (float* p = src) Buffer.MemoryCopy(p, ((CpuBuffer)dst).Data, src.Length * 4L, src.Length * 4L);
    }

    private static byte[] RowBytes(IBackend b, EdgeLlm.Compute.KvCache c, bool values, int pos, int count)
    {
        var bytes = new byte[count * (values ? c.ValueRowBytes : c.KeyRowBytes)];
        b.CacheRows(c, 0, values, pos, count, bytes, write: false);
        return bytes;
    }

    private static float[] Rows(IBackend b, EdgeLlm.Compute.KvCache c, bool values, int pos, int count)
    {
        byte[] bytes = RowBytes(b, c, values, pos, count);
        var f = new float[count * c.KvDim];
        fixed (byte* p = bytes)
        fixed (float* o = f)
            KvRows.Read(values ? c.ValueType : c.KeyType, p, values ? c.ValueRowBytes : c.KeyRowBytes, 0, c.KvDim, count, o);
        return f;
    }
}
