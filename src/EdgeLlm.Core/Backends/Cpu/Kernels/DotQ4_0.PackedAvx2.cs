using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q4_0 repacked at load for the AVX2 rung's GEMM and decode (<see cref="RepackAvx2"/>): the stored rows' bytes
/// (fp16 scales kept), so a decode streaming the copy reads no more than the one-row loops over the stored rows, which
/// the AVX2 decode ran before (each 18-byte block reduced horizontally per row and token). A group of eight rows is a
/// run of steps of up to four blocks: a step of k blocks takes 16·k bytes of fp16 scales (block j's eight rows at
/// 16·j, row r at + 2·r, the stored bits), then k times 128 bytes of quants: the first 64 bytes hold qs bytes 0..7 of
/// each row, the second 64 qs bytes 8..15, eight bytes per row in the slot order 0, 1, 4, 5, 2, 3, 6, 7. That order
/// makes one vphaddd of the two ymm of a 64-byte run (rows 0, 1, 4, 5 and rows 2, 3, 6, 7, two int32 lanes per row)
/// leave rows 0..7 in lanes 0..7, in the order of the scales: the eight row sums meet their scales without a shuffle.
/// Per block the weight side is done once for all tokens (four loads, the nibble split, eight scales widened exactly
/// by <see cref="Fp16.ToFloat(Vector256{uint})"/>, two prefetch lines); per token four broadcast activation qwords,
/// eight vpmaddubsw of the unsigned nibbles (≤ 3810 per int16, the sum of four ≤ 15240: no saturation), six vpaddw,
/// two vpmaddwd (with AVX-VNNI eight vpdpbusd in four chains of two), one vphaddd, int → float and two FMAs:
/// (d_x·isum − c)·d_w, c = d_x·8·Σy of the <see cref="Q8_0Panel"/> (the −8 of Q4_0). The integer block sums are
/// exact and every token's float steps run in the same order whether it is alone, in a pair or in a four-token tile
/// (<see cref="PackedAvx2{TN, TVnni}"/>), so a token gets the same bits in a batch of any size.
/// </summary>
public static unsafe partial class DotQ4_0
{
    /// <summary>Bytes of one block of a group in the AVX2 layout: eight fp16 scales and eight rows' 16 quant bytes, what the eight stored blocks take.</summary>
    public const int PackedBlockBytesAvx2 = PackRows * 2 + PackRows * 16;

    /// <summary>Bytes the AVX2 repacked copy (<see cref="RepackAvx2"/>) of the first rows / 8 · 8 rows of <paramref name="n"/> values takes: the stored bytes of those rows.</summary>
    public static long PackedBytesAvx2(long rows, int n) => rows / PackRows * (long)Blocks(n) * PackedBlockBytesAvx2;

    /// <summary>Byte offset of row r's eight quant bytes in a 64-byte run of the AVX2 layout (slot order 0, 1, 4, 5, 2, 3, 6, 7; its own inverse).</summary>
    private static ReadOnlySpan<byte> Avx2Slot => [0, 8, 32, 40, 16, 24, 48, 56];

    /// <summary>
    /// Repacks the whole groups of eight rows of a Q4_0 matrix (<paramref name="rows"/> rows of <paramref name="n"/>
    /// values, <paramref name="rowBytes"/> apart) into the AVX2 layout (<paramref name="dst"/>, <see cref="PackedBytesAvx2"/> bytes).
    /// </summary>
    public static void RepackAvx2(byte* src, long rowBytes, long rows, int n, byte* dst)
    {
        int nb = Blocks(n);
        for (long g = 0; g < rows / PackRows; g++)
        {
            byte* pg = dst + g * nb * (long)PackedBlockBytesAvx2;
            for (int b0 = 0; b0 < nb; b0 += ScaleRunBlocks)
            {
                int k = Math.Min(ScaleRunBlocks, nb - b0);
                byte* ps = pg + b0 * (long)PackedBlockBytesAvx2, pq = ps + 16 * k;
                for (int j = 0; j < k; j++)
                    for (int r = 0; r < PackRows; r++)
                    {
                        byte* blk = src + (g * PackRows + r) * rowBytes + (b0 + j) * (long)BlockBytes;
                        int slot = Avx2Slot[r];
                        Unsafe.WriteUnaligned(ps + 16 * j + 2 * r, Unsafe.ReadUnaligned<ushort>(blk));
                        Unsafe.CopyBlockUnaligned(pq + 128 * j + slot, blk + 2, 8);
                        Unsafe.CopyBlockUnaligned(pq + 128 * j + 64 + slot, blk + 10, 8);
                    }
            }
        }
    }

    /// <summary>One group of the AVX2 layout (eight rows) · four tokens' panels (<paramref name="panel"/> + t·<paramref name="panelBytes"/>): row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].</summary>
    public static void PackedDot4Avx2(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride, bool vnni)
    {
        int nb = Blocks(n);
        RequireAvx2(vnni);
        if (vnni) PackedAvx2<Tokens4, VnniOn>(group, panel, panelBytes, nb, dst, dstStride);
        else PackedAvx2<Tokens4, VnniOff>(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>One group of the AVX2 layout · two tokens' panels: row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].</summary>
    public static void PackedDot2Avx2(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride, bool vnni)
    {
        int nb = Blocks(n);
        RequireAvx2(vnni);
        if (vnni) PackedAvx2<Tokens2, VnniOn>(group, panel, panelBytes, nb, dst, dstStride);
        else PackedAvx2<Tokens2, VnniOff>(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>One group of the AVX2 layout · one token's panel: row r to <paramref name="dst"/>[r].</summary>
    public static void PackedDot1Avx2(byte* group, byte* panel, int n, float* dst, bool vnni)
    {
        int nb = Blocks(n);
        RequireAvx2(vnni);
        if (vnni) PackedAvx2<Tokens1, VnniOn>(group, panel, 0, nb, dst, 0);
        else PackedAvx2<Tokens1, VnniOff>(group, panel, 0, nb, dst, 0);
    }

    private static void RequireAvx2(bool vnni)
    {
        Require(Rung.Avx2);
        if (vnni && !AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_0), Rung.Avx2);
    }

    /// <summary>
    /// The GEMM over a group of the AVX2 layout for <typeparamref name="TN"/> tokens (1, 2 or 4), AVX-VNNI as
    /// <typeparamref name="TVnni"/> says: row r, token t to dst[t·dstStride + r].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PackedAvx2<TN, TVnni>(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride)
        where TN : struct, ITokenCount where TVnni : struct, IIsaFlag
    {
        byte* y0 = panel, y1 = panel + panelBytes, y2 = panel + 2 * panelBytes, y3 = panel + 3 * panelBytes;
        long sOff = nb * 32L, cOff = nb * 36L;
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        byte* ps = group;
        for (int b0 = 0; b0 < nb; b0 += ScaleRunBlocks)
        {
            int k = nb - b0 >= ScaleRunBlocks ? ScaleRunBlocks : nb - b0;
            Sse.Prefetch0(ps + WeightPrefetch.Distance);
            byte* pq = ps + 16 * k;
            for (int j = 0; j < k; j++, pq += 128)
            {
                Sse.Prefetch0(pq + WeightPrefetch.Distance);
                Sse.Prefetch0(pq + WeightPrefetch.Distance + 64);
                Vector256<float> dw = Fp16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)(ps + 16 * j)).AsUInt32());
                Vector256<byte> la = Vector256.Load(pq), lb = Vector256.Load(pq + 32);
                Vector256<byte> ha = Vector256.Load(pq + 64), hb = Vector256.Load(pq + 96);
                // Rows 0, 1, 4, 5 (A) and 2, 3, 6, 7 (B): weights 0..7, 8..15, 16..23, 24..31 of each row's block.
                Vector256<byte> a0w = la & m4, a1w = ha & m4, a2w = (la.AsUInt16() >>> 4).AsByte() & m4, a3w = (ha.AsUInt16() >>> 4).AsByte() & m4;
                Vector256<byte> b0w = lb & m4, b1w = hb & m4, b2w = (lb.AsUInt16() >>> 4).AsByte() & m4, b3w = (hb.AsUInt16() >>> 4).AsByte() & m4;
                long qo = 32L * (b0 + j), fo = 4L * (b0 + j);
                a0 = Avx2Token<TVnni>(a0, a0w, a1w, a2w, a3w, b0w, b1w, b2w, b3w, dw, y0 + qo, *(float*)(y0 + sOff + fo), *(float*)(y0 + cOff + fo));
                if (TN.Count >= 2)
                    a1 = Avx2Token<TVnni>(a1, a0w, a1w, a2w, a3w, b0w, b1w, b2w, b3w, dw, y1 + qo, *(float*)(y1 + sOff + fo), *(float*)(y1 + cOff + fo));
                if (TN.Count >= 4)
                {
                    a2 = Avx2Token<TVnni>(a2, a0w, a1w, a2w, a3w, b0w, b1w, b2w, b3w, dw, y2 + qo, *(float*)(y2 + sOff + fo), *(float*)(y2 + cOff + fo));
                    a3 = Avx2Token<TVnni>(a3, a0w, a1w, a2w, a3w, b0w, b1w, b2w, b3w, dw, y3 + qo, *(float*)(y3 + sOff + fo), *(float*)(y3 + cOff + fo));
                }
            }
            ps += k * (long)PackedBlockBytesAvx2;
        }
        a0.Store(dst);
        if (TN.Count >= 2) a1.Store(dst + dstStride);
        if (TN.Count >= 4)
        {
            a2.Store(dst + 2 * dstStride);
            a3.Store(dst + 3 * dstStride);
        }
    }

    /// <summary>
    /// acc + (d_x·isum − c)·d_w for the eight rows of a block, isum = Σ q·y per row: the A and B halves' two int32 lanes
    /// per row folded by one vphaddd into rows 0..7.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Avx2Token<TVnni>(Vector256<float> acc, Vector256<byte> a0, Vector256<byte> a1, Vector256<byte> a2, Vector256<byte> a3,
        Vector256<byte> b0, Vector256<byte> b1, Vector256<byte> b2, Vector256<byte> b3, Vector256<float> dw, byte* y, float dx, float c)
        where TVnni : struct, IIsaFlag
    {
        Vector256<sbyte> y0 = Vector256.Create(*(long*)y).AsSByte(), y1 = Vector256.Create(*(long*)(y + 8)).AsSByte();
        Vector256<sbyte> y2 = Vector256.Create(*(long*)(y + 16)).AsSByte(), y3 = Vector256.Create(*(long*)(y + 24)).AsSByte();
        Vector256<int> ia, ib;
        if (TVnni.Enabled)
        {
            ia = AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, a0, y0), a1, y1)
               + AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, a2, y2), a3, y3);
            ib = AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, b0, y0), b1, y1)
               + AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, b2, y2), b3, y3);
        }
        else
        {
            Vector256<short> ones = Vector256.Create((short)1);
            Vector256<short> pa = (Avx2.MultiplyAddAdjacent(a0, y0) + Avx2.MultiplyAddAdjacent(a1, y1))
                                + (Avx2.MultiplyAddAdjacent(a2, y2) + Avx2.MultiplyAddAdjacent(a3, y3));
            Vector256<short> pb = (Avx2.MultiplyAddAdjacent(b0, y0) + Avx2.MultiplyAddAdjacent(b1, y1))
                                + (Avx2.MultiplyAddAdjacent(b2, y2) + Avx2.MultiplyAddAdjacent(b3, y3));
            ia = Avx2.MultiplyAddAdjacent(pa, ones);
            ib = Avx2.MultiplyAddAdjacent(pb, ones);
        }
        Vector256<int> isum = Avx2.HorizontalAdd(ia, ib);
        Vector256<float> s = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(dx), Vector256.Create(-c));
        return Fma.MultiplyAdd(s, dw, acc);
    }
}
