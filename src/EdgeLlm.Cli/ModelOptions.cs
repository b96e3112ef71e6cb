using EdgeLlm.Backends;
using EdgeLlm.Compute;
using EdgeLlm.Model;
using Microsoft.Extensions.Logging;

namespace EdgeLlm.Cli;

/// <summary>Loads the model a command names (-m, -t, -c, --device) and logs what was loaded and on which device.</summary>
public static class ModelOptions
{
    public static LlamaModel Load(CliArgs args, CliContext ctx, int? minContext = null, bool batchInvariant = false)
    {
        string path = ModelPaths.Resolve(args.GetString("-m"));
        int threads = args.GetInt("-t", 0, 0, 1024);
        int context = args.GetInt("-c", 0, 0, 1 << 20);
        if (context == 0 && minContext is { } min) context = min;
        string device = DeviceOption(args);
        var log = ctx.Logger("load");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        WarnThreads(threads, ctx);
        var progress = new ProgressLine(ctx, $"loading {Path.GetFileName(path)}", ProgressLine.Bytes);
        var load = LoadOptions(args) with { Progress = progress.Report };
        LlamaModel model;
        try { model = LlamaModel.Load(ModelPaths.Open(path, load), new BackendOptions { Threads = threads, ContextSize = context, Device = device, Load = load, GpuLayers = GpuLayersOption(args),
            CacheTypeK = CacheType(args, "--cache-type-k"), CacheTypeV = CacheType(args, "--cache-type-v"), BatchInvariant = batchInvariant }); }
        finally { progress.Done(); }
        log.Log(model.BackendWarning ? LogLevel.Warning : LogLevel.Information, "{Device}", model.BackendDescription);
        LogLoad(model, log);
        log.LogInformation("kv cache: K {K}, V {V}, {Bytes} bytes per token, {MiB:F1} MiB for {Ctx} positions",
            KvCacheTypes.Name(model.Cache.KeyType), KvCacheTypes.Name(model.Cache.ValueType), model.Cache.BytesPerToken, model.Cache.ByteSize / 1048576.0, model.ContextSize);
        var c = model.Config;
        log.LogInformation("loaded {Path} in {Ms:F0} ms: {Layers} layers, dim {Dim}, {Heads} heads ({KvHeads} kv), ffn {Ffn}, vocab {Vocab}, context {Ctx}; backend {Backend}",
            path, clock.Elapsed.TotalMilliseconds, c.LayerCount, c.Dim, c.HeadCount, c.KvHeadCount, c.FfnDim, c.VocabSize, model.ContextSize, model.Backend.Name);
        if (model.ContextSize > c.ContextLength)
            log.LogWarning("context {Ctx} is longer than the {Trained} tokens the model was trained with", model.ContextSize, c.ContextLength);
        return model;
    }

    /// <summary>--cache-type-k / --cache-type-v: f32, f16 or q8_0, default f16 (llama.cpp's default).</summary>
    public static KvCacheType CacheType(CliArgs args, string name)
    {
        string? s = args.GetString(name);
        if (s is null) return KvCacheType.F16;
        if (!KvCacheTypes.TryParse(s, out var t)) throw new UsageException($"{name} '{s}' is not one of f32, f16, q8_0");
        return t;
    }

    /// <summary>A warning when -t asks for more threads than the cores this process may run on (affinity and cgroup limits included).</summary>
    public static void WarnThreads(int threads, CliContext ctx)
    {
        int cores = Environment.ProcessorCount;
        if (threads > cores)
            ctx.Err.WriteLine($"edgellm: warning: -t {threads} is more than the {cores} cores this process can use; the extra threads only wait their turn (leave -t out to use all cores)");
    }

    /// <summary>--mmap / --no-mmap (default automatic) and --mlock.</summary>
    public static Gguf.GgufLoadOptions LoadOptions(CliArgs args)
    {
        bool map = args.Has("--mmap"), read = args.Has("--no-mmap");
        if (map && read) throw new UsageException("--mmap and --no-mmap contradict each other");
        return new()
        {
            Mode = map ? Gguf.GgufLoadMode.Map : read ? Gguf.GgufLoadMode.Read : Gguf.GgufLoadMode.Auto,
            LockInMemory = args.Has("--mlock"),
        };
    }

    /// <summary>Says how the weights are held, and warns when --mlock was refused.</summary>
    public static void LogLoad(LlamaModel model, ILogger log)
    {
        if (model.File.LockError is { } err) log.LogWarning("{Error}", err);
        log.LogInformation("weights {How}{Locked}", model.File.InMemory ? "read into memory" : "memory-mapped", model.File.Locked ? ", locked in RAM" : "");
    }

    /// <summary>--gpu-layers N|auto|all (default auto); anything else is a usage error.</summary>
    public static string GpuLayersOption(CliArgs args)
    {
        string value = args.GetString("--gpu-layers") ?? "auto";
        if (!Backends.Split.GpuLayersRequest.TryParse(value, out _))
            throw new UsageException($"--gpu-layers '{value}' is not auto, all or a number of layers");
        return value.Trim();
    }

    /// <summary>Environment variable giving the default of --device.</summary>
    public const string DeviceVariable = "EDGELLM_DEVICE";

    /// <summary>--device, else $EDGELLM_DEVICE, else "auto"; a value that is not a device is a usage error.</summary>
    public static string DeviceOption(CliArgs args)
    {
        string? given = args.GetString("--device");
        string? env = Environment.GetEnvironmentVariable(DeviceVariable);
        string value = given ?? (string.IsNullOrEmpty(env) ? "auto" : env);
        if (!Compute.DeviceSpec.TryParse(value, out _))
            throw new UsageException($"{(given is null ? "$" + DeviceVariable : "--device")} '{value}' is not one of auto, cpu, cuda, cuda:N");
        return value.Trim();
    }
}
