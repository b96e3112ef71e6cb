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
/// Per block the eight rows' sums meet in one ymm through a vphaddd tree (row r in lane r; the four-token loop: a tree
/// of 512-bit shuffles over pairs of rows, <see cref="PackedLoop512x4"/>), converted once and multiplied into the
/// accumulator with the eight d (one fp16 conversion per block) times d_x. The int32 sums are
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
    /// Four tokens, rows in pairs: the weight side of both rows once (sixteen zmm of planes and scales), then per token its
    /// four activation lines loaded once for the two rows (in cache 8-12% faster than the row-at-a-time loop; the same from DRAM); a
    /// pair of rows meets in one zmm (row 2k's eight lanes below, row 2k + 1's above: two vshufi32x4 and an add) and takes
    /// its −32 offset for both rows in one vpmaddwd (the pair's 32 scales against the token's bsums twice); two pairs meet in
    /// a zmm of four rows (row r in 128-bit lane r mod 4), and the two halves of the group in one unpack-and-add tree whose
    /// vpermd puts row r in lane r. Every step is int32 and exact, so the row totals, and the block step after them, are
    /// those of the one-token loop.
    /// </summary>
    private static void PackedLoop512x4(byte* g, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        // Per block: the four tokens' bsums (twice each), and each pair's four tokens' sums (pair k, token t at 4k + t):
        // kept in registers next to two rows' planes, they spilled.
        Vector512<short>* bs = stackalloc Vector512<short>[4];
        Vector512<int>* pairs = stackalloc Vector512<int>[16];
        byte* meta = g;
        byte* qs = g + (PackedGroupBytes(nb * BlockSize) - (long)nb * PackedQsBytes);
        for (int b = 0; b < nb; b++, meta += MetaBytes, qs += PackedQsBytes)
        {
            byte* yb0 = xq + (long)b * ActivationQuant.Q8_KBlockBytes, yb1 = yb0 + xqStride, yb2 = yb1 + xqStride, yb3 = yb2 + xqStride;
            bs[0] = PackedBsums2(yb0);
            bs[1] = PackedBsums2(yb1);
            bs[2] = PackedBsums2(yb2);
            bs[3] = PackedBsums2(yb3);
            byte* sc = meta + MetaScales;
            byte* pf = PackedPrefetch(g, b);
            PackedPair4(qs, sc, pf, yb0, xqStride, bs, pairs);
            PackedPair4(qs + 2 * PackedRowBytes, sc + 32, pf + 2 * PackedRowBytes, yb0, xqStride, bs, pairs + 4);
            PackedPair4(qs + 4 * PackedRowBytes, sc + 64, pf + 4 * PackedRowBytes, yb0, xqStride, bs, pairs + 8);
            PackedPair4(qs + 6 * PackedRowBytes, sc + 96, pf + 6 * PackedRowBytes, yb0, xqStride, bs, pairs + 12);
            Vector256<float> d = PackedD(meta);
            acc0 = PackedBlockStep(acc0, PackedOctet(PackedQuad(pairs[0], pairs[4]), PackedQuad(pairs[8], pairs[12])), d, yb0);
            acc1 = PackedBlockStep(acc1, PackedOctet(PackedQuad(pairs[1], pairs[5]), PackedQuad(pairs[9], pairs[13])), d, yb1);
            acc2 = PackedBlockStep(acc2, PackedOctet(PackedQuad(pairs[2], pairs[6]), PackedQuad(pairs[10], pairs[14])), d, yb2);
            acc3 = PackedBlockStep(acc3, PackedOctet(PackedQuad(pairs[3], pairs[7]), PackedQuad(pairs[11], pairs[15])), d, yb3);
        }
        acc0.Store(dst);
        acc1.Store(dst + dstStride);
        acc2.Store(dst + 2 * dstStride);
        acc3.Store(dst + 3 * dstStride);
    }

    /// <summary>
    /// Rows r and r + 1 of a block (quants at <paramref name="q"/>, scales at <paramref name="sc"/>) · the four tokens whose
    /// Q8_K blocks start at <paramref name="yb"/> + t·<paramref name="stride"/> (bsums of token t, twice, at
    /// <paramref name="bs"/>[t]): per token t a zmm at <paramref name="o"/>[t] whose lanes 0..7 total row r's
    /// Σ_g sc_g·Σ (q6 − 32)·q8 and lanes 8..15 row r + 1's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PackedPair4(byte* q, byte* sc, byte* pf, byte* yb, long stride, Vector512<short>* bs, Vector512<int>* o)
    {
        const int Qs = ActivationQuant.Q8_KQsOffset;
        sbyte* y0 = (sbyte*)(yb + Qs), y1 = (sbyte*)(yb + stride + Qs), y2 = (sbyte*)(yb + 2 * stride + Qs), y3 = (sbyte*)(yb + 3 * stride + Qs);
        PackedPlanes(q, sc, pf, out var n0, out var n1, out var n2, out var n3, out var s0, out var s1, out var s2, out var s3, out _);
        PackedPlanes(q + PackedRowBytes, sc + 16, pf + PackedRowBytes, out var m0, out var m1, out var m2, out var m3, out var r0, out var r1, out var r2, out var r3, out _);
        // The pair's 32 scales (row r's transposed sixteen, then row r + 1's) times 32, against the bsums in both halves.
        Vector512<short> sc32 = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)sc)) << 5;
        o[0] = PackedPairToken(n0, n1, n2, n3, s0, s1, s2, s3, m0, m1, m2, m3, r0, r1, r2, r3, y0) - Avx512BW.MultiplyAddAdjacent(sc32, bs[0]);
        o[1] = PackedPairToken(n0, n1, n2, n3, s0, s1, s2, s3, m0, m1, m2, m3, r0, r1, r2, r3, y1) - Avx512BW.MultiplyAddAdjacent(sc32, bs[1]);
        o[2] = PackedPairToken(n0, n1, n2, n3, s0, s1, s2, s3, m0, m1, m2, m3, r0, r1, r2, r3, y2) - Avx512BW.MultiplyAddAdjacent(sc32, bs[2]);
        o[3] = PackedPairToken(n0, n1, n2, n3, s0, s1, s2, s3, m0, m1, m2, m3, r0, r1, r2, r3, y3) - Avx512BW.MultiplyAddAdjacent(sc32, bs[3]);
    }

    /// <summary>One token · a pair of rows (planes n, scales s of row r; m, r of row r + 1), each activation line loaded once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PackedPairToken(Vector512<byte> n0, Vector512<byte> n1, Vector512<byte> n2, Vector512<byte> n3,
        Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3,
        Vector512<byte> m0, Vector512<byte> m1, Vector512<byte> m2, Vector512<byte> m3,
        Vector512<short> r0, Vector512<short> r1, Vector512<short> r2, Vector512<short> r3, sbyte* y)
    {
        Vector512<sbyte> y0 = Vector512.Load(y), y1 = Vector512.Load(y + 64), y2 = Vector512.Load(y + 128), y3 = Vector512.Load(y + 192);
        Vector512<int> a = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n0, y0), s0)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n1, y1), s1)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n2, y2), s2)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n3, y3), s3);
        Vector512<int> b = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(m0, y0), r0)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(m1, y1), r1)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(m2, y2), r2)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(m3, y3), r3);
        return PackedPair(a, b);
    }

    /// <summary>Two rows' sixteen-lane sums a, b as one zmm: lanes 0..7 a's 128-bit lanes 0, 1 plus 2, 3, lanes 8..15 b's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PackedPair(Vector512<int> a, Vector512<int> b) =>
        Avx512F.Shuffle4x128(a, b, 0x44) + Avx512F.Shuffle4x128(a, b, 0xEE);

    /// <summary>Two pairs (rows 0, 1 and 2, 3 of a quad, eight lanes each) as one zmm: row k's four lanes in 128-bit lane k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PackedQuad(Vector512<int> p, Vector512<int> q) =>
        Avx512F.Shuffle4x128(p, q, 0x88) + Avx512F.Shuffle4x128(p, q, 0xDD);

    /// <summary>
    /// Rows 0..3 and 4..7 (row k's four lanes in 128-bit lane k of each) to the eight row totals, row r in lane r: per
    /// 128-bit lane [a0 + a2, a1 + a3, b0 + b2, b1 + b3], then its neighbour pairs added, then lanes 0 and 2 of each picked.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PackedOctet(Vector512<int> a, Vector512<int> b)
    {
        Vector512<int> s = Avx512F.UnpackLow(a.AsInt64(), b.AsInt64()).AsInt32() + Avx512F.UnpackHigh(a.AsInt64(), b.AsInt64()).AsInt32();
        s += Avx512F.Shuffle(s, 0xB1);
        return Avx512F.PermuteVar16x32(s, Vector512.Create(0, 4, 8, 12, 2, 6, 10, 14, 0, 4, 8, 12, 2, 6, 10, 14)).GetLower();
    }

    /// <summary><see cref="PackedBsums"/> in both 256-bit halves (against a pair of rows' scales).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> PackedBsums2(byte* yb)
    {
        Vector256<short> bs = PackedBsums(yb);
        return Vector512.Create(bs, bs);
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
