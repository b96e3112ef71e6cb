using EdgeLlm.Backends.Cpu;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.ModelGen;

namespace EdgeLlm.Tests.Grouped;

/// <summary>
/// Whole models with Q/K/V and gate/up as grouped products (<see cref="CpuBackend.MatMulGroup"/>) against the same
/// models with every product run alone (<see cref="CpuBackend.GroupMatMuls"/> off): a 13-token prefill with every
/// position's logits, decode steps, and multi-sequence steps (<see cref="LlamaModel.ForwardSequences"/>: a 5-token
/// batch of three sequences, then 3-token decode steps) must give the same bits, for pure Q4_K, a Q4_K_M mix (a layer
/// whose Q/K/V are Q4_K, Q4_K, Q6_K), Q5_0, Q4_1, a random Q4_0 (the panel and repacked GEMM on x64), F16 qwen2 (biases)
/// and phi3 (its fused attn_qkv split into views), on 1, 2 and 3 threads, with and without batch invariance. The
/// grouped model must also run 3 dispatches fewer per layer (Q/K/V: 3 products to 1, gate/up: 2 to 1; 6 fewer for a
/// prefill batch, whose products quantize in a dispatch of their own), so the grouping is known to have run.
/// The grouped forward is checked against llama.cpp's logits by the model tests that run every quant type
/// (<c>QuantTypeLogitsTests</c>), since grouping is the default.
/// </summary>
public sealed class GroupedForwardTests
{
    private static readonly Lazy<string> Q4_K_M = new(() =>
    {
        string path = TestPaths.TempFile("grouped-q4_k_m.gguf");
        ModelGenerator.Write(new ModelGenOptions { Shape = ModelShape.Preset("tiny")!, Format = WeightFormat.Q4_K_M, Seed = 5 }, path);
        return path;
    });

    private static readonly Lazy<string> Q4_0 = new(() => Model.RandomModel.Write(
        new Model.RandomModelSpec { Dim = 256, Ffn = 512, Heads = 4, KvHeads = 2, Vocab = 300, WeightType = GgmlType.Q4_0, Seed = 25 },
        TestPaths.TempFile("grouped-q4_0.gguf")));

    private static string PathOf(string name) => name switch
    {
        "q4_k_m" => Q4_K_M.Value,
        "random-q4_0" => Q4_0.Value,
        _ => TestPaths.Data(Path.Combine("models-visible", name + ".gguf")),
    };

    public static TheoryData<string, int, bool> Cases()
    {
        var d = new TheoryData<string, int, bool>();
        foreach (string m in new[] { "llama-Q4_K", "q4_k_m", "llama-Q5_0", "llama-Q4_1", "random-q4_0", "qwen2", "phi3" })
            foreach (int threads in new[] { 1, 2, 3 })
                foreach (bool invariant in new[] { false, true })
                    d.Add(m, threads, invariant);
        return d;
    }

    [Fact]
    public void The_q4_k_m_model_mixes_types_in_a_group()
    {
        using var f = GgufFile.Open(PathOf("q4_k_m"));
        var types = new HashSet<GgmlType>();
        for (int l = 0; l < 2; l++)
            foreach (string t in new[] { "attn_q", "attn_k", "attn_v" })
                types.Add(f.GetTensor($"blk.{l}.{t}.weight")!.Value.Type);
        Assert.Equal(new HashSet<GgmlType> { GgmlType.Q4_K, GgmlType.Q6_K }, types);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Grouped_forward_gives_the_bits_of_separate_products(string name, int threads, bool invariant)
    {
        var (sepLogits, sepDispatches) = Run(group: false);
        var (grpLogits, grpDispatches) = Run(group: true);
        Assert.Equal(sepLogits.Count, grpLogits.Count);
        for (int s = 0; s < sepLogits.Count; s++)
        {
            var (what, a) = sepLogits[s];
            var b = grpLogits[s].Logits;
            for (int i = 0; i < a.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(a[i]) == BitConverter.SingleToInt32Bits(b[i]),
                    $"{name}, {threads} threads, invariant {invariant}: {what}: logit {i}: grouped {b[i]} vs separate {a[i]}");
        }
        using var file = GgufFile.Open(PathOf(name));
        int layers = LlamaConfig.FromGguf(file).LayerCount;
        bool quantized = EdgeLlm.Quant.TypeTraits.Of(file.GetTensor("blk.0.attn_q.weight")?.Type ?? file.GetTensor("blk.0.attn_qkv.weight")!.Value.Type)!.IsQuantized;
        for (int s = 0; s < sepDispatches.Count; s++)
        {
            var (what, tokens) = (sepLogits[s].What, sepDispatches[s].Tokens);
            int perProduct = quantized && tokens > MatMul.InlineQuantizeTokens ? 2 : 1;
            Assert.True(sepDispatches[s].Count - grpDispatches[s].Count == 3 * perProduct * layers,
                $"{name}, {threads} threads: {what}: {grpDispatches[s].Count} dispatches grouped, {sepDispatches[s].Count} separate, {3 * perProduct * layers} fewer expected");
        }

        (List<(string What, float[] Logits)>, List<(int Tokens, long Count)>) Run(bool group)
        {
            var options = new BackendOptions { Threads = threads, ContextSize = 64, MaxBatch = 16, BatchInvariant = invariant };
            using var model = new LlamaModel(GgufFile.Open(PathOf(name)), new CpuBackend(threads, invariant) { GroupMatMuls = group }, options, ownsFile: true);
            var backend = (CpuBackend)model.Backend;
            int vocab = model.VocabSize;
            var logits = new List<(string, float[])>();
            var dispatches = new List<(int, long)>();
            var rng = new Random(77);
            int[] prompt = Enumerable.Range(0, 13).Select(_ => 1 + rng.Next(vocab - 1)).ToArray();

            long before = backend.Dispatches;
            var all = new float[prompt.Length * vocab];
            model.Forward(prompt, 0, all, allLogits: true);
            logits.Add(("prefill", all));
            dispatches.Add((prompt.Length, backend.Dispatches - before));
            for (int pos = prompt.Length; pos < prompt.Length + 3; pos++)
            {
                var l = new float[vocab];
                before = backend.Dispatches;
                model.Forward(prompt[pos % prompt.Length], pos, l);
                dispatches.Add((1, backend.Dispatches - before));
                logits.Add(($"decode at {pos}", l));
            }

            var caches = new[] { model.CreateCache(), model.CreateCache(), model.CreateCache() };
            var seqs = new[] { new SequenceBatch(caches[0], 0, 2), new SequenceBatch(caches[1], 0, 1), new SequenceBatch(caches[2], 0, 2) };
            int[] tokens = prompt[..5];
            for (int step = 0; step < 3; step++)
            {
                var l = new float[seqs.Length * vocab];
                before = backend.Dispatches;
                model.ForwardSequences(tokens, seqs, l);
                dispatches.Add((tokens.Length, backend.Dispatches - before));
                logits.Add(($"sequences step {step}", l));
                for (int s = 0; s < seqs.Length; s++) seqs[s] = new SequenceBatch(caches[s], seqs[s].StartPos + seqs[s].Count, 1);
                tokens = [prompt[step + 5], prompt[step + 6], prompt[step + 7]];
            }
            return (logits, dispatches);
        }
    }

    /// <summary>Decode, a prefill batch and multi-sequence steps through the grouped products allocate nothing (one thread: every op runs on the caller, whose counter sees it all).</summary>
    [Theory]
    [InlineData("llama-Q4_K")]
    [InlineData("q4_k_m")]
    [InlineData("random-q4_0")]
    public void Grouped_forward_allocates_nothing(string name)
    {
        using var model = LlamaModel.Load(PathOf(name), new BackendOptions { Threads = 1, ContextSize = 64, MaxBatch = 16 });
        int vocab = model.VocabSize;
        int[] prompt = [5, 9, 17, 3, 11, 2, 8, 30, 4, 6];
        var logits = new float[prompt.Length * vocab];
        var caches = new[] { model.CreateCache(), model.CreateCache() };
        var seqs = new[] { new SequenceBatch(caches[0], 0, 1), new SequenceBatch(caches[1], 0, 3) };
        int[] step = [7, 8, 9, 10];
        model.Forward(prompt, 0, logits, allLogits: true); // warm up: JIT, first-use paths (repacking, the rope tables)
        model.Forward(5, 10, logits);
        model.ForwardSequences(step, seqs, logits);
        seqs[0] = new SequenceBatch(caches[0], 1, 1);
        seqs[1] = new SequenceBatch(caches[1], 3, 3);
        model.ForwardSequences(step, seqs, logits); // and the second rope table's first use
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int pos = 11; pos < 14; pos++) model.Forward(7, pos, logits);
        long decode = GC.GetAllocatedBytesForCurrentThread() - before;
        model.Forward(prompt, 14, logits, allLogits: true);
        long prefill = GC.GetAllocatedBytesForCurrentThread() - before - decode;
        seqs[0] = new SequenceBatch(caches[0], 2, 1);
        seqs[1] = new SequenceBatch(caches[1], 6, 3);
        model.ForwardSequences(step, seqs, logits);
        long sequences = GC.GetAllocatedBytesForCurrentThread() - before - decode - prefill;
        Assert.True(decode == 0 && prefill == 0 && sequences == 0, $"{name}: decode allocated {decode} bytes, prefill {prefill}, sequences {sequences}");
    }
}
