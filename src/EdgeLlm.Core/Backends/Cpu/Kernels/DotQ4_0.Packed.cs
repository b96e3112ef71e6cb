using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q4_0 weights repacked at load for the x64 GEMMs: eight rows interleaved per block, so one register holds the same
/// eight weights of eight rows and every vector lane pair belongs to one row: the products need no horizontal sums.
/// Two layouts of a group of eight rows (rows 8g .. 8g+7) share the quant bytes of a block: 64 bytes holding qs bytes
/// 0..7 of row 0, of row 1, … of row 7, then 64 bytes holding qs bytes 8..15 of the eight rows. The NEON layout
/// (<see cref="RepackNeon"/>) puts <c>f32 d[8]</c> (the rows' block scales, widened from fp16) before each block's
/// 128 bytes: 160 bytes per block, 11% more than Q4_0 (<see cref="PackedBlockBytes"/>). <see cref="RepackAvx512"/> (this file's
/// kernels) keeps the fp16 scales, four blocks' worth in one 64-byte line before their quants: 144 bytes per block,
/// what the stored rows take, so a decode streaming the copy reads no more bytes than the one-row loops.
/// With the Q4_0 nibble order (byte j holds weight j in its low nibble and weight j + 16 in its high one) the low
/// nibbles of the first 64 bytes meet activations 0..7, the high ones 16..23; of the second 8..15 and 24..31, each
/// eight activations one broadcast qword of the <see cref="Q8_0Panel"/>. Per block and token: four vpmaddubsw (the
/// unsigned nibbles × the activations, ≤ 3840 per int16, the sum of four ≤ 15360: no saturation) and three vpaddw; per
/// pair of blocks and token the two blocks' sums side by side, one vpmaddwd, int → float and (d_x·isum − c) · d_w in two
/// FMAs (c = d_x·8·Σy, the −8 of Q4_0; <see cref="PackedSteps{TN, TS}"/>); the weight side (two loads, the nibble split,
/// the scales) once per block for all tokens. Every
/// step prefetches the group's bytes <see cref="WeightPrefetch.Distance"/> ahead, as the one-row loops do: with the
/// hardware prefetcher alone a core streamed the repacked rows from DRAM ~30% slower than the one-row loops stream
/// the stored ones. With the prefetch, the fp16 layout and the copy on 2 MiB pages (<see cref="PackedArena"/>),
/// <see cref="Packed1"/> is the AVX-512 decode kernel (<see cref="CpuKernelRow.PackedOneToken"/>): about half the panel
/// loop's vector work per weight byte (1-core microbenchmark, 2048-wide rows: 28.5 against 15.4 GB of weights per
/// CPU-second from L2), and from DRAM 13.4 against 12.9 GB per CPU-second where a plain read of the same bytes streams
/// 15.6 (medians of 10 on the loaded 2-vCPU Zen 5 VM): the panel loop is compute-bound at about the DRAM rate, the
/// copy's loop leaves the core idle part of the time while lines arrive.
/// </summary>
public static unsafe partial class DotQ4_0
{
    /// <summary>Rows per repacked group.</summary>
    public const int PackRows = 8;

    /// <summary>Bytes of one block of a repacked group: eight float scales and eight rows' 16 quant bytes.</summary>
    public const int PackedBlockBytes = 32 + PackRows * 16;

    /// <summary>Whether this process runs the repacked GEMM (the AVX-512 rung; AVX2 in <c>DotQ4_0.PackedAvx2.cs</c>, NEON in <c>DotQ4_0.PackedNeon.cs</c>).</summary>
    public static bool PackedAccelerated => KernelRung.Selected is Rung.Avx512 or Rung.Avx2 or Rung.Neon;

    /// <summary>Bytes the repacked copy of the first rows / 8 · 8 rows of <paramref name="n"/> values takes.</summary>
    public static long PackedBytes(long rows, int n) => rows / PackRows * (long)Blocks(n) * PackedBlockBytes;

    /// <summary>Bytes of one block of a group in the AVX-512 layout (<see cref="RepackAvx512"/>): eight fp16 scales and eight rows' 16 quant bytes, what the eight stored blocks take.</summary>
    public const int PackedBlockBytesAvx512 = PackRows * 2 + PackRows * 16;

    /// <summary>Blocks per step of the AVX-512 layout: their 32 fp16 scales fill one 64-byte line.</summary>
    private const int ScaleRunBlocks = 4;

    /// <summary>Bytes the AVX-512 repacked copy (<see cref="RepackAvx512"/>) of the first rows / 8 · 8 rows of <paramref name="n"/> values takes: the stored bytes of those rows.</summary>
    public static long PackedBytesAvx512(long rows, int n) => rows / PackRows * (long)Blocks(n) * PackedBlockBytesAvx512;

    /// <summary>
    /// Repacks the whole groups of eight rows of a Q4_0 matrix into the AVX-512 layout (<paramref name="dst"/>,
    /// <see cref="PackedBytesAvx512"/> bytes). A group is a run of steps of four blocks (the last step has nb mod 4
    /// blocks when that is not zero): k ≤ 4 blocks take 16·k bytes of fp16 scales (block j's eight rows at 16·j, row r at
    /// + 2·r, the stored bits), then k times 128 bytes of quants (qs bytes 0..7 of rows
    /// 0..7, then qs bytes 8..15). A whole step is 576 bytes, nine cache lines, and the copy takes the stored rows'
    /// bytes: a decode that streams it reads no more than the one-row loops.
    /// </summary>
    public static void RepackAvx512(byte* src, long rowBytes, long rows, int n, byte* dst) => RepackFp16Steps(src, rowBytes, rows, n, dst, Avx512Slot);

    /// <summary>Byte offset of row r's eight quant bytes in a 64-byte run of the AVX-512 layout: row order.</summary>
    private static ReadOnlySpan<byte> Avx512Slot => [0, 8, 16, 24, 32, 40, 48, 56];

    /// <summary>
    /// The repack loop of the two x64 fp16-scale layouts (<see cref="RepackAvx512"/>, <see cref="RepackAvx2"/>), which
    /// differ only in where a row's eight quant bytes sit in a 64-byte run: row r's at <paramref name="slot"/>[r]. Per group
    /// of eight rows, steps of up to <see cref="ScaleRunBlocks"/> blocks: k blocks' fp16 scales (block j's row r at 16·j + 2·r,
    /// the stored bits), then per block 128 bytes of quants (qs bytes 0..7 of the rows in the first 64, 8..15 in the second).
    /// </summary>
    private static void RepackFp16Steps(byte* src, long rowBytes, long rows, int n, byte* dst, ReadOnlySpan<byte> slot)
    {
        int nb = Blocks(n);
        for (long g = 0; g < rows / PackRows; g++)
        {
            byte* pg = dst + g * nb * (long)PackedBlockBytesAvx512;
            for (int b0 = 0; b0 < nb; b0 += ScaleRunBlocks)
            {
                int k = Math.Min(ScaleRunBlocks, nb - b0);
                byte* ps = pg + b0 * (long)PackedBlockBytesAvx512, pq = ps + 16 * k;
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

    /// <summary>
    /// One group of the AVX-512 layout (eight rows) · four tokens' panels (<paramref name="panel"/> + t·<paramref name="panelBytes"/>):
    /// row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].
    /// </summary>
    public static void PackedDot4Avx512(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        Packed4(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>One group of the AVX-512 layout (eight rows) · one token's panel: row r to <paramref name="dst"/>[r].</summary>
    public static void PackedDot1Avx512(byte* group, byte* panel, int n, float* dst)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        Packed1(group, panel, nb, dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Packed4(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) =>
        PackedSteps<Tokens4, ScalesFp16>(group, null, panel, panelBytes, nb, dst, dstStride, true);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Packed1(byte* group, byte* panel, int nb, float* dst) => PackedSteps<Tokens1, ScalesFp16>(group, null, panel, 0, nb, dst, 0, true);

    /// <summary>How many tokens (1, 2, 3, 4 or 8) one pass of <see cref="PackedSteps{TN}"/> dots with a group.</summary>
    internal interface ITokenCount
    {
        static abstract int Count { get; }
    }

    internal struct Tokens1 : ITokenCount
    {
        public static int Count => 1;
    }

    internal struct Tokens2 : ITokenCount
    {
        public static int Count => 2;
    }

    internal struct Tokens3 : ITokenCount
    {
        public static int Count => 3;
    }

    internal struct Tokens4 : ITokenCount
    {
        public static int Count => 4;
    }

    internal struct Tokens8 : ITokenCount
    {
        public static int Count => 8;
    }

    /// <summary>
    /// The GEMM over a group of the AVX-512 layout for <typeparamref name="TN"/> tokens, two blocks at a time. Per step of
    /// four blocks: one 64-byte load of the 32 fp16 scales and their conversion (<see cref="StepScales"/>: blocks 0 and 1
    /// in one register, row r of block j at lane 8·(j mod 2) + r, 2 and 3 in another), one prefetch line; per block two
    /// 64-byte loads and the nibble split once, two prefetch lines. Per token and pair of blocks: eight vpmaddubsw of the
    /// unsigned nibbles with a broadcast qword of activations and six vpaddw give each block's int16 sums (row r in the
    /// lane pair 2r, 2r + 1 of its block); two vpermt2d put block j's pairs beside block j + 1's (row r of block j at lane r,
    /// of block j + 1 at lane 8 + r: the lanes of the scale register), one vpaddw adds each row's two halves (at most 2·4·3840
    /// per int16: no wrap), one vpmaddwd widens, then int → float and (d_x·isum − c)·d_w in two FMAs for 16 row-blocks,
    /// c = d_x·8·Σy (the −8 of Q4_0). Against one block at a time in lane pairs that is three multiply-port instructions
    /// fewer per token and block pair (14 → 11) and no scale permute: the four-token step of a server is compute-bound
    /// where the one-token step is not (issue 15). The two halves of the accumulator are added at the end. A step with an
    /// odd number of blocks runs its last block alone, the other half's scales and offset masked to zero. Each token's
    /// sums run in the same order whatever <typeparamref name="TN"/> is, so a token gets the same bits alone, in a pair,
    /// in a four- or an eight-token tile.
    /// </summary>
    /// With <typeparamref name="TS"/> = <see cref="ScalesPanel"/> the row scales come from <paramref name="scales"/> instead
    /// (<see cref="ScalePanelAvx512"/>: the same floats, eight per block, one 64-byte load per pair of blocks), and the
    /// weight lines are prefetched only when <paramref name="prefetch"/> (the first pass over a tile that is then in cache).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PackedSteps<TN, TS>(byte* group, float* scales, byte* panel, long panelBytes, int nb, float* dst, long dstStride, bool prefetch)
        where TN : struct, ITokenCount where TS : struct, IScaleSource
    {
        byte* y0 = panel, y1 = panel + panelBytes, y2 = panel + 2 * panelBytes, y3 = panel + 3 * panelBytes;
        byte* y4 = panel + 4 * panelBytes, y5 = panel + 5 * panelBytes, y6 = panel + 6 * panelBytes, y7 = panel + 7 * panelBytes;
        long sOff = nb * 32L, cOff = nb * 36L;
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero;
        Vector512<float> a4 = Vector512<float>.Zero, a5 = Vector512<float>.Zero, a6 = Vector512<float>.Zero, a7 = Vector512<float>.Zero;
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        byte* ps = group;
        for (int b0 = 0; b0 < nb; b0 += ScaleRunBlocks)
        {
            int k = nb - b0 >= ScaleRunBlocks ? ScaleRunBlocks : nb - b0;
            if (prefetch) Sse.Prefetch0(ps + WeightPrefetch.Distance);
            Vector512<float> s01 = default, s23 = default;
            if (!TS.Panel) StepScales(ps, out s01, out s23);
            byte* pq = ps + 16 * k;
            for (int j = 0; j < k; j += 2, pq += 256)
            {
                bool two = j + 1 < k;
                if (prefetch)
                {
                    Sse.Prefetch0(pq + WeightPrefetch.Distance);
                    Sse.Prefetch0(pq + WeightPrefetch.Distance + 64);
                    if (two)
                    {
                        Sse.Prefetch0(pq + WeightPrefetch.Distance + 128);
                        Sse.Prefetch0(pq + WeightPrefetch.Distance + 192);
                    }
                }
                Vector512<float> dw = !TS.Panel ? j == 0 ? s01 : s23
                    : two ? Vector512.Load(scales + 8 * (b0 + j)) : Vector256.Load(scales + 8 * (b0 + j)).ToVector512();
                Vector512<byte> lo = Vector512.Load(pq), hi = Vector512.Load(pq + 64);
                Vector512<byte> w0 = lo & m4, w2 = (lo.AsUInt16() >>> 4).AsByte() & m4;
                Vector512<byte> w1 = hi & m4, w3 = (hi.AsUInt16() >>> 4).AsByte() & m4;
                long qo = 32L * (b0 + j), fo = 4L * (b0 + j);
                if (two)
                {
                    Vector512<byte> lo2 = Vector512.Load(pq + 128), hi2 = Vector512.Load(pq + 192);
                    Vector512<byte> v0 = lo2 & m4, v2 = (lo2.AsUInt16() >>> 4).AsByte() & m4;
                    Vector512<byte> v1 = hi2 & m4, v3 = (hi2.AsUInt16() >>> 4).AsByte() & m4;
                    a0 = PairToken(a0, w0, w1, w2, w3, v0, v1, v2, v3, dw, y0 + qo, y0 + sOff + fo, y0 + cOff + fo);
                    if (TN.Count >= 2)
                        a1 = PairToken(a1, w0, w1, w2, w3, v0, v1, v2, v3, dw, y1 + qo, y1 + sOff + fo, y1 + cOff + fo);
                    if (TN.Count >= 3)
                        a2 = PairToken(a2, w0, w1, w2, w3, v0, v1, v2, v3, dw, y2 + qo, y2 + sOff + fo, y2 + cOff + fo);
                    if (TN.Count >= 4)
                        a3 = PairToken(a3, w0, w1, w2, w3, v0, v1, v2, v3, dw, y3 + qo, y3 + sOff + fo, y3 + cOff + fo);
                    if (TN.Count >= 8)
                    {
                        a4 = PairToken(a4, w0, w1, w2, w3, v0, v1, v2, v3, dw, y4 + qo, y4 + sOff + fo, y4 + cOff + fo);
                        a5 = PairToken(a5, w0, w1, w2, w3, v0, v1, v2, v3, dw, y5 + qo, y5 + sOff + fo, y5 + cOff + fo);
                        a6 = PairToken(a6, w0, w1, w2, w3, v0, v1, v2, v3, dw, y6 + qo, y6 + sOff + fo, y6 + cOff + fo);
                        a7 = PairToken(a7, w0, w1, w2, w3, v0, v1, v2, v3, dw, y7 + qo, y7 + sOff + fo, y7 + cOff + fo);
                    }
                    continue;
                }
                // The last block of an odd step alone: lanes 8..15 get isum 0, offset 0 and scale 0 (the scale register's
                // upper half holds no block there: the step's quant bytes read as fp16, or past the panel's blocks).
                if (!TS.Panel) dw = Avx512F.BlendVariable(Vector512<float>.Zero, dw, LowHalf());
                a0 = SingleToken(a0, w0, w1, w2, w3, dw, y0 + qo, y0 + sOff + fo, y0 + cOff + fo);
                if (TN.Count >= 2)
                    a1 = SingleToken(a1, w0, w1, w2, w3, dw, y1 + qo, y1 + sOff + fo, y1 + cOff + fo);
                if (TN.Count >= 3)
                    a2 = SingleToken(a2, w0, w1, w2, w3, dw, y2 + qo, y2 + sOff + fo, y2 + cOff + fo);
                if (TN.Count >= 4)
                    a3 = SingleToken(a3, w0, w1, w2, w3, dw, y3 + qo, y3 + sOff + fo, y3 + cOff + fo);
                if (TN.Count >= 8)
                {
                    a4 = SingleToken(a4, w0, w1, w2, w3, dw, y4 + qo, y4 + sOff + fo, y4 + cOff + fo);
                    a5 = SingleToken(a5, w0, w1, w2, w3, dw, y5 + qo, y5 + sOff + fo, y5 + cOff + fo);
                    a6 = SingleToken(a6, w0, w1, w2, w3, dw, y6 + qo, y6 + sOff + fo, y6 + cOff + fo);
                    a7 = SingleToken(a7, w0, w1, w2, w3, dw, y7 + qo, y7 + sOff + fo, y7 + cOff + fo);
                }
                pq -= 128;
            }
            ps = pq;
        }
        FoldHalves(a0, dst);
        if (TN.Count >= 2) FoldHalves(a1, dst + dstStride);
        if (TN.Count >= 3) FoldHalves(a2, dst + 2 * dstStride);
        if (TN.Count >= 4) FoldHalves(a3, dst + 3 * dstStride);
        if (TN.Count >= 8)
        {
            FoldHalves(a4, dst + 4 * dstStride);
            FoldHalves(a5, dst + 5 * dstStride);
            FoldHalves(a6, dst + 6 * dstStride);
            FoldHalves(a7, dst + 7 * dstStride);
        }
    }

    /// <summary>One token's int16 sums of a block (row r in the lane pair 2r, 2r + 1): four vpmaddubsw, three vpaddw.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> BlockSums(Vector512<byte> w0, Vector512<byte> w1, Vector512<byte> w2, Vector512<byte> w3, byte* y) =>
        Avx512BW.MultiplyAddAdjacent(w0, Vector512.Create(*(long*)y).AsSByte())
        + Avx512BW.MultiplyAddAdjacent(w1, Vector512.Create(*(long*)(y + 8)).AsSByte())
        + (Avx512BW.MultiplyAddAdjacent(w2, Vector512.Create(*(long*)(y + 16)).AsSByte())
           + Avx512BW.MultiplyAddAdjacent(w3, Vector512.Create(*(long*)(y + 24)).AsSByte()));

    /// <summary>
    /// acc + (d_x·isum − c)·d_w for blocks j (lanes 0..7, row r at r) and j + 1 (lanes 8..15) of one token: the two
    /// blocks' lane pairs side by side (two vpermt2d), each row's halves added in int16, widened by one vpmaddwd.
    /// <paramref name="dx"/> and <paramref name="c"/> point at the token's two blocks' floats.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairToken(Vector512<float> acc, Vector512<byte> w0, Vector512<byte> w1, Vector512<byte> w2, Vector512<byte> w3,
        Vector512<byte> v0, Vector512<byte> v1, Vector512<byte> v2, Vector512<byte> v3, Vector512<float> dw, byte* y, byte* dx, byte* c)
    {
        Vector512<int> p = BlockSums(w0, w1, w2, w3, y).AsInt32(), q = BlockSums(v0, v1, v2, v3, y + 32).AsInt32();
        Vector512<int> even = Avx512F.PermuteVar16x32x2(p, Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), q);
        Vector512<int> odd = Avx512F.PermuteVar16x32x2(p, Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), q);
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(even.AsInt16() + odd.AsInt16(), Vector512.Create((short)1));
        Vector512<int> halves = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        Vector512<float> dxv = Avx512F.PermuteVar16x32(Vector512.CreateScalarUnsafe(*(long*)dx).AsSingle(), halves);
        Vector512<float> cv = Avx512F.PermuteVar16x32(Vector512.CreateScalarUnsafe(*(long*)c).AsSingle(), halves);
        Vector512<float> s = Avx512F.FusedMultiplySubtract(Avx512F.ConvertToVector512Single(isum), dxv, cv);
        return Avx512F.FusedMultiplyAdd(s, dw, acc);
    }

    /// <summary><see cref="PairToken"/> for one block (lanes 0..7; lanes 8..15 get isum 0, c 0 and, from the caller, d_w 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> SingleToken(Vector512<float> acc, Vector512<byte> w0, Vector512<byte> w1, Vector512<byte> w2, Vector512<byte> w3,
        Vector512<float> dw, byte* y, byte* dx, byte* c)
    {
        Vector512<int> p = BlockSums(w0, w1, w2, w3, y).AsInt32();
        Vector512<int> even = Avx512F.PermuteVar16x32x2(p, Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), Vector512<int>.Zero);
        Vector512<int> odd = Avx512F.PermuteVar16x32x2(p, Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), Vector512<int>.Zero);
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(even.AsInt16() + odd.AsInt16(), Vector512.Create((short)1));
        Vector512<float> cv = Avx512F.BlendVariable(Vector512<float>.Zero, Vector512.Create(*(float*)c), LowHalf());
        Vector512<float> s = Avx512F.FusedMultiplySubtract(Avx512F.ConvertToVector512Single(isum), Vector512.Create(*(float*)dx), cv);
        return Avx512F.FusedMultiplyAdd(s, dw, acc);
    }

    /// <summary>All ones in lanes 0..7, zero in 8..15 (a blend mask).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> LowHalf() => Vector512.Create(-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0).AsSingle();

    /// <summary>dst[r] = lane r + lane 8 + r (the even blocks' and the odd blocks' sums of row r).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FoldHalves(Vector512<float> a, float* dst) => (a.GetLower() + a.GetUpper()).Store(dst);
}
