using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_1
{
    /// <summary>
    /// Two blocks per zmm: their nibbles [b0 lo, b0 hi, b1 lo, b1 hi] against the two activation blocks' 32 bytes each;
    /// vpmaddubsw + vpmaddwd give int32 lanes 0..7 for block 0 and 8..15 for block 1, int → float and one FMA with
    /// [d0 ×8, d1 ×8]. Eight blocks per step with gathered d_w·d_x and m_w·s_x (<see cref="BlockScales"/>), two
    /// accumulators; the remainder goes pairwise with scalar scales, an odd last block through the 256-bit step. The
    /// per-token steps are those of the four-token loop (<see cref="Avx512Group"/>, <see cref="Avx512RestPair"/>,
    /// <see cref="Avx512Odd"/>), so both give the same bits.
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
        Vector256<float> accM = Vector256<float>.Zero;
        float mRest = 0f, odd = 0f;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes, xq += 8 * XB)
        {
            WeightPrefetch.Lines3(w);
            Avx512Group(ref acc0, ref acc1, ref accM, xq, Avx512Quants(w), Avx512Quants(w + 2 * BlockBytes),
                Avx512Quants(w + 4 * BlockBytes), Avx512Quants(w + 6 * BlockBytes),
                BlockScales.Half8(w, wOff), BlockScales.Half8(w + 2, wOff), xOff);
        }
        for (; b + 2 <= nb; b += 2, w += 2 * BlockBytes, xq += 2 * XB)
            Avx512RestPair(ref acc0, ref mRest, Avx512Quants(w), w, xq);
        if (b < nb) Avx512Odd(ref odd, ref mRest, Avx2Quants(w), w, xq);
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
        float d1 = Fp16.Read(w + BlockBytes) * Fp16.Read(xq + XB);
        acc0 = Avx512Pair(acc0, q, xq, Avx512Join.Join(Vector256.Create(d0), Vector256.Create(d1)));
        mRest += Fp16.Read(w + 2) * Fp16.Read(xq + 2);
        mRest += Fp16.Read(w + BlockBytes + 2) * Fp16.Read(xq + XB + 2);
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
    private static Vector512<byte> Avx512Quants(byte* wb) => Avx512Join.Join(Avx2Quants(wb), Avx2Quants(wb + BlockBytes));

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
}
