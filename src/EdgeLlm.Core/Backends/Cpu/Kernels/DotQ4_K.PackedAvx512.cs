using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_K
{
    /// <summary>
    /// One token · one repacked group (<see cref="Repack"/>), AVX-512. Per block the four zmm of activations are loaded
    /// once for the eight rows; per row: the scales' eight bytes broadcast to every qword (one load), two aligned 64-byte
    /// loads of quants, each split into its two nibble planes (and, shift, and), four vpmaddubsw against the activations,
    /// four vpmaddwd with the sub-block scales widened to int16 by an in-lane vpshufb (each 128-bit lane of a plane is one
    /// sub-block), summed in int32 and folded to eight lanes. The eight rows' sums are reduced to one ymm (row r in lane
    /// r) by a vphaddd tree, converted once and multiplied by the eight d·d_x (the fp16 d of the block header in one
    /// vector); the mins term Σ_j m_j·(bsums_2j + bsums_2j+1) for the eight rows is four vpmaddwd of the header's
    /// zero-extended min pairs with the activations' pair sums. No scalar work per block but the addressing.
    /// </summary>
    private static void PackedLoop512(byte* g, byte* xq, int nb, float* dst)
    {
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        Vector512<byte> c0 = PlaneScales512(0, 1), c1 = PlaneScales512(2, 3), c2 = PlaneScales512(4, 5), c3 = PlaneScales512(6, 7);
        Vector256<float> acc = Vector256<float>.Zero, accMin = Vector256<float>.Zero;
        byte* meta = g;
        byte* qs = g + (PackedGroupBytes(nb * BlockSize) - (long)nb * PackedQsBytes);
        for (int b = 0; b < nb; b++, meta += MetaBytes, qs += PackedQsBytes)
        {
            byte* yb = xq + (long)b * ActivationQuant.Q8_KBlockBytes;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector512<sbyte> y0 = Vector512.Load(y), y1 = Vector512.Load(y + 64), y2 = Vector512.Load(y + 128), y3 = Vector512.Load(y + 192);
            byte* sc = meta + MetaScales;
            byte* pf = PrefetchBlock(g, b);
            Vector256<int> r0 = Row512(qs, sc, pf, y0, y1, y2, y3, m4, c0, c1, c2, c3);
            Vector256<int> r1 = Row512(qs + 128, sc + 8, pf + 128, y0, y1, y2, y3, m4, c0, c1, c2, c3);
            Vector256<int> h01 = Avx2.HorizontalAdd(r0, r1);
            Vector256<int> r2 = Row512(qs + 256, sc + 16, pf + 256, y0, y1, y2, y3, m4, c0, c1, c2, c3);
            Vector256<int> r3 = Row512(qs + 384, sc + 24, pf + 384, y0, y1, y2, y3, m4, c0, c1, c2, c3);
            Vector256<int> h0123 = Avx2.HorizontalAdd(h01, Avx2.HorizontalAdd(r2, r3));
            Vector256<int> r4 = Row512(qs + 512, sc + 32, pf + 512, y0, y1, y2, y3, m4, c0, c1, c2, c3);
            Vector256<int> r5 = Row512(qs + 640, sc + 40, pf + 640, y0, y1, y2, y3, m4, c0, c1, c2, c3);
            Vector256<int> h45 = Avx2.HorizontalAdd(r4, r5);
            Vector256<int> r6 = Row512(qs + 768, sc + 48, pf + 768, y0, y1, y2, y3, m4, c0, c1, c2, c3);
            Vector256<int> r7 = Row512(qs + 896, sc + 56, pf + 896, y0, y1, y2, y3, m4, c0, c1, c2, c3);
            Vector256<int> h4567 = Avx2.HorizontalAdd(h45, Avx2.HorizontalAdd(r6, r7));
            GroupBlock(ref acc, ref accMin, RowSums(h0123, h4567), meta, yb);
        }
        (acc - accMin).Store(dst);
    }

    /// <summary>One row's 256 weights of a block: eight int32 partial sums whose total is Σ_j sc_j·Σ q4·q8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Row512(byte* q, byte* sc, byte* pf, Vector512<sbyte> y0, Vector512<sbyte> y1, Vector512<sbyte> y2, Vector512<sbyte> y3,
        Vector512<byte> m4, Vector512<byte> c0, Vector512<byte> c1, Vector512<byte> c2, Vector512<byte> c3)
    {
        Sse.Prefetch0(pf);
        Sse.Prefetch0(pf + 64);
        Vector512<byte> s = Vector512.Create(Unsafe.ReadUnaligned<ulong>(sc)).AsByte();
        Vector512<byte> l0 = Vector512.Load(q), l1 = Vector512.Load(q + 64);
        Vector512<short> p0 = Avx512BW.MultiplyAddAdjacent(l0 & m4, y0);
        Vector512<short> p1 = Avx512BW.MultiplyAddAdjacent((l0.AsUInt16() >>> 4).AsByte() & m4, y1);
        Vector512<short> p2 = Avx512BW.MultiplyAddAdjacent(l1 & m4, y2);
        Vector512<short> p3 = Avx512BW.MultiplyAddAdjacent((l1.AsUInt16() >>> 4).AsByte() & m4, y3);
        Vector512<int> sum = Avx512BW.MultiplyAddAdjacent(p0, Avx512BW.Shuffle(s, c0).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(p1, Avx512BW.Shuffle(s, c1).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(p2, Avx512BW.Shuffle(s, c2).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(p3, Avx512BW.Shuffle(s, c3).AsInt16());
        return sum.GetLower() + sum.GetUpper();
    }

    /// <summary>
    /// Software prefetch of the copy, <see cref="WeightPrefetch.Distance"/> bytes ahead of where the stream is: block b of a
    /// group is about (160 + 1024)·b bytes into it (headers and quants stream at the same pace, the next group follows).
    /// Each row step asks for two lines at the returned pointer + 128·r and the block for three more at + 1024, so the
    /// nineteen lines cover the block's 1184 bytes of stream; past the end of the copy is harmless.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* PrefetchBlock(byte* g, int b)
    {
        byte* pf = g + WeightPrefetch.Distance + (long)b * (MetaBytes + PackedQsBytes);
        Sse.Prefetch0(pf + 1024);
        Sse.Prefetch0(pf + 1088);
        Sse.Prefetch0(pf + 1152);
        return pf;
    }

    /// <summary>
    /// vpshufb control turning the broadcast scale bytes into int16 words: 128-bit lanes 0 and 1 (the plane's first 32
    /// weights) take sub-block <paramref name="a"/>, lanes 2 and 3 sub-block <paramref name="b"/> (high bytes zeroed).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<byte> PlaneScales512(int a, int b)
    {
        Vector128<byte> la = Vector128.Create((ushort)(0x8000 | a)).AsByte(), lb = Vector128.Create((ushort)(0x8000 | b)).AsByte();
        return Vector512.Create(Vector256.Create(la, la), Vector256.Create(lb, lb));
    }

    /// <summary>
    /// Two vphaddd levels left eight rows' sums as [rows 0..3 | rows 0..3] and [rows 4..7 | rows 4..7] (each 128-bit
    /// half a part of the total): the row totals, row r in lane r.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> RowSums(Vector256<int> h0123, Vector256<int> h4567) =>
        Avx2.Permute2x128(h0123, h4567, 0x20) + Avx2.Permute2x128(h0123, h4567, 0x31);

    /// <summary>
    /// The eight rows' block sums <paramref name="isum"/> times d·d_x into <paramref name="acc"/>, and their mins terms
    /// times dmin·d_x into <paramref name="accMin"/> (shared by both rungs).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GroupBlock(ref Vector256<float> acc, ref Vector256<float> accMin, Vector256<int> isum, byte* meta, byte* yb) =>
        GroupToken(ref acc, ref accMin, isum, meta, yb, Fp16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)meta).AsUInt32()),
            Fp16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)(meta + MetaDmin)).AsUInt32()));

    /// <summary>
    /// <see cref="GroupBlock"/> with the block header's eight d and eight dmin already converted (<paramref name="d"/>,
    /// <paramref name="dmin"/>): the multi-token loops convert them once per block for all their tokens.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void GroupToken(ref Vector256<float> acc, ref Vector256<float> accMin, Vector256<int> isum, byte* meta, byte* yb,
        Vector256<float> d, Vector256<float> dmin)
    {
        // Pair sums of the sixteen bsums (ys_j for sub-block j, |ys_j| ≤ 4096) packed to int16: dword k of lane 0 holds
        // (ys_2k, ys_2k+1) for k = 0, 1, of lane 1 for k = 2, 3.
        Vector256<int> ys = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), Vector256.Create((short)1));
        Vector256<int> pairs = Avx2.PackSignedSaturate(ys, ys).AsInt32();
        byte* mins = meta + MetaMins;
        Vector256<int> msum = Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(mins), Avx2.PermuteVar8x32(pairs, Vector256.Create(0)).AsInt16())
            + Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(mins + 16), Avx2.PermuteVar8x32(pairs, Vector256.Create(1)).AsInt16())
            + Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(mins + 32), Avx2.PermuteVar8x32(pairs, Vector256.Create(4)).AsInt16())
            + Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(mins + 48), Avx2.PermuteVar8x32(pairs, Vector256.Create(5)).AsInt16());
        Vector256<float> dy = Vector256.Create(Unsafe.ReadUnaligned<float>(yb));
        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), d * dy, acc);
        accMin = Fma.MultiplyAdd(Avx.ConvertToVector256Single(msum), dmin * dy, accMin);
    }
}
