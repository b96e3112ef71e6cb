using EdgeLlm.Model;
using Microsoft.Extensions.Logging;

namespace EdgeLlm.Cli;

/// <summary>Loads the model a command names (-m, -t, -c) and logs what was loaded.</summary>
public static class ModelOptions
{
    public static LlamaModel Load(CliArgs args, CliContext ctx, int? minContext = null)
    {
        string path = ModelPaths.Resolve(args.GetString("-m"));
        int threads = args.GetInt("-t", 0, 0, 1024);
        int context = args.GetInt("-c", 0, 0, 1 << 20);
        if (context == 0 && minContext is { } min) context = min;
        var log = ctx.Logger("load");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var model = LlamaModel.Load(path, new BackendOptions { Threads = threads, ContextSize = context });
        var c = model.Config;
        log.LogInformation("loaded {Path} in {Ms:F0} ms: {Layers} layers, dim {Dim}, {Heads} heads ({KvHeads} kv), ffn {Ffn}, vocab {Vocab}, context {Ctx}; backend {Backend}",
            path, clock.Elapsed.TotalMilliseconds, c.LayerCount, c.Dim, c.HeadCount, c.KvHeadCount, c.FfnDim, c.VocabSize, model.ContextSize, model.Backend.Name);
        if (model.ContextSize > c.ContextLength)
            log.LogWarning("context {Ctx} is longer than the {Trained} tokens the model was trained with", model.ContextSize, c.ContextLength);
        return model;
    }
}
