using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cpu;

/// <summary>A weight as the CPU uses it: the tensor's bytes where they lie in the memory map.</summary>
internal sealed unsafe class CpuWeight(TensorView view) : BackendWeight(view.Name, view.Type, view.Ne0, view.Rows)
{
    public byte* Data { get; } = view.Data;
    public long RowBytes { get; } = view.RowBytes;

    public byte* Row(long row) => Data + row * RowBytes;

    /// <summary>A copy of the whole eight-row groups repacked for the GEMM (<see cref="Kernels.CpuKernelRow.Repack"/>), owned by the backend, or null.</summary>
    public byte* Packed { get; set; }

    /// <summary>Whether the backend has decided about <see cref="Packed"/> (it decides once, at the first matmul).</summary>
    public bool PackDecided { get; set; }
}
