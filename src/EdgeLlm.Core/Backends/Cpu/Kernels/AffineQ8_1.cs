using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// What differs between the two affine block types that share the x64 loops of <see cref="AffineQ8_1{TB}"/>: the block
/// size in bytes and how a block's 32 codes are unpacked into unsigned bytes in activation order. Both keep d and m as
/// fp16 at bytes 0 and 2 (Q4_1: nibbles at 4; Q5_1: the high bits at 4, nibbles at 8).
/// </summary>
internal unsafe interface IAffineQ8_1Block
{
    static abstract int BlockBytes { get; }

    /// <summary>The block's 32 weights as unsigned bytes in activation order.</summary>
    static abstract Vector256<byte> Avx2Quants(byte* wb);
}

/// <summary>
/// The AVX-512 and AVX2 loops (one token and four tokens) of an affine block type (<c>d·q + m</c>) against Q8_1
/// activations: per 32-block (d_w·d_x)·Σ q·q8 + m_w·s_x. <see cref="DotQ4_1"/> and <see cref="DotQ5_1"/> instantiate it
/// with their block's unpacking; the per-token steps are shared by the one- and four-token loops, so both give the same
/// bits.
/// </summary>
internal static unsafe class AffineQ8_1<TB> where TB : struct, IAffineQ8_1Block
{
    /// <summary>
    /// Two blocks per zmm: their nibbles [b0 lo, b0 hi, b1 lo, b1 hi] against the two activation blocks' 32 bytes each;
    /// vpmaddubsw + vpmaddwd give int32 lanes 0..7 for block 0 and 8..15 for block 1, int → float and one FMA with
    /// [d0 ×8, d1 ×8]. Eight blocks per step with gathered d_w·d_x and m_w·s_x (<see cref="BlockScales"/>), two
    /// accumulators; the remainder goes pairwise with scalar scales, an odd last block through the 256-bit step. The
    /// per-token steps are those of the four-token loop (<see cref="Avx512Group"/>, <see cref="Avx512RestPair"/>,
    /// <see cref="Avx512Odd"/>), so both give the same bits.
    /// </summary>
    internal static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
        Vector256<float> accM = Vector256<float>.Zero;
        float mRest = 0f, odd = 0f;
        Vector256<int> wOff = BlockScales.Offsets(TB.BlockBytes), xOff = BlockScales.Offsets(XB);
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * TB.BlockBytes, xq += 8 * XB)
        {
            WeightPrefetch.Lines3(w);
            Avx512Group(ref acc0, ref acc1, ref accM, xq, Avx512Quants(w), Avx512Quants(w + 2 * TB.BlockBytes),
                Avx512Quants(w + 4 * TB.BlockBytes), Avx512Quants(w + 6 * TB.BlockBytes),
                BlockScales.Half8(w, wOff), BlockScales.Half8(w + 2, wOff), xOff);
        }
        for (; b + 2 <= nb; b += 2, w += 2 * TB.BlockBytes, xq += 2 * XB)
            Avx512RestPair(ref acc0, ref mRest, Avx512Quants(w), w, xq);
        if (b < nb) Avx512Odd(ref odd, ref mRest, TB.Avx2Quants(w), w, xq);
        return Avx512Finish(acc0, acc1, accM, mRest, odd);
    }

    /// <summary>One token's share of eight blocks (q01..q67 the unpacked pairs, dw and mw the blocks' d and m).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx512Group(ref Vector512<float> acc0, ref Vector512<float> acc1, ref Vector256<float> accM, byte* xq,
        Vector512<byte> q01, Vector512<byte> q23, Vector512<byte> q45, Vector512<byte> q67,
        Vector256<float> dw, Vector256<float> mw, Vector256<int> xOff)
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        Vector512<float> d = (dw * BlockScales.Half8(xq, xOff)).ToVector512Unsafe();
        accM += mw * BlockScales.Half8(xq + 2, xOff);
        acc0 = Avx512Pair(acc0, q01, xq, Avx512F.PermuteVar16x32(d, PairIndex(0)));
        acc1 = Avx512Pair(acc1, q23, xq + 2 * XB, Avx512F.PermuteVar16x32(d, PairIndex(2)));
        acc0 = Avx512Pair(acc0, q45, xq + 4 * XB, Avx512F.PermuteVar16x32(d, PairIndex(4)));
        acc1 = Avx512Pair(acc1, q67, xq + 6 * XB, Avx512F.PermuteVar16x32(d, PairIndex(6)));
    }

    /// <summary>One token's share of a remainder pair of blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx512RestPair(ref Vector512<float> acc0, ref float mRest, Vector512<byte> q, byte* w, byte* xq)
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        float d0 = Fp16.Read(w) * Fp16.Read(xq);
        float d1 = Fp16.Read(w + TB.BlockBytes) * Fp16.Read(xq + XB);
        acc0 = Avx512Pair(acc0, q, xq, Avx512Join.Join(Vector256.Create(d0), Vector256.Create(d1)));
        mRest += Fp16.Read(w + 2) * Fp16.Read(xq + 2);
        mRest += Fp16.Read(w + TB.BlockBytes + 2) * Fp16.Read(xq + XB + 2);
    }

    /// <summary>One token's share of an odd last block, through the 256-bit step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx512Odd(ref float odd, ref float mRest, Vector256<byte> q, byte* w, byte* xq)
    {
        odd = Vector256.Sum(Avx2Token<VnniOff>(Vector256<float>.Zero, q, xq, Vector256.Create(Fp16.Read(w) * Fp16.Read(xq))));
        mRest += Fp16.Read(w + 2) * Fp16.Read(xq + 2);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Avx512Finish(Vector512<float> acc0, Vector512<float> acc1, Vector256<float> accM, float mRest, float odd) =>
        Vector512.Sum(acc0 + acc1) + odd + (Vector256.Sum(accM) + mRest);

    /// <summary>Two consecutive blocks' weights (0..15) in one zmm, each block in activation order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Avx512Quants(byte* wb) => Avx512Join.Join(TB.Avx2Quants(wb), TB.Avx2Quants(wb + TB.BlockBytes));

    /// <summary>One token's share of a block pair.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Avx512Pair(Vector512<float> acc, Vector512<byte> q, byte* yb, Vector512<float> d)
    {
        Vector512<sbyte> y = Avx512Join.Join(Vector256.Load((sbyte*)(yb + 4)), Vector256.Load((sbyte*)(yb + ActivationQuant.Q8_1BlockBytes + 4)));
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q, y), Vector512.Create((short)1));
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), d, acc);
    }

    /// <summary>vpermps indices: 8 lanes of scale k, then 8 of scale k+1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PairIndex(int k) => Vector512.Create(Vector256.Create(k), Vector256.Create(k + 1));

    /// <summary>
    /// One block per step in a ymm: the 16 packed bytes become 32 unsigned nibbles (low = elements 0..15, high =
    /// 16..31, the activation order); Σ q·y with vpmaddubsw + vpmaddwd (pairs ≤ 2·15·127, no saturation) or AVX-VNNI
    /// vpdpbusd, int → float, FMA with d_w·d_x. Eight blocks per step: their d_w·d_x and m_w·s_x products come from
    /// gathered fp16 fields (<see cref="BlockScales"/>), the latter summed lane-wise; two accumulators. The remainder
    /// converts its scales one by one. The per-token steps (<see cref="Avx2Group"/>, <see cref="Avx2Rest"/>) are
    /// those of the four-token loop, so both give the same bits.
    /// </summary>
    internal static float Avx2Loop<TVnni>(byte* w, byte* xq, int nb) where TVnni : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero, accM = Vector256<float>.Zero;
        float mRest = 0f;
        Vector256<int> wOff = BlockScales.Offsets(TB.BlockBytes), xOff = BlockScales.Offsets(XB);
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * TB.BlockBytes, xq += 8 * XB)
        {
            WeightPrefetch.Lines3(w);
            Avx2Group<TVnni>(ref acc0, ref acc1, ref accM, w, xq, BlockScales.Half8(w, wOff), BlockScales.Half8(w + 2, wOff), xOff);
        }
        for (; b < nb; b++, w += TB.BlockBytes, xq += XB)
            Avx2Rest<TVnni>(ref acc0, ref mRest, TB.Avx2Quants(w), w, xq);
        return Avx2Finish(acc0, acc1, accM, mRest);
    }

    /// <summary>One token's share of eight blocks: dw, mw the blocks' d and m; the token's d and s gathered here.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx2Group<TVnni>(ref Vector256<float> acc0, ref Vector256<float> acc1, ref Vector256<float> accM,
        byte* w, byte* xq, Vector256<float> dw, Vector256<float> mw, Vector256<int> xOff) where TVnni : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        Vector256<float> d = dw * BlockScales.Half8(xq, xOff);
        accM += mw * BlockScales.Half8(xq + 2, xOff);
        acc0 = Avx2Token<TVnni>(acc0, TB.Avx2Quants(w), xq, BlockScales.Broadcast(d, 0));
        acc1 = Avx2Token<TVnni>(acc1, TB.Avx2Quants(w + TB.BlockBytes), xq + XB, BlockScales.Broadcast(d, 1));
        acc0 = Avx2Token<TVnni>(acc0, TB.Avx2Quants(w + 2 * TB.BlockBytes), xq + 2 * XB, BlockScales.Broadcast(d, 2));
        acc1 = Avx2Token<TVnni>(acc1, TB.Avx2Quants(w + 3 * TB.BlockBytes), xq + 3 * XB, BlockScales.Broadcast(d, 3));
        acc0 = Avx2Token<TVnni>(acc0, TB.Avx2Quants(w + 4 * TB.BlockBytes), xq + 4 * XB, BlockScales.Broadcast(d, 4));
        acc1 = Avx2Token<TVnni>(acc1, TB.Avx2Quants(w + 5 * TB.BlockBytes), xq + 5 * XB, BlockScales.Broadcast(d, 5));
        acc0 = Avx2Token<TVnni>(acc0, TB.Avx2Quants(w + 6 * TB.BlockBytes), xq + 6 * XB, BlockScales.Broadcast(d, 6));
        acc1 = Avx2Token<TVnni>(acc1, TB.Avx2Quants(w + 7 * TB.BlockBytes), xq + 7 * XB, BlockScales.Broadcast(d, 7));
    }

    /// <summary>One token's share of a remainder block (q its unpacked weights).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx2Rest<TVnni>(ref Vector256<float> acc0, ref float mRest, Vector256<byte> q, byte* wb, byte* yb)
        where TVnni : struct, IIsaFlag
    {
        acc0 = Avx2Token<TVnni>(acc0, q, yb, Vector256.Create(Fp16.Read(wb) * Fp16.Read(yb)));
        mRest += Fp16.Read(wb + 2) * Fp16.Read(yb + 2);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Avx2Finish(Vector256<float> acc0, Vector256<float> acc1, Vector256<float> accM, float mRest) =>
        Vector256.Sum(acc0 + acc1) + (Vector256.Sum(accM) + mRest);


    /// <summary>One token's share of a block: acc + d·Σ q·y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Avx2Token<TVnni>(Vector256<float> acc, Vector256<byte> q, byte* yb, Vector256<float> d)
        where TVnni : struct, IIsaFlag
    {
        Vector256<sbyte> y = Vector256.Load((sbyte*)(yb + 4));
        Vector256<int> isum = TVnni.Enabled
            ? AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, q, y)
            : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, y), Vector256.Create((short)1));
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), d, acc);
    }

    internal static void Avx512Loop4(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        Vector512<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
        Vector256<float> m0 = default, m1 = default, m2 = default, m3 = default;
        float r0 = 0f, r1 = 0f, r2 = 0f, r3 = 0f, o0 = 0f, o1 = 0f, o2 = 0f, o3 = 0f;
        Vector256<int> wOff = BlockScales.Offsets(TB.BlockBytes), xOff = BlockScales.Offsets(XB);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* wb = w + (long)b * TB.BlockBytes;
            long yo = (long)b * XB;
            WeightPrefetch.Lines3(wb);
            Vector512<byte> q01 = Avx512Quants(wb), q23 = Avx512Quants(wb + 2 * TB.BlockBytes);
            Vector512<byte> q45 = Avx512Quants(wb + 4 * TB.BlockBytes), q67 = Avx512Quants(wb + 6 * TB.BlockBytes);
            Vector256<float> dw = BlockScales.Half8(wb, wOff), mw = BlockScales.Half8(wb + 2, wOff);
            Avx512Group(ref a0, ref b0, ref m0, x0 + yo, q01, q23, q45, q67, dw, mw, xOff);
            Avx512Group(ref a1, ref b1, ref m1, x1 + yo, q01, q23, q45, q67, dw, mw, xOff);
            Avx512Group(ref a2, ref b2, ref m2, x2 + yo, q01, q23, q45, q67, dw, mw, xOff);
            Avx512Group(ref a3, ref b3, ref m3, x3 + yo, q01, q23, q45, q67, dw, mw, xOff);
        }
        for (; b + 2 <= nb; b += 2)
        {
            byte* wb = w + (long)b * TB.BlockBytes;
            long yo = (long)b * XB;
            Vector512<byte> q = Avx512Quants(wb);
            Avx512RestPair(ref a0, ref r0, q, wb, x0 + yo);
            Avx512RestPair(ref a1, ref r1, q, wb, x1 + yo);
            Avx512RestPair(ref a2, ref r2, q, wb, x2 + yo);
            Avx512RestPair(ref a3, ref r3, q, wb, x3 + yo);
        }
        if (b < nb)
        {
            byte* wb = w + (long)b * TB.BlockBytes;
            long yo = (long)b * XB;
            Vector256<byte> q = TB.Avx2Quants(wb);
            Avx512Odd(ref o0, ref r0, q, wb, x0 + yo);
            Avx512Odd(ref o1, ref r1, q, wb, x1 + yo);
            Avx512Odd(ref o2, ref r2, q, wb, x2 + yo);
            Avx512Odd(ref o3, ref r3, q, wb, x3 + yo);
        }
        dst[0] = Avx512Finish(a0, b0, m0, r0, o0);
        dst[dstStride] = Avx512Finish(a1, b1, m1, r1, o1);
        dst[2 * dstStride] = Avx512Finish(a2, b2, m2, r2, o2);
        dst[3 * dstStride] = Avx512Finish(a3, b3, m3, r3, o3);
    }

    internal static void Avx2Loop4<TVnni>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        Vector256<int> wOff = BlockScales.Offsets(TB.BlockBytes), xOff = BlockScales.Offsets(XB);
        for (int t = 0; t < 4; t += 2)
        {
            // Two tokens at a time: six accumulators and the shared scales stay in the sixteen ymm.
            Vector256<float> a0 = default, b0 = default, m0 = default, a1 = default, b1 = default, m1 = default;
            float r0 = 0f, r1 = 0f;
            byte* x0 = xq + t * xqStride, x1 = xq + (t + 1) * xqStride;
            int b = 0;
            for (; b + 8 <= nb; b += 8)
            {
                byte* wb = w + (long)b * TB.BlockBytes;
                long yo = (long)b * XB;
                WeightPrefetch.Lines3(wb);
                Vector256<float> dw = BlockScales.Half8(wb, wOff), mw = BlockScales.Half8(wb + 2, wOff);
                Avx2Group<TVnni>(ref a0, ref b0, ref m0, wb, x0 + yo, dw, mw, xOff);
                Avx2Group<TVnni>(ref a1, ref b1, ref m1, wb, x1 + yo, dw, mw, xOff);
            }
            for (; b < nb; b++)
            {
                byte* wb = w + (long)b * TB.BlockBytes;
                long yo = (long)b * XB;
                Vector256<byte> q = TB.Avx2Quants(wb);
                Avx2Rest<TVnni>(ref a0, ref r0, q, wb, x0 + yo);
                Avx2Rest<TVnni>(ref a1, ref r1, q, wb, x1 + yo);
            }
            dst[t * dstStride] = Avx2Finish(a0, b0, m0, r0);
            dst[(t + 1) * dstStride] = Avx2Finish(a1, b1, m1, r1);
        }
    }
}
