using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One, two and four tokens · one repacked Q6_K group (<see cref="Repack"/>), AVX-512 + GFNI. Per row and block the
/// weight side is done once for all tokens: three aligned 64-byte loads, each of the four planes one vgf2p8affineqb
/// (bit pair p of the qh line to bits 4..5) and one vpternlogd ((nibbles &amp; 0x0F) | high bits; the high-nibble planes
/// after a vpsrlw), and the four plane scale vectors (vpmovsxbw of the transposed scales, a vpermq putting lane k's
/// four words in 128-bit lane k, an in-lane vpshufb per plane). Per token a row then costs four vpmaddubsw, four
/// vpmaddwd, the fold to eight lanes and its −32 offset (one vpmaddwd of the token's transposed bsums with 32·sc).
/// Per block the eight rows' sums meet in one ymm through a vphaddd tree (row r in lane r), converted once and
/// multiplied into the accumulator with the eight d (one fp16 conversion per block) times d_x. The int32 sums are
/// exact and the float steps per token are the same in every loop, so a token gets the same bits alone or in a batch.
/// </summary>
public static unsafe partial class DotQ6_K
{
    private static void PackedLoop512(byte* g, byte* xq, int nb, float* dst)
    {
        Vector256<float> acc = Vector256<float>.Zero;
        byte* meta = g;
        byte* qs = g + (PackedGroupBytes(nb * BlockSize) - (long)nb * PackedQsBytes);
        for (int b = 0; b < nb; b++, meta += MetaBytes, qs += PackedQsBytes)
        {
            byte* yb = xq + (long)b * ActivationQuant.Q8_KBlockBytes;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector256<short> bs = PackedBsums(yb);
            byte* sc = meta + MetaScales;
            byte* pf = PackedPrefetch(g, b);
            Vector256<int> h01 = Avx2.HorizontalAdd(PackedRow1(qs, sc, pf, y, bs), PackedRow1(qs + 192, sc + 16, pf + 192, y, bs));
            Vector256<int> h23 = Avx2.HorizontalAdd(PackedRow1(qs + 384, sc + 32, pf + 384, y, bs), PackedRow1(qs + 576, sc + 48, pf + 576, y, bs));
            Vector256<int> h0123 = Avx2.HorizontalAdd(h01, h23);
            Vector256<int> h45 = Avx2.HorizontalAdd(PackedRow1(qs + 768, sc + 64, pf + 768, y, bs), PackedRow1(qs + 960, sc + 80, pf + 960, y, bs));
            Vector256<int> h67 = Avx2.HorizontalAdd(PackedRow1(qs + 1152, sc + 96, pf + 1152, y, bs), PackedRow1(qs + 1344, sc + 112, pf + 1344, y, bs));
            acc = PackedBlockStep(acc, PackedRowSums(h0123, Avx2.HorizontalAdd(h45, h67)), PackedD(meta), yb);
        }
        acc.Store(dst);
    }

    private static void PackedLoop512x2(byte* g, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0;
        byte* meta = g;
        byte* qs = g + (PackedGroupBytes(nb * BlockSize) - (long)nb * PackedQsBytes);
        for (int b = 0; b < nb; b++, meta += MetaBytes, qs += PackedQsBytes)
        {
            byte* yb0 = xq + (long)b * ActivationQuant.Q8_KBlockBytes, yb1 = yb0 + xqStride;
            sbyte* y0 = (sbyte*)(yb0 + ActivationQuant.Q8_KQsOffset), y1 = (sbyte*)(yb1 + ActivationQuant.Q8_KQsOffset);
            Vector256<short> bs0 = PackedBsums(yb0), bs1 = PackedBsums(yb1);
            byte* sc = meta + MetaScales;
            byte* pf = PackedPrefetch(g, b);
            PackedRow2(qs, sc, pf, y0, y1, bs0, bs1, out var a0, out var a1);
            PackedRow2(qs + 192, sc + 16, pf + 192, y0, y1, bs0, bs1, out var b0, out var b1);
            Vector256<int> p0 = Avx2.HorizontalAdd(a0, b0), p1 = Avx2.HorizontalAdd(a1, b1);
            PackedRow2(qs + 384, sc + 32, pf + 384, y0, y1, bs0, bs1, out a0, out a1);
            PackedRow2(qs + 576, sc + 48, pf + 576, y0, y1, bs0, bs1, out b0, out b1);
            Vector256<int> lo0 = Avx2.HorizontalAdd(p0, Avx2.HorizontalAdd(a0, b0)), lo1 = Avx2.HorizontalAdd(p1, Avx2.HorizontalAdd(a1, b1));
            PackedRow2(qs + 768, sc + 64, pf + 768, y0, y1, bs0, bs1, out a0, out a1);
            PackedRow2(qs + 960, sc + 80, pf + 960, y0, y1, bs0, bs1, out b0, out b1);
            p0 = Avx2.HorizontalAdd(a0, b0);
            p1 = Avx2.HorizontalAdd(a1, b1);
            PackedRow2(qs + 1152, sc + 96, pf + 1152, y0, y1, bs0, bs1, out a0, out a1);
            PackedRow2(qs + 1344, sc + 112, pf + 1344, y0, y1, bs0, bs1, out b0, out b1);
            Vector256<float> d = PackedD(meta);
            acc0 = PackedBlockStep(acc0, PackedRowSums(lo0, Avx2.HorizontalAdd(p0, Avx2.HorizontalAdd(a0, b0))), d, yb0);
            acc1 = PackedBlockStep(acc1, PackedRowSums(lo1, Avx2.HorizontalAdd(p1, Avx2.HorizontalAdd(a1, b1))), d, yb1);
        }
        acc0.Store(dst);
        acc1.Store(dst + dstStride);
    }

    /// <summary>
    /// Four tokens: each row's weight side once, its four tokens' eight-lane sums parked in a 1 KiB stack buffer (so the
    /// live registers are one row's planes and scales, not four tokens' vphaddd trees), then per token the tree over
    /// the eight rows from the buffer and the block step.
    /// </summary>
    private static void PackedLoop512x4(byte* g, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector256<int>* sums = stackalloc Vector256<int>[4 * PackRows];
        byte* meta = g;
        byte* qs = g + (PackedGroupBytes(nb * BlockSize) - (long)nb * PackedQsBytes);
        for (int b = 0; b < nb; b++, meta += MetaBytes, qs += PackedQsBytes)
        {
            byte* yb0 = xq + (long)b * ActivationQuant.Q8_KBlockBytes, yb1 = yb0 + xqStride, yb2 = yb1 + xqStride, yb3 = yb2 + xqStride;
            const int Qs = ActivationQuant.Q8_KQsOffset;
            sbyte* y0 = (sbyte*)(yb0 + Qs), y1 = (sbyte*)(yb1 + Qs), y2 = (sbyte*)(yb2 + Qs), y3 = (sbyte*)(yb3 + Qs);
            Vector256<short> bs0 = PackedBsums(yb0), bs1 = PackedBsums(yb1), bs2 = PackedBsums(yb2), bs3 = PackedBsums(yb3);
            byte* sc = meta + MetaScales;
            byte* pf = PackedPrefetch(g, b);
            for (int r = 0; r < PackRows; r++)
            {
                PackedPlanes(qs + PackedRowBytes * r, sc + 16 * r, pf + PackedRowBytes * r,
                    out var n0, out var n1, out var n2, out var n3, out var s0, out var s1, out var s2, out var s3, out var sc32);
                sums[r] = PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, sc32, y0, bs0);
                sums[PackRows + r] = PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, sc32, y1, bs1);
                sums[2 * PackRows + r] = PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, sc32, y2, bs2);
                sums[3 * PackRows + r] = PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, sc32, y3, bs3);
            }
            Vector256<float> d = PackedD(meta);
            acc0 = PackedBlockStep(acc0, PackedTree(sums), d, yb0);
            acc1 = PackedBlockStep(acc1, PackedTree(sums + PackRows), d, yb1);
            acc2 = PackedBlockStep(acc2, PackedTree(sums + 2 * PackRows), d, yb2);
            acc3 = PackedBlockStep(acc3, PackedTree(sums + 3 * PackRows), d, yb3);
        }
        acc0.Store(dst);
        acc1.Store(dst + dstStride);
        acc2.Store(dst + 2 * dstStride);
        acc3.Store(dst + 3 * dstStride);
    }

    /// <summary>One row's block · one token: eight int32 lanes whose total is Σ_g sc_g·Σ (q6 − 32)·q8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PackedRow1(byte* q, byte* sc, byte* pf, sbyte* y, Vector256<short> bs)
    {
        PackedPlanes(q, sc, pf, out var n0, out var n1, out var n2, out var n3, out var s0, out var s1, out var s2, out var s3, out var sc32);
        return PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, sc32, y, bs);
    }

    /// <summary>The same for two tokens, the weight side once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PackedRow2(byte* q, byte* sc, byte* pf, sbyte* y0, sbyte* y1, Vector256<short> bs0, Vector256<short> bs1,
        out Vector256<int> t0, out Vector256<int> t1)
    {
        PackedPlanes(q, sc, pf, out var n0, out var n1, out var n2, out var n3, out var s0, out var s1, out var s2, out var s3, out var sc32);
        t0 = PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, sc32, y0, bs0);
        t1 = PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, sc32, y1, bs1);
    }

    /// <summary>
    /// A row's weight side of a block: the four planes of 6-bit values (plane p = weights 64p..64p+63), their int16
    /// scale vectors (128-bit lane k of plane p: sc[4p + k]) and the sixteen scales times 32 in the transposed order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PackedPlanes(byte* q, byte* sc, byte* pf,
        out Vector512<byte> n0, out Vector512<byte> n1, out Vector512<byte> n2, out Vector512<byte> n3,
        out Vector512<short> s0, out Vector512<short> s1, out Vector512<short> s2, out Vector512<short> s3, out Vector256<short> sc32)
    {
        Sse.Prefetch0(pf);
        Sse.Prefetch0(pf + 64);
        Sse.Prefetch0(pf + 128);
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        Vector512<byte> l0 = Vector512.Load(q), l1 = Vector512.Load(q + 64), h = Vector512.Load(q + 128);
        // vpternlogd 0xEA: (a & b) | c.
        n0 = Avx512F.TernaryLogic(l0, m4, Gfni.V512.GaloisFieldAffineTransform(h, PlaneMatrix(0), 0), 0xEA);
        n1 = Avx512F.TernaryLogic((l0.AsUInt16() >>> 4).AsByte(), m4, Gfni.V512.GaloisFieldAffineTransform(h, PlaneMatrix(1), 0), 0xEA);
        n2 = Avx512F.TernaryLogic(l1, m4, Gfni.V512.GaloisFieldAffineTransform(h, PlaneMatrix(2), 0), 0xEA);
        n3 = Avx512F.TernaryLogic((l1.AsUInt16() >>> 4).AsByte(), m4, Gfni.V512.GaloisFieldAffineTransform(h, PlaneMatrix(3), 0), 0xEA);
        Vector256<short> sc16 = Avx2.ConvertToVector256Int16((sbyte*)sc);
        Vector512<byte> lanes = Avx512F.PermuteVar8x64(sc16.ToVector512Unsafe().AsInt64(), Vector512.Create(0L, 0, 1, 1, 2, 2, 3, 3)).AsByte();
        s0 = Avx512BW.Shuffle(lanes, WordPick(0)).AsInt16();
        s1 = Avx512BW.Shuffle(lanes, WordPick(1)).AsInt16();
        s2 = Avx512BW.Shuffle(lanes, WordPick(2)).AsInt16();
        s3 = Avx512BW.Shuffle(lanes, WordPick(3)).AsInt16();
        sc32 = sc16 << 5; // |32·sc| ≤ 4096
    }

    /// <summary>
    /// One token's share of a row's block: Σ_p vpmaddwd(vpmaddubsw(plane p, y_p), scales p) folded to eight lanes, minus
    /// 32·Σ_g sc_g·bsums_g (<paramref name="bs"/> in the scales' transposed order; pair sums ≤ 2·4096·2032).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PackedToken(Vector512<byte> n0, Vector512<byte> n1, Vector512<byte> n2, Vector512<byte> n3,
        Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3, Vector256<short> sc32, sbyte* y, Vector256<short> bs)
    {
        Vector512<int> sum = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n0, Vector512.Load(y)), s0)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n1, Vector512.Load(y + 64)), s1)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n2, Vector512.Load(y + 128)), s2)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n3, Vector512.Load(y + 192)), s3);
        return sum.GetLower() + sum.GetUpper() - Avx2.MultiplyAddAdjacent(bs, sc32);
    }

    /// <summary>A token block's sixteen bsums in the transposed order of the packed scales (word 4k + j = bsums[4j + k]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> PackedBsums(byte* yb) => Avx512BW.VL.PermuteVar16x16(
        Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)),
        Vector256.Create((short)0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));

    /// <summary>The eight rows' d of a block header as floats (row r in lane r).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PackedD(byte* meta) => Fp16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)meta).AsUInt32());

    /// <summary>The block step of a token: acc + float(row sums)·(d·d_x), the same in every loop.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PackedBlockStep(Vector256<float> acc, Vector256<int> isum, Vector256<float> d, byte* yb) =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), d * Vector256.Create(Unsafe.ReadUnaligned<float>(yb)), acc);

    /// <summary>
    /// Two vphaddd levels left eight rows' sums as [rows 0..3 | rows 0..3] and [rows 4..7 | rows 4..7] (each 128-bit
    /// half a part of the total): the row totals, row r in lane r.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PackedRowSums(Vector256<int> h0123, Vector256<int> h4567) =>
        Avx2.Permute2x128(h0123, h4567, 0x20) + Avx2.Permute2x128(h0123, h4567, 0x31);

    /// <summary>The vphaddd tree over eight rows' eight-lane sums at <paramref name="s"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PackedTree(Vector256<int>* s) => PackedRowSums(
        Avx2.HorizontalAdd(Avx2.HorizontalAdd(s[0], s[1]), Avx2.HorizontalAdd(s[2], s[3])),
        Avx2.HorizontalAdd(Avx2.HorizontalAdd(s[4], s[5]), Avx2.HorizontalAdd(s[6], s[7])));

    /// <summary>
    /// Software prefetch of the copy, <see cref="WeightPrefetch.Distance"/> bytes ahead: block b of a group is about
    /// (144 + 1536)·b bytes into it. Each row step asks for three lines at the returned pointer + 192·r and the block
    /// for three more at + 1536, so the 27 lines cover the block's 1680 bytes of stream; past the end of the copy is harmless.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* PackedPrefetch(byte* g, int b)
    {
        byte* pf = g + WeightPrefetch.Distance + (long)b * (MetaBytes + PackedQsBytes);
        Sse.Prefetch0(pf + 1536);
        Sse.Prefetch0(pf + 1600);
        Sse.Prefetch0(pf + 1664);
        return pf;
    }

    /// <summary>vgf2p8affineqb matrix moving bits 2p..2p+1 of every byte to bits 4..5 (all other bits 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> PlaneMatrix(int p) =>
        Vector512.Create((1UL << (2 * p)) << (8 * (7 - 4)) | (1UL << (2 * p + 1)) << (8 * (7 - 5))).AsByte();
}
