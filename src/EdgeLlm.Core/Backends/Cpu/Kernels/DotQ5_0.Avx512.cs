using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ5_0
{
    /// <summary>
    /// Two blocks per zmm: their 5-bit codes (<see cref="Avx2Quants"/>) against the two activation blocks' 32 bytes
    /// each; vpmaddubsw(q, y) − vpmaddubsw(16, y), vpmaddwd with 1, so int32 lanes 0..7 belong to block 0 and 8..15 to
    /// block 1; int → float and one FMA with [d0 ×8, d1 ×8] (vpermps from the eight gathered scale products,
    /// <see cref="BlockScales"/>). Eight blocks per step, two accumulators; the remainder goes pairwise with scalar
    /// scales, an odd last block through the 256-bit step.
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        Vector512<int> i01 = PairIndex(0), i23 = PairIndex(2), i45 = PairIndex(4), i67 = PairIndex(6);
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes, xq += 8 * XB)
        {
            WeightPrefetch.Lines3(w);
            Vector512<float> d = BlockScales.Products8(w, wOff, xq, xOff).ToVector512Unsafe();
            acc0 = Avx512Pair(acc0, Avx512Quants(w), xq, Avx512F.PermuteVar16x32(d, i01));
            acc1 = Avx512Pair(acc1, Avx512Quants(w + 2 * BlockBytes), xq + 2 * XB, Avx512F.PermuteVar16x32(d, i23));
            acc0 = Avx512Pair(acc0, Avx512Quants(w + 4 * BlockBytes), xq + 4 * XB, Avx512F.PermuteVar16x32(d, i45));
            acc1 = Avx512Pair(acc1, Avx512Quants(w + 6 * BlockBytes), xq + 6 * XB, Avx512F.PermuteVar16x32(d, i67));
        }
        for (; b + 2 <= nb; b += 2, w += 2 * BlockBytes, xq += 2 * XB)
        {
            float d0 = Fp16.Read(w) * Fp16.Read(xq);
            float d1 = Fp16.Read(w + BlockBytes) * Fp16.Read(xq + XB);
            acc0 = Avx512Pair(acc0, Avx512Quants(w), xq, Avx512Join.Join(Vector256.Create(d0), Vector256.Create(d1)));
        }
        float odd = 0f;
        if (b < nb)
            odd = Vector256.Sum(Avx2Block<VnniOff>(Vector256<float>.Zero, w, xq, Vector256.Create(Fp16.Read(w) * Fp16.Read(xq))));
        return Vector512.Sum(acc0 + acc1) + odd;
    }

    /// <summary>Two consecutive blocks' codes (0..31) in one zmm, each block in activation order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Avx512Quants(byte* wb) => Avx512Join.Join(Avx2Quants(wb), Avx2Quants(wb + BlockBytes));

    /// <summary>One token's share of a block pair (shared with the four-token loop).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Avx512Pair(Vector512<float> acc, Vector512<byte> q, byte* yb, Vector512<float> d)
    {
        Vector512<sbyte> y = Avx512Join.Join(Vector256.Load((sbyte*)(yb + 2)), Vector256.Load((sbyte*)(yb + ActivationQuant.Q8_0BlockBytes + 2)));
        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(q, y) - Avx512BW.MultiplyAddAdjacent(Vector512.Create((byte)16), y);
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(p, Vector512.Create((short)1));
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), d, acc);
    }

    /// <summary>vpermps indices: 8 lanes of scale k, then 8 of scale k+1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PairIndex(int k) => Vector512.Create(Vector256.Create(k), Vector256.Create(k + 1));
}
