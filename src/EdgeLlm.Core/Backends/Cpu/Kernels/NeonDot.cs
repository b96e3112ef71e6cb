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
internal static unsafe class NeonDot
{
    /// <summary>
    /// The step with the choice fixed at compile time (<see cref="DotProdOn"/>: sdot, <see cref="DotProdOff"/>: the
    /// widening pair): the loops are instantiated per flag and pick one once per call, as <see cref="KernelRung.UseDotProd"/> says.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot16<TDp>(Vector128<int> acc, Vector128<sbyte> a, Vector128<sbyte> b) where TDp : struct, IIsaFlag
    {
        if (TDp.Enabled) return Dp.DotProduct(acc, a, b);
        Vector128<short> lo = AdvSimd.MultiplyWideningLower(a.GetLower(), b.GetLower());
        Vector128<short> hi = AdvSimd.MultiplyWideningUpper(a, b);
        return AdvSimd.AddPairwiseWideningAndAdd(acc, lo + hi);
    }

    /// <summary>Whether a four-token NEON loop may take <paramref name="dp"/> (sdot needs the extension).</summary>
    public static void Require(string kernel, bool dp)
    {
        if (!KernelRung.IsSupported(Rung.Neon) || (dp && !Dp.IsSupported)) KernelRung.ThrowUnsupported(kernel, Rung.Neon);
    }

    /// <summary>
    /// The eight 6-bit sub-block mins of a Q4_K/Q5_K block (<paramref name="mins"/>: one byte each, as
    /// <c>DotQ4_K.UnpackScales</c> leaves them) widened to int16 lanes, for <see cref="MinSum"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<short> Mins8(ulong mins) => AdvSimd.ZeroExtendWideningLower(Vector64.Create(mins).AsByte()).AsInt16();

    /// <summary>
    /// Σ_g m_(g/2)·bsums[g] over a Q8_K block's 16 group sums (exact in int32: |pair sum| ≤ 32·128, m ≤ 63): the
    /// pairs added (addp), multiplied by the mins widening (smull, smlal2), lanes added.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int MinSum(Vector128<short> mins8, short* bsums)
    {
        Vector128<short> pairs = AdvSimd.Arm64.AddPairwise(AdvSimd.LoadVector128(bsums), AdvSimd.LoadVector128(bsums + 8));
        Vector128<int> p = AdvSimd.MultiplyWideningLower(mins8.GetLower(), pairs.GetLower());
        return Vector128.Sum(AdvSimd.MultiplyWideningUpperAndAdd(p, mins8, pairs));
    }

    /// <summary>
    /// One token's step of the NEON loops over Q8_0 activation blocks (Q4_0, Q8_0, Q5_0, IQ4_NL): the block's 32 weights
    /// as signed bytes (<paramref name="lo"/>: 0..15, <paramref name="hi"/>: 16..31) dotted with the activations at
    /// <paramref name="yb"/>, int → float, FMA with d_w·d_x into <paramref name="acc"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Q8_0Token<TDp>(Vector128<float> acc, Vector128<sbyte> lo, Vector128<sbyte> hi, float dw, byte* yb) where TDp : struct, IIsaFlag
    {
        Vector128<int> isum = Dot16<TDp>(Vector128<int>.Zero, lo, AdvSimd.LoadVector128((sbyte*)(yb + 2)));
        isum = Dot16<TDp>(isum, hi, AdvSimd.LoadVector128((sbyte*)(yb + 18)));
        float d = dw * Fp16.Read(yb);
        return AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d));
    }

    /// <summary>
    /// One token's step of the NEON loops over Q8_1 activation blocks (Q4_1, Q5_1): the block's 32 codes as bytes
    /// (<paramref name="lo"/>: 0..15, <paramref name="hi"/>: 16..31) dotted with the activations at <paramref name="yb"/>,
    /// int → float, FMA with d_w·d_x into <paramref name="acc"/>; m_w·s_x added to <paramref name="mSum"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Q8_1Token<TDp>(Vector128<float> acc, ref float mSum, Vector128<sbyte> lo, Vector128<sbyte> hi, float dw, float mw, byte* yb)
        where TDp : struct, IIsaFlag
    {
        Vector128<int> isum = Dot16<TDp>(Vector128<int>.Zero, lo, AdvSimd.LoadVector128((sbyte*)(yb + 4)));
        isum = Dot16<TDp>(isum, hi, AdvSimd.LoadVector128((sbyte*)(yb + 20)));
        float d = dw * Fp16.Read(yb);
        mSum += mw * Fp16.Read(yb + 2);
        return AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d));
    }
}
