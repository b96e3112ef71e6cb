using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ8_0
{
    /// <summary>The one-token loop with sdot or the widening pair, as <see cref="KernelRung.UseDotProd"/> says (chosen once per call).</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb) =>
        KernelRung.UseDotProd ? NeonLoop1<DotProdOn>(w, xq, nb) : NeonLoop1<DotProdOff>(w, xq, nb);

    /// <summary>
    /// Per block: two 16-byte int8 dot steps (sdot, or smull + sadalp), int → float, FMA with d_w·d_x. The scale
    /// products of four blocks at a time come from one vector conversion (<see cref="NeonScales"/>); the last nb mod 4
    /// blocks convert theirs one by one. Same operations per block in the same order either way.
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector128<float> acc = Vector128<float>.Zero;
        int b = 0;
        for (; b + 4 <= nb; b += 4, w += 4 * BlockBytes, xq += 4 * XB)
        {
            Vector128<float> d = NeonScales.Products4(w, BlockBytes, xq, XB);
            acc = NeonScales.Q8_0Lane<TDp>(acc, Q(w, 2), Q(w, 18), xq, d, 0);
            acc = NeonScales.Q8_0Lane<TDp>(acc, Q(w, BlockBytes + 2), Q(w, BlockBytes + 18), xq + XB, d, 1);
            acc = NeonScales.Q8_0Lane<TDp>(acc, Q(w, 2 * BlockBytes + 2), Q(w, 2 * BlockBytes + 18), xq + 2 * XB, d, 2);
            acc = NeonScales.Q8_0Lane<TDp>(acc, Q(w, 3 * BlockBytes + 2), Q(w, 3 * BlockBytes + 18), xq + 3 * XB, d, 3);
        }
        for (; b < nb; b++, w += BlockBytes, xq += XB)
            acc = NeonDot.Q8_0Token<TDp>(acc, Q(w, 2), Q(w, 18), Fp16.Read(w), xq);
        return Vector128.Sum(acc);
    }

    /// <summary>The 16 quants at <paramref name="p"/> + <paramref name="offset"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Q(byte* p, int offset) => AdvSimd.LoadVector128((sbyte*)(p + offset));

    /// <summary>
    /// Row <paramref name="w"/> · tokens t = 0..3 at <paramref name="xq"/> + t·<paramref name="xqStride"/> on NEON (prefill's
    /// register block), sdot when <paramref name="dp"/>; result t to <paramref name="dst"/>[t·<paramref name="dstStride"/>].
    /// Each block's quants and d_w are loaded once for the four tokens; per token the steps of <see cref="NeonLoop"/>
    /// in its order, so each result is bit-identical to the one-token loop's (with the same dot-product choice).
    /// </summary>
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp)
    {
        int nb = Blocks(n);
        NeonDot.Require(nameof(DotQ8_0), dp);
        if (dp) NeonLoop4<DotProdOn>(w, xq, xqStride, nb, dst, dstStride);
        else NeonLoop4<DotProdOff>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void NeonLoop4<TDp>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        int b = 0;
        for (; b + 4 <= nb; b += 4, w += 4 * BlockBytes, x0 += 4 * XB, x1 += 4 * XB, x2 += 4 * XB, x3 += 4 * XB)
        {
            Vector128<float> dw = NeonScales.Half4(w, BlockBytes);
            Vector128<float> d0 = dw * NeonScales.Half4(x0, XB), d1 = dw * NeonScales.Half4(x1, XB);
            Vector128<float> d2 = dw * NeonScales.Half4(x2, XB), d3 = dw * NeonScales.Half4(x3, XB);
            Vector128<sbyte> q0 = Q(w, 2), q1 = Q(w, 18);
            a0 = NeonScales.Q8_0Lane<TDp>(a0, q0, q1, x0, d0, 0);
            a1 = NeonScales.Q8_0Lane<TDp>(a1, q0, q1, x1, d1, 0);
            a2 = NeonScales.Q8_0Lane<TDp>(a2, q0, q1, x2, d2, 0);
            a3 = NeonScales.Q8_0Lane<TDp>(a3, q0, q1, x3, d3, 0);
            q0 = Q(w, BlockBytes + 2);
            q1 = Q(w, BlockBytes + 18);
            a0 = NeonScales.Q8_0Lane<TDp>(a0, q0, q1, x0 + XB, d0, 1);
            a1 = NeonScales.Q8_0Lane<TDp>(a1, q0, q1, x1 + XB, d1, 1);
            a2 = NeonScales.Q8_0Lane<TDp>(a2, q0, q1, x2 + XB, d2, 1);
            a3 = NeonScales.Q8_0Lane<TDp>(a3, q0, q1, x3 + XB, d3, 1);
            q0 = Q(w, 2 * BlockBytes + 2);
            q1 = Q(w, 2 * BlockBytes + 18);
            a0 = NeonScales.Q8_0Lane<TDp>(a0, q0, q1, x0 + 2 * XB, d0, 2);
            a1 = NeonScales.Q8_0Lane<TDp>(a1, q0, q1, x1 + 2 * XB, d1, 2);
            a2 = NeonScales.Q8_0Lane<TDp>(a2, q0, q1, x2 + 2 * XB, d2, 2);
            a3 = NeonScales.Q8_0Lane<TDp>(a3, q0, q1, x3 + 2 * XB, d3, 2);
            q0 = Q(w, 3 * BlockBytes + 2);
            q1 = Q(w, 3 * BlockBytes + 18);
            a0 = NeonScales.Q8_0Lane<TDp>(a0, q0, q1, x0 + 3 * XB, d0, 3);
            a1 = NeonScales.Q8_0Lane<TDp>(a1, q0, q1, x1 + 3 * XB, d1, 3);
            a2 = NeonScales.Q8_0Lane<TDp>(a2, q0, q1, x2 + 3 * XB, d2, 3);
            a3 = NeonScales.Q8_0Lane<TDp>(a3, q0, q1, x3 + 3 * XB, d3, 3);
        }
        for (; b < nb; b++, w += BlockBytes, x0 += XB, x1 += XB, x2 += XB, x3 += XB)
        {
            Vector128<sbyte> q0 = Q(w, 2), q1 = Q(w, 18);
            float dw = Fp16.Read(w);
            a0 = NeonDot.Q8_0Token<TDp>(a0, q0, q1, dw, x0);
            a1 = NeonDot.Q8_0Token<TDp>(a1, q0, q1, dw, x1);
            a2 = NeonDot.Q8_0Token<TDp>(a2, q0, q1, dw, x2);
            a3 = NeonDot.Q8_0Token<TDp>(a3, q0, q1, dw, x3);
        }
        dst[0] = Vector128.Sum(a0);
        dst[dstStride] = Vector128.Sum(a1);
        dst[2 * dstStride] = Vector128.Sum(a2);
        dst[3 * dstStride] = Vector128.Sum(a3);
    }
}
