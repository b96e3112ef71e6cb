using EdgeLlm.Compute;
using EdgeLlm.Gguf;

namespace EdgeLlm.Model;

/// <summary>
/// <see cref="BackendOptions"/> settled once for one model file: its config parsed, the device parsed, the context size
/// (0 = the trained context capped at <see cref="BackendOptions.DefaultContextCap"/>) and the batch size (at most the
/// context) worked out and checked. The model, the backend selection and the offload planner read these instead of
/// working them out again.
/// </summary>
public sealed class ResolvedOptions
{
    /// <summary>The file the options were resolved for.</summary>
    public GgufFile File { get; }

    /// <summary>The options as given.</summary>
    public BackendOptions Options { get; }

    public LlamaConfig Config { get; }
    public DeviceSpec Device { get; }

    /// <summary>KV cache positions.</summary>
    public int ContextSize { get; }

    /// <summary>Tokens per forward batch.</summary>
    public int MaxBatch { get; }

    private ResolvedOptions(GgufFile file, BackendOptions options, LlamaConfig config, DeviceSpec device, int contextSize, int maxBatch)
    {
        File = file;
        Options = options;
        Config = config;
        Device = device;
        ContextSize = contextSize;
        MaxBatch = maxBatch;
    }

    /// <summary>As <see cref="Resolve(GgufFile, BackendOptions, DeviceSpec)"/> with the device parsed from <see cref="BackendOptions.Device"/>.</summary>
    public static ResolvedOptions Resolve(GgufFile file, BackendOptions options) => Resolve(file, options, DeviceSpec.Parse(options.Device));

    /// <summary>
    /// Parses the file's config (<see cref="ModelFormatException"/> naming what is wrong) and checks the context size
    /// (1 to <see cref="LlamaConfig.MaxContext"/>) and the batch size (at least 1; 0 picks the device's default).
    /// </summary>
    public static ResolvedOptions Resolve(GgufFile file, BackendOptions options, DeviceSpec device)
    {
        var c = LlamaConfig.FromGguf(file);
        int ctx = options.ContextSize == 0 ? Math.Min(c.ContextLength, BackendOptions.DefaultContextCap) : options.ContextSize;
        if (ctx < 1 || ctx > LlamaConfig.MaxContext)
            throw new ArgumentOutOfRangeException(nameof(options), $"context size {options.ContextSize} is not in [1, {LlamaConfig.MaxContext}]");
        if (options.MaxBatch < 0) throw new ArgumentOutOfRangeException(nameof(options), $"batch size {options.MaxBatch} must be at least 1 (or 0 for the device's default)");
        int batch = options.MaxBatch != 0 ? options.MaxBatch
            : device.Kind == DeviceKind.Cuda ? BackendOptions.DefaultCudaMaxBatch : BackendOptions.DefaultMaxBatch;
        return new ResolvedOptions(file, options, c, device, ctx, Math.Min(batch, ctx));
    }
}
