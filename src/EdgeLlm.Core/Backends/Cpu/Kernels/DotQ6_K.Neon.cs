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
    /// Per 16-weight group: rebuild the 6-bit q from ql/qh, subtract 32 (signed −32..31), one 16-byte int8 dot step
    /// (sdot, or smull + sadalp) with its activations, multiplied by the group scale into an int32 accumulator (mla).
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        Vector128<float> acc = Vector128<float>.Zero;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector128<byte> m2 = Vector128.Create((byte)0x03);
        Vector128<byte> k32 = Vector128.Create((byte)32);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            sbyte* sc = (sbyte*)(wb + ScalesOffset);
            Vector128<int> isum = Vector128<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                byte* ql = wb + 64 * h;
                byte* qh = wb + QhOffset + 32 * h;
                sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset) + 128 * h;
                for (int half = 0; half < 2; half++)
                {
                    int l0 = 16 * half;
                    int g = 8 * h + half;
                    Vector128<byte> la = AdvSimd.LoadVector128(ql + l0);
                    Vector128<byte> lb = AdvSimd.LoadVector128(ql + 32 + l0);
                    Vector128<byte> hv = AdvSimd.LoadVector128(qh + l0);
                    Vector128<byte> q1 = AdvSimd.Or(AdvSimd.And(la, m4), AdvSimd.ShiftLeftLogical(AdvSimd.And(hv, m2), 4));
                    Vector128<byte> q2 = AdvSimd.Or(AdvSimd.And(lb, m4), AdvSimd.ShiftLeftLogical(AdvSimd.And(AdvSimd.ShiftRightLogical(hv, 2), m2), 4));
                    Vector128<byte> q3 = AdvSimd.Or(AdvSimd.ShiftRightLogical(la, 4), AdvSimd.ShiftLeftLogical(AdvSimd.And(AdvSimd.ShiftRightLogical(hv, 4), m2), 4));
                    Vector128<byte> q4 = AdvSimd.Or(AdvSimd.ShiftRightLogical(lb, 4), AdvSimd.ShiftLeftLogical(AdvSimd.ShiftRightLogical(hv, 6), 4));
                    isum = Group<TDp>(isum, q1, k32, y + l0, sc[g]);
                    isum = Group<TDp>(isum, q2, k32, y + 32 + l0, sc[g + 2]);
                    isum = Group<TDp>(isum, q3, k32, y + 64 + l0, sc[g + 4]);
                    isum = Group<TDp>(isum, q4, k32, y + 96 + l0, sc[g + 6]);
                }
            }
            float d = Fp16.Read(wb + DOffset) * Unsafe.ReadUnaligned<float>(yb);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d));
        }
        return Vector128.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Group<TDp>(Vector128<int> isum, Vector128<byte> q, Vector128<byte> k32, sbyte* y, int scale) where TDp : struct, IIsaFlag
    {
        Vector128<int> p = NeonDot.Dot16<TDp>(Vector128<int>.Zero, AdvSimd.Subtract(q, k32).AsSByte(), AdvSimd.LoadVector128(y));
        return AdvSimd.MultiplyAdd(isum, p, Vector128.Create(scale));
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
        const int XB = ActivationQuant.Q8_KBlockBytes;
        Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector128<byte> m2 = Vector128.Create((byte)0x03);
        Vector128<byte> k32 = Vector128.Create((byte)32);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++, w += BlockBytes)
        {
            long xo = (long)b * XB;
            sbyte* sc = (sbyte*)(w + ScalesOffset);
            Vector128<int> i0 = Vector128<int>.Zero, i1 = Vector128<int>.Zero, i2 = Vector128<int>.Zero, i3 = Vector128<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                byte* ql = w + 64 * h;
                byte* qh = w + QhOffset + 32 * h;
                for (int half = 0; half < 2; half++)
                {
                    int l0 = 16 * half;
                    int g = 8 * h + half;
                    Vector128<byte> la = AdvSimd.LoadVector128(ql + l0);
                    Vector128<byte> lb = AdvSimd.LoadVector128(ql + 32 + l0);
                    Vector128<byte> hv = AdvSimd.LoadVector128(qh + l0);
                    Vector128<sbyte> q1 = AdvSimd.Subtract(AdvSimd.Or(AdvSimd.And(la, m4), AdvSimd.ShiftLeftLogical(AdvSimd.And(hv, m2), 4)), k32).AsSByte();
                    Vector128<sbyte> q2 = AdvSimd.Subtract(AdvSimd.Or(AdvSimd.And(lb, m4), AdvSimd.ShiftLeftLogical(AdvSimd.And(AdvSimd.ShiftRightLogical(hv, 2), m2), 4)), k32).AsSByte();
                    Vector128<sbyte> q3 = AdvSimd.Subtract(AdvSimd.Or(AdvSimd.ShiftRightLogical(la, 4), AdvSimd.ShiftLeftLogical(AdvSimd.And(AdvSimd.ShiftRightLogical(hv, 4), m2), 4)), k32).AsSByte();
                    Vector128<sbyte> q4 = AdvSimd.Subtract(AdvSimd.Or(AdvSimd.ShiftRightLogical(lb, 4), AdvSimd.ShiftLeftLogical(AdvSimd.ShiftRightLogical(hv, 6), 4)), k32).AsSByte();
                    Vector128<int> s1 = Vector128.Create((int)sc[g]), s2 = Vector128.Create((int)sc[g + 2]);
                    Vector128<int> s3 = Vector128.Create((int)sc[g + 4]), s4 = Vector128.Create((int)sc[g + 6]);
                    long yo = xo + ActivationQuant.Q8_KQsOffset + 128 * h + l0;
                    i0 = NeonGroups<TDp>(i0, q1, q2, q3, q4, s1, s2, s3, s4, (sbyte*)(x0 + yo));
                    i1 = NeonGroups<TDp>(i1, q1, q2, q3, q4, s1, s2, s3, s4, (sbyte*)(x1 + yo));
                    i2 = NeonGroups<TDp>(i2, q1, q2, q3, q4, s1, s2, s3, s4, (sbyte*)(x2 + yo));
                    i3 = NeonGroups<TDp>(i3, q1, q2, q3, q4, s1, s2, s3, s4, (sbyte*)(x3 + yo));
                }
            }
            float d = Fp16.Read(w + DOffset);
            a0 = NeonBlockEnd(a0, i0, d, x0 + xo);
            a1 = NeonBlockEnd(a1, i1, d, x1 + xo);
            a2 = NeonBlockEnd(a2, i2, d, x2 + xo);
            a3 = NeonBlockEnd(a3, i3, d, x3 + xo);
        }
        dst[0] = Vector128.Sum(a0);
        dst[dstStride] = Vector128.Sum(a1);
        dst[2 * dstStride] = Vector128.Sum(a2);
        dst[3 * dstStride] = Vector128.Sum(a3);
    }

    /// <summary>One token's four 16-weight groups (at y, y + 32, y + 64, y + 96) into its int32 accumulator, as <see cref="Group"/> does them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> NeonGroups<TDp>(Vector128<int> isum, Vector128<sbyte> q1, Vector128<sbyte> q2, Vector128<sbyte> q3, Vector128<sbyte> q4,
        Vector128<int> s1, Vector128<int> s2, Vector128<int> s3, Vector128<int> s4, sbyte* y) where TDp : struct, IIsaFlag
    {
        isum = AdvSimd.MultiplyAdd(isum, NeonDot.Dot16<TDp>(Vector128<int>.Zero, q1, AdvSimd.LoadVector128(y)), s1);
        isum = AdvSimd.MultiplyAdd(isum, NeonDot.Dot16<TDp>(Vector128<int>.Zero, q2, AdvSimd.LoadVector128(y + 32)), s2);
        isum = AdvSimd.MultiplyAdd(isum, NeonDot.Dot16<TDp>(Vector128<int>.Zero, q3, AdvSimd.LoadVector128(y + 64)), s3);
        return AdvSimd.MultiplyAdd(isum, NeonDot.Dot16<TDp>(Vector128<int>.Zero, q4, AdvSimd.LoadVector128(y + 96)), s4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> NeonBlockEnd(Vector128<float> acc, Vector128<int> isum, float d, byte* yb) =>
        AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d * Unsafe.ReadUnaligned<float>(yb)));
}
