using EdgeLlm.Compute;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cuda;

/// <summary>A device buffer of <see cref="BackendBuffer.Length"/> elements: float32 activations, or fp16 for the KV cache.</summary>
internal sealed class CudaBuffer(long length, ulong ptr, int elementBytes) : BackendBuffer(length)
{
    public ulong Ptr { get; set; } = ptr;
    public int ElementBytes { get; } = elementBytes;
    public bool IsHalf => ElementBytes == 2;
}

/// <summary>
/// A weight as the GPU reads it: its bytes in device memory (uploaded from the memory map), or on an integrated
/// GPU the device address of the registered memory map itself (<see cref="Owned"/> false: nothing to free).
/// <see cref="Packed"/>: the rows are in <see cref="CudaRepack"/>'s layout (matvec_packed.cu reads them).
/// </summary>
internal sealed class CudaWeight(string name, Gguf.GgmlType type, long ne0, long rows, ulong ptr, long rowBytes, bool owned, bool packed = false)
    : BackendWeight(name, type, ne0, rows)
{
    public bool Packed { get; } = packed;
    public ulong Ptr { get; set; } = ptr;
    public long RowBytes { get; } = rowBytes;
    public bool Owned { get; } = owned;
}
