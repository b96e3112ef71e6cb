using System.Diagnostics;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

// A server step measured op by op (issue 15): four sequences of one token each through LlamaModel.ForwardSequences (the
// slot scheduler's call) against one sequence's one-token step, alternated step by step on one model, with the CPU
// backend wrapped in a timing decorator (one Stopwatch read before and after each backend call; nothing in the engine
// changes). Per op it prints the smallest per-step total over the measured steps (on a shared, loaded machine the
// minimum is the least disturbed sample), the step medians and minima, and the worker-pool dispatches of each step.
//   dotnet run -c Release --project perf/step-profile -- MODEL THREADS STEPS [profile|plain|prompt] [LABEL]
//   (prompt: a 9-token prompt chunk of one sequence against four sequences' chunks in one batch, profiled)
//   dotnet run -c Release --project perf/step-profile -- MODEL 1 REPS q6k [LABEL]   (Q6_K Dot vs Dot4, one thread, in cache)
//   dotnet run -c Release --project perf/step-profile -- MODEL THREADS REPS out [LABEL]   (the output and layer-0 products at 1, 2, 4 tokens)
//   dotnet run -c Release --project perf/step-profile -- - THREADS REPS cores [LABEL]   (how far THREADS (>= 2) threads share vector units:
//   a scalar dependent-multiply chain, a vector-add loop and the Q4_0 AVX-512 one- and four-token loops, in cache and from DRAM, 1 vs THREADS threads)
//   dotnet run -c Release --project perf/step-profile -- - THREADS REPS attn|attncold [LABEL]   (one layer's AttendSequences, 1 vs 4 sequences,
//   1.1B shape; attncold: 64 MiB swept through the caches before each call, as a step's weights do between two layers' attentions)
string path = args[0];
int threads = int.Parse(args[1]);
int steps = int.Parse(args[2]);
string mode = args.Length > 3 ? args[3] : "profile";
string label = args.Length > 4 ? args[4] : "";
if (mode == "q6k") { Q6Bench.Run(path, steps, label); return; }
if (mode == "out") { OutBench.Run(path, threads, steps, label); return; }
if (mode == "cores") { CoreShareBench.Run(threads, steps, label); return; }
if (mode is "attn" or "attncold") { AttnBench.Run(threads, steps, label, cold: mode == "attncold"); return; }
bool profile = mode is "profile" or "prompt";

var inner = new CpuBackend(threads, batchInvariant: true); // serve --parallel N > 1 runs batch-invariant
var prof = new ProfilingBackend(inner);
var file = GgufFile.Open(path);
var model = new LlamaModel(file, profile ? prof : inner, new BackendOptions { Threads = threads, ContextSize = 512, BatchInvariant = true }, ownsFile: true);
int vocab = model.VocabSize;
// STEP_SEQS=N (2..8) measures N sequences against one instead of four.
int S = int.TryParse(Environment.GetEnvironmentVariable("STEP_SEQS"), out int sEnv) && sEnv is >= 2 and <= 8 ? sEnv : 4;
var caches = new KvCache[S];
var logits = new float[S * vocab];
var rng = new Random(7);
int[] last = new int[S];
int[] pos = new int[S];
for (int s = 0; s < S; s++)
{
    // Prompts of 24, 28, 32 and 36 tokens, as the load test's requests start.
    caches[s] = model.CreateCache();
    int n = 24 + 4 * s;
    var toks = new int[n];
    for (int i = 0; i < n; i++) toks[i] = rng.Next(vocab);
    model.ForwardSequences(toks, [new SequenceBatch(caches[s], 0, n)], logits);
    last[s] = rng.Next(vocab);
    pos[s] = n;
}
var seqs4 = new SequenceBatch[S];
var seqs1 = new SequenceBatch[1];
// "prompt" mode: the load test's prompt steps instead of decode steps: one sequence's PROMPT-token chunk against four
// sequences' chunks in one batch (what the server runs when four requests start together), each rerun at the same
// positions (the cache rewound), alternated.
const int PromptTokens = 9;
var promptToks = new int[S * PromptTokens];
for (int i = 0; i < promptToks.Length; i++) promptToks[i] = rng.Next(vocab);
bool promptMode = mode == "prompt";
double Step(int k)
{
    if (promptMode)
    {
        long p0 = Stopwatch.GetTimestamp();
        if (k == 1)
        {
            seqs1[0] = new SequenceBatch(caches[0], 24, PromptTokens);
            model.ForwardSequences(promptToks.AsSpan(0, PromptTokens), seqs1, logits);
        }
        else
        {
            for (int s = 0; s < S; s++) seqs4[s] = new SequenceBatch(caches[s], 24, PromptTokens);
            model.ForwardSequences(promptToks, seqs4, logits);
        }
        return Stopwatch.GetElapsedTime(p0).TotalMilliseconds;
    }

    long t0 = Stopwatch.GetTimestamp();
    if (k == 1)
    {
        seqs1[0] = new SequenceBatch(caches[0], pos[0], 1);
        model.ForwardSequences(last.AsSpan(0, 1), seqs1, logits);
    }
    else
    {
        for (int s = 0; s < S; s++) seqs4[s] = new SequenceBatch(caches[s], pos[s], 1);
        model.ForwardSequences(last, seqs4, logits);
    }
    double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
    for (int s = 0; s < k; s++) pos[s]++;
    return ms;
}
for (int i = 0; i < 6; i++) { Step(1); Step(S); }
var dispatchProp = typeof(CpuBackend).GetProperty("Dispatches", System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic)!;
long Dispatches() => (long)dispatchProp.GetValue(inner)!;
long d0 = Dispatches(); Step(1); long d1 = Dispatches(); Step(S); long d4 = Dispatches();
Console.WriteLine($"{label} worker-pool dispatches per step: 1 token {d1 - d0}, {S} sequences {d4 - d1}");
var t1 = new List<double>(); var t4 = new List<double>();
var p1 = new Dictionary<string, double>(); var p4 = new Dictionary<string, double>();
for (int i = 0; i < steps; i++)
{
    prof.Reset(); t1.Add(Step(1)); prof.AddTo(p1);
    prof.Reset(); t4.Add(Step(S)); prof.AddTo(p4);
}
double Med(List<double> l) { var a = l.ToArray(); Array.Sort(a); return a[a.Length / 2]; }
Console.WriteLine($"{label} step1 median {Med(t1):F2} ms min {t1.Min():F2} | step{S} median {Med(t4):F2} ms min {t4.Min():F2} | ratio{S}/1 {Med(t4) / Med(t1):F3} | agg speedup {S * Med(t1) / Med(t4):F2}x");
if (profile)
{
    Console.WriteLine($"{"op (min over steps of the per-step sum)",-40} {"1-tok ms",9} {$"{S}-seq ms",9} {"delta",8}");
    foreach (var key in p4.Keys.Union(p1.Keys).OrderByDescending(k => p4.GetValueOrDefault(k)))
    {
        double a = p1.GetValueOrDefault(key), b = p4.GetValueOrDefault(key);
        Console.WriteLine($"{key,-40} {a,9:F3} {b,9:F3} {b - a,8:F3}");
    }
    Console.WriteLine($"{"sum of per-op minima",-40} {p1.Values.Sum(),9:F3} {p4.Values.Sum(),9:F3}");
}
model.Dispose();

/// <summary>The CPU backend with every forward-pass op timed (keyed by op, and for products by weight role and type).</summary>
sealed class ProfilingBackend(CpuBackend b) : IBackend, ISequenceAttention
{
    private readonly Dictionary<string, long> _ticks = new();
    public void Reset() => _ticks.Clear();
    public void AddTo(Dictionary<string, double> d)
    {
        foreach (var (k, v) in _ticks) { double ms = v * 1000.0 / Stopwatch.Frequency; d[k] = d.TryGetValue(k, out double o) ? Math.Min(o, ms) : ms; }
    }
    private void Add(string key, long t0) { long dt = Stopwatch.GetTimestamp() - t0; _ticks[key] = _ticks.GetValueOrDefault(key) + dt; }
    private static string Role(BackendWeight w)
    {
        string n = w.Name;
        int dot = n.IndexOf('.');
        if (n.StartsWith("blk.")) { int d2 = n.IndexOf('.', dot + 1); n = n[(d2 + 1)..]; }
        return $"{n} ({GgmlTypes.Name(w.Type)})";
    }
    public string Name => b.Name;
    public void Prepare(BackendLimits limits) => b.Prepare(limits);
    public BackendBuffer Allocate(long length) => b.Allocate(length);
    public BackendBuffer AllocateCache(long length, KvCacheType type) => b.AllocateCache(length, type);
    public KvCacheType DefaultCacheType => ((IBackend)b).DefaultCacheType;
    public BackendWeight LoadWeight(TensorView tensor) => b.LoadWeight(tensor);
    public void GetRows(BackendWeight table, ReadOnlySpan<int> ids, BackendBuffer dst) { long t = Stopwatch.GetTimestamp(); b.GetRows(table, ids, dst); Add("get_rows", t); }
    public void RmsNorm(BackendBuffer x, BackendWeight weight, BackendBuffer dst, int nTokens, int dim, float eps) { long t = Stopwatch.GetTimestamp(); b.RmsNorm(x, weight, dst, nTokens, dim, eps); Add("rms_norm", t); }
    public void MatMul(BackendWeight weight, BackendBuffer x, BackendBuffer dst, int nTokens) { long t = Stopwatch.GetTimestamp(); b.MatMul(weight, x, dst, nTokens); Add("matmul " + Role(weight), t); }
    public void MatMulGroup(ReadOnlySpan<BackendWeight> weights, BackendBuffer x, ReadOnlySpan<BackendBuffer> dsts, int nTokens) { long t = Stopwatch.GetTimestamp(); b.MatMulGroup(weights, x, dsts, nTokens); Add("matmul group " + Role(weights[0]) + "+", t); }
    public void Rope(BackendBuffer x, int nTokens, int nHeads, int startPos, RopeSpec rope) { long t = Stopwatch.GetTimestamp(); b.Rope(x, nTokens, nHeads, startPos, rope); Add("rope", t); }
    public void StoreKv(KvCache cache, int layer, int startPos, int nTokens, BackendBuffer k, BackendBuffer v) { long t = Stopwatch.GetTimestamp(); b.StoreKv(cache, layer, startPos, nTokens, k, v); Add("store_kv", t); }
    public void Attention(BackendBuffer q, KvCache cache, int layer, int startPos, int nTokens, int nHeads, int headDim, BackendBuffer dst, AttentionOptions options) { long t = Stopwatch.GetTimestamp(); b.Attention(q, cache, layer, startPos, nTokens, nHeads, headDim, dst, options); Add("attention", t); }
    public void AttendSequences(BackendBuffer q, BackendBuffer k, BackendBuffer v, BackendBuffer dst, ReadOnlySpan<SequenceBatch> seqs, int layer, int nHeads, int nKvHeads, RopeSpec rope, AttentionOptions options) { long t = Stopwatch.GetTimestamp(); b.AttendSequences(q, k, v, dst, seqs, layer, nHeads, nKvHeads, rope, options); Add("attend_sequences (rope+kv+attn)", t); }
    public void AttendSequencesMatMul(BackendBuffer q, BackendBuffer k, BackendBuffer v, BackendBuffer dst, ReadOnlySpan<SequenceBatch> seqs, int layer, int nHeads, int nKvHeads, RopeSpec rope, AttentionOptions options, BackendWeight weight, BackendBuffer product)
    {
        if (b.ThreadCount == 1) // one thread: the backend runs the two ops anyway (it fuses them only on several threads), so time them apart
        {
            int rows = 0;
            foreach (var sq in seqs) rows += sq.Count;
            AttendSequences(q, k, v, dst, seqs, layer, nHeads, nKvHeads, rope, options);
            MatMul(weight, dst, product, rows);
            return;
        }
        long t = Stopwatch.GetTimestamp(); b.AttendSequencesMatMul(q, k, v, dst, seqs, layer, nHeads, nKvHeads, rope, options, weight, product); Add("attend+matmul " + Role(weight), t);
    }
    public void Glu(BackendBuffer gate, BackendBuffer up, long count, GluKind kind) { long t = Stopwatch.GetTimestamp(); b.Glu(gate, up, count, kind); Add("glu", t); }
    public void AddRmsNorm(BackendBuffer x, BackendBuffer delta, BackendWeight weight, BackendBuffer dst, int nTokens, int dim, float eps) { long t = Stopwatch.GetTimestamp(); b.AddRmsNorm(x, delta, weight, dst, nTokens, dim, eps); Add("add+rms_norm", t); }
    public void NormMatMulGroup(BackendBuffer x, BackendBuffer? delta, BackendWeight norm, BackendBuffer normed, int dim, float eps, ReadOnlySpan<BackendWeight> weights, ReadOnlySpan<BackendBuffer> dsts, int nTokens) { long t = Stopwatch.GetTimestamp(); b.NormMatMulGroup(x, delta, norm, normed, dim, eps, weights, dsts, nTokens); Add("norm+matmul group " + Role(weights[0]) + "+", t); }
    public void GluMatMul(BackendWeight weight, BackendBuffer gate, BackendBuffer up, GluKind kind, BackendBuffer dst, int nTokens) { long t = Stopwatch.GetTimestamp(); b.GluMatMul(weight, gate, up, kind, dst, nTokens); Add("glu+matmul " + Role(weight), t); }
    public void RopeAttention(BackendBuffer q, BackendBuffer k, BackendBuffer v, KvCache cache, int layer, int startPos, int nTokens, int nHeads, int nKvHeads, RopeSpec rope, BackendBuffer dst, AttentionOptions options) { long t = Stopwatch.GetTimestamp(); b.RopeAttention(q, k, v, cache, layer, startPos, nTokens, nHeads, nKvHeads, rope, dst, options); Add("rope+kv+attention", t); }
    public void AddBias(BackendBuffer x, BackendWeight bias, int nTokens) { long t = Stopwatch.GetTimestamp(); b.AddBias(x, bias, nTokens); Add("add_bias", t); }
    public void Scale(BackendBuffer x, long count, float factor) { long t = Stopwatch.GetTimestamp(); b.Scale(x, count, factor); Add("scale", t); }
    public void Softcap(BackendBuffer x, long count, float cap) { long t = Stopwatch.GetTimestamp(); b.Softcap(x, count, cap); Add("softcap", t); }
    public void Add(BackendBuffer x, BackendBuffer y, long count) { long t = Stopwatch.GetTimestamp(); b.Add(x, y, count); Add("add", t); }
    public void Copy(BackendBuffer src, long srcOffset, BackendBuffer dst, long dstOffset, long count) { long t = Stopwatch.GetTimestamp(); b.Copy(src, srcOffset, dst, dstOffset, count); Add("copy", t); }
    public void CopyOut(BackendBuffer src, long srcOffset, Span<float> dst) { long t = Stopwatch.GetTimestamp(); b.CopyOut(src, srcOffset, dst); Add("copy_out (logits)", t); }
    public void CopyIn(ReadOnlySpan<float> src, BackendBuffer dst, long dstOffset) => b.CopyIn(src, dst, dstOffset);
    public void ShiftKv(KvCache cache, int layer, int keep, int drop, RopeSpec rope) => b.ShiftKv(cache, layer, keep, drop, rope);
    public void CacheRows(KvCache cache, int layer, bool values, int pos, int count, Span<byte> dst, bool write) => b.CacheRows(cache, layer, values, pos, count, dst, write);
    public void Dispose() => b.Dispose();
}

/// <summary>The output layer and layer 0's attn_output, ffn_gate and ffn_down as lone products of 1, 2 and 4 tokens (min, p25, median of REPS).</summary>
static class OutBench
{
    public static void Run(string path, int threads, int reps, string label)
    {
        var file = GgufFile.Open(path);
        var cfg = LlamaConfig.FromGguf(file);
        var weights = new LlamaWeights(file, cfg);
        var b = new CpuBackend(threads, batchInvariant: true);
        b.Prepare(new BackendLimits(8, Math.Max(cfg.Dim, cfg.FfnDim), 512, cfg.HeadDim, cfg.RopeDims));
        foreach (var tv in new[] { weights.Output, weights.Layers[0].Wo, weights.Layers[0].Gate, weights.Layers[0].Down })
        {
            var w = b.LoadWeight(tv);
            var x = b.Allocate(8L * cfg.FfnDim);
            var rnd = new Random(3);
            var xs = new float[8 * cfg.FfnDim];
            for (int i = 0; i < xs.Length; i++) xs[i] = (float)(rnd.NextDouble() * 2 - 1);
            b.CopyIn(xs, x, 0);
            var dst = b.Allocate(8L * cfg.VocabSize);
            var t = new List<double>[9];
            for (int k = 0; k < 9; k++) t[k] = new();
            int[] ns = [1, 2, 4];
            for (int r = 0; r < reps; r++)
                foreach (int n in ns)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    b.MatMul(w, x, dst, n);
                    t[n].Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
            foreach (int n in ns)
            {
                var a = t[n].ToArray(); Array.Sort(a);
                Console.WriteLine($"{label} {w.Name} {GgmlTypes.Name(w.Type)} {w.Rows}x{w.Ne0} n={n} threads={threads}: min {a[0]:F3} ms  p25 {a[a.Length / 4]:F3}  median {a[a.Length / 2]:F3}");
            }
        }
    }
}

/// <summary>One Q6_K row against four tokens: four one-token loops vs the four-token loop, one thread, 384 rows in cache.</summary>
static unsafe class Q6Bench
{
    public static void Run(string path, int reps, string label)
    {
        var file = GgufFile.Open(path);
        var cfg = LlamaConfig.FromGguf(file);
        var weights = new LlamaWeights(file, cfg);
        var tv = weights.Output;
        int n = cfg.Dim;
        const int Rows = 384;
        long rowBytes = tv.ByteLength / cfg.VocabSize;
        byte* w = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(Rows * rowBytes), 64);
        new ReadOnlySpan<byte>(tv.Data, (int)(Rows * rowBytes)).CopyTo(new Span<byte>(w, (int)(Rows * rowBytes)));
        long xs = (n / 256) * 292;
        byte* xq = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(4 * xs), 64);
        var rnd = new Random(5);
        var xf = new float[n];
        fixed (float* xp = xf)
            for (int t = 0; t < 4; t++) { for (int i = 0; i < n; i++) xf[i] = (float)(rnd.NextDouble() * 2 - 1); EdgeLlm.Backends.Cpu.Kernels.ActivationQuant.QuantizeQ8_K(xp, xq + t * xs, n); }
        float* dst = stackalloc float[4 * Rows];
        var t1 = new List<double>(); var t4 = new List<double>();
        for (int r = 0; r < reps; r++)
        {
            long a = Stopwatch.GetTimestamp();
            for (int row = 0; row < Rows; row++)
                for (int t = 0; t < 4; t++) dst[t * Rows + row] = EdgeLlm.Backends.Cpu.Kernels.DotQ6_K.DotAvx512(w + row * rowBytes, xq + t * xs, n);
            long b = Stopwatch.GetTimestamp();
            for (int row = 0; row < Rows; row++) EdgeLlm.Backends.Cpu.Kernels.DotQ6_K.Dot4(w + row * rowBytes, xq, xs, n, dst + row, Rows);
            long c = Stopwatch.GetTimestamp();
            t1.Add((b - a) * 1e6 / Stopwatch.Frequency / Rows); t4.Add((c - b) * 1e6 / Stopwatch.Frequency / Rows);
        }
        t1.Sort(); t4.Sort();
        Console.WriteLine($"{label} Q6_K row of {n}, 1 thread, in cache: 4x Dot min {t1[0] * 1000:F0} ns/row (p10 {t1[t1.Count / 10] * 1000:F0}) | Dot4 min {t4[0] * 1000:F0} ns/row (p10 {t4[t4.Count / 10] * 1000:F0}) | Dot4 / one Dot {4 * t4[0] / t1[0]:F2}");
    }
}

/// <summary>
/// One layer's <see cref="CpuBackend.AttendSequences"/> (k rotation, K/V store, attention) at the 1.1B shape (32 heads of
/// 64, 4 KV heads, f32 cache): one sequence's decode token against four sequences' (each at its own position), min and
/// median over REPS alternated calls, for several context lengths (the positions the load test's requests reach, and
/// longer). Only the public backend API, so it builds against an older tree too.
/// </summary>
static class AttnBench
{
    public static void Run(int threads, int reps, string label, bool cold)
    {
        var sweep = new long[cold ? 8 << 20 : 1];
        long sink = 0;
        void Evict() { if (!cold) return; for (int i = 0; i < sweep.Length; i += 8) sink += sweep[i]++; }
        const int heads = 32, kvHeads = 4, headDim = 64, qDim = heads * headDim, kvDim = kvHeads * headDim, ctx = 512, S = 4;
        using var b = new CpuBackend(threads, batchInvariant: true);
        b.Prepare(new BackendLimits(8, qDim, ctx, headDim, headDim));
        var rope = new RopeSpec(headDim, headDim, 10000f, 1f, null);
        var options = new AttentionOptions(1f / MathF.Sqrt(headDim), 0f, 0);
        var rng = new Random(11);
        float[] Rand(int n) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1); return a; }
        var caches = new KvCache[S];
        var kb = b.Allocate(8 * kvDim);
        var vb = b.Allocate(8 * kvDim);
        for (int s = 0; s < S; s++)
        {
            caches[s] = ((IBackend)b).CreateCache(1, ctx, kvDim, KvCacheType.F32, KvCacheType.F32);
            for (int p = 0; p < ctx; p += 8)
            {
                b.CopyIn(Rand(8 * kvDim), kb, 0);
                b.CopyIn(Rand(8 * kvDim), vb, 0);
                b.StoreKv(caches[s], 0, p, 8, kb, vb);
            }
        }
        var q = b.Allocate(S * qDim);
        var k = b.Allocate(S * kvDim);
        var v = b.Allocate(S * kvDim);
        var dst = b.Allocate(S * qDim);
        float[] qs = Rand(S * qDim), ks = Rand(S * kvDim), vs = Rand(S * kvDim);
        var one = new SequenceBatch[1];
        var four = new SequenceBatch[S];
        foreach (int basePos in new[] { 30, 61, 100, 250 })
        {
            var t1 = new double[reps];
            var t4 = new double[reps];
            for (int r = 0; r < reps; r++)
            {
                b.CopyIn(qs, q, 0); b.CopyIn(ks, k, 0); b.CopyIn(vs, v, 0);
                one[0] = new SequenceBatch(caches[0], basePos, 1);
                Evict();
                long a0 = Stopwatch.GetTimestamp();
                b.AttendSequences(q, k, v, dst, one, 0, heads, kvHeads, rope, options);
                t1[r] = Stopwatch.GetElapsedTime(a0).TotalMicroseconds;
                b.CopyIn(qs, q, 0); b.CopyIn(ks, k, 0); b.CopyIn(vs, v, 0);
                for (int s = 0; s < S; s++) four[s] = new SequenceBatch(caches[s], basePos + 3 * s, 1);
                Evict();
                long a1 = Stopwatch.GetTimestamp();
                b.AttendSequences(q, k, v, dst, four, 0, heads, kvHeads, rope, options);
                t4[r] = Stopwatch.GetElapsedTime(a1).TotalMicroseconds;
            }
            if (sink == 42) Console.Write("");
            Array.Sort(t1); Array.Sort(t4);
            Console.WriteLine($"{label} {(cold ? "attncold" : "attn")} pos {basePos,3} threads {threads}: 1 seq min {t1[0],7:F2} med {t1[reps / 2],7:F2} us | 4 seqs min {t4[0],7:F2} med {t4[reps / 2],7:F2} us | 4/1 {t4[0] / t1[0]:F2}");
        }
    }
}
