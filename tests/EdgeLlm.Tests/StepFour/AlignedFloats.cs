using System.Runtime.InteropServices;

namespace EdgeLlm.Tests.StepFour;

/// <summary>64-byte-aligned native float buffers for the attention tests, each filled on allocation, all freed together.</summary>
internal sealed unsafe class AlignedFloats : IDisposable
{
    private readonly List<nint> _blocks = new();

    /// <summary><paramref name="floats"/> floats set to <paramref name="fill"/> (NaN: a value never written shows).</summary>
    public float* Alloc(long floats, float fill)
    {
        var p = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        _blocks.Add((nint)p);
        new Span<float>(p, (int)floats).Fill(fill);
        return p;
    }

    /// <summary>Frees one buffer before the rest.</summary>
    public void Free(float* p)
    {
        if (_blocks.Remove((nint)p)) NativeMemory.AlignedFree(p);
    }

    public void Dispose()
    {
        foreach (nint p in _blocks) NativeMemory.AlignedFree((void*)p);
        _blocks.Clear();
    }
}
