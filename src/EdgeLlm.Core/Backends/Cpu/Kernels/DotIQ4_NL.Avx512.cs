using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotIQ4_NL
{
    /// <summary>
    /// Two blocks per zmm: the nibbles of both (each in activation order), one vpshufb from the grid, then
    /// Σ v·y = Σ |v|·(±y): vpabsb and a masked negation of y where v &lt; 0 (AVX-512 has no vpsignb); vpmaddubsw +
    /// vpmaddwd, so int32 lanes 0..7 belong to block 0 and 8..15 to block 1; int → float and one FMA with
    /// [d0 ×8, d1 ×8] from the eight gathered scale products (<see cref="BlockScales"/>). Eight blocks per step, two
    /// accumulators; the remainder goes pairwise with scalar scales, an odd last block through the 256-bit step.
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        Vector512<int> i01 = PairIndex(0), i23 = PairIndex(2), i45 = PairIndex(4), i67 = PairIndex(6);
        Vector256<sbyte> grid256 = Vector256.Create(Grid(), Grid());
        Vector512<sbyte> grid = Vector512.Create(grid256, grid256);
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes, xq += 8 * XB)
        {
            WeightPrefetch.Lines3(w);
            Vector512<float> d = BlockScales.Products8(w, wOff, xq, xOff).ToVector512Unsafe();
            acc0 = Avx512Pair(acc0, Avx512Quants(w, grid), xq, Avx512F.PermuteVar16x32(d, i01));
            acc1 = Avx512Pair(acc1, Avx512Quants(w + 2 * BlockBytes, grid), xq + 2 * XB, Avx512F.PermuteVar16x32(d, i23));
            acc0 = Avx512Pair(acc0, Avx512Quants(w + 4 * BlockBytes, grid), xq + 4 * XB, Avx512F.PermuteVar16x32(d, i45));
            acc1 = Avx512Pair(acc1, Avx512Quants(w + 6 * BlockBytes, grid), xq + 6 * XB, Avx512F.PermuteVar16x32(d, i67));
        }
        for (; b + 2 <= nb; b += 2, w += 2 * BlockBytes, xq += 2 * XB)
        {
            float d0 = Fp16.Read(w) * Fp16.Read(xq);
            float d1 = Fp16.Read(w + BlockBytes) * Fp16.Read(xq + XB);
            acc0 = Avx512Pair(acc0, Avx512Quants(w, grid), xq, Avx512Join.Join(Vector256.Create(d0), Vector256.Create(d1)));
        }
        float odd = 0f;
        if (b < nb)
            odd = Vector256.Sum(Avx2Block<VnniOff>(Vector256<float>.Zero, w, xq, Vector256.Create(Fp16.Read(w) * Fp16.Read(xq)), grid.GetLower()));
        return Vector512.Sum(acc0 + acc1) + odd;
    }

    /// <summary>Two consecutive blocks' grid values in one zmm, each block in activation order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Avx512Quants(byte* wb, Vector512<sbyte> grid)
    {
        Vector256<byte> packed = Vector256.Create(Vector128.Load(wb + 2), Vector128.Load(wb + BlockBytes + 2));
        Vector512<byte> nib = Avx512Join.Join(packed, Avx2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()); // [lo0, lo1, hi0, hi1]
        Vector512<byte> q = Avx512F.Shuffle4x128(nib.AsUInt32(), nib.AsUInt32(), 0b11_01_10_00).AsByte() & Vector512.Create((byte)0x0F);
        return Avx512BW.Shuffle(grid, q.AsSByte());
    }

    /// <summary>One token's share of a block pair (shared with the four-token loop).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Avx512Pair(Vector512<float> acc, Vector512<sbyte> v, byte* yb, Vector512<float> d)
    {
        Vector512<sbyte> y = Avx512Join.Join(Vector256.Load((sbyte*)(yb + 2)), Vector256.Load((sbyte*)(yb + ActivationQuant.Q8_0BlockBytes + 2)));
        Vector512<sbyte> sy = Vector512.ConditionalSelect(Vector512.LessThan(v, Vector512<sbyte>.Zero), Vector512<sbyte>.Zero - y, y);
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512BW.Abs(v), sy), Vector512.Create((short)1));
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), d, acc);
    }

    /// <summary>vpermps indices: 8 lanes of scale k, then 8 of scale k+1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PairIndex(int k) => Vector512.Create(Vector256.Create(k), Vector256.Create(k + 1));
}
