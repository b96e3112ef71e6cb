using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ6_K
{
    /// <summary>
    /// Per 128-weight half, two zmm: the 64 ql bytes' low nibbles with qh's bit pairs 0 and 1 are weights 0..63 of the
    /// half, their high nibbles with bit pairs 2 and 3 are weights 64..127 — each lines up with 64 contiguous
    /// activations. vpmaddubsw, then vpmaddwd with [sc_g ×8, sc_g+1 ×8, sc_g+2 ×8, sc_g+3 ×8], int32 sum; the −32
    /// offset via bsums as in the AVX2 rung. One FMA with d·d_x per block. With GFNI (<typeparamref name="TGfni"/>)
    /// each half's 32 qh bytes are copied to both ymm halves and one vgf2p8affineqb per zmm moves each half's
    /// bit pair to bits 4..5 (a different bit matrix per 256-bit half), and the group scales come from one vpermw per
    /// block plus an in-lane vpshufb per zmm; without, shifts and masks and a vpermw per zmm. Both prefetch the weights
    /// <see cref="WeightPrefetch.Distance"/> bytes ahead (<see cref="PrefetchWeights"/>). (The qh halves come from one 64-byte load and two vshufi64x2, not from
    /// Avx512F.BroadcastVector256ToVector512 from memory: with .NET 10.0.12's Tier-1 JIT that gave wrong sums here.)
    /// </summary>
    private static float Avx512Loop<TGfni>(byte* w, byte* xq, int nb) where TGfni : struct, IIsaFlag
    {
        Vector512<float> acc = Vector512<float>.Zero;
        Vector512<short> idx0 = GroupIndex(0), idx1 = GroupIndex(4), idx2 = GroupIndex(8), idx3 = GroupIndex(12);
        Vector512<byte> pairs01 = PairMatrix(0, 1), pairs23 = PairMatrix(2, 3);
        Vector512<short> laneIndex = LaneScaleIndex();
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            Vector256<short> sc16 = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(wb + ScalesOffset)));
            Vector256<int> offset = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), sc16);
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector512<int> isum;
            if (TGfni.Enabled)
            {
                PrefetchWeights(wb);
                Vector512<byte> lanes = Avx512BW.PermuteVar32x16(sc16.ToVector512Unsafe(), laneIndex).AsByte();
                Vector512<ulong> qh = Vector512.Load((ulong*)(wb + QhOffset));
                isum = Avx512HalfGfni(wb, Avx512F.Shuffle4x128(qh, qh, 0x44).AsByte(), y, lanes, pairs01, pairs23, 0);
                isum += Avx512HalfGfni(wb + 64, Avx512F.Shuffle4x128(qh, qh, 0xEE).AsByte(), y + 128, lanes, pairs01, pairs23, 2);
            }
            else
            {
                PrefetchWeights(wb);
                Vector512<short> scales = sc16.ToVector512Unsafe();
                isum = Avx512Half(wb, wb + QhOffset, y, scales, idx0, idx1);
                isum += Avx512Half(wb + 64, wb + QhOffset + 32, y + 128, scales, idx2, idx3);
            }
            isum -= (offset << 5).ToVector512();
            float d = Fp16.Read(wb + DOffset) * Unsafe.ReadUnaligned<float>(yb);
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(d), acc);
        }
        return Sum(acc);
    }

    /// <summary>
    /// Weights are streamed once per token: ask for the block's four lines <see cref="WeightPrefetch.Distance"/> bytes
    /// ahead (past the row end is fine: the next row follows). One core streaming a 346 MB Q6_K matrix (2048-wide rows,
    /// thread CPU time, loaded 2-vCPU Zen 5 VM, medians of 3-5): GFNI 11.4 GB/s with the lines 1 KiB ahead, 13.2 at
    /// 4.6 KiB (2.5 KiB: 13.1); without GFNI, which prefetched nothing, 8.4 → 13.2; a plain read of the same bytes 16.5.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchWeights(byte* wb)
    {
        const int Ahead = WeightPrefetch.Distance;
        Sse.Prefetch0(wb + Ahead);
        Sse.Prefetch0(wb + Ahead + 64);
        Sse.Prefetch0(wb + Ahead + 128);
        Sse.Prefetch0(wb + Ahead + 192);
    }

    /// <summary>
    /// Horizontal sum by halving (512 → 256 → 128 → 64 → 32 bits, seven instructions); Vector512.Sum compiles to four
    /// separate 128-bit reductions, a cost per row that matters with only 8 or 16 blocks per row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Sum(Vector512<float> v)
    {
        Vector256<float> s8 = v.GetLower() + v.GetUpper();
        Vector128<float> s4 = s8.GetLower() + s8.GetUpper();
        Vector128<float> s2 = s4 + Sse.MoveHighToLow(s4, s4);
        return (s2 + Sse.Shuffle(s2, s2, 0x55)).ToScalar();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Avx512Half(byte* ql, byte* qh, sbyte* y, Vector512<short> scales, Vector512<short> idxA, Vector512<short> idxB)
    {
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        Vector512<byte> m2 = Vector512.Create((byte)0x03);
        Vector512<byte> l = Vector512.Load(ql);
        Vector256<byte> h = Vector256.Load(qh);
        Vector512<byte> hh = Avx512Join.Join(h, (h.AsUInt16() >>> 2).AsByte()); // bit pairs 0|1, then 2|3 via >> 4
        Vector512<byte> a = (l & m4) | ((hh & m2).AsUInt16() << 4).AsByte();
        Vector512<byte> bq = ((l.AsUInt16() >>> 4).AsByte() & m4) | (((hh.AsUInt16() >>> 4).AsByte() & m2).AsUInt16() << 4).AsByte();
        Vector512<short> pa = Avx512BW.MultiplyAddAdjacent(a, Vector512.Load(y));
        Vector512<short> pb = Avx512BW.MultiplyAddAdjacent(bq, Vector512.Load(y + 64));
        return Avx512BW.MultiplyAddAdjacent(pa, Avx512BW.PermuteVar32x16(scales, idxA))
             + Avx512BW.MultiplyAddAdjacent(pb, Avx512BW.PermuteVar32x16(scales, idxB));
    }

    /// <summary>
    /// One half with GFNI. <paramref name="lanes"/>: 128-bit lane k holds int16 sc[k], sc[4+k], sc[8+k], sc[12+k]
    /// (<see cref="LaneScaleIndex"/>), so the scales of zmm j (groups 4j..4j+3, one per lane) are its word j
    /// replicated in every lane, an in-lane vpshufb. <paramref name="j0"/> is 0 for the first half, 2 for the second.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Avx512HalfGfni(byte* ql, Vector512<byte> hb, sbyte* y, Vector512<byte> lanes,
        Vector512<byte> pairs01, Vector512<byte> pairs23, int j0)
    {
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        Vector512<byte> l = Vector512.Load(ql);
        Vector512<byte> a = (l & m4) | Gfni.V512.GaloisFieldAffineTransform(hb, pairs01, 0);
        Vector512<byte> bq = ((l.AsUInt16() >>> 4).AsByte() & m4) | Gfni.V512.GaloisFieldAffineTransform(hb, pairs23, 0);
        Vector512<short> pa = Avx512BW.MultiplyAddAdjacent(a, Vector512.Load(y));
        Vector512<short> pb = Avx512BW.MultiplyAddAdjacent(bq, Vector512.Load(y + 64));
        return Avx512BW.MultiplyAddAdjacent(pa, Avx512BW.Shuffle(lanes, WordPick(j0)).AsInt16())
             + Avx512BW.MultiplyAddAdjacent(pb, Avx512BW.Shuffle(lanes, WordPick(j0 + 1)).AsInt16());
    }

    /// <summary>vpermw indices: 8 int16 lanes each of groups g, g+1, g+2, g+3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> GroupIndex(int g) => Vector512.Create(
        Vector256.Create(Vector128.Create((short)g), Vector128.Create((short)(g + 1))),
        Vector256.Create(Vector128.Create((short)(g + 2)), Vector128.Create((short)(g + 3))));

    /// <summary>vpermw indices putting sc[k + 4i] in word i of 128-bit lane k (words 4..7 unused).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> LaneScaleIndex() => Vector512.Create(
        Vector256.Create(Vector128.Create(0, 4, 8, 12, 0, 0, 0, 0), Vector128.Create(1, 5, 9, 13, 0, 0, 0, 0)),
        Vector256.Create(Vector128.Create(2, 6, 10, 14, 0, 0, 0, 0), Vector128.Create((short)3, 7, 11, 15, 0, 0, 0, 0)));

    /// <summary>vpshufb control replicating word <paramref name="j"/> of each 128-bit lane over the lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> WordPick(int j) => Vector512.Create((ushort)(2 * j | (2 * j + 1) << 8)).AsByte();

    /// <summary>
    /// GF(2) bit matrices for vgf2p8affineqb: the low 256 bits move each byte's bits 2p..2p+1 to bits 4..5, the high
    /// 256 bits bits 2q..2q+1 (all other bits 0). Output bit i is the parity of the input and matrix byte 7 − i.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> PairMatrix(int p, int q) => Vector512.Create(
        Vector256.Create(PairToBits45(p)), Vector256.Create(PairToBits45(q))).AsByte();

    private static ulong PairToBits45(int pair) =>
        (1UL << (2 * pair)) << (8 * (7 - 4)) | (1UL << (2 * pair + 1)) << (8 * (7 - 5));
}
