using EdgeLlm.Generation;
using EdgeLlm.Tests.Cuda;

namespace EdgeLlm.Tests.DeviceSampler;

/// <summary>
/// sample_f32 (kernels/sample.cu, run by the host emulation harness) against the CPU <see cref="Sampler"/>: the same
/// token ids for the same seed over streams of rows, every setting of the chain, vocabularies of 32000 and odd sizes,
/// ties, and top-p exactly at its boundary. The device side gets only what generation passes it: the settings, the
/// penalty window's (id, count) pairs and the uniform the sampler's own stream gives next. The emulation uses the
/// host's libm for expf/exp, as .NET does, so the tokens must be equal; on a GPU the exponentials may differ by an ulp
/// or two (see kernels/sample.cu), which these tests cannot show.
/// </summary>
public class DeviceSamplerKernelTests
{
    /// <summary>
    /// Rows of coarse random logits (steps of 0.25, so many ties, some far below the rest) sampled in sequence by a CPU
    /// sampler and by the kernel with a second sampler of the same seed giving the uniforms; the chosen tokens extend
    /// the history the penalties look at, as in generation.
    /// </summary>
    private static void StreamsAgree(int vocab, SamplerOptions options, int seeds, int rows, int threads = 128)
    {
        var cases = new List<SampleKernel.Case>();
        var expected = new List<int>();
        var penalties = new PenaltyWindow(vocab);
        var settings = DeviceSampling.Settings(options);
        for (int seed = 0; seed < seeds; seed++)
        {
            var rng = new Random(1000 * vocab + seed);
            var cpu = new Sampler(vocab, options with { Seed = seed });
            var uniforms = new Sampler(vocab, options with { Seed = seed });
            var history = new List<int>();
            for (int i = 0; i < 20; i++) history.Add(rng.Next(vocab));
            for (int row = 0; row < rows; row++)
            {
                var logits = new float[vocab];
                double spread = 2 + 6 * rng.NextDouble();
                for (int i = 0; i < vocab; i++) logits[i] = (float)Math.Round(spread * (rng.NextDouble() * 2 - 1) * 4) / 4;
                for (int i = 0; i < 8; i++) logits[rng.Next(vocab)] = (float)Math.Round(spread + 2 * rng.NextDouble(), 1); // a few clear leaders
                // a few recent tokens made likely, so the penalties change the outcome
                for (int i = 0; i < 3; i++) logits[history[^(1 + rng.Next(Math.Min(10, history.Count)))]] = (float)(spread + 1);
                int want = cpu.Sample(logits, history.ToArray());
                double u = options.Temperature > 0 ? uniforms.NextUniform() : 0;
                cases.Add(new SampleKernel.Case(logits, settings, penalties.Pairs(options, history.ToArray()).ToArray(), u, threads));
                expected.Add(want);
                history.Add(want);
            }
        }
        var got = SampleKernel.Run(cases);
        for (int i = 0; i < cases.Count; i++)
        {
            Assert.False(got[i].NonFinite);
            Assert.True(expected[i] == got[i].Token, $"{options} vocab {vocab}, case {i}: the CPU sampler picked {expected[i]}, the kernel {got[i].Token}");
            Assert.Equal(got[i].Token, got[i].Fed); // the token is also written where the next get_rows reads it
        }
        // The streams are not degenerate: a sampled stream picks more than one distinct token.
        if (options.Temperature > 0 && rows > 1) Assert.True(expected.Distinct().Count() > 1, $"{options}: every row drew the same token");
    }

    public static TheoryData<string> Settings() => new(AllSettings.Keys);

    private static readonly Dictionary<string, SamplerOptions> AllSettings = new()
    {
        ["defaults"] = new SamplerOptions(),
        ["temperature only (whole vocabulary, id order)"] = new SamplerOptions { Temperature = 1f, TopK = 0, TopP = 1f, MinP = 0f },
        ["hot, top-p without top-k (full sort)"] = new SamplerOptions { Temperature = 1.4f, TopK = 0, TopP = 0.9f, MinP = 0f },
        ["min-p without sorting"] = new SamplerOptions { Temperature = 0.7f, TopK = 0, TopP = 1f, MinP = 0.1f },
        ["small top-k"] = new SamplerOptions { Temperature = 1f, TopK = 3, TopP = 1f, MinP = 0f },
        ["penalties and the whole chain"] = new SamplerOptions
        {
            Temperature = 0.9f, TopK = 50, TopP = 0.9f, MinP = 0.02f, RepeatLastN = 16, RepeatPenalty = 1.3f, PresencePenalty = 0.4f,
            FrequencyPenalty = 0.2f,
        },
        ["penalties over the whole history"] = new SamplerOptions
        {
            Temperature = 1.1f, TopK = 0, TopP = 0.97f, MinP = 0f, RepeatLastN = -1, RepeatPenalty = 0.8f, FrequencyPenalty = -0.3f,
        },
        ["greedy with penalties"] = new SamplerOptions { Temperature = 0f, RepeatLastN = 8, RepeatPenalty = 1.5f, PresencePenalty = 1f },
    };

    [HostCompilerTheory]
    [MemberData(nameof(Settings))]
    public void OddVocabulariesGiveTheCpuSamplersTokens(string setting)
    {
        foreach (int vocab in new[] { 7, 33, 1001 })
            StreamsAgree(vocab, AllSettings[setting], seeds: 3, rows: 6, threads: vocab < 100 ? 32 : 128);
    }

    [HostCompilerTheory]
    [InlineData("defaults")]
    [InlineData("temperature only (whole vocabulary, id order)")]
    [InlineData("hot, top-p without top-k (full sort)")]
    [InlineData("penalties and the whole chain")]
    public void A32000TokenVocabularyGivesTheCpuSamplersTokens(string setting) =>
        StreamsAgree(32000, AllSettings[setting], seeds: 2, rows: 2, threads: 256);

    [HostCompilerFact]
    public void A1024ThreadBlockOverAnOddVocabularyGivesTheCpuSamplersTokens() =>
        StreamsAgree(5003, AllSettings["penalties and the whole chain"], seeds: 1, rows: 2, threads: 1024);

    /// <summary>
    /// Four leaders of equal logit far above the rest: their softmax mass is exactly 1/4 each in float, so top-p 0.5
    /// stops exactly at the second (the CPU sampler keeps through the first token whose running mass reaches p), and
    /// any p above it takes the third. Ties resolve by id, so the kept leaders are the lowest ids.
    /// </summary>
    [HostCompilerTheory]
    [InlineData(0.5f, 2)]
    [InlineData(0.50001f, 3)]
    [InlineData(0.75f, 3)]
    [InlineData(0.25f, 1)]
    public void TopPAtItsBoundaryKeepsWhatTheCpuSamplerKeeps(float topP, int kept)
    {
        const int vocab = 32000;
        int[] leaders = [29999, 17, 4242, 31000]; // in id order: 17, 4242, 29999, 31000
        var logits = new float[vocab];
        for (int i = 0; i < vocab; i++) logits[i] = -30f;
        foreach (int id in leaders) logits[id] = 5f;
        var options = new SamplerOptions { Temperature = 1f, TopK = 0, TopP = topP, MinP = 0f };
        var allowed = leaders.Order().Take(kept).ToHashSet();
        var cases = new List<SampleKernel.Case>();
        var expected = new List<int>();
        var cpu = new Sampler(vocab, options with { Seed = 7 });
        var uniforms = new Sampler(vocab, options with { Seed = 7 });
        for (int i = 0; i < 24; i++)
        {
            int want = cpu.Sample(logits, []);
            Assert.Contains(want, allowed); // the boundary as the CPU sampler defines it
            expected.Add(want);
            cases.Add(new SampleKernel.Case(logits, DeviceSampling.Settings(options), [], uniforms.NextUniform(), 64));
        }
        Assert.Equal(kept, expected.Distinct().Count()); // 24 draws reach every kept leader
        Assert.Equal(expected, SampleKernel.Run(cases).Select(r => r.Token));
    }

    /// <summary>A flat row: every candidate ties, so top-k keeps the k lowest ids, and the draw walks them in id order.</summary>
    [HostCompilerTheory]
    [InlineData(10, 1f)]
    [InlineData(0, 0.3f)]
    public void AllLogitsTiedResolveByIdAsTheCpuSampler(int topK, float topP)
    {
        const int vocab = 4097;
        var logits = new float[vocab];
        Array.Fill(logits, 1.5f);
        var options = new SamplerOptions { Temperature = 0.5f, TopK = topK, TopP = topP, MinP = 0.05f };
        var cpu = new Sampler(vocab, options with { Seed = 3 });
        var uniforms = new Sampler(vocab, options with { Seed = 3 });
        var expected = new List<int>();
        var cases = new List<SampleKernel.Case>();
        for (int i = 0; i < 16; i++)
        {
            expected.Add(cpu.Sample(logits, []));
            cases.Add(new SampleKernel.Case(logits, DeviceSampling.Settings(options), [], uniforms.NextUniform(), 96));
        }
        int bound = topK > 0 ? topK : (int)Math.Ceiling(topP * vocab);
        Assert.All(expected, t => Assert.InRange(t, 0, bound));
        Assert.Equal(expected, SampleKernel.Run(cases).Select(r => r.Token));
    }

    /// <summary>
    /// Top-k cutting through a tie at its k-th value, the tie made of +0 and -0 (equal as floats, different bits):
    /// the kernel's radix select must keep the lowest ids of the tie whatever their sign, as the CPU's order does.
    /// </summary>
    [HostCompilerFact]
    public void TopKCutsATieOfSignedZerosAtTheLowestIds()
    {
        const int vocab = 2049;
        var logits = new float[vocab];
        Array.Fill(logits, -1f);
        int[] zeros = [2000, 3, 1500, 77, 640, 1999, 12, 1024, 5, 2048];
        for (int i = 0; i < zeros.Length; i++) logits[zeros[i]] = i % 2 == 0 ? -0f : 0f;
        logits[900] = logits[41] = 1f;
        var options = new SamplerOptions { Temperature = 3f, TopK = 6, TopP = 1f, MinP = 0f };
        var keep = new HashSet<int> { 900, 41 };
        keep.UnionWith(zeros.Order().Take(4)); // 3, 5, 12, 77
        var cpu = new Sampler(vocab, options with { Seed = 11 });
        var uniforms = new Sampler(vocab, options with { Seed = 11 });
        var expected = new List<int>();
        var cases = new List<SampleKernel.Case>();
        for (int i = 0; i < 40; i++)
        {
            expected.Add(cpu.Sample(logits, []));
            cases.Add(new SampleKernel.Case(logits, DeviceSampling.Settings(options), [], uniforms.NextUniform(), 64));
        }
        Assert.All(expected, t => Assert.Contains(t, keep));
        Assert.True(expected.Distinct().Count() >= 5, string.Join(",", expected.Distinct()));
        Assert.Equal(expected, SampleKernel.Run(cases).Select(r => r.Token));
    }

    /// <summary>
    /// Many rows, each with its own random settings (every step of the chain on or off, top-k at 1, at the vocabulary,
    /// above it; top-p 1; min-p 0 and 1; temperature 0, below and above 1; penalties over short, whole and empty
    /// windows; vocabularies down to one token) and coarse logits with many ties: the kernel picks the CPU sampler's token.
    /// </summary>
    [HostCompilerFact]
    public void RandomSettingsOverRandomRowsGiveTheCpuSamplersTokens()
    {
        var rng = new Random(20261206);
        var cases = new List<SampleKernel.Case>();
        var expected = new List<int>();
        var described = new List<string>();
        int sampledCases = 0, cutByTopK = 0;
        for (int c = 0; c < 240; c++)
        {
            int vocab = rng.Next(6) switch { 0 => 1 + rng.Next(3), 1 => 2 + rng.Next(40), 2 => 100 + rng.Next(200), 3 => 1000 + rng.Next(600), _ => 33 + rng.Next(64) };
            var options = new SamplerOptions
            {
                Seed = c,
                Temperature = rng.Next(5) switch { 0 => 0f, 1 => 1f, 2 => 0.2f + 0.6f * rng.NextSingle(), _ => 0.8f + 1.5f * rng.NextSingle() },
                TopK = rng.Next(6) switch { 0 => 0, 1 => 1, 2 => vocab, 3 => vocab + 1 + rng.Next(100), _ => 1 + rng.Next(Math.Max(1, vocab / 2)) },
                TopP = rng.Next(3) == 0 ? 1f : 0.05f + 0.95f * rng.NextSingle(),
                MinP = rng.Next(4) switch { 0 => 0f, 1 => 1f, _ => 0.3f * rng.NextSingle() },
                RepeatLastN = rng.Next(4) switch { 0 => 0, 1 => -1, _ => 1 + rng.Next(32) },
                RepeatPenalty = rng.Next(3) == 0 ? 1f : 0.7f + rng.NextSingle(),
                PresencePenalty = rng.Next(2) == 0 ? 0f : rng.NextSingle() - 0.3f,
                FrequencyPenalty = rng.Next(2) == 0 ? 0f : 0.5f * rng.NextSingle() - 0.1f,
            };
            // steps of 0.5 over a small range: ties everywhere, also at the top
            var logits = new float[vocab];
            int levels = 1 + rng.Next(12);
            for (int i = 0; i < vocab; i++) logits[i] = 0.5f * rng.Next(levels) - 2f;
            var history = new int[rng.Next(48)];
            for (int i = 0; i < history.Length; i++) history[i] = rng.Next(vocab);
            var cpu = new Sampler(vocab, options);
            var uniforms = new Sampler(vocab, options);
            int want = cpu.Sample(logits, history);
            double u = options.Temperature > 0 ? uniforms.NextUniform() : 0;
            var pairs = new PenaltyWindow(vocab).Pairs(options, history).ToArray();
            cases.Add(new SampleKernel.Case(logits, DeviceSampling.Settings(options), pairs, u, vocab < 64 ? 32 : 64 << rng.Next(3)));
            expected.Add(want);
            described.Add($"vocab {vocab}, {options}, history [{string.Join(",", history)}]");
            if (options.Temperature > 0) sampledCases++;
            if (options.Temperature > 0 && options.TopK > 0 && options.TopK < vocab) cutByTopK++;
        }
        Assert.True(sampledCases > 150 && cutByTopK > 40, $"{sampledCases} sampled, {cutByTopK} cut by top-k"); // the sweep covers the chain
        var got = SampleKernel.Run(cases);
        for (int i = 0; i < cases.Count; i++)
        {
            Assert.False(got[i].NonFinite);
            Assert.True(expected[i] == got[i].Token, $"case {i} ({described[i]}): the CPU sampler picked {expected[i]}, the kernel {got[i].Token}");
            Assert.Equal(got[i].Token, got[i].Fed);
        }
    }

    [HostCompilerTheory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void ANonFiniteLogitIsFlagged(float bad)
    {
        var logits = Enumerable.Range(0, 3000).Select(i => (float)Math.Sin(i)).ToArray();
        var settings = DeviceSampling.Settings(new SamplerOptions());
        var clean = SampleKernel.Run([new SampleKernel.Case(logits, settings, [], 0.5, 64)]);
        logits[2999] = bad;
        var dirty = SampleKernel.Run([new SampleKernel.Case(logits, settings, [], 0.5, 64)]);
        Assert.False(clean[0].NonFinite);
        Assert.True(dirty[0].NonFinite);
    }
}
