using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One 32-weight block type of the Q8_1 family (a d and an m fp16 scale at bytes 0 and 2, 32 codes after them) as the
/// NEON loops see it: its size and how its codes become two 16-byte halves (Q4_1: nibbles; Q5_1: nibbles or-ed with
/// the qh bits). Static abstract members on a struct, so each loop is specialised per type with no call per block.
/// </summary>
internal unsafe interface INeonQ8_1Block
{
    static abstract int BlockBytes { get; }

    /// <summary>A block's 32 codes as bytes: <paramref name="lo"/> weights 0..15, <paramref name="hi"/> 16..31.</summary>
    static abstract void Unpack(byte* wb, Vector128<byte> m4, out Vector128<sbyte> lo, out Vector128<sbyte> hi);
}

/// <summary>
/// The NEON one-token and four-token loops of the Q8_1-family block types (Q4_1, Q5_1), written once. Per block: the
/// codes as two int8 halves, two 16-byte dot steps against the activation halves (sdot, or smull + sadalp), int to
/// float, FMA with d_w·d_x; m_w·s_x summed in a float beside. The scale products of four blocks at a time come from
/// vector conversions (<see cref="NeonScales"/>); the last nb mod 4 blocks convert theirs one by one. Same operations
/// per block in the same order either way, and the four-token loop runs the one-token loop's steps per token, so each
/// token's result is bit-identical to the one-token loop's.
/// </summary>
internal static unsafe class NeonQ8_1Loops
{
    public static float Loop1<TDp, TBlock>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag where TBlock : struct, INeonQ8_1Block
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        Vector128<float> acc = Vector128<float>.Zero;
        float mSum = 0f;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        int b = 0;
        for (; b + 4 <= nb; b += 4, w += 4 * TBlock.BlockBytes, xq += 4 * XB)
        {
            Vector128<float> d = NeonScales.Products4(w, TBlock.BlockBytes, xq, XB), m = NeonScales.Products4(w + 2, TBlock.BlockBytes, xq + 2, XB);
            TBlock.Unpack(w, m4, out Vector128<sbyte> lo, out Vector128<sbyte> hi);
            acc = NeonScales.Q8_1Lane<TDp>(acc, ref mSum, lo, hi, xq, d, m, 0);
            TBlock.Unpack(w + TBlock.BlockBytes, m4, out lo, out hi);
            acc = NeonScales.Q8_1Lane<TDp>(acc, ref mSum, lo, hi, xq + XB, d, m, 1);
            TBlock.Unpack(w + 2 * TBlock.BlockBytes, m4, out lo, out hi);
            acc = NeonScales.Q8_1Lane<TDp>(acc, ref mSum, lo, hi, xq + 2 * XB, d, m, 2);
            TBlock.Unpack(w + 3 * TBlock.BlockBytes, m4, out lo, out hi);
            acc = NeonScales.Q8_1Lane<TDp>(acc, ref mSum, lo, hi, xq + 3 * XB, d, m, 3);
        }
        for (; b < nb; b++, w += TBlock.BlockBytes, xq += XB)
        {
            TBlock.Unpack(w, m4, out Vector128<sbyte> lo, out Vector128<sbyte> hi);
            acc = NeonDot.Q8_1Token<TDp>(acc, ref mSum, lo, hi, Fp16.Read(w), Fp16.Read(w + 2), xq);
        }
        return Vector128.Sum(acc) + mSum;
    }

    public static void Loop4<TDp, TBlock>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag where TBlock : struct, INeonQ8_1Block
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
        float m0 = 0f, m1 = 0f, m2 = 0f, m3 = 0f;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        int b = 0;
        for (; b + 4 <= nb; b += 4, w += 4 * TBlock.BlockBytes, x0 += 4 * XB, x1 += 4 * XB, x2 += 4 * XB, x3 += 4 * XB)
        {
            Vector128<float> dw = NeonScales.Half4(w, TBlock.BlockBytes), mw = NeonScales.Half4(w + 2, TBlock.BlockBytes);
            Vector128<float> d0 = dw * NeonScales.Half4(x0, XB), d1 = dw * NeonScales.Half4(x1, XB);
            Vector128<float> d2 = dw * NeonScales.Half4(x2, XB), d3 = dw * NeonScales.Half4(x3, XB);
            Vector128<float> s0 = mw * NeonScales.Half4(x0 + 2, XB), s1 = mw * NeonScales.Half4(x1 + 2, XB);
            Vector128<float> s2 = mw * NeonScales.Half4(x2 + 2, XB), s3 = mw * NeonScales.Half4(x3 + 2, XB);
            TBlock.Unpack(w, m4, out Vector128<sbyte> lo, out Vector128<sbyte> hi);
            a0 = NeonScales.Q8_1Lane<TDp>(a0, ref m0, lo, hi, x0, d0, s0, 0);
            a1 = NeonScales.Q8_1Lane<TDp>(a1, ref m1, lo, hi, x1, d1, s1, 0);
            a2 = NeonScales.Q8_1Lane<TDp>(a2, ref m2, lo, hi, x2, d2, s2, 0);
            a3 = NeonScales.Q8_1Lane<TDp>(a3, ref m3, lo, hi, x3, d3, s3, 0);
            TBlock.Unpack(w + TBlock.BlockBytes, m4, out lo, out hi);
            a0 = NeonScales.Q8_1Lane<TDp>(a0, ref m0, lo, hi, x0 + XB, d0, s0, 1);
            a1 = NeonScales.Q8_1Lane<TDp>(a1, ref m1, lo, hi, x1 + XB, d1, s1, 1);
            a2 = NeonScales.Q8_1Lane<TDp>(a2, ref m2, lo, hi, x2 + XB, d2, s2, 1);
            a3 = NeonScales.Q8_1Lane<TDp>(a3, ref m3, lo, hi, x3 + XB, d3, s3, 1);
            TBlock.Unpack(w + 2 * TBlock.BlockBytes, m4, out lo, out hi);
            a0 = NeonScales.Q8_1Lane<TDp>(a0, ref m0, lo, hi, x0 + 2 * XB, d0, s0, 2);
            a1 = NeonScales.Q8_1Lane<TDp>(a1, ref m1, lo, hi, x1 + 2 * XB, d1, s1, 2);
            a2 = NeonScales.Q8_1Lane<TDp>(a2, ref m2, lo, hi, x2 + 2 * XB, d2, s2, 2);
            a3 = NeonScales.Q8_1Lane<TDp>(a3, ref m3, lo, hi, x3 + 2 * XB, d3, s3, 2);
            TBlock.Unpack(w + 3 * TBlock.BlockBytes, m4, out lo, out hi);
            a0 = NeonScales.Q8_1Lane<TDp>(a0, ref m0, lo, hi, x0 + 3 * XB, d0, s0, 3);
            a1 = NeonScales.Q8_1Lane<TDp>(a1, ref m1, lo, hi, x1 + 3 * XB, d1, s1, 3);
            a2 = NeonScales.Q8_1Lane<TDp>(a2, ref m2, lo, hi, x2 + 3 * XB, d2, s2, 3);
            a3 = NeonScales.Q8_1Lane<TDp>(a3, ref m3, lo, hi, x3 + 3 * XB, d3, s3, 3);
        }
        for (; b < nb; b++, w += TBlock.BlockBytes, x0 += XB, x1 += XB, x2 += XB, x3 += XB)
        {
            TBlock.Unpack(w, m4, out Vector128<sbyte> lo, out Vector128<sbyte> hi);
            float dw = Fp16.Read(w), mw = Fp16.Read(w + 2);
            a0 = NeonDot.Q8_1Token<TDp>(a0, ref m0, lo, hi, dw, mw, x0);
            a1 = NeonDot.Q8_1Token<TDp>(a1, ref m1, lo, hi, dw, mw, x1);
            a2 = NeonDot.Q8_1Token<TDp>(a2, ref m2, lo, hi, dw, mw, x2);
            a3 = NeonDot.Q8_1Token<TDp>(a3, ref m3, lo, hi, dw, mw, x3);
        }
        dst[0] = Vector128.Sum(a0) + m0;
        dst[dstStride] = Vector128.Sum(a1) + m1;
        dst[2 * dstStride] = Vector128.Sum(a2) + m2;
        dst[3 * dstStride] = Vector128.Sum(a3) + m3;
    }
}
