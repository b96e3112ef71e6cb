namespace EdgeLlm.Compute;

/// <summary>How to run a model: threads, context size and batch size. Zero means "choose for me".</summary>
public sealed class BackendOptions
{
    /// <summary>Default cap on the KV cache when <see cref="ContextSize"/> is 0 (llama.cpp's default -c).</summary>
    public const int DefaultContextCap = 4096;
    public const int DefaultMaxBatch = 64;

    /// <summary>The batch when <see cref="MaxBatch"/> is 0 and the device is CUDA: prefill runs as GEMMs (kernels/gemm.cu), which want long batches.</summary>
    public const int DefaultCudaMaxBatch = 512;

    /// <summary>CPU threads including the caller (the <c>-t</c> option); 0 = one per logical processor.</summary>
    public int Threads { get; init; }

    /// <summary>KV cache positions; 0 = the model's context_length capped at <see cref="DefaultContextCap"/>.
    /// May exceed the trained context (RoPE extrapolates; quality is the caller's business).</summary>
    public int ContextSize { get; init; }

    /// <summary>Tokens per forward batch; longer inputs are processed in chunks of this size. 0 = <see cref="DefaultCudaMaxBatch"/>
    /// on a CUDA device ("cuda", "cuda:N"), <see cref="DefaultMaxBatch"/> otherwise.</summary>
    public int MaxBatch { get; init; }

    /// <summary>
    /// Where to run: "cpu" (the default for library callers), "auto" (CUDA when a usable GPU is found, else the
    /// CPU), "cuda" or "cuda:N" (CUDA or an error). See <see cref="Backends.BackendSelector"/>.
    /// </summary>
    public string Device { get; init; } = "cpu";

    /// <summary>How K rows are cached; null = the backend's default (<see cref="IBackend.DefaultCacheType"/>: CPU f32, CUDA f16).</summary>
    public KvCacheType? CacheTypeK { get; init; }

    /// <summary>How V rows are cached; null = the backend's default.</summary>
    public KvCacheType? CacheTypeV { get; init; }

    /// <summary>How the model file's bytes are held: automatic (read in when it fits in half the available memory, else mapped), mapped, or read in; optionally locked in RAM.</summary>
    public Gguf.GgufLoadOptions Load { get; init; } = Gguf.GgufLoadOptions.Default;

    /// <summary>
    /// When CUDA is used: how many of the last layers run on the GPU ("auto": as many as fit in free device memory,
    /// "all", or a count); the rest run on the CPU through <see cref="Backends.Split.SplitBackend"/>.
    /// </summary>
    public string GpuLayers { get; init; } = "auto";

    /// <summary>
    /// Compute a token's rows the same way whatever the batch size, so a sequence decoded beside others (the server's
    /// <c>--parallel</c> slots, <c>LlamaModel.ForwardSequences</c>) gives exactly what it gives alone. On the CPU, weights
    /// repacked for the eight-row GEMM (Q4_0, Q8_0) then run it for one-token steps too, which a lone decode pays for
    /// (1.1B Q4_0, 2 threads, this VM: 24 tok/s instead of 37); off, one-token steps read the stored rows and
    /// batches of four or more the repacked copy, agreeing to float rounding (Q4_0 on NEON runs the GEMM for one-token
    /// steps either way: there it is the faster kernel, so it is batch-invariant without this). Default off.
    /// </summary>
    public bool BatchInvariant { get; init; }
}
