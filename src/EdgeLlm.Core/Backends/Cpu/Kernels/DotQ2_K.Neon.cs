using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ2_K
{
    /// <summary>The one-token loop with sdot or the widening pair, as <see cref="KernelRung.UseDotProd"/> says (chosen once per call).</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb) =>
        KernelRung.UseDotProd ? NeonLoop1<DotProdOn>(w, xq, nb) : NeonLoop1<DotProdOff>(w, xq, nb);

    /// <summary>
    /// Per 16-weight group: two bits of qs (shifted right by two per quarter), one 16-byte int8 dot step with its
    /// activations (sdot, or smull + sadalp), times the group scale into an int32 accumulator (mla); the mins term
    /// Σ m·bsums is 16 scalar multiply-adds per block.
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        Vector128<float> acc = Vector128<float>.Zero;
        float minSum = 0f;
        Vector128<byte> m3 = Vector128.Create((byte)3);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            float dy = Unsafe.ReadUnaligned<float>(yb);
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector128<int> isum = Vector128<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                Vector128<byte> qa = AdvSimd.LoadVector128(wb + QsOffset + 32 * h);
                Vector128<byte> qb = AdvSimd.LoadVector128(wb + QsOffset + 32 * h + 16);
                for (int j = 0; j < 4; j++)
                {
                    int g = 8 * h + 2 * j;
                    Vector128<int> pa = NeonDot.Dot16<TDp>(Vector128<int>.Zero, AdvSimd.And(qa, m3).AsSByte(), AdvSimd.LoadVector128(y + 32 * j));
                    Vector128<int> pb = NeonDot.Dot16<TDp>(Vector128<int>.Zero, AdvSimd.And(qb, m3).AsSByte(), AdvSimd.LoadVector128(y + 32 * j + 16));
                    isum = AdvSimd.MultiplyAdd(isum, pa, Vector128.Create(wb[g] & 0xF));
                    isum = AdvSimd.MultiplyAdd(isum, pb, Vector128.Create(wb[g + 1] & 0xF));
                    qa = AdvSimd.ShiftRightLogical(qa, 2);
                    qb = AdvSimd.ShiftRightLogical(qb, 2);
                }
                y += 128;
            }
            short* bsums = (short*)(yb + ActivationQuant.Q8_KBsumsOffset);
            int msum = 0;
            for (int g = 0; g < 16; g++) msum += bsums[g] * (wb[g] >> 4);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(Fp16.Read(wb + DOffset) * dy));
            minSum += Fp16.Read(wb + DminOffset) * dy * msum;
        }
        return Vector128.Sum(acc) - minSum;
    }

    /// <summary>
    /// Row <paramref name="w"/> · tokens t = 0..3 at <paramref name="xq"/> + t·<paramref name="xqStride"/> (Q8_K blocks) on
    /// NEON, sdot when <paramref name="dp"/>; result t to <paramref name="dst"/>[t·<paramref name="dstStride"/>]. Per block each
    /// 16-weight group's two bits and scale broadcast are taken once for the four tokens; per token the integer steps and
    /// float operations of <see cref="NeonLoop"/> in its order, so each result is bit-identical to the one-token loop's.
    /// </summary>
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp)
    {
        int nb = Blocks(n);
        NeonDot.Require(nameof(DotQ2_K), dp);
        if (dp) NeonLoop4<DotProdOn>(w, xq, xqStride, nb, dst, dstStride);
        else NeonLoop4<DotProdOff>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void NeonLoop4<TDp>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_KBlockBytes;
        Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
        float n0 = 0f, n1 = 0f, n2 = 0f, n3 = 0f;
        Vector128<byte> m3 = Vector128.Create((byte)3);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++, w += BlockBytes)
        {
            long xo = (long)b * XB;
            Vector128<int> i0 = Vector128<int>.Zero, i1 = Vector128<int>.Zero, i2 = Vector128<int>.Zero, i3 = Vector128<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                Vector128<byte> qa = AdvSimd.LoadVector128(w + QsOffset + 32 * h);
                Vector128<byte> qb = AdvSimd.LoadVector128(w + QsOffset + 32 * h + 16);
                for (int j = 0; j < 4; j++)
                {
                    int g = 8 * h + 2 * j;
                    Vector128<sbyte> va = AdvSimd.And(qa, m3).AsSByte(), vb = AdvSimd.And(qb, m3).AsSByte();
                    Vector128<int> sa = Vector128.Create(w[g] & 0xF), sb = Vector128.Create(w[g + 1] & 0xF);
                    long yo = xo + ActivationQuant.Q8_KQsOffset + 128 * h + 32 * j;
                    i0 = NeonGroupPair<TDp>(i0, va, vb, sa, sb, (sbyte*)(x0 + yo));
                    i1 = NeonGroupPair<TDp>(i1, va, vb, sa, sb, (sbyte*)(x1 + yo));
                    i2 = NeonGroupPair<TDp>(i2, va, vb, sa, sb, (sbyte*)(x2 + yo));
                    i3 = NeonGroupPair<TDp>(i3, va, vb, sa, sb, (sbyte*)(x3 + yo));
                    qa = AdvSimd.ShiftRightLogical(qa, 2);
                    qb = AdvSimd.ShiftRightLogical(qb, 2);
                }
            }
            float d = Fp16.Read(w + DOffset), dMin = Fp16.Read(w + DminOffset);
            NeonBlockEnd(ref a0, ref n0, i0, d, dMin, w, x0 + xo);
            NeonBlockEnd(ref a1, ref n1, i1, d, dMin, w, x1 + xo);
            NeonBlockEnd(ref a2, ref n2, i2, d, dMin, w, x2 + xo);
            NeonBlockEnd(ref a3, ref n3, i3, d, dMin, w, x3 + xo);
        }
        dst[0] = Vector128.Sum(a0) - n0;
        dst[dstStride] = Vector128.Sum(a1) - n1;
        dst[2 * dstStride] = Vector128.Sum(a2) - n2;
        dst[3 * dstStride] = Vector128.Sum(a3) - n3;
    }

    /// <summary>One token's two 16-weight groups times their scales into its int32 accumulator, as <see cref="NeonLoop"/> does it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> NeonGroupPair<TDp>(Vector128<int> isum, Vector128<sbyte> va, Vector128<sbyte> vb, Vector128<int> sa, Vector128<int> sb, sbyte* y)
        where TDp : struct, IIsaFlag
    {
        Vector128<int> pa = NeonDot.Dot16<TDp>(Vector128<int>.Zero, va, AdvSimd.LoadVector128(y));
        Vector128<int> pb = NeonDot.Dot16<TDp>(Vector128<int>.Zero, vb, AdvSimd.LoadVector128(y + 16));
        isum = AdvSimd.MultiplyAdd(isum, pa, sa);
        return AdvSimd.MultiplyAdd(isum, pb, sb);
    }

    /// <summary>A token's block total: isum·d·d_y into the float lanes, d_min·d_y·Σ m·bsums (16 scalar multiply-adds) into the mins sum, as <see cref="NeonLoop"/> does it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void NeonBlockEnd(ref Vector128<float> acc, ref float minSum, Vector128<int> isum, float d, float dMin, byte* wb, byte* yb)
    {
        float dy = Unsafe.ReadUnaligned<float>(yb);
        short* bsums = (short*)(yb + ActivationQuant.Q8_KBsumsOffset);
        int msum = 0;
        for (int g = 0; g < 16; g++) msum += bsums[g] * (wb[g] >> 4);
        acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d * dy));
        minSum += dMin * dy * msum;
    }
}
