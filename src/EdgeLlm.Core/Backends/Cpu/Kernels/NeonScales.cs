using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Block scales of the NEON loops over 32-weight blocks, four blocks at a time in one vector: the fp16 fields of four
/// consecutive blocks read as integers (ldrh + ins, the stride a compile-time constant) and converted in registers by
/// <see cref="Fp16.ToFloatMul"/>, instead of a scalar conversion of ~15 instructions with two branches per field and
/// block. Lane k of <see cref="Products4"/> equals <c>Fp16.Read(w + k·ws) · Fp16.Read(x + k·xs)</c> exactly (the same
/// float product), and each block's FMA takes its lane by index (fmla v.4s, v.4s, v.s[k]), which is the same fused
/// operation as the broadcast FMA of the one-block loops: the results do not change by one bit.
/// </summary>
internal static unsafe class NeonScales
{
    /// <summary>The fp16 values at <paramref name="p"/> + k·<paramref name="stride"/>, k = 0..3, as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Half4(byte* p, int stride) => Fp16.ToFloatMul(Vector128.Create(
        (uint)Unsafe.ReadUnaligned<ushort>(p), (uint)Unsafe.ReadUnaligned<ushort>(p + stride),
        (uint)Unsafe.ReadUnaligned<ushort>(p + 2 * stride), (uint)Unsafe.ReadUnaligned<ushort>(p + 3 * stride)));

    /// <summary>d_w·d_x of four consecutive blocks: lane k from the blocks at <paramref name="w"/> + k·<paramref name="ws"/> and <paramref name="x"/> + k·<paramref name="xs"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Products4(byte* w, int ws, byte* x, int xs) => Half4(w, ws) * Half4(x, xs);

    /// <summary>
    /// One token's step over a Q8_0 activation block (as <see cref="NeonDot.Q8_0Token"/>) with the scale product taken
    /// from lane <paramref name="lane"/> of <paramref name="d"/> (a constant at every call site).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Q8_0Lane<TDp>(Vector128<float> acc, Vector128<sbyte> lo, Vector128<sbyte> hi, byte* yb, Vector128<float> d,
        [ConstantExpected(Max = (byte)3)] byte lane) where TDp : struct, IIsaFlag
    {
        Vector128<int> isum = NeonDot.Dot16<TDp>(Vector128<int>.Zero, lo, AdvSimd.LoadVector128((sbyte*)(yb + 2)));
        isum = NeonDot.Dot16<TDp>(isum, hi, AdvSimd.LoadVector128((sbyte*)(yb + 18)));
        return AdvSimd.Arm64.FusedMultiplyAddBySelectedScalar(acc, AdvSimd.ConvertToSingle(isum), d, lane);
    }

    /// <summary>
    /// One token's step over a Q8_1 activation block (as <see cref="NeonDot.Q8_1Token"/>): the scale product from lane
    /// <paramref name="lane"/> of <paramref name="d"/>, and lane <paramref name="lane"/> of <paramref name="m"/> (m_w·s_x)
    /// added to <paramref name="mSum"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Q8_1Lane<TDp>(Vector128<float> acc, ref float mSum, Vector128<sbyte> lo, Vector128<sbyte> hi, byte* yb,
        Vector128<float> d, Vector128<float> m, [ConstantExpected(Max = (byte)3)] byte lane) where TDp : struct, IIsaFlag
    {
        Vector128<int> isum = NeonDot.Dot16<TDp>(Vector128<int>.Zero, lo, AdvSimd.LoadVector128((sbyte*)(yb + 4)));
        isum = NeonDot.Dot16<TDp>(isum, hi, AdvSimd.LoadVector128((sbyte*)(yb + 20)));
        mSum += m.GetElement(lane);
        return AdvSimd.Arm64.FusedMultiplyAddBySelectedScalar(acc, AdvSimd.ConvertToSingle(isum), d, lane);
    }
}
