using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Two and four tokens · one repacked Q4_K group (<see cref="Repack"/>), AVX-512: the server's multi-sequence decode
/// step and a speculative verify read each group once for all their tokens. Per row the weight side of
/// <see cref="PackedLoop512"/> (the broadcast scale bytes, the two 64-byte lines split into four nibble planes, the four
/// sub-block scale lanes) and per block the header's d and dmin (one fp16 conversion of their sixteen halves) are done
/// once and applied to every token; each token then costs the same four vpmaddubsw, four vpmaddwd and fold as in the
/// one-token loop, the same vphaddd tree and the same block step (<see cref="GroupToken"/>). The int32 sums are exact, so token t gets the same bits as
/// <see cref="PackedLoop512"/> alone on it.
/// </summary>
public static unsafe partial class DotQ4_K
{
    /// <summary>
    /// One repacked group · tokens t = 0..1 at <paramref name="xq"/> + t·<paramref name="xqStride"/> (Q8_K rows), AVX-512:
    /// row r of token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r] (tests, benchmarks).
    /// </summary>
    public static void PackedDot2Avx512(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        PackedLoop512x2(group, xq, xqStride, nb, dst, dstStride);
    }

    /// <summary>The same for four tokens t = 0..3.</summary>
    public static void PackedDot4Avx512(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        PackedLoop512x4(group, xq, xqStride, nb, dst, dstStride);
    }

    /// <summary>The two-token loop without the checks (the matmul driver).</summary>
    internal static void PackedKernel512x2(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride) =>
        PackedLoop512x2(group, xq, xqStride, n / BlockSize, dst, dstStride);

    /// <summary>The four-token loop without the checks (the matmul driver).</summary>
    internal static void PackedKernel512x4(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride) =>
        PackedLoop512x4(group, xq, xqStride, n / BlockSize, dst, dstStride);

    private static void PackedLoop512x4(byte* g, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        Vector512<byte> c0 = PlaneScales512(0, 1), c1 = PlaneScales512(2, 3), c2 = PlaneScales512(4, 5), c3 = PlaneScales512(6, 7);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector256<float> min0 = Vector256<float>.Zero, min1 = min0, min2 = min0, min3 = min0;
        byte* meta = g;
        byte* qs = g + (PackedGroupBytes(nb * BlockSize) - (long)nb * PackedQsBytes);
        for (int b = 0; b < nb; b++, meta += MetaBytes, qs += PackedQsBytes)
        {
            byte* yb0 = xq + (long)b * ActivationQuant.Q8_KBlockBytes, yb1 = yb0 + xqStride, yb2 = yb1 + xqStride, yb3 = yb2 + xqStride;
            const int Qs = ActivationQuant.Q8_KQsOffset;
            sbyte* y0 = (sbyte*)(yb0 + Qs), y1 = (sbyte*)(yb1 + Qs), y2 = (sbyte*)(yb2 + Qs), y3 = (sbyte*)(yb3 + Qs);
            byte* sc = meta + MetaScales;
            byte* pf = PrefetchBlock(g, b);
            // Rows 0..3: two rows at a time, each pair folded by the first vphaddd level per token.
            Row512x4(qs, sc, pf, y0, y1, y2, y3, m4, c0, c1, c2, c3, out var a0, out var a1, out var a2, out var a3);
            Row512x4(qs + 128, sc + 8, pf + 128, y0, y1, y2, y3, m4, c0, c1, c2, c3, out var b0, out var b1, out var b2, out var b3);
            Vector256<int> p0 = Avx2.HorizontalAdd(a0, b0), p1 = Avx2.HorizontalAdd(a1, b1), p2 = Avx2.HorizontalAdd(a2, b2), p3 = Avx2.HorizontalAdd(a3, b3);
            Row512x4(qs + 256, sc + 16, pf + 256, y0, y1, y2, y3, m4, c0, c1, c2, c3, out a0, out a1, out a2, out a3);
            Row512x4(qs + 384, sc + 24, pf + 384, y0, y1, y2, y3, m4, c0, c1, c2, c3, out b0, out b1, out b2, out b3);
            Vector256<int> lo0 = Avx2.HorizontalAdd(p0, Avx2.HorizontalAdd(a0, b0)), lo1 = Avx2.HorizontalAdd(p1, Avx2.HorizontalAdd(a1, b1));
            Vector256<int> lo2 = Avx2.HorizontalAdd(p2, Avx2.HorizontalAdd(a2, b2)), lo3 = Avx2.HorizontalAdd(p3, Avx2.HorizontalAdd(a3, b3));
            Row512x4(qs + 512, sc + 32, pf + 512, y0, y1, y2, y3, m4, c0, c1, c2, c3, out a0, out a1, out a2, out a3);
            Row512x4(qs + 640, sc + 40, pf + 640, y0, y1, y2, y3, m4, c0, c1, c2, c3, out b0, out b1, out b2, out b3);
            p0 = Avx2.HorizontalAdd(a0, b0); p1 = Avx2.HorizontalAdd(a1, b1); p2 = Avx2.HorizontalAdd(a2, b2); p3 = Avx2.HorizontalAdd(a3, b3);
            Row512x4(qs + 768, sc + 48, pf + 768, y0, y1, y2, y3, m4, c0, c1, c2, c3, out a0, out a1, out a2, out a3);
            Row512x4(qs + 896, sc + 56, pf + 896, y0, y1, y2, y3, m4, c0, c1, c2, c3, out b0, out b1, out b2, out b3);
            Vector512<float> dd = Fp16.ToFloat(Avx512F.ConvertToVector512Int32(Vector256.Load((ushort*)meta)).AsUInt32());
            Vector256<float> d = dd.GetLower(), dmin = dd.GetUpper();
            GroupToken(ref acc0, ref min0, RowSums(lo0, Avx2.HorizontalAdd(p0, Avx2.HorizontalAdd(a0, b0))), meta, yb0, d, dmin);
            GroupToken(ref acc1, ref min1, RowSums(lo1, Avx2.HorizontalAdd(p1, Avx2.HorizontalAdd(a1, b1))), meta, yb1, d, dmin);
            GroupToken(ref acc2, ref min2, RowSums(lo2, Avx2.HorizontalAdd(p2, Avx2.HorizontalAdd(a2, b2))), meta, yb2, d, dmin);
            GroupToken(ref acc3, ref min3, RowSums(lo3, Avx2.HorizontalAdd(p3, Avx2.HorizontalAdd(a3, b3))), meta, yb3, d, dmin);
        }
        (acc0 - min0).Store(dst);
        (acc1 - min1).Store(dst + dstStride);
        (acc2 - min2).Store(dst + 2 * dstStride);
        (acc3 - min3).Store(dst + 3 * dstStride);
    }

    private static void PackedLoop512x2(byte* g, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        Vector512<byte> c0 = PlaneScales512(0, 1), c1 = PlaneScales512(2, 3), c2 = PlaneScales512(4, 5), c3 = PlaneScales512(6, 7);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, min0 = acc0, min1 = acc0;
        byte* meta = g;
        byte* qs = g + (PackedGroupBytes(nb * BlockSize) - (long)nb * PackedQsBytes);
        for (int b = 0; b < nb; b++, meta += MetaBytes, qs += PackedQsBytes)
        {
            byte* yb0 = xq + (long)b * ActivationQuant.Q8_KBlockBytes, yb1 = yb0 + xqStride;
            sbyte* y0 = (sbyte*)(yb0 + ActivationQuant.Q8_KQsOffset), y1 = (sbyte*)(yb1 + ActivationQuant.Q8_KQsOffset);
            byte* sc = meta + MetaScales;
            byte* pf = PrefetchBlock(g, b);
            Row512x2(qs, sc, pf, y0, y1, m4, c0, c1, c2, c3, out var a0, out var a1);
            Row512x2(qs + 128, sc + 8, pf + 128, y0, y1, m4, c0, c1, c2, c3, out var b0, out var b1);
            Vector256<int> p0 = Avx2.HorizontalAdd(a0, b0), p1 = Avx2.HorizontalAdd(a1, b1);
            Row512x2(qs + 256, sc + 16, pf + 256, y0, y1, m4, c0, c1, c2, c3, out a0, out a1);
            Row512x2(qs + 384, sc + 24, pf + 384, y0, y1, m4, c0, c1, c2, c3, out b0, out b1);
            Vector256<int> lo0 = Avx2.HorizontalAdd(p0, Avx2.HorizontalAdd(a0, b0)), lo1 = Avx2.HorizontalAdd(p1, Avx2.HorizontalAdd(a1, b1));
            Row512x2(qs + 512, sc + 32, pf + 512, y0, y1, m4, c0, c1, c2, c3, out a0, out a1);
            Row512x2(qs + 640, sc + 40, pf + 640, y0, y1, m4, c0, c1, c2, c3, out b0, out b1);
            p0 = Avx2.HorizontalAdd(a0, b0); p1 = Avx2.HorizontalAdd(a1, b1);
            Row512x2(qs + 768, sc + 48, pf + 768, y0, y1, m4, c0, c1, c2, c3, out a0, out a1);
            Row512x2(qs + 896, sc + 56, pf + 896, y0, y1, m4, c0, c1, c2, c3, out b0, out b1);
            Vector512<float> dd = Fp16.ToFloat(Avx512F.ConvertToVector512Int32(Vector256.Load((ushort*)meta)).AsUInt32());
            Vector256<float> d = dd.GetLower(), dmin = dd.GetUpper();
            GroupToken(ref acc0, ref min0, RowSums(lo0, Avx2.HorizontalAdd(p0, Avx2.HorizontalAdd(a0, b0))), meta, yb0, d, dmin);
            GroupToken(ref acc1, ref min1, RowSums(lo1, Avx2.HorizontalAdd(p1, Avx2.HorizontalAdd(a1, b1))), meta, yb1, d, dmin);
        }
        (acc0 - min0).Store(dst);
        (acc1 - min1).Store(dst + dstStride);
    }

    /// <summary>One row's block split into its nibble planes and scale lanes once, then dotted with four tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row512x4(byte* q, byte* sc, byte* pf, sbyte* y0, sbyte* y1, sbyte* y2, sbyte* y3,
        Vector512<byte> m4, Vector512<byte> c0, Vector512<byte> c1, Vector512<byte> c2, Vector512<byte> c3,
        out Vector256<int> t0, out Vector256<int> t1, out Vector256<int> t2, out Vector256<int> t3)
    {
        RowPlanes(q, sc, pf, m4, c0, c1, c2, c3, out var n0, out var n1, out var n2, out var n3, out var s0, out var s1, out var s2, out var s3);
        t0 = RowToken(n0, n1, n2, n3, s0, s1, s2, s3, y0);
        t1 = RowToken(n0, n1, n2, n3, s0, s1, s2, s3, y1);
        t2 = RowToken(n0, n1, n2, n3, s0, s1, s2, s3, y2);
        t3 = RowToken(n0, n1, n2, n3, s0, s1, s2, s3, y3);
    }

    /// <summary>The same with two tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row512x2(byte* q, byte* sc, byte* pf, sbyte* y0, sbyte* y1,
        Vector512<byte> m4, Vector512<byte> c0, Vector512<byte> c1, Vector512<byte> c2, Vector512<byte> c3,
        out Vector256<int> t0, out Vector256<int> t1)
    {
        RowPlanes(q, sc, pf, m4, c0, c1, c2, c3, out var n0, out var n1, out var n2, out var n3, out var s0, out var s1, out var s2, out var s3);
        t0 = RowToken(n0, n1, n2, n3, s0, s1, s2, s3, y0);
        t1 = RowToken(n0, n1, n2, n3, s0, s1, s2, s3, y1);
    }

    /// <summary>A row's weight side of a block (<see cref="Row512"/>'s): four nibble planes and their int16 scale lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowPlanes(byte* q, byte* sc, byte* pf, Vector512<byte> m4,
        Vector512<byte> c0, Vector512<byte> c1, Vector512<byte> c2, Vector512<byte> c3,
        out Vector512<byte> n0, out Vector512<byte> n1, out Vector512<byte> n2, out Vector512<byte> n3,
        out Vector512<short> s0, out Vector512<short> s1, out Vector512<short> s2, out Vector512<short> s3)
    {
        Sse.Prefetch0(pf);
        Sse.Prefetch0(pf + 64);
        Vector512<byte> s = Vector512.Create(Unsafe.ReadUnaligned<ulong>(sc)).AsByte();
        Vector512<byte> l0 = Vector512.Load(q), l1 = Vector512.Load(q + 64);
        n0 = l0 & m4;
        n1 = (l0.AsUInt16() >>> 4).AsByte() & m4;
        n2 = l1 & m4;
        n3 = (l1.AsUInt16() >>> 4).AsByte() & m4;
        s0 = Avx512BW.Shuffle(s, c0).AsInt16();
        s1 = Avx512BW.Shuffle(s, c1).AsInt16();
        s2 = Avx512BW.Shuffle(s, c2).AsInt16();
        s3 = Avx512BW.Shuffle(s, c3).AsInt16();
    }

    /// <summary>One token's share of a row's block: eight int32 partial sums whose total is Σ_j sc_j·Σ q4·q8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> RowToken(Vector512<byte> n0, Vector512<byte> n1, Vector512<byte> n2, Vector512<byte> n3,
        Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3, sbyte* y)
    {
        Vector512<int> sum = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n0, Vector512.Load(y)), s0)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n1, Vector512.Load(y + 64)), s1)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n2, Vector512.Load(y + 128)), s2)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n3, Vector512.Load(y + 192)), s3);
        return sum.GetLower() + sum.GetUpper();
    }
}
