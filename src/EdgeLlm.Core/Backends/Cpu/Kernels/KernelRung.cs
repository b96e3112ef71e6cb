using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>The instruction-set levels the CPU kernels are written for, best last per architecture.</summary>
public enum Rung
{
    /// <summary>Portable C#; the integer reference every other rung must agree with.</summary>
    Scalar,
    /// <summary>x64 AVX2 + FMA (256-bit), using AVX-VNNI's 256-bit vpdpbusd/vpdpwssd where the CPU has it.</summary>
    Avx2,
    /// <summary>x64 AVX-512 F/BW (512-bit vpmaddubsw + vpmaddwd).</summary>
    Avx512,
    /// <summary>arm64 AdvSimd (widening multiply-accumulate), using the dot-product extension (sdot) where present.</summary>
    Neon,
}

/// <summary>
/// Picks the kernel rung once per process. <see cref="Selected"/> is the best rung this CPU runs, unless the
/// environment variable <c>EDGELLM_KERNEL_RUNG</c> (scalar, avx2, avx512, neon) names another supported one;
/// <c>EDGELLM_KERNEL_VNNI=0</c> keeps the AVX2 rung off AVX-VNNI, <c>EDGELLM_KERNEL_VBMI=0</c> the AVX-512 rung off VBMI, <c>EDGELLM_KERNEL_GFNI=0</c> the x64 rungs off GFNI, <c>EDGELLM_KERNEL_DP=0</c> the NEON rung off the dot-product extension (sdot). The choice is made once at start-up and
/// read once per matmul call (the row drivers are generic over the chosen kernel), so nothing is decided per block.
/// </summary>
public static class KernelRung
{
    public static readonly Rung Selected = Choose(Environment.GetEnvironmentVariable("EDGELLM_KERNEL_RUNG"));

    /// <summary>Whether the AVX2 rung uses AVX-VNNI (256-bit vpdpbusd/vpdpwssd).</summary>
    public static readonly bool UseAvxVnni =
        AvxVnni.IsSupported && Environment.GetEnvironmentVariable("EDGELLM_KERNEL_VNNI") != "0";

    /// <summary>Whether the AVX-512 rung uses AVX512-VBMI (vpermb) where a kernel has such a path.</summary>
    public static readonly bool UseAvx512Vbmi =
        Avx512Vbmi.IsSupported && Environment.GetEnvironmentVariable("EDGELLM_KERNEL_VBMI") != "0";

    /// <summary>
    /// Whether the AVX-512 and AVX2 rungs use GFNI (vgf2p8affineqb) where a kernel has such a path: Gfni with its
    /// 512-bit form on the AVX-512 rung, its 256-bit form on the AVX2 rung (each kernel checks the width it uses).
    /// </summary>
    public static readonly bool UseGfni =
        Gfni.IsSupported && Environment.GetEnvironmentVariable("EDGELLM_KERNEL_GFNI") != "0";

    /// <summary>Whether the CPU backend may repack weights at load for a GEMM kernel (<c>EDGELLM_KERNEL_REPACK=0</c> keeps every matmul on the stored rows).</summary>
    public static readonly bool UseRepack = Environment.GetEnvironmentVariable("EDGELLM_KERNEL_REPACK") != "0";

    /// <summary>Whether the NEON rung uses the arm64 dot-product extension (sdot); off, it widens (smull + sadalp).</summary>
    public static readonly bool UseDotProd =
        Dp.IsSupported && Environment.GetEnvironmentVariable("EDGELLM_KERNEL_DP") != "0";

    /// <summary>
    /// Whether this process can run <paramref name="rung"/>. Inlined: the kernels' <c>Require(rung)</c> guards pass a
    /// constant rung, so the switch folds to the rung's IsSupported checks, which the AOT compiler resolves at compile
    /// time for the instruction set it targets (and the JIT at tier 1): no call per row (it was one, about 1% of decode).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsSupported(Rung rung) => rung switch
    {
        Rung.Scalar => true,
        Rung.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        Rung.Avx512 => Avx512BW.IsSupported && Avx512F.IsSupported && Vector512.IsHardwareAccelerated,
        Rung.Neon => AdvSimd.Arm64.IsSupported,
        _ => false,
    };

    /// <summary>Every rung this process can run, scalar first.</summary>
    public static Rung[] Supported()
    {
        var list = new List<Rung>(4);
        foreach (Rung r in new[] { Rung.Scalar, Rung.Avx2, Rung.Avx512, Rung.Neon })
            if (IsSupported(r)) list.Add(r);
        return list.ToArray();
    }

    /// <summary>The fastest supported rung: AVX-512, else AVX2, else NEON, else scalar.</summary>
    public static Rung Best()
    {
        if (IsSupported(Rung.Avx512)) return Rung.Avx512;
        if (IsSupported(Rung.Avx2)) return Rung.Avx2;
        if (IsSupported(Rung.Neon)) return Rung.Neon;
        return Rung.Scalar;
    }

    /// <summary>The requested rung if it names a supported one, else <see cref="Best"/>.</summary>
    public static Rung Choose(string? requested)
    {
        Rung? r = requested?.Trim().ToLowerInvariant() switch
        {
            "scalar" => Rung.Scalar,
            "avx2" => Rung.Avx2,
            "avx512" => Rung.Avx512,
            "neon" => Rung.Neon,
            _ => null,
        };
        return r is { } rung && IsSupported(rung) ? rung : Best();
    }

    internal static void ThrowUnsupported(string kernel, Rung rung) =>
        throw new PlatformNotSupportedException($"{kernel}: the {rung} rung is not supported on this CPU");

    internal static void ThrowBadLength(string kernel, int n, int blockSize) =>
        throw new ArgumentException($"{kernel}: n = {n} is not a non-negative multiple of the block size {blockSize}", nameof(n));
}
