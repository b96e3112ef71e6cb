using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_K
{
    /// <summary>The one-token loop with sdot or the widening pair, as <see cref="KernelRung.UseDotProd"/> says (chosen once per call).</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb) =>
        KernelRung.UseDotProd ? NeonLoop1<DotProdOn>(w, xq, nb) : NeonLoop1<DotProdOff>(w, xq, nb);

    /// <summary>
    /// Per 32-weight sub-block: two 16-byte int8 dot steps of its nibbles with the activations (sdot, or smull +
    /// sadalp), multiplied by the sub-block scale into an int32 accumulator (mla by element: the scales and mins are
    /// unpacked in vector registers once per block, <see cref="NeonScales.KScales"/>); the mins term Σ m·bsums is 16
    /// multiply-adds done as one vector step per block (<see cref="NeonDot.MinSum"/>); d and d_min are converted together
    /// in a vector (<see cref="NeonScales.HalfPair"/>) and multiplied by d_y at once.
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        Vector128<float> acc = Vector128<float>.Zero;
        float minSum = 0f;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        for (int b = 0; b < nb; b++, w += BlockBytes, xq += ActivationQuant.Q8_KBlockBytes)
        {
            NeonScales.KScales(w + ScalesOffset, out Vector128<int> scLo, out Vector128<int> scHi, out Vector128<short> mins8);
            sbyte* y = (sbyte*)(xq + ActivationQuant.Q8_KQsOffset);
            Vector128<int> isum = NeonChunkLane<TDp>(Vector128<int>.Zero, w + QsOffset, m4, y, scLo, 0, 1);
            isum = NeonChunkLane<TDp>(isum, w + QsOffset + 32, m4, y + 64, scLo, 2, 3);
            isum = NeonChunkLane<TDp>(isum, w + QsOffset + 64, m4, y + 128, scHi, 0, 1);
            isum = NeonChunkLane<TDp>(isum, w + QsOffset + 96, m4, y + 192, scHi, 2, 3);
            NeonBlockEndLane(ref acc, ref minSum, isum, NeonScales.HalfPair(w), mins8, xq);
        }
        return Vector128.Sum(acc) - minSum;
    }

    /// <summary>
    /// One 32-byte chunk (sub-blocks 2c, 2c + 1) of the quants at <paramref name="q"/> with one token's 64 activations at
    /// <paramref name="y"/>: both nibble halves dotted, times the sub-block scales in lanes <paramref name="laneLo"/> and
    /// <paramref name="laneHi"/> of <paramref name="sc"/>, added to <paramref name="isum"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> NeonChunkLane<TDp>(Vector128<int> isum, byte* q, Vector128<byte> m4, sbyte* y, Vector128<int> sc,
        [ConstantExpected(Max = (byte)3)] byte laneLo, [ConstantExpected(Max = (byte)3)] byte laneHi) where TDp : struct, IIsaFlag
    {
        Vector128<byte> qa = AdvSimd.LoadVector128(q), qb = AdvSimd.LoadVector128(q + 16);
        return NeonChunkLane<TDp>(isum, AdvSimd.And(qa, m4).AsSByte(), AdvSimd.And(qb, m4).AsSByte(),
            AdvSimd.ShiftRightLogical(qa, 4).AsSByte(), AdvSimd.ShiftRightLogical(qb, 4).AsSByte(), y, sc, laneLo, laneHi);
    }

    /// <summary>One token's chunk pair of nibbles (split once for four tokens) into its int32 accumulator, the scales by lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> NeonChunkLane<TDp>(Vector128<int> isum, Vector128<sbyte> la, Vector128<sbyte> lb, Vector128<sbyte> ha, Vector128<sbyte> hb,
        sbyte* y, Vector128<int> sc, [ConstantExpected(Max = (byte)3)] byte laneLo, [ConstantExpected(Max = (byte)3)] byte laneHi) where TDp : struct, IIsaFlag
    {
        Vector128<int> lo = NeonDot.Dot16<TDp>(Vector128<int>.Zero, la, AdvSimd.LoadVector128(y));
        lo = NeonDot.Dot16<TDp>(lo, lb, AdvSimd.LoadVector128(y + 16));
        Vector128<int> hi = NeonDot.Dot16<TDp>(Vector128<int>.Zero, ha, AdvSimd.LoadVector128(y + 32));
        hi = NeonDot.Dot16<TDp>(hi, hb, AdvSimd.LoadVector128(y + 48));
        isum = AdvSimd.MultiplyAddBySelectedScalar(isum, lo, sc, laneLo);
        return AdvSimd.MultiplyAddBySelectedScalar(isum, hi, sc, laneHi);
    }

    /// <summary>
    /// A token's block total with d, d_min in lanes 0, 1 of <paramref name="dm"/>: isum·(d·d_y) into the float lanes,
    /// (d_min·d_y)·Σ m·bsums into the mins sum (the products of <see cref="NeonBlockEnd"/>, bit for bit).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void NeonBlockEndLane(ref Vector128<float> acc, ref float minSum, Vector128<int> isum, Vector128<float> dm, Vector128<short> mins8, byte* yb)
    {
        Vector128<float> dd = dm * Unsafe.ReadUnaligned<float>(yb);
        acc = AdvSimd.Arm64.FusedMultiplyAddBySelectedScalar(acc, AdvSimd.ConvertToSingle(isum), dd, 0);
        minSum += dd.GetElement(1) * NeonDot.MinSum(mins8, (short*)(yb + ActivationQuant.Q8_KBsumsOffset));
    }

    /// <summary>
    /// Row <paramref name="w"/> · tokens t = 0..3 at <paramref name="xq"/> + t·<paramref name="xqStride"/> (Q8_K blocks) on
    /// NEON, sdot when <paramref name="dp"/>; result t to <paramref name="dst"/>[t·<paramref name="dstStride"/>]. Per block the
    /// scales and mins are unpacked and each 32-byte chunk split into nibbles once for the four tokens; per token the
    /// integer steps and float operations of <see cref="NeonLoop"/> in its order, so each result is bit-identical to the one-token loop's.
    /// </summary>
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp)
    {
        int nb = Blocks(n);
        NeonDot.Require(nameof(DotQ4_K), dp);
        if (dp) NeonLoop4<DotProdOn>(w, xq, xqStride, nb, dst, dstStride);
        else NeonLoop4<DotProdOff>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void NeonLoop4<TDp>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_KBlockBytes;
        Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
        float m0 = 0f, m1 = 0f, m2 = 0f, m3 = 0f;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++, w += BlockBytes, x0 += XB, x1 += XB, x2 += XB, x3 += XB)
        {
            NeonScales.KScales(w + ScalesOffset, out Vector128<int> scLo, out Vector128<int> scHi, out Vector128<short> mins8);
            Vector128<int> i0 = Vector128<int>.Zero, i1 = Vector128<int>.Zero, i2 = Vector128<int>.Zero, i3 = Vector128<int>.Zero;
            NeonChunk4<TDp>(ref i0, ref i1, ref i2, ref i3, w + QsOffset, m4, x0, x1, x2, x3, ActivationQuant.Q8_KQsOffset, scLo, 0, 1);
            NeonChunk4<TDp>(ref i0, ref i1, ref i2, ref i3, w + QsOffset + 32, m4, x0, x1, x2, x3, ActivationQuant.Q8_KQsOffset + 64, scLo, 2, 3);
            NeonChunk4<TDp>(ref i0, ref i1, ref i2, ref i3, w + QsOffset + 64, m4, x0, x1, x2, x3, ActivationQuant.Q8_KQsOffset + 128, scHi, 0, 1);
            NeonChunk4<TDp>(ref i0, ref i1, ref i2, ref i3, w + QsOffset + 96, m4, x0, x1, x2, x3, ActivationQuant.Q8_KQsOffset + 192, scHi, 2, 3);
            Vector128<float> dm = NeonScales.HalfPair(w);
            NeonBlockEndLane(ref a0, ref m0, i0, dm, mins8, x0);
            NeonBlockEndLane(ref a1, ref m1, i1, dm, mins8, x1);
            NeonBlockEndLane(ref a2, ref m2, i2, dm, mins8, x2);
            NeonBlockEndLane(ref a3, ref m3, i3, dm, mins8, x3);
        }
        dst[0] = Vector128.Sum(a0) - m0;
        dst[dstStride] = Vector128.Sum(a1) - m1;
        dst[2 * dstStride] = Vector128.Sum(a2) - m2;
        dst[3 * dstStride] = Vector128.Sum(a3) - m3;
    }

    /// <summary>One 32-byte chunk split into nibbles once and dotted with four tokens' activations at x_t + <paramref name="yo"/>, as <see cref="NeonLoop1"/> does for one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void NeonChunk4<TDp>(ref Vector128<int> i0, ref Vector128<int> i1, ref Vector128<int> i2, ref Vector128<int> i3, byte* q, Vector128<byte> m4,
        byte* x0, byte* x1, byte* x2, byte* x3, int yo, Vector128<int> sc,
        [ConstantExpected(Max = (byte)3)] byte laneLo, [ConstantExpected(Max = (byte)3)] byte laneHi) where TDp : struct, IIsaFlag
    {
        Vector128<byte> qa = AdvSimd.LoadVector128(q), qb = AdvSimd.LoadVector128(q + 16);
        Vector128<sbyte> la = AdvSimd.And(qa, m4).AsSByte(), lb = AdvSimd.And(qb, m4).AsSByte();
        Vector128<sbyte> ha = AdvSimd.ShiftRightLogical(qa, 4).AsSByte(), hb = AdvSimd.ShiftRightLogical(qb, 4).AsSByte();
        i0 = NeonChunkLane<TDp>(i0, la, lb, ha, hb, (sbyte*)(x0 + yo), sc, laneLo, laneHi);
        i1 = NeonChunkLane<TDp>(i1, la, lb, ha, hb, (sbyte*)(x1 + yo), sc, laneLo, laneHi);
        i2 = NeonChunkLane<TDp>(i2, la, lb, ha, hb, (sbyte*)(x2 + yo), sc, laneLo, laneHi);
        i3 = NeonChunkLane<TDp>(i3, la, lb, ha, hb, (sbyte*)(x3 + yo), sc, laneLo, laneHi);
    }

    /// <summary>One token's 32-weight chunk pair (low and high nibbles) into its int32 accumulator, as <see cref="NeonLoop"/> does it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<int> NeonChunk<TDp>(Vector128<int> isum, Vector128<sbyte> la, Vector128<sbyte> lb, Vector128<sbyte> ha, Vector128<sbyte> hb,
        Vector128<int> sLo, Vector128<int> sHi, sbyte* y) where TDp : struct, IIsaFlag
    {
        Vector128<int> lo = NeonDot.Dot16<TDp>(Vector128<int>.Zero, la, AdvSimd.LoadVector128(y));
        lo = NeonDot.Dot16<TDp>(lo, lb, AdvSimd.LoadVector128(y + 16));
        Vector128<int> hi = NeonDot.Dot16<TDp>(Vector128<int>.Zero, ha, AdvSimd.LoadVector128(y + 32));
        hi = NeonDot.Dot16<TDp>(hi, hb, AdvSimd.LoadVector128(y + 48));
        isum = AdvSimd.MultiplyAdd(isum, lo, sLo);
        return AdvSimd.MultiplyAdd(isum, hi, sHi);
    }

    /// <summary>A token's block total: isum·d·d_y into the float lanes, d_min·d_y·Σ m·bsums into the mins sum (Q4_K and Q5_K).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void NeonBlockEnd(ref Vector128<float> acc, ref float minSum, Vector128<int> isum, float d, float dMin, Vector128<short> mins8, byte* yb)
    {
        float dy = Unsafe.ReadUnaligned<float>(yb);
        acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d * dy));
        minSum += dMin * dy * NeonDot.MinSum(mins8, (short*)(yb + ActivationQuant.Q8_KBsumsOffset));
    }
}
