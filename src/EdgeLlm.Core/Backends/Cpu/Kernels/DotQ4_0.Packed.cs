using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q4_0 weights repacked at load for prefill's GEMM (AVX-512): eight rows interleaved per block, so one zmm holds the
/// same eight weights of eight rows and every vector lane pair belongs to one row: the products need no horizontal
/// sums and no per-block scale shuffles. Layout of a group of eight rows (rows 8g .. 8g+7), block after block, 160
/// bytes each: <c>f32 d[8]</c> (the rows' block scales, widened from fp16), then 64 bytes holding qs bytes 0..7 of
/// row 0, of row 1, … of row 7, then 64 bytes holding qs bytes 8..15 of the eight rows (11% more bytes than Q4_0).
/// With the Q4_0 nibble order (byte j holds weight j in its low nibble and weight j + 16 in its high one) the low
/// nibbles of the first 64 bytes meet activations 0..7, the high ones 16..23; of the second 8..15 and 24..31, each
/// eight activations one broadcast qword of the <see cref="Q8_0Panel"/>. Per block and token: four vpmaddubsw (the
/// unsigned nibbles × the activations, ≤ 3810 per int16, the sum of four ≤ 15240: no saturation), three vpaddw, one
/// vpmaddwd, int → float, and (d_x·isum − c/2) · d_w in two FMAs (c = d_x·8·Σy, the −8 of Q4_0, half per lane of the
/// row's pair); the weight side (two loads, the nibble split, the scale pairs) once per block for four tokens. Every
/// step prefetches the group's bytes <see cref="WeightPrefetch.Distance"/> ahead, as the one-row loops do: with the
/// hardware prefetcher alone a core streamed the repacked rows from DRAM ~30% slower than the one-row loops stream
/// the stored ones, so a lone decode through <see cref="Packed1"/> lost to them although it runs half the instructions.
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

    /// <summary>
    /// Repacks the whole groups of eight rows of a Q4_0 matrix (<paramref name="rows"/> rows of <paramref name="n"/>
    /// values, <paramref name="rowBytes"/> apart) into <paramref name="dst"/> (<see cref="PackedBytes"/> bytes).
    /// </summary>
    public static void Repack(byte* src, long rowBytes, long rows, int n, byte* dst)
    {
        int nb = Blocks(n);
        for (long g = 0; g < rows / PackRows; g++)
        {
            byte* pg = dst + g * nb * (long)PackedBlockBytes;
            for (int b = 0; b < nb; b++)
            {
                byte* pb = pg + b * (long)PackedBlockBytes;
                for (int r = 0; r < PackRows; r++)
                {
                    byte* blk = src + (g * PackRows + r) * rowBytes + b * (long)BlockBytes;
                    ((float*)pb)[r] = Fp16.Read(blk);
                    Unsafe.CopyBlockUnaligned(pb + 32 + 8 * r, blk + 2, 8);
                    Unsafe.CopyBlockUnaligned(pb + 96 + 8 * r, blk + 10, 8);
                }
            }
        }
    }

    /// <summary>
    /// One repacked group (eight rows) · four tokens' panels (<paramref name="panel"/> + t·<paramref name="panelBytes"/>):
    /// row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].
    /// </summary>
    public static void PackedDot4Avx512(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        Packed4(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>One repacked group (eight rows) · one token's panel: row r to <paramref name="dst"/>[r].</summary>
    public static void PackedDot1Avx512(byte* group, byte* panel, int n, float* dst)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        Packed1(group, panel, nb, dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Packed4(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride)
    {
        byte* y0 = panel, y1 = panel + panelBytes, y2 = panel + 2 * panelBytes, y3 = panel + 3 * panelBytes;
        long sOff = nb * 32L, cOff = nb * 36L;
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero;
        Vector512<int> pairs = PackedScalePairs();
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        byte* pb = group;
        for (int b = 0; b < nb; b++, pb += PackedBlockBytes)
        {
            WeightPrefetch.Lines3(pb);
            Vector512<float> dw = Avx512F.PermuteVar16x32(Vector256.Load((float*)pb).ToVector512Unsafe(), pairs);
            Vector512<byte> lo = Vector512.Load(pb + 32), hi = Vector512.Load(pb + 96);
            Vector512<byte> w0 = lo & m4, w2 = (lo.AsUInt16() >>> 4).AsByte() & m4;
            Vector512<byte> w1 = hi & m4, w3 = (hi.AsUInt16() >>> 4).AsByte() & m4;
            long qo = 32L * b, fo = 4L * b;
            a0 = PackedToken(a0, w0, w1, w2, w3, dw, y0 + qo, *(float*)(y0 + sOff + fo), *(float*)(y0 + cOff + fo));
            a1 = PackedToken(a1, w0, w1, w2, w3, dw, y1 + qo, *(float*)(y1 + sOff + fo), *(float*)(y1 + cOff + fo));
            a2 = PackedToken(a2, w0, w1, w2, w3, dw, y2 + qo, *(float*)(y2 + sOff + fo), *(float*)(y2 + cOff + fo));
            a3 = PackedToken(a3, w0, w1, w2, w3, dw, y3 + qo, *(float*)(y3 + sOff + fo), *(float*)(y3 + cOff + fo));
        }
        FoldPairs(a0, dst);
        FoldPairs(a1, dst + dstStride);
        FoldPairs(a2, dst + 2 * dstStride);
        FoldPairs(a3, dst + 3 * dstStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Packed1(byte* group, byte* panel, int nb, float* dst)
    {
        float* dx = Q8_0Panel.Scales(panel, nb), c = Q8_0Panel.Offsets(panel, nb);
        Vector512<float> acc = Vector512<float>.Zero;
        Vector512<int> pairs = PackedScalePairs();
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        byte* pb = group;
        for (int b = 0; b < nb; b++, pb += PackedBlockBytes)
        {
            WeightPrefetch.Lines3(pb);
            Vector512<float> dw = Avx512F.PermuteVar16x32(Vector256.Load((float*)pb).ToVector512Unsafe(), pairs);
            Vector512<byte> lo = Vector512.Load(pb + 32), hi = Vector512.Load(pb + 96);
            acc = PackedToken(acc, lo & m4, hi & m4, (lo.AsUInt16() >>> 4).AsByte() & m4, (hi.AsUInt16() >>> 4).AsByte() & m4,
                dw, panel + 32L * b, dx[b], c[b]);
        }
        FoldPairs(acc, dst);
    }

    /// <summary>acc + (d_x·isum − c/2)·d_w per lane, isum the lane's share of Σ q·y over the block (eight weights per qword).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PackedToken(Vector512<float> acc, Vector512<byte> w0, Vector512<byte> w1, Vector512<byte> w2,
        Vector512<byte> w3, Vector512<float> dw, byte* y, float dx, float c)
    {
        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(w0, Vector512.Create(*(long*)y).AsSByte())
                           + Avx512BW.MultiplyAddAdjacent(w1, Vector512.Create(*(long*)(y + 8)).AsSByte());
        p += Avx512BW.MultiplyAddAdjacent(w2, Vector512.Create(*(long*)(y + 16)).AsSByte())
           + Avx512BW.MultiplyAddAdjacent(w3, Vector512.Create(*(long*)(y + 24)).AsSByte());
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(p, Vector512.Create((short)1));
        Vector512<float> s = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(dx), Vector512.Create(-0.5f * c));
        return Avx512F.FusedMultiplyAdd(s, dw, acc);
    }

    /// <summary>vpermps indices duplicating each of the eight row scales into the row's lane pair.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PackedScalePairs() => Vector512.Create(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);

    /// <summary>dst[r] = lane 2r + lane 2r + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FoldPairs(Vector512<float> a, float* dst)
    {
        Vector512<float> even = Avx512F.PermuteVar16x32(a, Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0));
        Vector512<float> odd = Avx512F.PermuteVar16x32(a, Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0));
        (even + odd).GetLower().Store(dst);
    }
}
