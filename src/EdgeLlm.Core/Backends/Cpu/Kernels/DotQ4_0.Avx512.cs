using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_0
{
    /// <summary>
    /// Two blocks per zmm, nibbles ordered [b0 low, b0 high, b1 low, b1 high] — exactly the order of the two
    /// activation blocks' 64 bytes. vpmaddubsw(q, y) − vpmaddubsw(8, y), vpmaddwd with 1, so int32 lanes 0..7 belong
    /// to block 0 and 8..15 to block 1; int → float and an FMA with [d0 ×8, d1 ×8] (vpermps from the eight gathered
    /// scale products, <see cref="BlockScales"/>). Eight blocks per step, two accumulators; the remainder goes
    /// pairwise with scalar scales, an odd last block through the 256-bit path. With AVX512-VBMI the nibble expansion
    /// is one vpermb from a plain 64-byte load (<see cref="Avx512PairVbmi"/>), else loads, shifts and a lane shuffle.
    /// </summary>
    private static float Avx512Loop<TVbmi>(byte* w, byte* xq, int nb) where TVbmi : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        Vector512<int> i01 = PairIndex(0), i23 = PairIndex(2), i45 = PairIndex(4), i67 = PairIndex(6);
        Vector512<byte> fromStart = VbmiPairIndex(0), fromEnd = VbmiPairIndex(64 - 2 * BlockBytes);
        Vector512<ushort> shifts = VbmiShifts();
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes, xq += 8 * XB)
        {
            Vector512<float> d = BlockScales.Products8(w, wOff, xq, xOff).ToVector512Unsafe();
            if (TVbmi.Enabled)
            {
                // 64-byte loads inside the 144-byte group: pairs 0..2 from their start, pair 3 ending at the group end.
                acc0 = Avx512PairVbmi(acc0, Vector512.Load(w), xq, Avx512F.PermuteVar16x32(d, i01), fromStart, shifts);
                acc1 = Avx512PairVbmi(acc1, Vector512.Load(w + 2 * BlockBytes), xq + 2 * XB, Avx512F.PermuteVar16x32(d, i23), fromStart, shifts);
                acc0 = Avx512PairVbmi(acc0, Vector512.Load(w + 4 * BlockBytes), xq + 4 * XB, Avx512F.PermuteVar16x32(d, i45), fromStart, shifts);
                acc1 = Avx512PairVbmi(acc1, Vector512.Load(w + 8 * BlockBytes - 64), xq + 6 * XB, Avx512F.PermuteVar16x32(d, i67), fromEnd, shifts);
            }
            else
            {
                acc0 = Avx512Pair(acc0, w, xq, Avx512F.PermuteVar16x32(d, i01));
                acc1 = Avx512Pair(acc1, w + 2 * BlockBytes, xq + 2 * XB, Avx512F.PermuteVar16x32(d, i23));
                acc0 = Avx512Pair(acc0, w + 4 * BlockBytes, xq + 4 * XB, Avx512F.PermuteVar16x32(d, i45));
                acc1 = Avx512Pair(acc1, w + 6 * BlockBytes, xq + 6 * XB, Avx512F.PermuteVar16x32(d, i67));
            }
        }
        for (; b + 2 <= nb; b += 2, w += 2 * BlockBytes, xq += 2 * XB)
        {
            float d0 = Fp16.Read(w) * Fp16.Read(xq);
            float d1 = Fp16.Read(w + BlockBytes) * Fp16.Read(xq + XB);
            acc0 = Avx512Pair(acc0, w, xq, Avx512Join.Join(Vector256.Create(d0), Vector256.Create(d1)));
        }
        float sum = Vector512.Sum(acc0 + acc1);
        if (b < nb)
            sum += Vector256.Sum(Avx2Block<VnniOff>(Vector256<float>.Zero, w, xq, Vector256.Create(Fp16.Read(w) * Fp16.Read(xq))));
        return sum;
    }

    /// <summary>Without VBMI: two 16-byte loads, a shift, two inserts and a 128-bit-lane shuffle build the nibbles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Avx512Pair(Vector512<float> acc, byte* wb, byte* yb, Vector512<float> d)
    {
        Vector256<byte> packed = Vector256.Create(Vector128.Load(wb + 2), Vector128.Load(wb + BlockBytes + 2));
        Vector512<byte> nib = Avx512Join.Join(packed, Avx2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()); // [lo0, lo1, hi0, hi1]
        Vector512<byte> q = Avx512F.Shuffle4x128(nib.AsUInt32(), nib.AsUInt32(), 0b11_01_10_00).AsByte() & Vector512.Create((byte)0x0F);
        return Avx512Finish(acc, q, yb, d);
    }

    /// <summary>
    /// With VBMI: one vpermb puts [qs0, qs0, qs1, qs1] (16 bytes each) into the four 128-bit lanes straight from a
    /// 64-byte load of the raw blocks, one vpsrlvw shifts the 2nd and 4th lane right by 4, one vpand keeps the nibbles.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Avx512PairVbmi(Vector512<float> acc, Vector512<byte> raw, byte* yb, Vector512<float> d,
        Vector512<byte> index, Vector512<ushort> shifts)
    {
        Vector512<byte> spread = Avx512Vbmi.PermuteVar64x8(raw, index);
        Vector512<byte> q = Avx512BW.ShiftRightLogicalVariable(spread.AsUInt16(), shifts).AsByte() & Vector512.Create((byte)0x0F);
        return Avx512Finish(acc, q, yb, d);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Avx512Finish(Vector512<float> acc, Vector512<byte> q, byte* yb, Vector512<float> d)
    {
        Vector512<sbyte> y = Avx512Join.Join(Vector256.Load((sbyte*)(yb + 2)), Vector256.Load((sbyte*)(yb + ActivationQuant.Q8_0BlockBytes + 2)));
        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(q, y) - Avx512BW.MultiplyAddAdjacent(Vector512.Create((byte)8), y);
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(p, Vector512.Create((short)1));
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), d, acc);
    }

    /// <summary>
    /// vpermb indices for a pair whose first block starts <paramref name="at"/> bytes into the 64-byte load: byte j
    /// takes qs0[j % 16] for j &lt; 32 and qs1[j % 16] above. Vector arithmetic, no call and no stackalloc, so the
    /// loop's accumulators stay in registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> VbmiPairIndex(int at)
    {
        Vector512<byte> j = Vector512<byte>.Indices;
        Vector512<byte> blockStart = Vector512.ConditionalSelect(
            Vector512.GreaterThanOrEqual(j, Vector512.Create((byte)32)), Vector512.Create((byte)(at + BlockBytes + 2)), Vector512.Create((byte)(at + 2)));
        return blockStart + (j & Vector512.Create((byte)15));
    }

    /// <summary>vpsrlvw counts: 0 for the low-nibble lanes (1st, 3rd), 4 for the high-nibble lanes (2nd, 4th).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ushort> VbmiShifts() => ((Vector512<ushort>.Indices >>> 3) & Vector512.Create((ushort)1)) << 2;

    /// <summary>vpermps indices: 8 lanes of scale k, then 8 of scale k+1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PairIndex(int k) => Vector512.Create(Vector256.Create(k), Vector256.Create(k + 1));
}
