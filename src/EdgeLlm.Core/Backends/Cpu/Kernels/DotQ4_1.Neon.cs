using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_1
{
    /// <summary>The one-token loop with sdot or the widening pair, as <see cref="KernelRung.UseDotProd"/> says (chosen once per call).</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb) =>
        KernelRung.UseDotProd ? NeonLoop1<DotProdOn>(w, xq, nb) : NeonLoop1<DotProdOff>(w, xq, nb);

    /// <summary>
    /// Per block: the 16 packed bytes give low and high nibbles (0..15, valid as signed bytes); two 16-byte int8 dot
    /// steps against the activation halves (sdot, or smull + sadalp), int → float, FMA with d_w·d_x; m_w·s_x summed
    /// in a float beside.
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        Vector128<float> acc = Vector128<float>.Zero;
        float mSum = 0f;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_1BlockBytes;
            Vector128<byte> packed = AdvSimd.LoadVector128(wb + 4);
            Vector128<sbyte> lo = AdvSimd.And(packed, m4).AsSByte();
            Vector128<sbyte> hi = AdvSimd.ShiftRightLogical(packed, 4).AsSByte();
            Vector128<int> isum = NeonDot.Dot16<TDp>(Vector128<int>.Zero, lo, AdvSimd.LoadVector128((sbyte*)(yb + 4)));
            isum = NeonDot.Dot16<TDp>(isum, hi, AdvSimd.LoadVector128((sbyte*)(yb + 20)));
            float d = Fp16.Read(wb) * Fp16.Read(yb);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d));
            mSum += Fp16.Read(wb + 2) * Fp16.Read(yb + 2);
        }
        return Vector128.Sum(acc) + mSum;
    }

    /// <summary>
    /// Row <paramref name="w"/> · tokens t = 0..3 at <paramref name="xq"/> + t·<paramref name="xqStride"/> (Q8_1 blocks) on
    /// NEON, sdot when <paramref name="dp"/>; result t to <paramref name="dst"/>[t·<paramref name="dstStride"/>]. Each
    /// block's nibbles are split once for the four tokens; per token the steps of <see cref="NeonLoop"/> in its order
    /// (<see cref="NeonDot.Q8_1Token"/>), so each result is bit-identical to the one-token loop's.
    /// </summary>
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp)
    {
        int nb = Blocks(n);
        NeonDot.Require(nameof(DotQ4_1), dp);
        if (dp) NeonLoop4<DotProdOn>(w, xq, xqStride, nb, dst, dstStride);
        else NeonLoop4<DotProdOff>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void NeonLoop4<TDp>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
        float m0 = 0f, m1 = 0f, m2 = 0f, m3 = 0f;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++, w += BlockBytes)
        {
            long xo = (long)b * XB;
            Vector128<byte> packed = AdvSimd.LoadVector128(w + 4);
            Vector128<sbyte> lo = AdvSimd.And(packed, m4).AsSByte();
            Vector128<sbyte> hi = AdvSimd.ShiftRightLogical(packed, 4).AsSByte();
            float dw = Fp16.Read(w), mw = Fp16.Read(w + 2);
            a0 = NeonDot.Q8_1Token<TDp>(a0, ref m0, lo, hi, dw, mw, x0 + xo);
            a1 = NeonDot.Q8_1Token<TDp>(a1, ref m1, lo, hi, dw, mw, x1 + xo);
            a2 = NeonDot.Q8_1Token<TDp>(a2, ref m2, lo, hi, dw, mw, x2 + xo);
            a3 = NeonDot.Q8_1Token<TDp>(a3, ref m3, lo, hi, dw, mw, x3 + xo);
        }
        dst[0] = Vector128.Sum(a0) + m0;
        dst[dstStride] = Vector128.Sum(a1) + m1;
        dst[2 * dstStride] = Vector128.Sum(a2) + m2;
        dst[3 * dstStride] = Vector128.Sum(a3) + m3;
    }
}
