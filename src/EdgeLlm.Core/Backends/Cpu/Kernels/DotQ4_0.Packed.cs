using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q4_0 weights repacked at load for the GEMMs: rows interleaved in groups, so one register holds the same weights of
/// several rows and the products need no horizontal sums per row. The NEON layout (<see cref="RepackNeon"/>, groups of
/// <see cref="PackRows"/>) puts <c>f32 d[8]</c> (the rows' block scales, widened from fp16) before each block's 128 quant
/// bytes: 160 bytes per block, 11% more than Q4_0 (<see cref="PackedBlockBytes"/>); AVX2 has its own fp16 layout
/// (<c>DotQ4_0.PackedAvx2.cs</c>). The AVX-512 layout (<see cref="RepackAvx512"/>, this file's kernels) groups
/// <see cref="PackRowsAvx512"/> = 16 rows and keeps the fp16 scales, two blocks' worth (32 halves) in one 64-byte line
/// before their quants: 288 bytes per block, what the stored rows take, so a decode streaming the copy reads no more
/// bytes than the one-row loops. A block's 256 quant bytes are four 64-byte runs; run m holds qs bytes 4m..4m+3 of
/// the 16 rows, row r's four at 4r. With the Q4_0 nibble order (byte j holds weight j in its low nibble and weight
/// j + 16 in its high one) the low nibbles of run m meet activations 4m..4m+3 and the high ones 16+4m..19+4m: each a
/// broadcast dword of the <see cref="Q8_0Panel"/>, so after eight vpmaddubsw and seven vpaddw one vpmaddwd leaves row
/// r's block sum in int32 lane r, the lane of its scale: no permute, and the token's d_x and c are one broadcast
/// float each (<see cref="PackedSteps{TN, TS}"/>). Every step prefetches the group's bytes
/// <see cref="WeightPrefetch.Distance"/> ahead, as the one-row loops do: with the hardware prefetcher alone a core
/// streamed the repacked rows from DRAM ~30% slower than the one-row loops stream the stored ones. With the prefetch,
/// the fp16 layout and the copy on 2 MiB pages (<see cref="PackedArena"/>), <see cref="Packed1"/> is the AVX-512 decode
/// kernel (<see cref="CpuKernelRow.PackedOneToken"/>).
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

    /// <summary>Rows per group of the AVX-512 layout (<see cref="RepackAvx512"/>): a zmm of int32 sums is one block of 16 rows.</summary>
    public const int PackRowsAvx512 = 16;

    /// <summary>Bytes of one block of a group in the AVX-512 layout (<see cref="RepackAvx512"/>): 16 fp16 scales and 16 rows' 16 quant bytes, what the 16 stored blocks take.</summary>
    public const int PackedBlockBytesAvx512 = PackRowsAvx512 * 2 + PackRowsAvx512 * 16;

    /// <summary>Blocks per step of the AVX-512 layout: their 32 fp16 scales fill one 64-byte line.</summary>
    private const int StepBlocksAvx512 = 2;

    /// <summary>Bytes the AVX-512 repacked copy (<see cref="RepackAvx512"/>) of the first rows / 16 · 16 rows of <paramref name="n"/> values takes: the stored bytes of those rows.</summary>
    public static long PackedBytesAvx512(long rows, int n) => rows / PackRowsAvx512 * (long)Blocks(n) * PackedBlockBytesAvx512;

    /// <summary>
    /// Repacks the whole groups of 16 rows of a Q4_0 matrix into the AVX-512 layout (<paramref name="dst"/>,
    /// <see cref="PackedBytesAvx512"/> bytes). A group is a run of steps of two blocks (the last step has one block when
    /// nb is odd): k ≤ 2 blocks take 32·k bytes of fp16 scales (block j's 16 rows at 32·j, row r at + 2·r, the stored
    /// bits), then k times 256 bytes of quants: four runs of 64 bytes, run m holding qs bytes 4m..4m+3 of row r at 4r.
    /// A whole step is 576 bytes, nine cache lines.
    /// </summary>
    public static void RepackAvx512(byte* src, long rowBytes, long rows, int n, byte* dst)
    {
        const int G = PackRowsAvx512;
        int nb = Blocks(n);
        for (long g = 0; g < rows / G; g++)
        {
            byte* pg = dst + g * nb * (long)PackedBlockBytesAvx512;
            for (int b0 = 0; b0 < nb; b0 += StepBlocksAvx512)
            {
                int k = Math.Min(StepBlocksAvx512, nb - b0);
                byte* ps = pg + b0 * (long)PackedBlockBytesAvx512, pq = ps + 32 * k;
                for (int j = 0; j < k; j++)
                    for (int r = 0; r < G; r++)
                    {
                        byte* blk = src + (g * G + r) * rowBytes + (b0 + j) * (long)BlockBytes;
                        Unsafe.WriteUnaligned(ps + 32 * j + 2 * r, Unsafe.ReadUnaligned<ushort>(blk));
                        for (int m = 0; m < 4; m++)
                            Unsafe.WriteUnaligned(pq + 256 * j + 64 * m + 4 * r, Unsafe.ReadUnaligned<uint>(blk + 2 + 4 * m));
                    }
            }
        }
    }

    /// <summary>
    /// One group of the AVX-512 layout (16 rows) · four tokens' panels (<paramref name="panel"/> + t·<paramref name="panelBytes"/>):
    /// row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].
    /// </summary>
    public static void PackedDot4Avx512(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        Packed4(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>One group of the AVX-512 layout (16 rows) · one token's panel: row r to <paramref name="dst"/>[r].</summary>
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

    /// <summary>How many tokens (1, 2, 3, 4 or 8) one pass of <see cref="PackedSteps{TN, TS}"/> dots with a group.</summary>
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
    /// The GEMM over a group of the AVX-512 layout (16 rows) for <typeparamref name="TN"/> tokens. Per step of two blocks:
    /// one 64-byte load of the 32 fp16 scales and their conversion (<see cref="StepScales"/>: one register per block, row
    /// r at lane r), one prefetch line; per block four 64-byte loads and the nibble split once for all tokens, four
    /// prefetch lines. Per token and block: eight vpmaddubsw of the unsigned nibbles with a broadcast activation dword
    /// (≤ 3840 per int16, the sum of eight ≤ 30720: no saturation) and seven vpaddw, one vpmaddwd that leaves row r's
    /// block sum in lane r, then int → float and (d_x·isum − c)·d_w in two FMAs, d_x and c = d_x·8·Σy (the −8 of Q4_0)
    /// broadcast from the token's panel: 19 vector instructions per token and 16 row-blocks, where the eight-row layout
    /// took 23 (two vpermt2d to bring two blocks' lane pairs side by side, two vpermps to spread two blocks' d_x and c);
    /// the four-token step of a server is compute-bound where the one-token step is not (issue 15). The even blocks
    /// accumulate in one register per token, the odd ones in another, added at the end: each row gets the float steps,
    /// in the order, that the eight-row layout's lanes r and 8 + r gave it (the same bits). Each token's sums run in the
    /// same order whatever <typeparamref name="TN"/> is, so a token gets the same bits alone, in a pair, in a three-,
    /// four- or eight-token pass.
    /// With <typeparamref name="TS"/> = <see cref="ScalesPanel"/> the row scales come from <paramref name="scales"/> instead
    /// (<see cref="ScalePanelAvx512"/>: the same floats, 16 per block), and the weight lines are prefetched only when
    /// <paramref name="prefetch"/> (the first pass over a tile that is then in cache).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PackedSteps<TN, TS>(byte* group, float* scales, byte* panel, long panelBytes, int nb, float* dst, long dstStride, bool prefetch)
        where TN : struct, ITokenCount where TS : struct, IScaleSource
    {
        byte* y0 = panel, y1 = panel + panelBytes, y2 = panel + 2 * panelBytes, y3 = panel + 3 * panelBytes;
        byte* y4 = panel + 4 * panelBytes, y5 = panel + 5 * panelBytes, y6 = panel + 6 * panelBytes, y7 = panel + 7 * panelBytes;
        long sOff = nb * 32L, cOff = nb * 36L;
        // e: the even blocks' sums of a token, o: the odd blocks'.
        Vector512<float> e0 = Vector512<float>.Zero, e1 = Vector512<float>.Zero, e2 = Vector512<float>.Zero, e3 = Vector512<float>.Zero;
        Vector512<float> e4 = Vector512<float>.Zero, e5 = Vector512<float>.Zero, e6 = Vector512<float>.Zero, e7 = Vector512<float>.Zero;
        Vector512<float> o0 = Vector512<float>.Zero, o1 = Vector512<float>.Zero, o2 = Vector512<float>.Zero, o3 = Vector512<float>.Zero;
        Vector512<float> o4 = Vector512<float>.Zero, o5 = Vector512<float>.Zero, o6 = Vector512<float>.Zero, o7 = Vector512<float>.Zero;
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        byte* ps = group;
        for (int b = 0; b < nb; b += StepBlocksAvx512)
        {
            bool two = b + 1 < nb;
            if (prefetch)
            {
                Sse.Prefetch0(ps + WeightPrefetch.Distance);
                if (TN.Count == 1) PrefetchActivations(y0, sOff, cOff, b);
            }
            Vector512<float> s0, s1;
            if (TS.Panel)
            {
                s0 = Vector512.Load(scales + 16 * b);
                s1 = two ? Vector512.Load(scales + 16 * (b + 1)) : default;
            }
            else StepScales(ps, two, out s0, out s1);
            byte* pq = ps + (two ? 64 : 32);
            if (prefetch) PrefetchBlock(pq);
            Nibbles(pq, m4, out var w0, out var w1, out var w2, out var w3, out var h0, out var h1, out var h2, out var h3);
            long qo = 32L * b, fo = 4L * b;
            e0 = TokenBlock(e0, w0, w1, w2, w3, h0, h1, h2, h3, s0, y0 + qo, y0 + sOff + fo, y0 + cOff + fo);
            if (TN.Count >= 2) e1 = TokenBlock(e1, w0, w1, w2, w3, h0, h1, h2, h3, s0, y1 + qo, y1 + sOff + fo, y1 + cOff + fo);
            if (TN.Count >= 3) e2 = TokenBlock(e2, w0, w1, w2, w3, h0, h1, h2, h3, s0, y2 + qo, y2 + sOff + fo, y2 + cOff + fo);
            if (TN.Count >= 4) e3 = TokenBlock(e3, w0, w1, w2, w3, h0, h1, h2, h3, s0, y3 + qo, y3 + sOff + fo, y3 + cOff + fo);
            if (TN.Count >= 8)
            {
                e4 = TokenBlock(e4, w0, w1, w2, w3, h0, h1, h2, h3, s0, y4 + qo, y4 + sOff + fo, y4 + cOff + fo);
                e5 = TokenBlock(e5, w0, w1, w2, w3, h0, h1, h2, h3, s0, y5 + qo, y5 + sOff + fo, y5 + cOff + fo);
                e6 = TokenBlock(e6, w0, w1, w2, w3, h0, h1, h2, h3, s0, y6 + qo, y6 + sOff + fo, y6 + cOff + fo);
                e7 = TokenBlock(e7, w0, w1, w2, w3, h0, h1, h2, h3, s0, y7 + qo, y7 + sOff + fo, y7 + cOff + fo);
            }
            pq += 256;
            if (two)
            {
                if (prefetch) PrefetchBlock(pq);
                Nibbles(pq, m4, out w0, out w1, out w2, out w3, out h0, out h1, out h2, out h3);
                qo += 32;
                fo += 4;
                o0 = TokenBlock(o0, w0, w1, w2, w3, h0, h1, h2, h3, s1, y0 + qo, y0 + sOff + fo, y0 + cOff + fo);
                if (TN.Count >= 2) o1 = TokenBlock(o1, w0, w1, w2, w3, h0, h1, h2, h3, s1, y1 + qo, y1 + sOff + fo, y1 + cOff + fo);
                if (TN.Count >= 3) o2 = TokenBlock(o2, w0, w1, w2, w3, h0, h1, h2, h3, s1, y2 + qo, y2 + sOff + fo, y2 + cOff + fo);
                if (TN.Count >= 4) o3 = TokenBlock(o3, w0, w1, w2, w3, h0, h1, h2, h3, s1, y3 + qo, y3 + sOff + fo, y3 + cOff + fo);
                if (TN.Count >= 8)
                {
                    o4 = TokenBlock(o4, w0, w1, w2, w3, h0, h1, h2, h3, s1, y4 + qo, y4 + sOff + fo, y4 + cOff + fo);
                    o5 = TokenBlock(o5, w0, w1, w2, w3, h0, h1, h2, h3, s1, y5 + qo, y5 + sOff + fo, y5 + cOff + fo);
                    o6 = TokenBlock(o6, w0, w1, w2, w3, h0, h1, h2, h3, s1, y6 + qo, y6 + sOff + fo, y6 + cOff + fo);
                    o7 = TokenBlock(o7, w0, w1, w2, w3, h0, h1, h2, h3, s1, y7 + qo, y7 + sOff + fo, y7 + cOff + fo);
                }
                pq += 256;
            }
            ps = pq;
        }
        (e0 + o0).Store(dst);
        if (TN.Count >= 2) (e1 + o1).Store(dst + dstStride);
        if (TN.Count >= 3) (e2 + o2).Store(dst + 2 * dstStride);
        if (TN.Count >= 4) (e3 + o3).Store(dst + 3 * dstStride);
        if (TN.Count >= 8)
        {
            (e4 + o4).Store(dst + 4 * dstStride);
            (e5 + o5).Store(dst + 5 * dstStride);
            (e6 + o6).Store(dst + 6 * dstStride);
            (e7 + o7).Store(dst + 7 * dstStride);
        }
    }

    /// <summary>
    /// The one-token loop's activation lines a few steps ahead: the quant line of the step eight steps on, and every 16 blocks
    /// the next line of the panel's scales and offsets. A 16-row group of a 4096-wide matrix is 36 KiB, so between two groups'
    /// reads of the same activation line about ten weight lines per set of a 48 KiB L1 pass through it and the activation
    /// lines fall out to L2 (a 7B Q4_0 decode ran 2-4% behind the eight-row layout, whose groups are half as long, and
    /// level with it with these prefetches: perf/README, "lead's 7B decode A/B"). One token only: the multi-token loops are
    /// compute-bound and their activations are re-read per token within the step.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchActivations(byte* y, long sOff, long cOff, int b)
    {
        Sse.Prefetch0(y + 32L * b + 512);
        if ((b & 15) != 0) return;
        Sse.Prefetch0(y + sOff + 4L * b + 64);
        Sse.Prefetch0(y + cOff + 4L * b + 64);
    }

    /// <summary>The four lines of a block's quants <see cref="WeightPrefetch.Distance"/> ahead.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchBlock(byte* pq)
    {
        Sse.Prefetch0(pq + WeightPrefetch.Distance);
        Sse.Prefetch0(pq + WeightPrefetch.Distance + 64);
        Sse.Prefetch0(pq + WeightPrefetch.Distance + 128);
        Sse.Prefetch0(pq + WeightPrefetch.Distance + 192);
    }

    /// <summary>
    /// A block's 256 quant bytes of the AVX-512 layout as eight registers of unsigned nibbles: <paramref name="w0"/>..
    /// <paramref name="w3"/> the low nibbles of runs 0..3 (activations 4m..4m+3 of row r at bytes 4r..4r+3),
    /// <paramref name="h0"/>..<paramref name="h3"/> the high ones (activations 16+4m..19+4m).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Nibbles(byte* pq, Vector512<byte> m4, out Vector512<byte> w0, out Vector512<byte> w1, out Vector512<byte> w2, out Vector512<byte> w3,
        out Vector512<byte> h0, out Vector512<byte> h1, out Vector512<byte> h2, out Vector512<byte> h3)
    {
        Vector512<byte> r0 = Vector512.Load(pq), r1 = Vector512.Load(pq + 64), r2 = Vector512.Load(pq + 128), r3 = Vector512.Load(pq + 192);
        w0 = r0 & m4;
        w1 = r1 & m4;
        w2 = r2 & m4;
        w3 = r3 & m4;
        h0 = (r0.AsUInt16() >>> 4).AsByte() & m4;
        h1 = (r1.AsUInt16() >>> 4).AsByte() & m4;
        h2 = (r2.AsUInt16() >>> 4).AsByte() & m4;
        h3 = (r3.AsUInt16() >>> 4).AsByte() & m4;
    }

    /// <summary>
    /// acc + (d_x·isum − c)·d_w for one block of one token: row r's integer sum (eight vpmaddubsw with broadcast
    /// activation dwords, seven vpaddw, one vpmaddwd) in lane r, its scale <paramref name="dw"/> in lane r.
    /// <paramref name="y"/> points at the token's 32 activation bytes of the block, <paramref name="dx"/> and
    /// <paramref name="c"/> at its scale and offset floats.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> TokenBlock(Vector512<float> acc, Vector512<byte> w0, Vector512<byte> w1, Vector512<byte> w2, Vector512<byte> w3,
        Vector512<byte> h0, Vector512<byte> h1, Vector512<byte> h2, Vector512<byte> h3, Vector512<float> dw, byte* y, byte* dx, byte* c)
    {
        Vector512<short> s = Avx512BW.MultiplyAddAdjacent(w0, Vector512.Create(*(int*)y).AsSByte())
            + Avx512BW.MultiplyAddAdjacent(w1, Vector512.Create(*(int*)(y + 4)).AsSByte());
        Vector512<short> t = Avx512BW.MultiplyAddAdjacent(w2, Vector512.Create(*(int*)(y + 8)).AsSByte())
            + Avx512BW.MultiplyAddAdjacent(w3, Vector512.Create(*(int*)(y + 12)).AsSByte());
        Vector512<short> u = Avx512BW.MultiplyAddAdjacent(h0, Vector512.Create(*(int*)(y + 16)).AsSByte())
            + Avx512BW.MultiplyAddAdjacent(h1, Vector512.Create(*(int*)(y + 20)).AsSByte());
        Vector512<short> v = Avx512BW.MultiplyAddAdjacent(h2, Vector512.Create(*(int*)(y + 24)).AsSByte())
            + Avx512BW.MultiplyAddAdjacent(h3, Vector512.Create(*(int*)(y + 28)).AsSByte());
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent((s + t) + (u + v), Vector512.Create((short)1));
        Vector512<float> f = Avx512F.FusedMultiplySubtract(Avx512F.ConvertToVector512Single(isum), Vector512.Create(*(float*)dx), Vector512.Create(*(float*)c));
        return Avx512F.FusedMultiplyAdd(f, dw, acc);
    }
}
