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
    /// sadalp), multiplied by the sub-block scale into an int32 accumulator (mla); the mins term Σ m·bsums is 16
    /// multiply-adds done as one vector step per block (<see cref="NeonDot.MinSum"/>).
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        Vector128<float> acc = Vector128<float>.Zero;
        float minSum = 0f;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            UnpackScales(wb + ScalesOffset, out ulong sc, out ulong mn);
            float dy = Unsafe.ReadUnaligned<float>(yb);
            byte* q = wb + QsOffset;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector128<int> isum = Vector128<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                Vector128<byte> qa = AdvSimd.LoadVector128(q + 32 * c);
                Vector128<byte> qb = AdvSimd.LoadVector128(q + 32 * c + 16);
                Vector128<int> lo = NeonDot.Dot16<TDp>(Vector128<int>.Zero, AdvSimd.And(qa, m4).AsSByte(), AdvSimd.LoadVector128(y + 64 * c));
                lo = NeonDot.Dot16<TDp>(lo, AdvSimd.And(qb, m4).AsSByte(), AdvSimd.LoadVector128(y + 64 * c + 16));
                Vector128<int> hi = NeonDot.Dot16<TDp>(Vector128<int>.Zero, AdvSimd.ShiftRightLogical(qa, 4).AsSByte(), AdvSimd.LoadVector128(y + 64 * c + 32));
                hi = NeonDot.Dot16<TDp>(hi, AdvSimd.ShiftRightLogical(qb, 4).AsSByte(), AdvSimd.LoadVector128(y + 64 * c + 48));
                isum = AdvSimd.MultiplyAdd(isum, lo, Vector128.Create((int)((sc >> (16 * c)) & 0xFF)));
                isum = AdvSimd.MultiplyAdd(isum, hi, Vector128.Create((int)((sc >> (16 * c + 8)) & 0xFF)));
            }
            short* bsums = (short*)(yb + ActivationQuant.Q8_KBsumsOffset);
            int msum = NeonDot.MinSum(NeonDot.Mins8(mn), bsums);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(Fp16.Read(wb) * dy));
            minSum += Fp16.Read(wb + 2) * dy * msum;
        }
        return Vector128.Sum(acc) - minSum;
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
        for (int b = 0; b < nb; b++, w += BlockBytes)
        {
            long xo = (long)b * XB;
            UnpackScales(w + ScalesOffset, out ulong sc, out ulong mn);
            byte* q = w + QsOffset;
            Vector128<int> i0 = Vector128<int>.Zero, i1 = Vector128<int>.Zero, i2 = Vector128<int>.Zero, i3 = Vector128<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                Vector128<byte> qa = AdvSimd.LoadVector128(q + 32 * c);
                Vector128<byte> qb = AdvSimd.LoadVector128(q + 32 * c + 16);
                Vector128<sbyte> la = AdvSimd.And(qa, m4).AsSByte(), lb = AdvSimd.And(qb, m4).AsSByte();
                Vector128<sbyte> ha = AdvSimd.ShiftRightLogical(qa, 4).AsSByte(), hb = AdvSimd.ShiftRightLogical(qb, 4).AsSByte();
                Vector128<int> sLo = Vector128.Create((int)((sc >> (16 * c)) & 0xFF));
                Vector128<int> sHi = Vector128.Create((int)((sc >> (16 * c + 8)) & 0xFF));
                long yo = xo + ActivationQuant.Q8_KQsOffset + 64 * c;
                i0 = NeonChunk<TDp>(i0, la, lb, ha, hb, sLo, sHi, (sbyte*)(x0 + yo));
                i1 = NeonChunk<TDp>(i1, la, lb, ha, hb, sLo, sHi, (sbyte*)(x1 + yo));
                i2 = NeonChunk<TDp>(i2, la, lb, ha, hb, sLo, sHi, (sbyte*)(x2 + yo));
                i3 = NeonChunk<TDp>(i3, la, lb, ha, hb, sLo, sHi, (sbyte*)(x3 + yo));
            }
            float d = Fp16.Read(w), dMin = Fp16.Read(w + 2);
            Vector128<short> mins8 = NeonDot.Mins8(mn);
            NeonBlockEnd(ref a0, ref m0, i0, d, dMin, mins8, x0 + xo);
            NeonBlockEnd(ref a1, ref m1, i1, d, dMin, mins8, x1 + xo);
            NeonBlockEnd(ref a2, ref m2, i2, d, dMin, mins8, x2 + xo);
            NeonBlockEnd(ref a3, ref m3, i3, d, dMin, mins8, x3 + xo);
        }
        dst[0] = Vector128.Sum(a0) - m0;
        dst[dstStride] = Vector128.Sum(a1) - m1;
        dst[2 * dstStride] = Vector128.Sum(a2) - m2;
        dst[3 * dstStride] = Vector128.Sum(a3) - m3;
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
