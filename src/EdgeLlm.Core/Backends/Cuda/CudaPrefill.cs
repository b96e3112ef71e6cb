using EdgeLlm.Gguf;

namespace EdgeLlm.Backends.Cuda;

/// <summary>Which kernels a prefill batch's weight products use (kernels/gemm.cu), fixed once per backend by the compiled architecture.</summary>
public enum CudaGemmPath
{
    /// <summary>No GEMM (below sm_61): every batch runs the NT=8 matvec kernels (matmul.cu).</summary>
    None,

    /// <summary>Shared-memory tiles with dp4a (sm_61..75).</summary>
    Dp4a,

    /// <summary>Shared-memory tiles with int8 tensor-core MMAs, mma.sync m16n8k32 (sm_80 and later).</summary>
    Mma,
}

/// <summary>
/// The prefill choices of the CUDA backend: the GEMM path for the architecture the kernels were compiled for, which
/// products take it (batches of more than one token: every weight type, the block types through the int8 kernels of
/// <see cref="CudaKernels.GemmTypes"/>, F32/F16/BF16 through the float ones of <see cref="CudaKernels.GemmFloatTypes"/>, F16/BF16
/// through the half-precision tensor-core ones of <see cref="CudaKernels.GemmHalfTypes"/> instead on sm_80 and later),
/// and the launch shapes of gemm.cu and attention_prefill.cu.
/// </summary>
public static class CudaPrefill
{
    /// <summary>Weight rows / tokens per GEMM block (kernels/gemm.cu GEMM_BM, GEMM_BN) and its threads.</summary>
    public const int GemmRows = 64, GemmTokens = 64, GemmThreads = 128;

    /// <summary>Query tokens per flash-attention prefill block (kernels/attention_prefill.cu APF_BQ) and its threads.</summary>
    public const int AttentionTokens = 8, AttentionThreads = 128;

    /// <summary>The GEMM path for kernels compiled for sm_<paramref name="arch"/>.</summary>
    public static CudaGemmPath PathFor(int arch) => arch >= 80 ? CudaGemmPath.Mma : arch >= 61 ? CudaGemmPath.Dp4a : CudaGemmPath.None;

    /// <summary>True when a product of <paramref name="tokens"/> tokens with <paramref name="type"/> weights runs a GEMM on <paramref name="path"/>.</summary>
    public static bool UsesGemm(CudaGemmPath path, GgmlType type, int tokens) => path != CudaGemmPath.None && tokens > 1 && CudaKernels.HasGemm(type);

    /// <summary>
    /// True when a GEMM over <paramref name="type"/> weights runs the half-precision tensor-core kernel (gemm_mma_f16 /
    /// gemm_mma_bf16) on <paramref name="path"/>: F16 and BF16 weights on sm_80 and later; below, the float tiles.
    /// </summary>
    public static bool UsesHalfMma(CudaGemmPath path, GgmlType type) => path == CudaGemmPath.Mma && Array.IndexOf(CudaKernels.GemmHalfTypes, type) >= 0;

    /// <summary>The GEMM grid: (row tiles, token tiles).</summary>
    public static (uint X, uint Y) GemmGrid(long rows, int tokens) =>
        ((uint)((rows + GemmRows - 1) / GemmRows), (uint)((tokens + GemmTokens - 1) / GemmTokens));

    /// <summary>True when an attention of <paramref name="tokens"/> queries runs the flash-attention prefill kernel.</summary>
    public static bool UsesFlashAttention(int tokens) => tokens > 1;

    /// <summary>The flash-attention prefill grid: (query heads, token tiles).</summary>
    public static (uint X, uint Y) AttentionGrid(int heads, int tokens) => ((uint)heads, (uint)((tokens + AttentionTokens - 1) / AttentionTokens));
}
