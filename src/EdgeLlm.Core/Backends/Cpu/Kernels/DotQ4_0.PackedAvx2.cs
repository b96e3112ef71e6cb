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
/// two vpmaddwd (with AVX-VNNI eight vpdpbusd in two chains of four), one vphaddd, int → float and two FMAs:
/// (d_x·isum − c)·d_w, c = d_x·8·Σy of the <see cref="Q8_0Panel"/> (the −8 of Q4_0). The integer block sums are
/// exact and every token's float steps run in the same order whether it is alone, in a pair or in a four- or
/// eight-token tile (<see cref="PackedAvx2Steps{TN, TVnni, TS}"/>), so a token gets the same bits in a batch of any size.
/// A batch of more than four tokens converts each row tile's fp16 scales once into a float panel
/// (<see cref="ScalePanelAvx2"/>, the same conversion) and runs eight tokens a pass while eight are left: the
/// per-block conversion and the weight side (four loads, the nibble split) are then shared by more tokens (one core,
/// 1024 × 2048, 64 tokens, weights in cache, JIT with 16 ymm as in the x86-64-v3 image, loaded VM, min of 7:
/// VNNI off 2.87 → 1.83 ms, with the token loop's spills also cut; VNNI on 2.02 → 1.70 ms).
/// </summary>
public static unsafe partial class DotQ4_0
{
    /// <summary>Bytes of one block of a group in the AVX2 layout: eight fp16 scales and eight rows' 16 quant bytes, what the eight stored blocks take.</summary>
    public const int PackedBlockBytesAvx2 = PackRows * 2 + PackRows * 16;

    /// <summary>Bytes the AVX2 repacked copy (<see cref="RepackAvx2"/>) of the first rows / 8 · 8 rows of <paramref name="n"/> values takes: the stored bytes of those rows.</summary>
    public static long PackedBytesAvx2(long rows, int n) => rows / PackRows * (long)Blocks(n) * PackedBlockBytesAvx2;

    /// <summary>Blocks per step of the AVX2 layout: their 32 fp16 scales fill one 64-byte line.</summary>
    private const int ScaleRunBlocks = 4;

    /// <summary>Byte offset of row r's eight quant bytes in a 64-byte run of the AVX2 layout (slot order 0, 1, 4, 5, 2, 3, 6, 7; its own inverse).</summary>
    private static ReadOnlySpan<byte> Avx2Slot => [0, 8, 32, 40, 16, 24, 48, 56];

    /// <summary>
    /// Repacks the whole groups of eight rows of a Q4_0 matrix (<paramref name="rows"/> rows of <paramref name="n"/>
    /// values, <paramref name="rowBytes"/> apart) into the AVX2 layout (<paramref name="dst"/>, <see cref="PackedBytesAvx2"/> bytes):
    /// per group steps of up to <see cref="ScaleRunBlocks"/> blocks, k blocks' fp16 scales (block j's row r at 16·j + 2·r,
    /// the stored bits), then per block 128 bytes of quants (qs bytes 0..7 of the rows in the first 64, 8..15 in the
    /// second), row r's eight at <see cref="Avx2Slot"/>[r].
    /// </summary>
    public static void RepackAvx2(byte* src, long rowBytes, long rows, int n, byte* dst)
    {
        ReadOnlySpan<byte> slot = Avx2Slot;
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
                        Unsafe.WriteUnaligned(ps + 16 * j + 2 * r, Unsafe.ReadUnaligned<ushort>(blk));
                        Unsafe.CopyBlockUnaligned(pq + 128 * j + slot[r], blk + 2, 8);
                        Unsafe.CopyBlockUnaligned(pq + 128 * j + 64 + slot[r], blk + 10, 8);
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

    /// <summary>Bytes of one block of the AVX2 float scale panel (<see cref="ScalePanelAvx2"/>): the eight rows' scales.</summary>
    public const int ScalePanelBlockBytesAvx2 = PackRows * sizeof(float);

    /// <summary>
    /// The scale panel of one group of the AVX2 layout (<paramref name="nb"/> blocks): <see cref="ScalePanelBlockBytesAvx2"/>
    /// per block into <paramref name="dst"/>, block b's row r scale (fp16 → float by <see cref="Fp16.ToFloat(Vector256{uint})"/>,
    /// exact, the conversion the kernels make per block themselves) at dst[8·b + r]: the lane order of the vphaddd fold.
    /// </summary>
    public static void ScalePanelAvx2(byte* group, int nb, float* dst)
    {
        Require(Rung.Avx2);
        ScalePanelAvx2Steps(group, nb, dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ScalePanelAvx2Steps(byte* group, int nb, float* dst)
    {
        byte* ps = group;
        for (int b0 = 0; b0 < nb; b0 += ScaleRunBlocks)
        {
            int k = nb - b0 >= ScaleRunBlocks ? ScaleRunBlocks : nb - b0;
            for (int j = 0; j < k; j++)
                Fp16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)(ps + 16 * j)).AsUInt32()).Store(dst + PackRows * (b0 + j));
            ps += k * (long)PackedBlockBytesAvx2;
        }
    }

    /// <summary>
    /// <see cref="PackedDot4Avx2"/> with the group's scales from its panel (<paramref name="scales"/>, made by
    /// <see cref="ScalePanelAvx2"/>), the weight lines prefetched ahead when <paramref name="prefetch"/>: the same bits.
    /// </summary>
    public static void PackedDot4ScaledAvx2(byte* group, float* scales, byte* panel, long panelBytes, int n, float* dst, long dstStride, bool prefetch, bool vnni)
    {
        int nb = Blocks(n);
        RequireAvx2(vnni);
        if (vnni) PackedAvx2Steps<Tokens4, VnniOn, ScalesPanel>(group, scales, panel, panelBytes, nb, dst, dstStride, prefetch);
        else PackedAvx2Steps<Tokens4, VnniOff, ScalesPanel>(group, scales, panel, panelBytes, nb, dst, dstStride, prefetch);
    }

    /// <summary>
    /// Eight tokens (panels <paramref name="panelBytes"/> apart) · one group with its scales from its panel: each block's
    /// weight side once for eight tokens; each token's sums formed as in <see cref="PackedDot1Avx2"/> (the same bits).
    /// </summary>
    public static void PackedDot8ScaledAvx2(byte* group, float* scales, byte* panel, long panelBytes, int n, float* dst, long dstStride, bool prefetch, bool vnni)
    {
        int nb = Blocks(n);
        RequireAvx2(vnni);
        if (vnni) PackedAvx2Steps<Tokens8, VnniOn, ScalesPanel>(group, scales, panel, panelBytes, nb, dst, dstStride, prefetch);
        else PackedAvx2Steps<Tokens8, VnniOff, ScalesPanel>(group, scales, panel, panelBytes, nb, dst, dstStride, prefetch);
    }

    /// <summary>The GEMM over a group of the AVX2 layout, the scales converted per block (decode, and batches of up to four tokens).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PackedAvx2<TN, TVnni>(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride)
        where TN : struct, ITokenCount where TVnni : struct, IIsaFlag =>
        PackedAvx2Steps<TN, TVnni, ScalesFp16>(group, null, panel, panelBytes, nb, dst, dstStride, true);

    /// <summary>
    /// The GEMM over a group of the AVX2 layout for <typeparamref name="TN"/> tokens (1, 2, 4 or 8), AVX-VNNI as
    /// <typeparamref name="TVnni"/> says: row r, token t to dst[t·dstStride + r]. The row scales are the group's fp16
    /// ones converted per block, or with <typeparamref name="TS"/> = <see cref="ScalesPanel"/> the same floats loaded from
    /// <paramref name="scales"/> (<see cref="ScalePanelAvx2"/>), the weight lines then prefetched only when
    /// <paramref name="prefetch"/> (the first pass over a tile that later passes find in cache).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PackedAvx2Steps<TN, TVnni, TS>(byte* group, float* scales, byte* panel, long panelBytes, int nb, float* dst, long dstStride, bool prefetch)
        where TN : struct, ITokenCount where TVnni : struct, IIsaFlag where TS : struct, IScaleSource
    {
        byte* y0 = panel, y1 = panel + panelBytes, y2 = panel + 2 * panelBytes, y3 = panel + 3 * panelBytes;
        byte* y4 = panel + 4 * panelBytes, y5 = panel + 5 * panelBytes, y6 = panel + 6 * panelBytes, y7 = panel + 7 * panelBytes;
        long sOff = nb * 32L, cOff = nb * 36L;
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
        Vector256<float> a4 = Vector256<float>.Zero, a5 = Vector256<float>.Zero, a6 = Vector256<float>.Zero, a7 = Vector256<float>.Zero;
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        byte* ps = group;
        for (int b0 = 0; b0 < nb; b0 += ScaleRunBlocks)
        {
            int k = nb - b0 >= ScaleRunBlocks ? ScaleRunBlocks : nb - b0;
            if (prefetch) Sse.Prefetch0(ps + WeightPrefetch.Distance);
            byte* pq = ps + 16 * k;
            for (int j = 0; j < k; j++, pq += 128)
            {
                if (prefetch)
                {
                    Sse.Prefetch0(pq + WeightPrefetch.Distance);
                    Sse.Prefetch0(pq + WeightPrefetch.Distance + 64);
                }
                Vector256<float> dw = TS.Panel
                    ? Vector256.Load(scales + PackRows * (b0 + j))
                    : Fp16.ToFloat(Avx2.ConvertToVector256Int32((ushort*)(ps + 16 * j)).AsUInt32());
                Vector256<byte> la = Vector256.Load(pq), lb = Vector256.Load(pq + 32);
                Vector256<byte> ha = Vector256.Load(pq + 64), hb = Vector256.Load(pq + 96);
                // Rows 0, 1, 4, 5 (A) and 2, 3, 6, 7 (B): weights 0..7, 8..15, 16..23, 24..31 of each row's block.
                Vector256<byte> a0w = la & m4, a1w = ha & m4, a2w = (la.AsUInt16() >>> 4).AsByte() & m4, a3w = (ha.AsUInt16() >>> 4).AsByte() & m4;
                Vector256<byte> b0w = lb & m4, b1w = hb & m4, b2w = (lb.AsUInt16() >>> 4).AsByte() & m4, b3w = (hb.AsUInt16() >>> 4).AsByte() & m4;
                long qo = 32L * (b0 + j), fo = 4L * (b0 + j);
                a0 = Avx2Token<TVnni>(a0, a0w, a1w, a2w, a3w, b0w, b1w, b2w, b3w, dw, y0 + qo, (float*)(y0 + sOff + fo), (float*)(y0 + cOff + fo));
                if (TN.Count >= 2)
                    a1 = Avx2Token<TVnni>(a1, a0w, a1w, a2w, a3w, b0w, b1w, b2w, b3w, dw, y1 + qo, (float*)(y1 + sOff + fo), (float*)(y1 + cOff + fo));
                if (TN.Count >= 4)
                {
                    a2 = Avx2Token<TVnni>(a2, a0w, a1w, a2w, a3w, b0w, b1w, b2w, b3w, dw, y2 + qo, (float*)(y2 + sOff + fo), (float*)(y2 + cOff + fo));
                    a3 = Avx2Token<TVnni>(a3, a0w, a1w, a2w, a3w, b0w, b1w, b2w, b3w, dw, y3 + qo, (float*)(y3 + sOff + fo), (float*)(y3 + cOff + fo));
                }
                if (TN.Count >= 8)
                {
                    a4 = Avx2Token<TVnni>(a4, a0w, a1w, a2w, a3w, b0w, b1w, b2w, b3w, dw, y4 + qo, (float*)(y4 + sOff + fo), (float*)(y4 + cOff + fo));
                    a5 = Avx2Token<TVnni>(a5, a0w, a1w, a2w, a3w, b0w, b1w, b2w, b3w, dw, y5 + qo, (float*)(y5 + sOff + fo), (float*)(y5 + cOff + fo));
                    a6 = Avx2Token<TVnni>(a6, a0w, a1w, a2w, a3w, b0w, b1w, b2w, b3w, dw, y6 + qo, (float*)(y6 + sOff + fo), (float*)(y6 + cOff + fo));
                    a7 = Avx2Token<TVnni>(a7, a0w, a1w, a2w, a3w, b0w, b1w, b2w, b3w, dw, y7 + qo, (float*)(y7 + sOff + fo), (float*)(y7 + cOff + fo));
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
        if (TN.Count >= 8)
        {
            a4.Store(dst + 4 * dstStride);
            a5.Store(dst + 5 * dstStride);
            a6.Store(dst + 6 * dstStride);
            a7.Store(dst + 7 * dstStride);
        }
    }

    /// <summary>
    /// acc + (d_x·isum − c)·d_w for the eight rows of a block, isum = Σ q·y per row: the A and B halves' two int32 lanes
    /// per row folded by one vphaddd into rows 0..7. Each broadcast qword of activations is used by the A and the B half
    /// right after its load and the two halves' sums are single chains, so with the eight weight vectors, the scales and
    /// four accumulators live a pass needs three more ymm, not six (the x86-64-v3 image has 16). d_x and c are broadcast
    /// from the panel (load-port broadcasts) and d_x·isum − c is one vfmsub: the bits of the vfmadd with −c.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Avx2Token<TVnni>(Vector256<float> acc, Vector256<byte> a0, Vector256<byte> a1, Vector256<byte> a2, Vector256<byte> a3,
        Vector256<byte> b0, Vector256<byte> b1, Vector256<byte> b2, Vector256<byte> b3, Vector256<float> dw, byte* y, float* dx, float* c)
        where TVnni : struct, IIsaFlag
    {
        Vector256<int> ia, ib;
        if (TVnni.Enabled)
        {
            Vector256<sbyte> yv = Vector256.Create(*(long*)y).AsSByte();
            ia = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, a0, yv);
            ib = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, b0, yv);
            yv = Vector256.Create(*(long*)(y + 8)).AsSByte();
            ia = AvxVnni.MultiplyWideningAndAdd(ia, a1, yv);
            ib = AvxVnni.MultiplyWideningAndAdd(ib, b1, yv);
            yv = Vector256.Create(*(long*)(y + 16)).AsSByte();
            ia = AvxVnni.MultiplyWideningAndAdd(ia, a2, yv);
            ib = AvxVnni.MultiplyWideningAndAdd(ib, b2, yv);
            yv = Vector256.Create(*(long*)(y + 24)).AsSByte();
            ia = AvxVnni.MultiplyWideningAndAdd(ia, a3, yv);
            ib = AvxVnni.MultiplyWideningAndAdd(ib, b3, yv);
        }
        else
        {
            Vector256<sbyte> yv = Vector256.Create(*(long*)y).AsSByte();
            Vector256<short> pa = Avx2.MultiplyAddAdjacent(a0, yv), pb = Avx2.MultiplyAddAdjacent(b0, yv);
            yv = Vector256.Create(*(long*)(y + 8)).AsSByte();
            pa += Avx2.MultiplyAddAdjacent(a1, yv);
            pb += Avx2.MultiplyAddAdjacent(b1, yv);
            yv = Vector256.Create(*(long*)(y + 16)).AsSByte();
            pa += Avx2.MultiplyAddAdjacent(a2, yv);
            pb += Avx2.MultiplyAddAdjacent(b2, yv);
            yv = Vector256.Create(*(long*)(y + 24)).AsSByte();
            pa += Avx2.MultiplyAddAdjacent(a3, yv);
            pb += Avx2.MultiplyAddAdjacent(b3, yv);
            Vector256<short> ones = Vector256.Create((short)1);
            ia = Avx2.MultiplyAddAdjacent(pa, ones);
            ib = Avx2.MultiplyAddAdjacent(pb, ones);
        }
        Vector256<int> isum = Avx2.HorizontalAdd(ia, ib);
        Vector256<float> s = Fma.MultiplySubtract(Avx.ConvertToVector256Single(isum), Avx.BroadcastScalarToVector256(dx), Avx.BroadcastScalarToVector256(c));
        return Fma.MultiplyAdd(s, dw, acc);
    }
}
