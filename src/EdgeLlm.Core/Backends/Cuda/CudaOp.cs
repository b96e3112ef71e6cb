using EdgeLlm.Compute;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cuda;

internal enum CudaOpKind : byte { GetRows, RmsNorm, MatMul, Rope, StoreKv, Attention, SwiGlu, GeGlu, Add, AddBias, Scale, Softcap, Copy }

/// <summary>
/// One recorded backend call: what <see cref="CudaBackend"/> will launch when the step is flushed. The position
/// is kept twice: <see cref="StartPos"/> (the absolute value, uploaded with the step) and, at flush time,
/// <see cref="PosDelta"/> (its offset from the step's first position, a kernel argument). Two steps whose ops
/// agree in everything but the absolute position and the token ids launch identical kernels, so a CUDA graph
/// captured for one replays the other: <see cref="SameLaunch"/> is that test.
/// </summary>
internal struct CudaOp
{
    public CudaOpKind Kind;
    public CudaBuffer? A, B, C, D;  // operands (meaning per kind, see CudaBackend.Execute)
    public CudaWeight? W;
    public RopeSpec? Rope;
    public ulong Table;             // device inverse-frequency table for Rope
    public long L0, L1, L2;         // counts and offsets
    public int I0, I1, I2, I3, I4;  // tokens, heads, dims, window
    public float F0, F1;            // scale / eps / factor / cap, softcap
    public int StartPos;
    public int PosDelta;

    /// <summary>True if both ops launch the same kernels with the same arguments (positions compared relatively).</summary>
    public readonly bool SameLaunch(in CudaOp o) =>
        Kind == o.Kind && ReferenceEquals(A, o.A) && ReferenceEquals(B, o.B) && ReferenceEquals(C, o.C) && ReferenceEquals(D, o.D)
        && ReferenceEquals(W, o.W) && ReferenceEquals(Rope, o.Rope) && Table == o.Table
        && L0 == o.L0 && L1 == o.L1 && L2 == o.L2 && I0 == o.I0 && I1 == o.I1 && I2 == o.I2 && I3 == o.I3 && I4 == o.I4
        && F0.Equals(o.F0) && F1.Equals(o.F1) && PosDelta == o.PosDelta;
}
