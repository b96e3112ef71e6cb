using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ3_K
{
    /// <summary>The one-token loop with sdot or the widening pair, as <see cref="KernelRung.UseDotProd"/> says (chosen once per call).</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb) =>
        KernelRung.UseDotProd ? NeonLoop1<DotProdOn>(w, xq, nb) : NeonLoop1<DotProdOff>(w, xq, nb);

    /// <summary>
    /// Per 16-weight group: two bits of qs (shifted right by two per quarter) or-ed with the hmask bit (shifted right by
    /// one per quarter, moved to bit 2), minus 4 (signed −4..3), one 16-byte int8 dot step with its activations (sdot,
    /// or smull + sadalp), times the group scale into an int32 accumulator (mla); one FMA with d·d_x per block.
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        Vector128<float> acc = Vector128<float>.Zero;
        Vector128<byte> m3 = Vector128.Create((byte)3);
        Vector128<byte> one = Vector128.Create((byte)1);
        Vector128<byte> four = Vector128.Create((byte)4);
        byte* sc = stackalloc byte[16];
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            UnpackScales(wb + ScalesOffset).Store(sc);
            Vector128<byte> ha = AdvSimd.LoadVector128(wb);
            Vector128<byte> hb = AdvSimd.LoadVector128(wb + 16);
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector128<int> isum = Vector128<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                Vector128<byte> qa = AdvSimd.LoadVector128(wb + QsOffset + 32 * h);
                Vector128<byte> qb = AdvSimd.LoadVector128(wb + QsOffset + 32 * h + 16);
                for (int j = 0; j < 4; j++)
                {
                    int g = 8 * h + 2 * j;
                    Vector128<byte> va = AdvSimd.Subtract(AdvSimd.Or(AdvSimd.And(qa, m3), AdvSimd.ShiftLeftLogical(AdvSimd.And(ha, one), 2)), four);
                    Vector128<byte> vb = AdvSimd.Subtract(AdvSimd.Or(AdvSimd.And(qb, m3), AdvSimd.ShiftLeftLogical(AdvSimd.And(hb, one), 2)), four);
                    Vector128<int> pa = NeonDot.Dot16<TDp>(Vector128<int>.Zero, va.AsSByte(), AdvSimd.LoadVector128(y + 32 * j));
                    Vector128<int> pb = NeonDot.Dot16<TDp>(Vector128<int>.Zero, vb.AsSByte(), AdvSimd.LoadVector128(y + 32 * j + 16));
                    isum = AdvSimd.MultiplyAdd(isum, pa, Vector128.Create(sc[g] - 32));
                    isum = AdvSimd.MultiplyAdd(isum, pb, Vector128.Create(sc[g + 1] - 32));
                    qa = AdvSimd.ShiftRightLogical(qa, 2);
                    qb = AdvSimd.ShiftRightLogical(qb, 2);
                    ha = AdvSimd.ShiftRightLogical(ha, 1);
                    hb = AdvSimd.ShiftRightLogical(hb, 1);
                }
                y += 128;
            }
            float d = Fp16.Read(wb + DOffset) * Unsafe.ReadUnaligned<float>(yb);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d));
        }
        return Vector128.Sum(acc);
    }

    /// <summary>
    /// Row <paramref name="w"/> · tokens t = 0..3 at <paramref name="xq"/> + t·<paramref name="xqStride"/> (Q8_K blocks) on
    /// NEON, sdot when <paramref name="dp"/>; result t to <paramref name="dst"/>[t·<paramref name="dstStride"/>]. Per block the
    /// scales are unpacked and each 16-weight group rebuilt (two qs bits, the hmask bit, minus 4) once for the four tokens;
    /// per token the integer steps and float operations of <see cref="NeonLoop"/> in its order, so each result is
    /// bit-identical to the one-token loop's.
    /// </summary>
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp)
    {
        int nb = Blocks(n);
        NeonDot.Require(nameof(DotQ3_K), dp);
        if (dp) NeonLoop4<DotProdOn>(w, xq, xqStride, nb, dst, dstStride);
        else NeonLoop4<DotProdOff>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void NeonLoop4<TDp>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_KBlockBytes;
        Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
        Vector128<byte> m3 = Vector128.Create((byte)3);
        Vector128<byte> one = Vector128.Create((byte)1);
        Vector128<byte> four = Vector128.Create((byte)4);
        byte* sc = stackalloc byte[16];
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++, w += BlockBytes)
        {
            long xo = (long)b * XB;
            UnpackScales(w + ScalesOffset).Store(sc);
            Vector128<byte> ha = AdvSimd.LoadVector128(w);
            Vector128<byte> hb = AdvSimd.LoadVector128(w + 16);
            Vector128<int> i0 = Vector128<int>.Zero, i1 = Vector128<int>.Zero, i2 = Vector128<int>.Zero, i3 = Vector128<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                Vector128<byte> qa = AdvSimd.LoadVector128(w + QsOffset + 32 * h);
                Vector128<byte> qb = AdvSimd.LoadVector128(w + QsOffset + 32 * h + 16);
                for (int j = 0; j < 4; j++)
                {
                    int g = 8 * h + 2 * j;
                    Vector128<sbyte> va = AdvSimd.Subtract(AdvSimd.Or(AdvSimd.And(qa, m3), AdvSimd.ShiftLeftLogical(AdvSimd.And(ha, one), 2)), four).AsSByte();
                    Vector128<sbyte> vb = AdvSimd.Subtract(AdvSimd.Or(AdvSimd.And(qb, m3), AdvSimd.ShiftLeftLogical(AdvSimd.And(hb, one), 2)), four).AsSByte();
                    Vector128<int> sa = Vector128.Create(sc[g] - 32), sb = Vector128.Create(sc[g + 1] - 32);
                    long yo = xo + ActivationQuant.Q8_KQsOffset + 128 * h + 32 * j;
                    i0 = NeonGroupPair<TDp>(i0, va, vb, sa, sb, (sbyte*)(x0 + yo));
                    i1 = NeonGroupPair<TDp>(i1, va, vb, sa, sb, (sbyte*)(x1 + yo));
                    i2 = NeonGroupPair<TDp>(i2, va, vb, sa, sb, (sbyte*)(x2 + yo));
                    i3 = NeonGroupPair<TDp>(i3, va, vb, sa, sb, (sbyte*)(x3 + yo));
                    qa = AdvSimd.ShiftRightLogical(qa, 2);
                    qb = AdvSimd.ShiftRightLogical(qb, 2);
                    ha = AdvSimd.ShiftRightLogical(ha, 1);
                    hb = AdvSimd.ShiftRightLogical(hb, 1);
                }
            }
            float dw = Fp16.Read(w + DOffset);
            a0 = AdvSimd.FusedMultiplyAdd(a0, AdvSimd.ConvertToSingle(i0), Vector128.Create(dw * Unsafe.ReadUnaligned<float>(x0 + xo)));
            a1 = AdvSimd.FusedMultiplyAdd(a1, AdvSimd.ConvertToSingle(i1), Vector128.Create(dw * Unsafe.ReadUnaligned<float>(x1 + xo)));
            a2 = AdvSimd.FusedMultiplyAdd(a2, AdvSimd.ConvertToSingle(i2), Vector128.Create(dw * Unsafe.ReadUnaligned<float>(x2 + xo)));
            a3 = AdvSimd.FusedMultiplyAdd(a3, AdvSimd.ConvertToSingle(i3), Vector128.Create(dw * Unsafe.ReadUnaligned<float>(x3 + xo)));
        }
        dst[0] = Vector128.Sum(a0);
        dst[dstStride] = Vector128.Sum(a1);
        dst[2 * dstStride] = Vector128.Sum(a2);
        dst[3 * dstStride] = Vector128.Sum(a3);
    }

    /// <summary>One token's two 16-weight groups (<paramref name="va"/>, <paramref name="vb"/>) times their scales into its int32 accumulator, as <see cref="NeonLoop"/> does it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> NeonGroupPair<TDp>(Vector128<int> isum, Vector128<sbyte> va, Vector128<sbyte> vb, Vector128<int> sa, Vector128<int> sb, sbyte* y)
        where TDp : struct, IIsaFlag
    {
        Vector128<int> pa = NeonDot.Dot16<TDp>(Vector128<int>.Zero, va, AdvSimd.LoadVector128(y));
        Vector128<int> pb = NeonDot.Dot16<TDp>(Vector128<int>.Zero, vb, AdvSimd.LoadVector128(y + 16));
        isum = AdvSimd.MultiplyAdd(isum, pa, sa);
        return AdvSimd.MultiplyAdd(isum, pb, sb);
    }
}
