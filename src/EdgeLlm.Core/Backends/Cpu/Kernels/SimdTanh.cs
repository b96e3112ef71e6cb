using System.Runtime.CompilerServices;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// tanh at any vector width, from exp alone: tanh(y) = 1 − 2 / (e^(2y) + 1). Saturates cleanly (e^(2y) = ∞ gives 1,
/// 0 gives −1, never NaN for finite y); the absolute error is a few ulps of 1, which is what softcapping needs.
/// </summary>
internal static class SimdTanh
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Tanh<TS, TV>(TV y) where TS : struct, ISimdFloat<TV> where TV : struct
    {
        TV one = TS.Broadcast(1f);
        return TS.Sub(one, TS.Div(TS.Broadcast(2f), TS.Add(TS.Exp(TS.Add(y, y)), one)));
    }

    /// <summary>cap · tanh(x / cap), with 1/cap precomputed by the caller.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Softcap<TS, TV>(TV x, TV cap, TV invCap) where TS : struct, ISimdFloat<TV> where TV : struct =>
        TS.Mul(cap, Tanh<TS, TV>(TS.Mul(x, invCap)));
}
