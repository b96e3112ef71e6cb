using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// The arm64 int8 dot step shared by the NEON rungs: acc (4 × int32) + the 16 products a[i]·b[i]. With the
/// dot-product extension (and <see cref="KernelRung.UseDotProd"/>) it is one sdot (lane k gets bytes 4k..4k+3); without, two widening multiplies (smull,
/// smull2: int16 products, |·| ≤ 128·127) added in int16 (≤ 32512, no overflow) and pairwise-widened into acc
/// (sadalp). The two spread the sum over the lanes differently, so callers only use the lane total, or scale all
/// 16 bytes alike.
/// </summary>
internal static class NeonDot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot16(Vector128<int> acc, Vector128<sbyte> a, Vector128<sbyte> b)
    {
        if (Dp.IsSupported && KernelRung.UseDotProd) return Dp.DotProduct(acc, a, b);
        Vector128<short> lo = AdvSimd.MultiplyWideningLower(a.GetLower(), b.GetLower());
        Vector128<short> hi = AdvSimd.MultiplyWideningUpper(a, b);
        return AdvSimd.AddPairwiseWideningAndAdd(acc, lo + hi);
    }
}
