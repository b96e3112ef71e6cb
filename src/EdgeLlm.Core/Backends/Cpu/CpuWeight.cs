using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cpu;

/// <summary>A weight as the CPU uses it: the tensor's bytes where they lie in the memory map.</summary>
internal sealed unsafe class CpuWeight(TensorView view) : BackendWeight(view.Name, view.Type, view.Ne0, view.Rows)
{
    public byte* Data { get; } = view.Data;
    public long RowBytes { get; } = view.RowBytes;

    public byte* Row(long row) => Data + row * RowBytes;
}
