namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Compile-time switch for an optional instruction set inside a rung's loop: the loops are generic over a struct
/// implementing this, so the JIT/AOT compiler emits one loop with the extension and one without, the choice is made
/// once per call (never per block), and tests can run both on a CPU that has the extension.
/// </summary>
internal interface IIsaFlag
{
    static abstract bool Enabled { get; }
}

/// <summary>AVX2 rung with AVX-VNNI (256-bit vpdpbusd / vpdpwssd).</summary>
internal struct VnniOn : IIsaFlag
{
    public static bool Enabled => true;
}

internal struct VnniOff : IIsaFlag
{
    public static bool Enabled => false;
}

/// <summary>AVX-512 rung with AVX512-VBMI (vpermb byte shuffles).</summary>
internal struct VbmiOn : IIsaFlag
{
    public static bool Enabled => true;
}

internal struct VbmiOff : IIsaFlag
{
    public static bool Enabled => false;
}

/// <summary>GFNI (vgf2p8affineqb: any per-byte bit permutation in one instruction) at the rung's vector width.</summary>
internal struct GfniOn : IIsaFlag
{
    public static bool Enabled => true;
}

internal struct GfniOff : IIsaFlag
{
    public static bool Enabled => false;
}

/// <summary>NEON rung with the dot-product extension (sdot); off: smull/smull2 + sadalp.</summary>
internal struct DotProdOn : IIsaFlag
{
    public static bool Enabled => true;
}

internal struct DotProdOff : IIsaFlag
{
    public static bool Enabled => false;
}
