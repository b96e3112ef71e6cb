using System.Runtime.InteropServices;
using EdgeLlm.Compute;
using EdgeLlm.Model;

namespace EdgeLlm.Backends.Cpu;

/// <summary>A float32 buffer in native memory, 64-byte aligned (one cache line, one AVX-512 vector), zeroed.</summary>
internal sealed unsafe class CpuBuffer : BackendBuffer
{
    public float* Data { get; private set; }

    public CpuBuffer(long length) : base(length)
    {
        nuint bytes = checked((nuint)Math.Max(1, length) * sizeof(float));
        Data = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear(Data, bytes);
    }

    public void Free()
    {
        if (Data != null) NativeMemory.AlignedFree(Data);
        Data = null;
    }
}
