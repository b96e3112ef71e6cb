using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ6_K
{
    /// <summary>The one-token loop with sdot or the widening pair, as <see cref="KernelRung.UseDotProd"/> says (chosen once per call).</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb) =>
        KernelRung.UseDotProd ? NeonLoop1<DotProdOn>(w, xq, nb) : NeonLoop1<DotProdOff>(w, xq, nb);

    /// <summary>
    /// Per 16-weight group: rebuild the 6-bit q from ql/qh (shift-and-insert, <see cref="Rebuild"/>), subtract 32
    /// (signed −32..31), one 16-byte int8 dot step (sdot, or smull + sadalp) with its activations, multiplied by the
    /// group scale into an int32 accumulator (mla by element: the 16 scales widened to int32 once per block,
    /// <see cref="Scales16"/>); d converted in a vector register (<see cref="NeonScales.Half1"/>).
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        Vector128<float> acc = Vector128<float>.Zero;
        for (int b = 0; b < nb; b++, w += BlockBytes, xq += ActivationQuant.Q8_KBlockBytes)
        {
            Scales16(w + ScalesOffset, out Vector128<int> s0, out Vector128<int> s1, out Vector128<int> s2, out Vector128<int> s3);
            sbyte* y = (sbyte*)(xq + ActivationQuant.Q8_KQsOffset);
            Rebuild(w, w + QhOffset, out Vector128<sbyte> q1, out Vector128<sbyte> q2, out Vector128<sbyte> q3, out Vector128<sbyte> q4);
            Vector128<int> isum = NeonGroupsLane<TDp>(Vector128<int>.Zero, q1, q2, q3, q4, s0, s1, 0, 2, y);
            Rebuild(w + 16, w + QhOffset + 16, out q1, out q2, out q3, out q4);
            isum = NeonGroupsLane<TDp>(isum, q1, q2, q3, q4, s0, s1, 1, 3, y + 16);
            Rebuild(w + 64, w + QhOffset + 32, out q1, out q2, out q3, out q4);
            isum = NeonGroupsLane<TDp>(isum, q1, q2, q3, q4, s2, s3, 0, 2, y + 128);
            Rebuild(w + 80, w + QhOffset + 48, out q1, out q2, out q3, out q4);
            isum = NeonGroupsLane<TDp>(isum, q1, q2, q3, q4, s2, s3, 1, 3, y + 144);
            acc = NeonBlockEnd(acc, isum, NeonScales.Half1(w + DOffset), xq);
        }
        return Vector128.Sum(acc);
    }

    /// <summary>The block's 16 int8 group scales widened to int32: groups 0-3 in <paramref name="s0"/>, 4-7, 8-11, 12-15 in the others.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scales16(byte* p, out Vector128<int> s0, out Vector128<int> s1, out Vector128<int> s2, out Vector128<int> s3)
    {
        Vector128<sbyte> v = AdvSimd.LoadVector128((sbyte*)p);
        Vector128<short> lo = AdvSimd.SignExtendWideningLower(v.GetLower()), hi = AdvSimd.SignExtendWideningUpper(v);
        s0 = AdvSimd.SignExtendWideningLower(lo.GetLower());
        s1 = AdvSimd.SignExtendWideningUpper(lo);
        s2 = AdvSimd.SignExtendWideningLower(hi.GetLower());
        s3 = AdvSimd.SignExtendWideningUpper(hi);
    }

    /// <summary>
    /// Sixteen weights of each of the four 32-weight quarters of a 128-weight half (ql bytes at <paramref name="ql"/> and
    /// + 32, qh at <paramref name="qh"/>) as q − 32: quarter 1 = ql low nibble | qh bits 0-1 (sli), 2 = ql+32 low | qh
    /// bits 2-3, 3 = ql high nibble | qh bits 4-5 (sri), 4 = ql+32 high | qh bits 6-7.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Rebuild(byte* ql, byte* qh, out Vector128<sbyte> q1, out Vector128<sbyte> q2, out Vector128<sbyte> q3, out Vector128<sbyte> q4)
    {
        Vector128<byte> la = AdvSimd.LoadVector128(ql), lb = AdvSimd.LoadVector128(ql + 32), hv = AdvSimd.LoadVector128(qh);
        Vector128<byte> m2 = Vector128.Create((byte)0x03), m30 = Vector128.Create((byte)0x30), k32 = Vector128.Create((byte)32);
        Vector128<byte> h2 = AdvSimd.ShiftRightLogical(hv, 2);
        q1 = AdvSimd.Subtract(AdvSimd.ShiftLeftAndInsert(la, AdvSimd.And(hv, m2), 4), k32).AsSByte();
        q2 = AdvSimd.Subtract(AdvSimd.ShiftLeftAndInsert(lb, AdvSimd.And(h2, m2), 4), k32).AsSByte();
        q3 = AdvSimd.Subtract(AdvSimd.ShiftRightAndInsert(AdvSimd.And(hv, m30), la, 4), k32).AsSByte();
        q4 = AdvSimd.Subtract(AdvSimd.ShiftRightAndInsert(AdvSimd.And(h2, m30), lb, 4), k32).AsSByte();
    }

    /// <summary>
    /// One token's four 16-weight groups (activations at y, y + 32, y + 64, y + 96) into its int32 accumulator: group
    /// scales in lanes <paramref name="lane"/>, <paramref name="lane2"/> (= lane + 2) of <paramref name="sa"/> and of <paramref name="sb"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> NeonGroupsLane<TDp>(Vector128<int> isum, Vector128<sbyte> q1, Vector128<sbyte> q2, Vector128<sbyte> q3, Vector128<sbyte> q4,
        Vector128<int> sa, Vector128<int> sb, [ConstantExpected(Max = (byte)3)] byte lane, [ConstantExpected(Max = (byte)3)] byte lane2, sbyte* y) where TDp : struct, IIsaFlag
    {
        isum = AdvSimd.MultiplyAddBySelectedScalar(isum, NeonDot.Dot16<TDp>(Vector128<int>.Zero, q1, AdvSimd.LoadVector128(y)), sa, lane);
        isum = AdvSimd.MultiplyAddBySelectedScalar(isum, NeonDot.Dot16<TDp>(Vector128<int>.Zero, q2, AdvSimd.LoadVector128(y + 32)), sa, lane2);
        isum = AdvSimd.MultiplyAddBySelectedScalar(isum, NeonDot.Dot16<TDp>(Vector128<int>.Zero, q3, AdvSimd.LoadVector128(y + 64)), sb, lane);
        return AdvSimd.MultiplyAddBySelectedScalar(isum, NeonDot.Dot16<TDp>(Vector128<int>.Zero, q4, AdvSimd.LoadVector128(y + 96)), sb, lane2);
    }

    /// <summary>
    /// Row <paramref name="w"/> · tokens t = 0..3 at <paramref name="xq"/> + t·<paramref name="xqStride"/> (Q8_K blocks) on
    /// NEON, sdot when <paramref name="dp"/>; result t to <paramref name="dst"/>[t·<paramref name="dstStride"/>]. The 6-bit
    /// quants are rebuilt from ql/qh (minus 32) and the group scales broadcast once for the four tokens; per token the
    /// steps of <see cref="NeonLoop"/> in its order, so each result is bit-identical to the one-token loop's.
    /// </summary>
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp)
    {
        int nb = Blocks(n);
        NeonDot.Require(nameof(DotQ6_K), dp);
        if (dp) NeonLoop4<DotProdOn>(w, xq, xqStride, nb, dst, dstStride);
        else NeonLoop4<DotProdOff>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void NeonLoop4<TDp>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_KBlockBytes, Y = ActivationQuant.Q8_KQsOffset;
        Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++, w += BlockBytes, x0 += XB, x1 += XB, x2 += XB, x3 += XB)
        {
            Scales16(w + ScalesOffset, out Vector128<int> s0, out Vector128<int> s1, out Vector128<int> s2, out Vector128<int> s3);
            Vector128<int> i0 = Vector128<int>.Zero, i1 = Vector128<int>.Zero, i2 = Vector128<int>.Zero, i3 = Vector128<int>.Zero;
            Groups4<TDp>(ref i0, ref i1, ref i2, ref i3, w, w + QhOffset, s0, s1, 0, 2, x0, x1, x2, x3, Y);
            Groups4<TDp>(ref i0, ref i1, ref i2, ref i3, w + 16, w + QhOffset + 16, s0, s1, 1, 3, x0, x1, x2, x3, Y + 16);
            Groups4<TDp>(ref i0, ref i1, ref i2, ref i3, w + 64, w + QhOffset + 32, s2, s3, 0, 2, x0, x1, x2, x3, Y + 128);
            Groups4<TDp>(ref i0, ref i1, ref i2, ref i3, w + 80, w + QhOffset + 48, s2, s3, 1, 3, x0, x1, x2, x3, Y + 144);
            float d = NeonScales.Half1(w + DOffset);
            a0 = NeonBlockEnd(a0, i0, d, x0);
            a1 = NeonBlockEnd(a1, i1, d, x1);
            a2 = NeonBlockEnd(a2, i2, d, x2);
            a3 = NeonBlockEnd(a3, i3, d, x3);
        }
        dst[0] = Vector128.Sum(a0);
        dst[dstStride] = Vector128.Sum(a1);
        dst[2 * dstStride] = Vector128.Sum(a2);
        dst[3 * dstStride] = Vector128.Sum(a3);
    }

    /// <summary>Sixteen weights of each quarter rebuilt once (<see cref="Rebuild"/>) and dotted with four tokens' activations at x_t + <paramref name="yo"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Groups4<TDp>(ref Vector128<int> i0, ref Vector128<int> i1, ref Vector128<int> i2, ref Vector128<int> i3, byte* ql, byte* qh,
        Vector128<int> sa, Vector128<int> sb, [ConstantExpected(Max = (byte)3)] byte lane, [ConstantExpected(Max = (byte)3)] byte lane2, byte* x0, byte* x1, byte* x2, byte* x3, int yo) where TDp : struct, IIsaFlag
    {
        Rebuild(ql, qh, out Vector128<sbyte> q1, out Vector128<sbyte> q2, out Vector128<sbyte> q3, out Vector128<sbyte> q4);
        i0 = NeonGroupsLane<TDp>(i0, q1, q2, q3, q4, sa, sb, lane, lane2, (sbyte*)(x0 + yo));
        i1 = NeonGroupsLane<TDp>(i1, q1, q2, q3, q4, sa, sb, lane, lane2, (sbyte*)(x1 + yo));
        i2 = NeonGroupsLane<TDp>(i2, q1, q2, q3, q4, sa, sb, lane, lane2, (sbyte*)(x2 + yo));
        i3 = NeonGroupsLane<TDp>(i3, q1, q2, q3, q4, sa, sb, lane, lane2, (sbyte*)(x3 + yo));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> NeonBlockEnd(Vector128<float> acc, Vector128<int> isum, float d, byte* yb) =>
        AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d * Unsafe.ReadUnaligned<float>(yb)));
}
