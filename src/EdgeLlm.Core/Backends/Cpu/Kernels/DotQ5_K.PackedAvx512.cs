using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One, two and four tokens · one repacked Q5_K group (<see cref="Repack"/>), AVX-512 + GFNI. Per row and block the
/// weight side is done once for all tokens: two aligned 64-byte loads of nibble lines and the row's 32 fifth-bit bytes
/// in both halves of a zmm (one load of the row pair's line and one vshufi64x2), each of the four planes one
/// vgf2p8affineqb (plane p's fifth bits to bit 4) and one vpternlogd ((nibbles &amp; 0x0F) | fifth bits; the high-nibble
/// planes after a vpsrlw), and the four sub-block scale vectors (the scales' eight bytes broadcast, an in-lane vpshufb
/// per plane, as Q4_K's copy). Per token a row then costs four vpmaddubsw, four vpmaddwd and the fold to eight lanes.
/// Per block the eight rows' sums meet in one ymm through a vphaddd tree (row r in lane r), and the block step of Q4_K's
/// copy (<see cref="DotQ4_K.GroupToken"/>, the same header) applies the eight d·d_x and the mins term. The int32 sums
/// are exact and the float steps per token are the same in every loop, so a token gets the same bits alone or in a batch.
/// </summary>
public static unsafe partial class DotQ5_K
{
    private static void PackedLoop512(byte* g, byte* xq, int nb, float* dst)
    {
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        Vector512<byte> c0 = DotQ4_K.PlaneScales512(0, 1), c1 = DotQ4_K.PlaneScales512(2, 3);
        Vector512<byte> c2 = DotQ4_K.PlaneScales512(4, 5), c3 = DotQ4_K.PlaneScales512(6, 7);
        Vector256<float> acc = Vector256<float>.Zero, accMin = Vector256<float>.Zero;
        byte* meta = g;
        byte* qs = g + (PackedGroupBytes(nb * BlockSize) - (long)nb * PackedQsBytes);
        for (int b = 0; b < nb; b++, meta += MetaBytes, qs += PackedQsBytes)
        {
            byte* yb = xq + (long)b * ActivationQuant.Q8_KBlockBytes;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector512<sbyte> y0 = Vector512.Load(y), y1 = Vector512.Load(y + 64), y2 = Vector512.Load(y + 128), y3 = Vector512.Load(y + 192);
            byte* sc = meta + MetaScales;
            byte* h = qs + PackedLowBytes;
            byte* pf = PackedPrefetch(g, b);
            Vector256<int> h01 = Avx2.HorizontalAdd(
                PackedRow1(qs, h, false, sc, pf, y0, y1, y2, y3, m4, c0, c1, c2, c3),
                PackedRow1(qs + 128, h, true, sc + 8, pf + 128, y0, y1, y2, y3, m4, c0, c1, c2, c3));
            Vector256<int> h23 = Avx2.HorizontalAdd(
                PackedRow1(qs + 256, h + 64, false, sc + 16, pf + 256, y0, y1, y2, y3, m4, c0, c1, c2, c3),
                PackedRow1(qs + 384, h + 64, true, sc + 24, pf + 384, y0, y1, y2, y3, m4, c0, c1, c2, c3));
            Vector256<int> h0123 = Avx2.HorizontalAdd(h01, h23);
            Vector256<int> h45 = Avx2.HorizontalAdd(
                PackedRow1(qs + 512, h + 128, false, sc + 32, pf + 512, y0, y1, y2, y3, m4, c0, c1, c2, c3),
                PackedRow1(qs + 640, h + 128, true, sc + 40, pf + 640, y0, y1, y2, y3, m4, c0, c1, c2, c3));
            Vector256<int> h67 = Avx2.HorizontalAdd(
                PackedRow1(qs + 768, h + 192, false, sc + 48, pf + 768, y0, y1, y2, y3, m4, c0, c1, c2, c3),
                PackedRow1(qs + 896, h + 192, true, sc + 56, pf + 896, y0, y1, y2, y3, m4, c0, c1, c2, c3));
            Vector512<float> dd = PackedDAndDmin(meta);
            DotQ4_K.GroupToken(ref acc, ref accMin, DotQ4_K.RowSums(h0123, Avx2.HorizontalAdd(h45, h67)), meta, yb, dd.GetLower(), dd.GetUpper());
        }
        (acc - accMin).Store(dst);
    }

    private static void PackedLoop512x2(byte* g, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        Vector512<byte> c0 = DotQ4_K.PlaneScales512(0, 1), c1 = DotQ4_K.PlaneScales512(2, 3);
        Vector512<byte> c2 = DotQ4_K.PlaneScales512(4, 5), c3 = DotQ4_K.PlaneScales512(6, 7);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, min0 = acc0, min1 = acc0;
        byte* meta = g;
        byte* qs = g + (PackedGroupBytes(nb * BlockSize) - (long)nb * PackedQsBytes);
        for (int b = 0; b < nb; b++, meta += MetaBytes, qs += PackedQsBytes)
        {
            byte* yb0 = xq + (long)b * ActivationQuant.Q8_KBlockBytes, yb1 = yb0 + xqStride;
            sbyte* y0 = (sbyte*)(yb0 + ActivationQuant.Q8_KQsOffset), y1 = (sbyte*)(yb1 + ActivationQuant.Q8_KQsOffset);
            byte* sc = meta + MetaScales;
            byte* h = qs + PackedLowBytes;
            byte* pf = PackedPrefetch(g, b);
            PackedRow2(qs, h, false, sc, pf, y0, y1, m4, c0, c1, c2, c3, out var a0, out var a1);
            PackedRow2(qs + 128, h, true, sc + 8, pf + 128, y0, y1, m4, c0, c1, c2, c3, out var b0, out var b1);
            Vector256<int> p0 = Avx2.HorizontalAdd(a0, b0), p1 = Avx2.HorizontalAdd(a1, b1);
            PackedRow2(qs + 256, h + 64, false, sc + 16, pf + 256, y0, y1, m4, c0, c1, c2, c3, out a0, out a1);
            PackedRow2(qs + 384, h + 64, true, sc + 24, pf + 384, y0, y1, m4, c0, c1, c2, c3, out b0, out b1);
            Vector256<int> lo0 = Avx2.HorizontalAdd(p0, Avx2.HorizontalAdd(a0, b0)), lo1 = Avx2.HorizontalAdd(p1, Avx2.HorizontalAdd(a1, b1));
            PackedRow2(qs + 512, h + 128, false, sc + 32, pf + 512, y0, y1, m4, c0, c1, c2, c3, out a0, out a1);
            PackedRow2(qs + 640, h + 128, true, sc + 40, pf + 640, y0, y1, m4, c0, c1, c2, c3, out b0, out b1);
            p0 = Avx2.HorizontalAdd(a0, b0);
            p1 = Avx2.HorizontalAdd(a1, b1);
            PackedRow2(qs + 768, h + 192, false, sc + 48, pf + 768, y0, y1, m4, c0, c1, c2, c3, out a0, out a1);
            PackedRow2(qs + 896, h + 192, true, sc + 56, pf + 896, y0, y1, m4, c0, c1, c2, c3, out b0, out b1);
            Vector512<float> dd = PackedDAndDmin(meta);
            Vector256<float> d = dd.GetLower(), dmin = dd.GetUpper();
            DotQ4_K.GroupToken(ref acc0, ref min0, DotQ4_K.RowSums(lo0, Avx2.HorizontalAdd(p0, Avx2.HorizontalAdd(a0, b0))), meta, yb0, d, dmin);
            DotQ4_K.GroupToken(ref acc1, ref min1, DotQ4_K.RowSums(lo1, Avx2.HorizontalAdd(p1, Avx2.HorizontalAdd(a1, b1))), meta, yb1, d, dmin);
        }
        (acc0 - min0).Store(dst);
        (acc1 - min1).Store(dst + dstStride);
    }

    /// <summary>
    /// Four tokens: each row's weight side once, its four tokens' eight-lane sums parked in a 1 KiB stack buffer (the
    /// live registers are one row's planes and scales, not four tokens' vphaddd trees), then per token the tree over the
    /// eight rows from the buffer and the block step.
    /// </summary>
    private static void PackedLoop512x4(byte* g, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        Vector512<byte> c0 = DotQ4_K.PlaneScales512(0, 1), c1 = DotQ4_K.PlaneScales512(2, 3);
        Vector512<byte> c2 = DotQ4_K.PlaneScales512(4, 5), c3 = DotQ4_K.PlaneScales512(6, 7);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector256<float> min0 = Vector256<float>.Zero, min1 = min0, min2 = min0, min3 = min0;
        Vector256<int>* sums = stackalloc Vector256<int>[4 * PackRows];
        byte* meta = g;
        byte* qs = g + (PackedGroupBytes(nb * BlockSize) - (long)nb * PackedQsBytes);
        for (int b = 0; b < nb; b++, meta += MetaBytes, qs += PackedQsBytes)
        {
            byte* yb0 = xq + (long)b * ActivationQuant.Q8_KBlockBytes, yb1 = yb0 + xqStride, yb2 = yb1 + xqStride, yb3 = yb2 + xqStride;
            const int Qs = ActivationQuant.Q8_KQsOffset;
            sbyte* y0 = (sbyte*)(yb0 + Qs), y1 = (sbyte*)(yb1 + Qs), y2 = (sbyte*)(yb2 + Qs), y3 = (sbyte*)(yb3 + Qs);
            byte* sc = meta + MetaScales;
            byte* h = qs + PackedLowBytes;
            byte* pf = PackedPrefetch(g, b);
            for (int r = 0; r < PackRows; r += 2)
            {
                PackedRow4(qs + 128 * r, h + 32 * r, false, sc + 8 * r, pf + 128 * r, y0, y1, y2, y3, m4, c0, c1, c2, c3, sums + r);
                PackedRow4(qs + 128 * r + 128, h + 32 * r, true, sc + 8 * r + 8, pf + 128 * r + 128, y0, y1, y2, y3, m4, c0, c1, c2, c3, sums + r + 1);
            }
            Vector512<float> dd = PackedDAndDmin(meta);
            Vector256<float> d = dd.GetLower(), dmin = dd.GetUpper();
            DotQ4_K.GroupToken(ref acc0, ref min0, PackedTree(sums), meta, yb0, d, dmin);
            DotQ4_K.GroupToken(ref acc1, ref min1, PackedTree(sums + PackRows), meta, yb1, d, dmin);
            DotQ4_K.GroupToken(ref acc2, ref min2, PackedTree(sums + 2 * PackRows), meta, yb2, d, dmin);
            DotQ4_K.GroupToken(ref acc3, ref min3, PackedTree(sums + 3 * PackRows), meta, yb3, d, dmin);
        }
        (acc0 - min0).Store(dst);
        (acc1 - min1).Store(dst + dstStride);
        (acc2 - min2).Store(dst + 2 * dstStride);
        (acc3 - min3).Store(dst + 3 * dstStride);
    }

    /// <summary>One row's block · one token: eight int32 lanes whose total is Σ_j sc_j·Σ q5·q8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PackedRow1(byte* q, byte* h, bool odd, byte* sc, byte* pf,
        Vector512<sbyte> y0, Vector512<sbyte> y1, Vector512<sbyte> y2, Vector512<sbyte> y3,
        Vector512<byte> m4, Vector512<byte> c0, Vector512<byte> c1, Vector512<byte> c2, Vector512<byte> c3)
    {
        PackedPlanes(q, h, odd, sc, pf, m4, c0, c1, c2, c3, out var n0, out var n1, out var n2, out var n3, out var s0, out var s1, out var s2, out var s3);
        return PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, y0, y1, y2, y3);
    }

    /// <summary>The same for two tokens, the weight side once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PackedRow2(byte* q, byte* h, bool odd, byte* sc, byte* pf, sbyte* y0, sbyte* y1,
        Vector512<byte> m4, Vector512<byte> c0, Vector512<byte> c1, Vector512<byte> c2, Vector512<byte> c3,
        out Vector256<int> t0, out Vector256<int> t1)
    {
        PackedPlanes(q, h, odd, sc, pf, m4, c0, c1, c2, c3, out var n0, out var n1, out var n2, out var n3, out var s0, out var s1, out var s2, out var s3);
        t0 = PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, Vector512.Load(y0), Vector512.Load(y0 + 64), Vector512.Load(y0 + 128), Vector512.Load(y0 + 192));
        t1 = PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, Vector512.Load(y1), Vector512.Load(y1 + 64), Vector512.Load(y1 + 128), Vector512.Load(y1 + 192));
    }

    /// <summary>The same for four tokens, token t's sums to <paramref name="sums"/>[8t].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PackedRow4(byte* q, byte* h, bool odd, byte* sc, byte* pf, sbyte* y0, sbyte* y1, sbyte* y2, sbyte* y3,
        Vector512<byte> m4, Vector512<byte> c0, Vector512<byte> c1, Vector512<byte> c2, Vector512<byte> c3, Vector256<int>* sums)
    {
        PackedPlanes(q, h, odd, sc, pf, m4, c0, c1, c2, c3, out var n0, out var n1, out var n2, out var n3, out var s0, out var s1, out var s2, out var s3);
        sums[0] = PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, Vector512.Load(y0), Vector512.Load(y0 + 64), Vector512.Load(y0 + 128), Vector512.Load(y0 + 192));
        sums[PackRows] = PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, Vector512.Load(y1), Vector512.Load(y1 + 64), Vector512.Load(y1 + 128), Vector512.Load(y1 + 192));
        sums[2 * PackRows] = PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, Vector512.Load(y2), Vector512.Load(y2 + 64), Vector512.Load(y2 + 128), Vector512.Load(y2 + 192));
        sums[3 * PackRows] = PackedToken(n0, n1, n2, n3, s0, s1, s2, s3, Vector512.Load(y3), Vector512.Load(y3 + 64), Vector512.Load(y3 + 128), Vector512.Load(y3 + 192));
    }

    /// <summary>
    /// A row's weight side of a block: the four planes of 5-bit values (plane p = weights 64p..64p+63) and their int16
    /// sub-block scale vectors. <paramref name="h"/> is the line of the row pair's fifth bits, the row's 32 bytes its low
    /// half (<paramref name="odd"/> false) or its high half; a constant at every call, so one vshufi64x2 is emitted.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PackedPlanes(byte* q, byte* h, bool odd, byte* sc, byte* pf, Vector512<byte> m4,
        Vector512<byte> c0, Vector512<byte> c1, Vector512<byte> c2, Vector512<byte> c3,
        out Vector512<byte> n0, out Vector512<byte> n1, out Vector512<byte> n2, out Vector512<byte> n3,
        out Vector512<short> s0, out Vector512<short> s1, out Vector512<short> s2, out Vector512<short> s3)
    {
        Sse.Prefetch0(pf);
        Sse.Prefetch0(pf + 64);
        Vector512<byte> s = Vector512.Create(Unsafe.ReadUnaligned<ulong>(sc)).AsByte();
        Vector512<byte> l0 = Vector512.Load(q), l1 = Vector512.Load(q + 64);
        Vector512<ulong> pair = Vector512.Load((ulong*)h);
        Vector512<byte> hb = (odd ? Avx512F.Shuffle4x128(pair, pair, 0xEE) : Avx512F.Shuffle4x128(pair, pair, 0x44)).AsByte();
        // vpternlogd 0xEA: (a & b) | c.
        n0 = Avx512F.TernaryLogic(l0, m4, Gfni.V512.GaloisFieldAffineTransform(hb, FifthBitMatrix(0), 0), 0xEA);
        n1 = Avx512F.TernaryLogic((l0.AsUInt16() >>> 4).AsByte(), m4, Gfni.V512.GaloisFieldAffineTransform(hb, FifthBitMatrix(1), 0), 0xEA);
        n2 = Avx512F.TernaryLogic(l1, m4, Gfni.V512.GaloisFieldAffineTransform(hb, FifthBitMatrix(2), 0), 0xEA);
        n3 = Avx512F.TernaryLogic((l1.AsUInt16() >>> 4).AsByte(), m4, Gfni.V512.GaloisFieldAffineTransform(hb, FifthBitMatrix(3), 0), 0xEA);
        s0 = Avx512BW.Shuffle(s, c0).AsInt16();
        s1 = Avx512BW.Shuffle(s, c1).AsInt16();
        s2 = Avx512BW.Shuffle(s, c2).AsInt16();
        s3 = Avx512BW.Shuffle(s, c3).AsInt16();
    }

    /// <summary>One token's share of a row's block: Σ_p vpmaddwd(vpmaddubsw(plane p, y_p), scales p) folded to eight lanes (pair sums ≤ 2·31·128).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PackedToken(Vector512<byte> n0, Vector512<byte> n1, Vector512<byte> n2, Vector512<byte> n3,
        Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3,
        Vector512<sbyte> y0, Vector512<sbyte> y1, Vector512<sbyte> y2, Vector512<sbyte> y3)
    {
        Vector512<int> sum = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n0, y0), s0)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n1, y1), s1)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n2, y2), s2)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n3, y3), s3);
        return sum.GetLower() + sum.GetUpper();
    }

    /// <summary>The eight rows' d (lower half, row r in lane r) and dmin (upper half) of a block header as floats: one fp16 conversion.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PackedDAndDmin(byte* meta) =>
        Fp16.ToFloat(Avx512F.ConvertToVector512Int32(Vector256.Load((ushort*)meta)).AsUInt32());

    /// <summary>The vphaddd tree over eight rows' eight-lane sums at <paramref name="s"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PackedTree(Vector256<int>* s) => DotQ4_K.RowSums(
        Avx2.HorizontalAdd(Avx2.HorizontalAdd(s[0], s[1]), Avx2.HorizontalAdd(s[2], s[3])),
        Avx2.HorizontalAdd(Avx2.HorizontalAdd(s[4], s[5]), Avx2.HorizontalAdd(s[6], s[7])));

    /// <summary>
    /// Software prefetch of the copy, <see cref="WeightPrefetch.Distance"/> bytes ahead: block b of a group is about
    /// (160 + 1280)·b bytes into it. Each row step asks for two lines at the returned pointer + 128·r and the block for
    /// seven more at + 1024, so the 23 lines cover the block's 1440 bytes of stream; past the end of the copy is harmless.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* PackedPrefetch(byte* g, int b)
    {
        byte* pf = g + WeightPrefetch.Distance + (long)b * (MetaBytes + PackedQsBytes);
        Sse.Prefetch0(pf + 1024);
        Sse.Prefetch0(pf + 1088);
        Sse.Prefetch0(pf + 1152);
        Sse.Prefetch0(pf + 1216);
        Sse.Prefetch0(pf + 1280);
        Sse.Prefetch0(pf + 1344);
        Sse.Prefetch0(pf + 1408);
        return pf;
    }

    /// <summary>
    /// vgf2p8affineqb matrix moving plane p's fifth bit to bit 4 (all other bits 0): bit 2p of the byte in the low four
    /// qwords (the plane's weights 64p..64p+31), bit 2p + 1 in the high four (weights 64p+32..64p+63).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> FifthBitMatrix(int p)
    {
        ulong lo = (1UL << (2 * p)) << (8 * (7 - 4)), hi = (1UL << (2 * p + 1)) << (8 * (7 - 4));
        return Vector512.Create(lo, lo, lo, lo, hi, hi, hi, hi).AsByte();
    }
}
