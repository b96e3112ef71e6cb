using EdgeLlm.Compute;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cuda;

internal enum CudaOpKind : byte { GetRows, RmsNorm, MatMul, Rope, StoreKv, Attention, AttentionSplit, SwiGlu, GeGlu, Add, AddBias, Scale, Softcap, Copy, MatMulStacked, ArgMax, Sample }

/// <summary>
/// One recorded backend call: what <see cref="CudaBackend"/> will launch when the step is flushed. Each kind
/// uses the fields its <see cref="IBackend"/> call takes (unused ones stay default). The position is kept
/// twice: <see cref="StartPos"/> (the absolute value, uploaded with the step) and, at flush time,
/// <see cref="PosDelta"/> (its offset from the step's first position, a kernel argument). Two steps whose ops
/// agree in everything but the absolute position and the token ids launch identical kernels, so a CUDA graph
/// captured for one replays the other: <see cref="SameLaunch"/> is that test.
/// </summary>
internal struct CudaOp
{
    public CudaOpKind Kind;

    /// <summary>The input, or the operand updated in place: x (rms_norm, matmul, rope, add, add_bias, scale,
    /// softcap), gate (glu), k (store_kv), q (attention), the source (copy).</summary>
    public CudaBuffer? X;

    /// <summary>The second input: up (glu), y (add), v (store_kv).</summary>
    public CudaBuffer? Y;

    /// <summary>The layer's fp16 key and value cache (store_kv, attention).</summary>
    public CudaBuffer? KCache, VCache;

    /// <summary>The output (get_rows, rms_norm, matmul, attention, copy).</summary>
    public CudaBuffer? Dst;

    /// <summary>The weight: table (get_rows), norm weight (rms_norm), matrix (matmul), bias (add_bias).</summary>
    public CudaWeight? Weight;

    /// <summary>A stacked product (<see cref="CudaOpKind.MatMulStacked"/>): the buffers of its second and third part
    /// (<see cref="Dst"/> takes the first; <see cref="Dst2"/> null for two parts), each part's rows, and the device
    /// scratch its whole [tokens, rows] output goes to before the split.</summary>
    public CudaBuffer? Dst1, Dst2;
    public int Part0, Part1, Part2;
    public CudaBuffer? StackOut;

    public RopeSpec? Rope;

    /// <summary>Device inverse-frequency table of <see cref="Rope"/>.</summary>
    public ulong RopeTable;

    /// <summary>Device buffer of the per-chunk partial results of split (flash-decoding) attention, and its chunk count.</summary>
    public ulong Partials;
    public int Chunks;

    /// <summary>Device counters of attention_flash_f16 (one int per kv head, zero between launches).</summary>
    public ulong Counters;

    /// <summary>Elements of the element-wise ops (glu, add, add_bias, scale, softcap) and of a copy.</summary>
    public long Count;

    /// <summary>Element offsets of a copy.</summary>
    public long SrcOffset, DstOffset;

    public int Tokens, Heads, HeadDim, KvDim;

    /// <summary>Row length of rms_norm.</summary>
    public int Dim;

    /// <summary>Attention's sliding window (0: none).</summary>
    public int Window;

    /// <summary>rms_norm's epsilon.</summary>
    public float Eps;

    /// <summary>Attention's score scale, or the scale op's factor.</summary>
    public float Scale;

    /// <summary>Attention's score softcap (0: none), or the softcap op's cap.</summary>
    public float Softcap;

    public int StartPos;
    public int PosDelta;

    /// <summary>A token pick (argmax, sample) of <see cref="Count"/> logits at <see cref="X"/>[<see cref="SrcOffset"/>]: its launch data.</summary>
    public CudaSampleLaunch? Pick;

    /// <summary>True if both ops launch the same kernels with the same arguments (positions compared relatively).</summary>
    public readonly bool SameLaunch(in CudaOp o) =>
        Kind == o.Kind && ReferenceEquals(X, o.X) && ReferenceEquals(Y, o.Y) && ReferenceEquals(KCache, o.KCache)
        && ReferenceEquals(VCache, o.VCache) && ReferenceEquals(Dst, o.Dst) && ReferenceEquals(Weight, o.Weight)
        && ReferenceEquals(Dst1, o.Dst1) && ReferenceEquals(Dst2, o.Dst2) && Part0 == o.Part0 && Part1 == o.Part1 && Part2 == o.Part2
        && ReferenceEquals(StackOut, o.StackOut) && ReferenceEquals(Rope, o.Rope) && RopeTable == o.RopeTable && Partials == o.Partials && Chunks == o.Chunks && Counters == o.Counters
        && Count == o.Count && SrcOffset == o.SrcOffset && DstOffset == o.DstOffset
        && Tokens == o.Tokens && Heads == o.Heads && HeadDim == o.HeadDim && KvDim == o.KvDim && Dim == o.Dim && Window == o.Window
        && Eps.Equals(o.Eps) && Scale.Equals(o.Scale) && Softcap.Equals(o.Softcap) && PosDelta == o.PosDelta && Equals(Pick, o.Pick);
}
