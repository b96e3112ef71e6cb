using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Two and four tokens · one repacked Q4_K group (<see cref="Repack"/>), AVX2 with AVX-VNNI on or off: prefill, the
/// server's multi-sequence decode step and a speculative verify read each group once for all their tokens. Sixteen ymm
/// registers do not hold a row's four nibble-plane pairs and their eight scale lanes at once (the AVX-512 loops keep a
/// whole row), so a row is walked 32 quant bytes at a time as in <see cref="PackedLoop256{TVnni}"/>: per 32 bytes the
/// two nibble planes and their two sub-block scale lanes are made once (<see cref="HalfPlanes"/>) and applied to every
/// token (two vpmaddubsw with the activations as memory operands, then two vpdpwssd, or vpmaddwd and vpaddd, into the
/// token's int32 sums). Each row's per-token sums go to a small stack table, and at the block's end each token gets the
/// same vphaddd tree, d/dmin conversion (once per block for all tokens) and block step (<see cref="GroupToken"/>) as the
/// one-token loop. The int32 sums are exact (|vpmaddubsw| ≤ 3810, no saturation), so token t gets the bits of
/// <see cref="PackedLoop256{TVnni}"/> alone on it, whatever the batch: the copy can serve batch-invariant products.
/// </summary>
public static unsafe partial class DotQ4_K
{
    /// <summary>
    /// One repacked group · tokens t = 0..1 at <paramref name="xq"/> + t·<paramref name="xqStride"/> (Q8_K rows), AVX2:
    /// row r of token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r] (tests, benchmarks).
    /// </summary>
    public static void PackedDot2Avx2(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) { PackedLoop256x2<VnniOff>(group, xq, xqStride, nb, dst, dstStride); return; }
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_K), Rung.Avx2);
        PackedLoop256x2<VnniOn>(group, xq, xqStride, nb, dst, dstStride);
    }

    /// <summary>The same for four tokens t = 0..3.</summary>
    public static void PackedDot4Avx2(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) { PackedLoop256x4<VnniOff>(group, xq, xqStride, nb, dst, dstStride); return; }
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_K), Rung.Avx2);
        PackedLoop256x4<VnniOn>(group, xq, xqStride, nb, dst, dstStride);
    }

    /// <summary>The two-token loop without the checks (the matmul driver).</summary>
    internal static void PackedKernel256x2<TVnni>(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag => PackedLoop256x2<TVnni>(group, xq, xqStride, n / BlockSize, dst, dstStride);

    /// <summary>The four-token loop without the checks (the matmul driver).</summary>
    internal static void PackedKernel256x4<TVnni>(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag => PackedLoop256x4<TVnni>(group, xq, xqStride, n / BlockSize, dst, dstStride);

    private static void PackedLoop256x4<TVnni>(byte* g, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        // Row r's sums for token t at rs[8t + r].
        Vector256<int>* rs = stackalloc Vector256<int>[4 * PackRows];
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
            for (int r = 0; r < PackRows; r++)
                Row256x4<TVnni>(qs + 128 * r, sc + 8 * r, pf + 128 * r, y0, y1, y2, y3, rs + r);
            Vector256<float> d = Fp16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)meta).AsUInt32());
            Vector256<float> dmin = Fp16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)(meta + MetaDmin)).AsUInt32());
            GroupToken(ref acc0, ref min0, TableRowSums(rs), meta, yb0, d, dmin);
            GroupToken(ref acc1, ref min1, TableRowSums(rs + PackRows), meta, yb1, d, dmin);
            GroupToken(ref acc2, ref min2, TableRowSums(rs + 2 * PackRows), meta, yb2, d, dmin);
            GroupToken(ref acc3, ref min3, TableRowSums(rs + 3 * PackRows), meta, yb3, d, dmin);
        }
        (acc0 - min0).Store(dst);
        (acc1 - min1).Store(dst + dstStride);
        (acc2 - min2).Store(dst + 2 * dstStride);
        (acc3 - min3).Store(dst + 3 * dstStride);
    }

    private static void PackedLoop256x2<TVnni>(byte* g, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        Vector256<int>* rs = stackalloc Vector256<int>[2 * PackRows];
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, min0 = acc0, min1 = acc0;
        byte* meta = g;
        byte* qs = g + (PackedGroupBytes(nb * BlockSize) - (long)nb * PackedQsBytes);
        for (int b = 0; b < nb; b++, meta += MetaBytes, qs += PackedQsBytes)
        {
            byte* yb0 = xq + (long)b * ActivationQuant.Q8_KBlockBytes, yb1 = yb0 + xqStride;
            sbyte* y0 = (sbyte*)(yb0 + ActivationQuant.Q8_KQsOffset), y1 = (sbyte*)(yb1 + ActivationQuant.Q8_KQsOffset);
            byte* sc = meta + MetaScales;
            byte* pf = PrefetchBlock(g, b);
            for (int r = 0; r < PackRows; r++)
                Row256x2<TVnni>(qs + 128 * r, sc + 8 * r, pf + 128 * r, y0, y1, rs + r);
            Vector256<float> d = Fp16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)meta).AsUInt32());
            Vector256<float> dmin = Fp16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)(meta + MetaDmin)).AsUInt32());
            GroupToken(ref acc0, ref min0, TableRowSums(rs), meta, yb0, d, dmin);
            GroupToken(ref acc1, ref min1, TableRowSums(rs + PackRows), meta, yb1, d, dmin);
        }
        (acc0 - min0).Store(dst);
        (acc1 - min1).Store(dst + dstStride);
    }

    /// <summary>One row's block (128 quant bytes at <paramref name="q"/>) · four tokens: token t's eight int32 partial sums to <paramref name="o"/>[8t].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row256x4<TVnni>(byte* q, byte* sc, byte* pf, sbyte* y0, sbyte* y1, sbyte* y2, sbyte* y3, Vector256<int>* o)
        where TVnni : struct, IIsaFlag
    {
        Sse.Prefetch0(pf);
        Sse.Prefetch0(pf + 64);
        Vector256<byte> s = Vector256.Create(Unsafe.ReadUnaligned<ulong>(sc)).AsByte();
        // Half h of line k (32 bytes at 64k + 32h): sub-block 4k + h against activations at 128k + 32h, 4k + 2 + h at + 64.
        HalfPlanes(Vector256.Load(q), s, 0, out var lo, out var hi, out var sLo, out var sHi);
        Vector256<int> t0 = HalfToken<TVnni>(Vector256<int>.Zero, lo, hi, sLo, sHi, y0);
        Vector256<int> t1 = HalfToken<TVnni>(Vector256<int>.Zero, lo, hi, sLo, sHi, y1);
        Vector256<int> t2 = HalfToken<TVnni>(Vector256<int>.Zero, lo, hi, sLo, sHi, y2);
        Vector256<int> t3 = HalfToken<TVnni>(Vector256<int>.Zero, lo, hi, sLo, sHi, y3);
        HalfPlanes(Vector256.Load(q + 32), s, 1, out lo, out hi, out sLo, out sHi);
        t0 = HalfToken<TVnni>(t0, lo, hi, sLo, sHi, y0 + 32);
        t1 = HalfToken<TVnni>(t1, lo, hi, sLo, sHi, y1 + 32);
        t2 = HalfToken<TVnni>(t2, lo, hi, sLo, sHi, y2 + 32);
        t3 = HalfToken<TVnni>(t3, lo, hi, sLo, sHi, y3 + 32);
        HalfPlanes(Vector256.Load(q + 64), s, 4, out lo, out hi, out sLo, out sHi);
        t0 = HalfToken<TVnni>(t0, lo, hi, sLo, sHi, y0 + 128);
        t1 = HalfToken<TVnni>(t1, lo, hi, sLo, sHi, y1 + 128);
        t2 = HalfToken<TVnni>(t2, lo, hi, sLo, sHi, y2 + 128);
        t3 = HalfToken<TVnni>(t3, lo, hi, sLo, sHi, y3 + 128);
        HalfPlanes(Vector256.Load(q + 96), s, 5, out lo, out hi, out sLo, out sHi);
        o[0] = HalfToken<TVnni>(t0, lo, hi, sLo, sHi, y0 + 160);
        o[PackRows] = HalfToken<TVnni>(t1, lo, hi, sLo, sHi, y1 + 160);
        o[2 * PackRows] = HalfToken<TVnni>(t2, lo, hi, sLo, sHi, y2 + 160);
        o[3 * PackRows] = HalfToken<TVnni>(t3, lo, hi, sLo, sHi, y3 + 160);
    }

    /// <summary>The same with two tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row256x2<TVnni>(byte* q, byte* sc, byte* pf, sbyte* y0, sbyte* y1, Vector256<int>* o)
        where TVnni : struct, IIsaFlag
    {
        Sse.Prefetch0(pf);
        Sse.Prefetch0(pf + 64);
        Vector256<byte> s = Vector256.Create(Unsafe.ReadUnaligned<ulong>(sc)).AsByte();
        HalfPlanes(Vector256.Load(q), s, 0, out var lo, out var hi, out var sLo, out var sHi);
        Vector256<int> t0 = HalfToken<TVnni>(Vector256<int>.Zero, lo, hi, sLo, sHi, y0);
        Vector256<int> t1 = HalfToken<TVnni>(Vector256<int>.Zero, lo, hi, sLo, sHi, y1);
        HalfPlanes(Vector256.Load(q + 32), s, 1, out lo, out hi, out sLo, out sHi);
        t0 = HalfToken<TVnni>(t0, lo, hi, sLo, sHi, y0 + 32);
        t1 = HalfToken<TVnni>(t1, lo, hi, sLo, sHi, y1 + 32);
        HalfPlanes(Vector256.Load(q + 64), s, 4, out lo, out hi, out sLo, out sHi);
        t0 = HalfToken<TVnni>(t0, lo, hi, sLo, sHi, y0 + 128);
        t1 = HalfToken<TVnni>(t1, lo, hi, sLo, sHi, y1 + 128);
        HalfPlanes(Vector256.Load(q + 96), s, 5, out lo, out hi, out sLo, out sHi);
        o[0] = HalfToken<TVnni>(t0, lo, hi, sLo, sHi, y0 + 160);
        o[PackRows] = HalfToken<TVnni>(t1, lo, hi, sLo, sHi, y1 + 160);
    }

    /// <summary>
    /// 32 quant bytes of a row: the low-nibble plane (sub-block <paramref name="j"/>) and the high-nibble plane (sub-block
    /// j + 2), and those sub-blocks' scales widened to int16 lanes from the row's broadcast scale bytes <paramref name="s"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void HalfPlanes(Vector256<byte> v, Vector256<byte> s, int j,
        out Vector256<byte> lo, out Vector256<byte> hi, out Vector256<short> sLo, out Vector256<short> sHi)
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        lo = v & m4;
        hi = (v.AsUInt16() >>> 4).AsByte() & m4;
        sLo = Avx2.Shuffle(s, Vector256.Create((ushort)(0x8000 | j)).AsByte()).AsInt16();
        sHi = Avx2.Shuffle(s, Vector256.Create((ushort)(0x8000 | (j + 2))).AsByte()).AsInt16();
    }

    /// <summary>One token's share of 32 quant bytes: the low plane against y[0..32), the high plane against y[64..96), scaled and added to <paramref name="sum"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> HalfToken<TVnni>(Vector256<int> sum, Vector256<byte> lo, Vector256<byte> hi,
        Vector256<short> sLo, Vector256<short> sHi, sbyte* y) where TVnni : struct, IIsaFlag
    {
        Vector256<short> pLo = Avx2.MultiplyAddAdjacent(lo, Vector256.Load(y));
        Vector256<short> pHi = Avx2.MultiplyAddAdjacent(hi, Vector256.Load(y + 64));
        if (TVnni.Enabled) return AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(sum, pLo, sLo), pHi, sHi);
        return sum + Avx2.MultiplyAddAdjacent(pLo, sLo) + Avx2.MultiplyAddAdjacent(pHi, sHi);
    }

    /// <summary>Eight rows' partial sums (row r at <paramref name="rs"/>[r]) reduced to the row totals, row r in lane r.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> TableRowSums(Vector256<int>* rs) => RowSums(
        Avx2.HorizontalAdd(Avx2.HorizontalAdd(rs[0], rs[1]), Avx2.HorizontalAdd(rs[2], rs[3])),
        Avx2.HorizontalAdd(Avx2.HorizontalAdd(rs[4], rs[5]), Avx2.HorizontalAdd(rs[6], rs[7])));
}
