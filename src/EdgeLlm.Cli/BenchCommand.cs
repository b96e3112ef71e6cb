using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeLlm.Backends;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Compute;
using EdgeLlm.Diagnostics;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using Microsoft.Extensions.Logging;

namespace EdgeLlm.Cli;

/// <summary>
/// `edgellm bench`: llama-bench style throughput. Prompt processing (pp) is one forward pass of P tokens from
/// an empty cache; generation (tg) is N single-token passes from an empty cache. Each is run once to warm up,
/// then REPS times; the table gives the median tokens/s and the min..max spread. Decode is memory bound, so
/// the bench also reports the weight bytes one generated token reads, the GB/s that achieves, and that as a
/// fraction of the machine's streaming read bandwidth measured by <see cref="MemoryBandwidth"/> with the same
/// thread count. With --json the last stdout line is one JSON object with every number.
/// </summary>
public sealed class BenchCommand : Command
{
    private static readonly OptionSpec Prompt = new(["-p", "--n-prompt"], true, "N", "prompt tokens per pp run; 0 = skip pp (default 512)");
    private static readonly OptionSpec Gen = new(["-n", "--n-gen"], true, "N", "tokens per tg run; 0 = skip tg (default 128)");
    private static readonly OptionSpec Reps = new(["-r", "--repetitions"], true, "N", "timed runs of each test, after one warm-up (default 3)");
    private static readonly OptionSpec Batch = new(["-b", "--batch-size"], true, "N", "most tokens per forward pass in pp (default 512)");
    private static readonly OptionSpec Depth = new(["-d", "--depth"], true, "N", "tokens already in the KV cache when pp and tg start (llama-bench's -d; default 0)");
    private static readonly OptionSpec BwMib = new(["--bw-mib"], true, "MIB", "buffer for the memory-bandwidth probe, in MiB (default 1024); 0 = skip");
    private static readonly OptionSpec Json = new(["--json"], false, null, "also print one JSON object as the last line of stdout");
    private static readonly OptionSpec BatchInvariant = new(["--batch-invariant"], false, null, "run every batch size through the kernels of the largest (serve --parallel N>1's mode: repacked weights for one token too)");

    public override string Name => "bench";
    public override string Summary => "prompt and generation tokens/s, weight bandwidth per token, and the machine's memory bandwidth";
    public override string Usage => "bench [-m MODEL] [-p 512] [-n 128] [-t THREADS] [-r REPS] [-b BATCH] [-d DEPTH] [--bw-mib MIB] [--batch-invariant] [--json]";
    public override IReadOnlyList<OptionSpec> Options { get; } = [Model, Prompt, Gen, Threads, Reps, Batch, Depth, BwMib, Device, GpuLayers, CacheTypeK, CacheTypeV, Mmap, NoMmap, Mlock, BatchInvariant, Json, Verbose, Help];

    /// <summary>Median, extremes and sample standard deviation of one test's tokens/s over the repetitions.</summary>
    public readonly record struct Stats(double Median, double Min, double Max, double StdDev)
    {
        public static Stats Of(double[] v)
        {
            if (v.Length == 0) return default;
            var s = (double[])v.Clone();
            Array.Sort(s);
            double median = s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
            double mean = 0;
            foreach (double x in s) mean += x;
            mean /= s.Length;
            double ss = 0;
            foreach (double x in s) ss += (x - mean) * (x - mean);
            return new Stats(median, s[0], s[^1], s.Length > 1 ? Math.Sqrt(ss / (s.Length - 1)) : 0);
        }
    }

    public override int Run(CliArgs args, CliContext ctx)
    {
        args.ModelPositional();
        int p = args.GetInt("-p", 512, 0, LlamaConfig.MaxContext);
        int n = args.GetInt("-n", 128, 0, LlamaConfig.MaxContext);
        int reps = args.GetInt("-r", 3, 1, 1000);
        int batch = args.GetInt("-b", 512, 1, 1 << 16);
        int threadsWanted = args.GetInt("-t", 0, 0, 1024);
        int bwMib = args.GetInt("--bw-mib", 1024, 0, 1 << 20);
        int depth = args.GetInt("-d", 0, 0, LlamaConfig.MaxContext);
        if (p == 0 && n == 0) throw new UsageException("nothing to measure: -p and -n are both 0");
        if ((long)depth + Math.Max(p, n) > LlamaConfig.MaxContext)
            throw new UsageException($"-d + max(-p, -n) = {(long)depth + Math.Max(p, n)} exceeds the largest context {LlamaConfig.MaxContext}");
        string path = ModelPaths.Resolve(args.GetString("-m"));
        var log = ctx.Logger("bench");
        ModelOptions.WarnThreads(threadsWanted, ctx);

        var loadOptions = ModelOptions.LoadOptions(args);
        using var model = LlamaModel.Load(ModelPaths.Open(path, loadOptions), new BackendOptions
        {
            Threads = threadsWanted,
            ContextSize = depth + Math.Max(p, n),
            MaxBatch = Math.Max(1, Math.Min(batch, Math.Max(p, depth))),
            Device = ModelOptions.DeviceOption(args),
            Load = loadOptions,
            GpuLayers = ModelOptions.GpuLayersOption(args),
            CacheTypeK = ModelOptions.CacheType(args, "--cache-type-k"),
            CacheTypeV = ModelOptions.CacheType(args, "--cache-type-v"),
            BatchInvariant = args.Has("--batch-invariant"),
        });
        log.Log(model.BackendWarning ? LogLevel.Warning : LogLevel.Information, "{Device}", model.BackendDescription);
        ModelOptions.LogLoad(model, log);
        int threads = model.Backend is CpuBackend cpu ? cpu.ThreadCount : threadsWanted;
        log.LogInformation("loaded {Path}: {Config}; backend {Backend}", path, model.Config, model.Backend.Name);

        // Random token ids, as llama-bench uses: the work does not depend on them.
        var rng = new Random(1234);
        var tokens = new int[Math.Max(p, n)];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = rng.Next(model.VocabSize);
        var logits = new float[model.VocabSize];
        bool finite = true;

        // The context every run starts from: -d tokens, evaluated once (untimed). Each run starts at position `depth`
        // and overwrites what the previous run left after it.
        model.Cache.Clear();
        if (depth > 0)
        {
            var context = new int[depth];
            for (int i = 0; i < depth; i++) context[i] = rng.Next(model.VocabSize);
            long d0 = Stopwatch.GetTimestamp();
            model.Forward(context, 0, logits);
            log.LogInformation("depth {Depth}: context evaluated in {Ms:F0} ms", depth, Stopwatch.GetElapsedTime(d0).TotalMilliseconds);
        }

        double RunPrompt()
        {
            long t0 = Stopwatch.GetTimestamp();
            model.Forward(tokens.AsSpan(0, p), depth, logits);
            double s = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            finite &= AllFinite(logits);
            return p / s;
        }
        double RunGen(int count)
        {
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < count; i++) model.Forward(tokens[i], depth + i, logits);
            double s = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            finite &= AllFinite(logits);
            return count / s;
        }

        // Progress on a terminal (with -v the log lines below say the same).
        var progress = new ProgressLine(ctx, "bench", linesWithVerbose: false);
        long steps = (p > 0 ? reps + 1 : 0) + (n > 0 ? reps + 1 : 0) + (bwMib > 0 ? 1 : 0), step = 0;
        progress.Report(0, steps);
        var pp = new double[p > 0 ? reps : 0];
        var tg = new double[n > 0 ? reps : 0];
        if (p > 0)
        {
            log.LogInformation("pp{P} warm-up: {TokS:F2} tok/s", p, RunPrompt());
            progress.Report(++step, steps);
            for (int r = 0; r < reps; r++)
            {
                log.LogInformation("pp{P} run {R}/{Reps}: {TokS:F2} tok/s", p, r + 1, reps, pp[r] = RunPrompt());
                progress.Report(++step, steps);
            }
        }
        if (n > 0)
        {
            log.LogInformation("tg warm-up (1 token): {TokS:F2} tok/s", RunGen(1));
            progress.Report(++step, steps);
            for (int r = 0; r < reps; r++)
            {
                log.LogInformation("tg{N} run {R}/{Reps}: {TokS:F2} tok/s", n, r + 1, reps, tg[r] = RunGen(n));
                progress.Report(++step, steps);
            }
        }
        model.Cache.Clear();

        BandwidthResult? bw = null;
        if (bwMib > 0)
        {
            // The 100% mark is the memory the weights live in: device-to-device copies on a GPU, a streaming read on the CPU.
            long bytes = (long)bwMib << 20;
            if (model.Backend is EdgeLlm.Backends.Cuda.CudaBackend gpu)
            {
                double gbs = gpu.MeasureCopyBandwidth(bytes);
                bw = new BandwidthResult(gbs, gbs, bytes, 1, 20, "cuda copy");
            }
            else
            {
                bw = MemoryBandwidth.Measure(threads, bytes);
            }
            log.LogInformation("memory read bandwidth: best {Best:F1} GB/s, median {Median:F1} GB/s", bw.Value.BestGBps, bw.Value.MedianGBps);
        }

        progress.Done();
        var result = new BenchResult
        {
            ModelPath = path,
            ModelName = model.File.GetString("general.name") ?? Path.GetFileNameWithoutExtension(path),
            Totals = WeightTraffic.FileTotals(model.File),
            Type = GgmlTypes.Name(WeightTraffic.DominantType(model.File)),
            P = p, N = n, Depth = depth, Reps = reps, Threads = threads, Batch = model.MaxBatch, Context = model.ContextSize,
            Pp = Stats.Of(pp), Tg = Stats.Of(tg),
            BytesPerToken = WeightTraffic.BytesPerToken(model.Weights),
            Bandwidth = bw,
            Finite = finite,
            Backend = model.Backend.Name + (model.File.InMemory ? ", weights read into memory" : ", weights memory-mapped") + (model.File.Locked ? " (locked)" : ""),
        };
        WriteTable(ctx.Out, result);
        CudaProfileOutput.Print(model, ctx.Err);
        if (!finite) ctx.Err.WriteLine("edgellm bench: warning: the model produced non-finite logits");
        if (args.Has("--json")) ctx.Out.WriteLine(result.ToJson());
        return 0;
    }

    private static bool AllFinite(float[] v)
    {
        foreach (float x in v) if (!float.IsFinite(x)) return false;
        return true;
    }

    /// <summary>Everything one bench run measured.</summary>
    internal sealed class BenchResult
    {
        public required string ModelPath, ModelName, Type, Backend;
        public required (long Bytes, long Parameters) Totals;
        public required int P, N, Depth, Reps, Threads, Batch, Context;
        public required Stats Pp, Tg;
        public required long BytesPerToken;
        public required BandwidthResult? Bandwidth;
        public required bool Finite;

        public double TgGBps => BytesPerToken * Tg.Median / 1e9;
        public double MemGBps => Bandwidth?.BestGBps ?? 0;
        public double Fraction => MemGBps > 0 ? TgGBps / MemGBps : 0;

        /// <summary>One line of JSON (Utf8JsonWriter: no reflection, AOT safe).</summary>
        public string ToJson()
        {
            var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteString("model", ModelPath);
                w.WriteString("model_name", ModelName);
                w.WriteNumber("size", Totals.Bytes);
                w.WriteNumber("params", Totals.Parameters);
                w.WriteString("type", Type);
                w.WriteNumber("threads", Threads);
                w.WriteNumber("p", P);
                w.WriteNumber("n", N);
                w.WriteNumber("n_depth", Depth);
                w.WriteNumber("reps", Reps);
                w.WriteNumber("batch", Batch);
                w.WriteNumber("ctx", Context);
                w.WriteNumber("pp_tok_s", Pp.Median);
                w.WriteNumber("pp_tok_s_min", Pp.Min);
                w.WriteNumber("pp_tok_s_max", Pp.Max);
                w.WriteNumber("pp_tok_s_stdev", Pp.StdDev);
                w.WriteNumber("tg_tok_s", Tg.Median);
                w.WriteNumber("tg_tok_s_min", Tg.Min);
                w.WriteNumber("tg_tok_s_max", Tg.Max);
                w.WriteNumber("tg_tok_s_stdev", Tg.StdDev);
                w.WriteNumber("bytes_per_token", BytesPerToken);
                w.WriteNumber("tg_gb_s", TgGBps);
                w.WriteNumber("mem_bw_gb_s", MemGBps);
                w.WriteNumber("mem_bw_median_gb_s", Bandwidth?.MedianGBps ?? 0);
                w.WriteNumber("mem_bw_bytes", Bandwidth?.Bytes ?? 0);
                w.WriteNumber("tg_bw_fraction", Fraction);
                w.WriteBoolean("logits_finite", Finite);
                w.WriteString("backend", Backend);
                w.WriteString("build", VersionInfo.Describe());
                w.WriteEndObject();
            }
            return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
        }
    }

    private static void WriteTable(TextWriter o, BenchResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        string size = r.Totals.Bytes >= 1L << 30
            ? string.Format(inv, "{0:F2} GiB", r.Totals.Bytes / (double)(1L << 30))
            : string.Format(inv, "{0:F2} MiB", r.Totals.Bytes / (double)(1L << 20));
        string pars = r.Totals.Parameters >= 1_000_000_000
            ? string.Format(inv, "{0:F2} B", r.Totals.Parameters / 1e9)
            : string.Format(inv, "{0:F2} M", r.Totals.Parameters / 1e6);
        string name = r.ModelName.Length > 28 ? r.ModelName[..28] : r.ModelName;
        o.WriteLine($"| {"model",-28} | {"size",10} | {"params",9} | {"type",-5} | {"threads",7} | {"test",13} | {"t/s (median)",12} | {"min .. max",19} |");
        o.WriteLine($"| {new string('-', 28)} | {new string('-', 9)}: | {new string('-', 8)}: | {new string('-', 5)} | {new string('-', 6)}: | {new string('-', 12)}: | {new string('-', 11)}: | {new string('-', 18)}: |");
        void Row(string test, Stats s) => o.WriteLine(string.Format(inv,
            "| {0,-28} | {1,10} | {2,9} | {3,-5} | {4,7} | {5,13} | {6,12:F2} | {7,19} |",
            name, size, pars, r.Type, r.Threads, test, s.Median, string.Format(inv, "{0:F2} .. {1:F2}", s.Min, s.Max)));
        string at = r.Depth > 0 ? " @ d" + r.Depth.ToString(inv) : "";
        if (r.P > 0) Row("pp" + r.P.ToString(inv) + at, r.Pp);
        if (r.N > 0) Row("tg" + r.N.ToString(inv) + at, r.Tg);
        o.WriteLine();
        o.WriteLine(string.Format(inv, "weights read per generated token: {0:N0} bytes ({1:F3} GiB)", r.BytesPerToken, r.BytesPerToken / (double)(1L << 30)));
        if (r.N > 0) o.WriteLine(string.Format(inv, "tg{0} weight traffic:             {1:F2} GB/s", r.N, r.TgGBps));
        if (r.Bandwidth is { } bw)
        {
            o.WriteLine(string.Format(inv, "memory read bandwidth:           {0:F2} GB/s (best of {1}; median {2:F2}; {3} threads streaming {4} MiB, {5})",
                bw.BestGBps, bw.Passes, bw.MedianGBps, bw.Threads, bw.Bytes >> 20, bw.Vector));
            if (r.N > 0) o.WriteLine(string.Format(inv, "tg weight traffic / bandwidth:   {0:F1}%", 100 * r.Fraction));
        }
        o.WriteLine($"backend: {r.Backend}; build: {VersionInfo.Describe()}");
    }
}
