using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ5_K
{
    /// <summary>The one-token loop with sdot or the widening pair, as <see cref="KernelRung.UseDotProd"/> says (chosen once per call).</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb) =>
        KernelRung.UseDotProd ? NeonLoop1<DotProdOn>(w, xq, nb) : NeonLoop1<DotProdOff>(w, xq, nb);

    /// <summary>
    /// Per 32-weight sub-block: the nibbles or-ed with the fifth bit (qh shifted right by two per chunk, bits 0 and 1
    /// moved to bit 4), two 16-byte int8 dot steps with the activations (sdot, or smull + sadalp), multiplied by the
    /// sub-block scale into an int32 accumulator (mla); the mins term Σ m·bsums is one vector step per block (<see cref="NeonDot.MinSum"/>).
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        Vector128<float> acc = Vector128<float>.Zero;
        float minSum = 0f;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector128<byte> m16 = Vector128.Create((byte)0x10);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            DotQ4_K.UnpackScales(wb + ScalesOffset, out ulong sc, out ulong mn);
            float dy = Unsafe.ReadUnaligned<float>(yb);
            byte* q = wb + QsOffset;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector128<byte> ha = AdvSimd.LoadVector128(wb + QhOffset);
            Vector128<byte> hb = AdvSimd.LoadVector128(wb + QhOffset + 16);
            Vector128<int> isum = Vector128<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                Vector128<byte> qa = AdvSimd.LoadVector128(q + 32 * c);
                Vector128<byte> qb = AdvSimd.LoadVector128(q + 32 * c + 16);
                Vector128<byte> la = AdvSimd.Or(AdvSimd.And(qa, m4), AdvSimd.And(AdvSimd.ShiftLeftLogical(ha, 4), m16));
                Vector128<byte> lb = AdvSimd.Or(AdvSimd.And(qb, m4), AdvSimd.And(AdvSimd.ShiftLeftLogical(hb, 4), m16));
                Vector128<byte> ua = AdvSimd.Or(AdvSimd.ShiftRightLogical(qa, 4), AdvSimd.And(AdvSimd.ShiftLeftLogical(ha, 3), m16));
                Vector128<byte> ub = AdvSimd.Or(AdvSimd.ShiftRightLogical(qb, 4), AdvSimd.And(AdvSimd.ShiftLeftLogical(hb, 3), m16));
                Vector128<int> lo = NeonDot.Dot16<TDp>(Vector128<int>.Zero, la.AsSByte(), AdvSimd.LoadVector128(y + 64 * c));
                lo = NeonDot.Dot16<TDp>(lo, lb.AsSByte(), AdvSimd.LoadVector128(y + 64 * c + 16));
                Vector128<int> hi = NeonDot.Dot16<TDp>(Vector128<int>.Zero, ua.AsSByte(), AdvSimd.LoadVector128(y + 64 * c + 32));
                hi = NeonDot.Dot16<TDp>(hi, ub.AsSByte(), AdvSimd.LoadVector128(y + 64 * c + 48));
                isum = AdvSimd.MultiplyAdd(isum, lo, Vector128.Create((int)((sc >> (16 * c)) & 0xFF)));
                isum = AdvSimd.MultiplyAdd(isum, hi, Vector128.Create((int)((sc >> (16 * c + 8)) & 0xFF)));
                ha = AdvSimd.ShiftRightLogical(ha, 2);
                hb = AdvSimd.ShiftRightLogical(hb, 2);
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
    /// scales and mins are unpacked and the 5-bit quants rebuilt once for the four tokens; per token the steps of
    /// <see cref="NeonLoop"/> in its order, bit-identical to the one-token loop.
    /// </summary>
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp)
    {
        int nb = Blocks(n);
        NeonDot.Require(nameof(DotQ5_K), dp);
        if (dp) NeonLoop4<DotProdOn>(w, xq, xqStride, nb, dst, dstStride);
        else NeonLoop4<DotProdOff>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void NeonLoop4<TDp>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_KBlockBytes;
        Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
        float m0 = 0f, m1 = 0f, m2 = 0f, m3 = 0f;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector128<byte> m16 = Vector128.Create((byte)0x10);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++, w += BlockBytes)
        {
            long xo = (long)b * XB;
            DotQ4_K.UnpackScales(w + ScalesOffset, out ulong sc, out ulong mn);
            byte* q = w + QsOffset;
            Vector128<byte> ha = AdvSimd.LoadVector128(w + QhOffset);
            Vector128<byte> hb = AdvSimd.LoadVector128(w + QhOffset + 16);
            Vector128<int> i0 = Vector128<int>.Zero, i1 = Vector128<int>.Zero, i2 = Vector128<int>.Zero, i3 = Vector128<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                Vector128<byte> qa = AdvSimd.LoadVector128(q + 32 * c);
                Vector128<byte> qb = AdvSimd.LoadVector128(q + 32 * c + 16);
                Vector128<sbyte> la = AdvSimd.Or(AdvSimd.And(qa, m4), AdvSimd.And(AdvSimd.ShiftLeftLogical(ha, 4), m16)).AsSByte();
                Vector128<sbyte> lb = AdvSimd.Or(AdvSimd.And(qb, m4), AdvSimd.And(AdvSimd.ShiftLeftLogical(hb, 4), m16)).AsSByte();
                Vector128<sbyte> ua = AdvSimd.Or(AdvSimd.ShiftRightLogical(qa, 4), AdvSimd.And(AdvSimd.ShiftLeftLogical(ha, 3), m16)).AsSByte();
                Vector128<sbyte> ub = AdvSimd.Or(AdvSimd.ShiftRightLogical(qb, 4), AdvSimd.And(AdvSimd.ShiftLeftLogical(hb, 3), m16)).AsSByte();
                Vector128<int> sLo = Vector128.Create((int)((sc >> (16 * c)) & 0xFF));
                Vector128<int> sHi = Vector128.Create((int)((sc >> (16 * c + 8)) & 0xFF));
                long yo = xo + ActivationQuant.Q8_KQsOffset + 64 * c;
                i0 = DotQ4_K.NeonChunk<TDp>(i0, la, lb, ua, ub, sLo, sHi, (sbyte*)(x0 + yo));
                i1 = DotQ4_K.NeonChunk<TDp>(i1, la, lb, ua, ub, sLo, sHi, (sbyte*)(x1 + yo));
                i2 = DotQ4_K.NeonChunk<TDp>(i2, la, lb, ua, ub, sLo, sHi, (sbyte*)(x2 + yo));
                i3 = DotQ4_K.NeonChunk<TDp>(i3, la, lb, ua, ub, sLo, sHi, (sbyte*)(x3 + yo));
                ha = AdvSimd.ShiftRightLogical(ha, 2);
                hb = AdvSimd.ShiftRightLogical(hb, 2);
            }
            float d = Fp16.Read(w), dMin = Fp16.Read(w + 2);
            Vector128<short> mins8 = NeonDot.Mins8(mn);
            DotQ4_K.NeonBlockEnd(ref a0, ref m0, i0, d, dMin, mins8, x0 + xo);
            DotQ4_K.NeonBlockEnd(ref a1, ref m1, i1, d, dMin, mins8, x1 + xo);
            DotQ4_K.NeonBlockEnd(ref a2, ref m2, i2, d, dMin, mins8, x2 + xo);
            DotQ4_K.NeonBlockEnd(ref a3, ref m3, i3, d, dMin, mins8, x3 + xo);
        }
        dst[0] = Vector128.Sum(a0) - m0;
        dst[dstStride] = Vector128.Sum(a1) - m1;
        dst[2 * dstStride] = Vector128.Sum(a2) - m2;
        dst[3 * dstStride] = Vector128.Sum(a3) - m3;
    }
}
