using EdgeLlm.Compute;
using EdgeLlm.Backends.Cuda.Native;
using EdgeLlm.Gguf;

namespace EdgeLlm.Backends.Cuda;

/// <summary>
/// What the environment asks of the CUDA backend: EDGELLM_CUDA_GRAPHS=0 launches every step op by op;
/// EDGELLM_CUDA_SYNC=1 synchronizes after every kernel launch so a faulting kernel is named (which rules out
/// graphs: a capture cannot synchronize); EDGELLM_CUDA_SPLIT_ATTENTION=0 keeps decode steps on the one-block-per-head
/// attention kernel instead of the split (flash-decoding) one; EDGELLM_CUDA_FUSE=0 launches every recorded op as its own
/// kernel (no fused kernels, CudaLaunchPlanner); EDGELLM_CUDA_PROFILE=1 times every launch with CUDA events and keeps a
/// per-kernel table (<see cref="CudaProfile"/>; graphs are off then, so every kernel is launched and timed on its own).
/// </summary>
public readonly record struct CudaSettings(bool Graphs, bool SyncEachLaunch, bool SplitAttention = true, bool Fuse = true, bool Profile = false)
{
    public const string FuseVariable = "EDGELLM_CUDA_FUSE";
    public const string ProfileVariable = "EDGELLM_CUDA_PROFILE";
    public const string GraphsVariable = "EDGELLM_CUDA_GRAPHS";
    public const string SyncVariable = "EDGELLM_CUDA_SYNC";
    public const string SplitAttentionVariable = "EDGELLM_CUDA_SPLIT_ATTENTION";

    public static CudaSettings FromEnvironment() => From(Environment.GetEnvironmentVariable);

    public static CudaSettings From(Func<string, string?> variable)
    {
        bool sync = variable(SyncVariable) == "1";
        bool profile = variable(ProfileVariable) == "1";
        return new CudaSettings(Graphs: variable(GraphsVariable) != "0" && !sync && !profile, SyncEachLaunch: sync,
            SplitAttention: variable(SplitAttentionVariable) != "0", Fuse: variable(FuseVariable) != "0", Profile: profile);
    }
}

/// <summary>Launch-configuration limits the host checks before it records an op, so a bad shape is a clear error, not a launch failure.</summary>
public static class CudaLaunchLimits
{
    /// <summary>CUDA's largest gridDim.y (and z); gridDim.x goes to 2^31 - 1.</summary>
    public const int MaxGridY = 65535;

    /// <summary>
    /// The attention kernel runs one block per (query head, token): grid (heads, tokens). Throws a one-line
    /// <see cref="EdgeLlmException"/> when that grid is outside CUDA's limits.
    /// </summary>
    public static void CheckAttentionGrid(int heads, int tokens)
    {
        if (heads < 1 || tokens < 1)
            throw new EdgeLlmException($"cuda: attention over {heads} heads and {tokens} tokens has an empty grid");
        if (tokens > MaxGridY)
            throw new EdgeLlmException($"cuda: attention over a batch of {tokens} tokens needs a grid of {tokens} blocks in y, above CUDA's limit of {MaxGridY}; use a batch of at most {MaxGridY} tokens");
    }

    /// <summary>Positions per chunk of the split (flash-decoding) attention kernel.</summary>
    public const int SplitChunk = 128;

    /// <summary>Threads per block of attention_split_f16 (kernels/attention.cu SPLIT_WARPS warps).</summary>
    public const int SplitThreads = 4 * 32;

    /// <summary>Largest group of query heads per kv head attention_split_f16 holds (SPLIT_MAX_GROUP).</summary>
    public const int SplitMaxGroup = 8;

    /// <summary>
    /// Whether a decode step's attention can use attention_split_f16: one token, head dimension a multiple of 8
    /// (one 16-byte load of 8 halves per lane, kv rows 16-byte aligned), at most <see cref="SplitMaxGroup"/> query
    /// heads per kv head, and a chunk grid within CUDA's gridDim.y.
    /// </summary>
    public static bool CanSplitAttention(int tokens, int heads, int headDim, int kvDim, int contextSize) =>
        tokens == 1 && headDim > 0 && headDim % 8 == 0 && kvDim % 8 == 0 && headDim <= 256 && kvDim / headDim is int kvHeads && kvHeads > 0
        && heads % kvHeads == 0 && heads / kvHeads <= SplitMaxGroup && SplitChunks(contextSize) <= MaxGridY;

    /// <summary>Chunks of the split kernel's fixed grid for a context of <paramref name="contextSize"/> positions.</summary>
    public static int SplitChunks(int contextSize) => (contextSize + SplitChunk - 1) / SplitChunk;

    /// <summary>The one-line error for a kernel that faulted, found by synchronizing right after its launch (EDGELLM_CUDA_SYNC=1).</summary>
    public static CudaException KernelFault(string kernel, int status) =>
        new($"kernel {kernel}", status, CudaDriver.ErrorName(status), $"{CudaSettings.SyncVariable}=1 synchronized right after its launch");

    /// <summary>The error of a synchronization that found an earlier fault, with the hint how to name the kernel.</summary>
    public static CudaException SyncFault(string call, int status, bool syncEachLaunch) =>
        new(call, status, CudaDriver.ErrorName(status),
            syncEachLaunch ? null : $"a kernel of the last step failed; run with {CudaSettings.SyncVariable}=1 to name it");
}

/// <summary>How the model file is opened for a device.</summary>
public static class CudaFileLoading
{
    /// <summary>
    /// With an explicit CUDA device, an Auto load maps the file instead of reading it into anonymous memory: the
    /// weights are copied to the GPU (or, on an integrated GPU, used in place from the map), so a read-in copy
    /// would stay on the host for nothing, while mapped pages are page cache the system can drop after the
    /// upload. An explicit Read or Map, and every other device, keep what was asked.
    /// </summary>
    public static GgufLoadOptions For(DeviceSpec device, GgufLoadOptions load) =>
        device.Kind == DeviceKind.Cuda && load.Mode == GgufLoadMode.Auto ? load with { Mode = GgufLoadMode.Map } : load;
}
