namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Compile-time switch for the AVX2 loops: they are generic over a struct implementing this, so the JIT/AOT
/// compiler emits one loop with AVX-VNNI and one without, and the choice is made once per call, not per block.
/// </summary>
internal interface IVnniFlag
{
    static abstract bool Enabled { get; }
}

internal struct VnniOn : IVnniFlag
{
    public static bool Enabled => true;
}

internal struct VnniOff : IVnniFlag
{
    public static bool Enabled => false;
}
