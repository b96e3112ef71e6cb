using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// The x64 copy of Q6_K weights for the AVX-512 + GFNI loops (<see cref="PackedDot1Avx512"/>, two and four tokens):
/// groups of <see cref="PackRows"/> rows repacked once so that a block's eight rows share one fp16 conversion of their
/// d, one vphaddd tree and one FMA per token, each row's 6-bit values come from three aligned 64-byte lines, and its
/// sixteen scales widen to the four plane scale vectors in a vpmovsxbw, a vpermq and four in-lane vpshufb. A group of nb
/// blocks is <see cref="PackedGroupBytes"/> bytes: first nb headers of <see cref="MetaBytes"/> bytes, padded to a
/// multiple of 64, then nb quant blocks of 8 × 192 bytes (the same 1680 bytes per eight rows and block as stored).
/// <list type="bullet">
/// <item>Header of block b (144 bytes): the eight rows' d (fp16, row r at 2r); their scales (int8, row r at 16 + 16r),
/// transposed: byte 4k + j is sc[4j + k], the scale of 128-bit lane k of plane j.</item>
/// <item>Quants of block b (1536 bytes): row r at 192r, three 64-byte lines. Lines 0 and 1 are the stored ql halves:
/// byte i of line h holds weight 128h + i in its low nibble and 128h + 64 + i in its high nibble. Line 2 holds the high
/// bits: byte i has those of weight 64p + i at bits 2p..2p+1 (p = 0..3), so plane p (weights 64p..64p+63, matching 64
/// contiguous activations) is a nibble plane of line p / 2 with bit pair p of line 2 moved to bits 4..5 (one vgf2p8affineqb).</item>
/// </list>
/// </summary>
public static unsafe partial class DotQ6_K
{
    /// <summary>Rows per repacked group.</summary>
    public const int PackRows = 8;

    /// <summary>Bytes of one block's header in a group (d and scales of its eight rows).</summary>
    public const int MetaBytes = 144;

    /// <summary>Bytes of one row's block in a group (two ql lines and one qh line).</summary>
    public const int PackedRowBytes = 192;

    /// <summary>Bytes of one block's quants in a group (eight rows of 192).</summary>
    public const int PackedQsBytes = PackRows * PackedRowBytes;

    private const int MetaScales = 16;

    /// <summary>Whether this CPU runs the loops over the copy (AVX-512 BW and GFNI at 512 bits).</summary>
    public static bool PackedSupported => KernelRung.IsSupported(Rung.Avx512) && Gfni.V512.IsSupported;

    /// <summary>Bytes of one repacked group of rows of <paramref name="n"/> values (a multiple of 64).</summary>
    public static long PackedGroupBytes(int n)
    {
        long nb = Blocks(n);
        return (nb * MetaBytes + 63) / 64 * 64 + nb * PackedQsBytes;
    }

    /// <summary>Bytes of the copy of the whole groups of <paramref name="rows"/> rows (the rows after the last whole group stay out).</summary>
    public static long PackedBytes(long rows, int n) => rows / PackRows * PackedGroupBytes(n);

    /// <summary>
    /// Repacks the whole groups of eight rows of a Q6_K matrix (row r at <paramref name="src"/> + r·<paramref name="rowBytes"/>)
    /// into <paramref name="dst"/> (<see cref="PackedBytes"/> bytes, 64-byte aligned) in the layout described on the class.
    /// </summary>
    public static void Repack(byte* src, long rowBytes, long rows, int n, byte* dst)
    {
        int nb = Blocks(n);
        long groupBytes = PackedGroupBytes(n), qsStart = groupBytes - (long)nb * PackedQsBytes;
        for (long g = 0; g < rows / PackRows; g++)
        {
            byte* pg = dst + g * groupBytes;
            new Span<byte>(pg, (int)qsStart).Clear();
            for (int b = 0; b < nb; b++)
            {
                byte* meta = pg + (long)b * MetaBytes;
                byte* qs = pg + qsStart + (long)b * PackedQsBytes;
                for (int r = 0; r < PackRows; r++)
                {
                    byte* blk = src + (g * PackRows + r) * rowBytes + (long)b * BlockBytes;
                    Unsafe.WriteUnaligned(meta + 2 * r, Unsafe.ReadUnaligned<ushort>(blk + DOffset));
                    byte* sc = meta + MetaScales + 16 * r;
                    for (int k = 0; k < 4; k++)
                        for (int j = 0; j < 4; j++) sc[4 * k + j] = blk[ScalesOffset + 4 * j + k];
                    byte* o = qs + PackedRowBytes * r;
                    Buffer.MemoryCopy(blk, o, 128, 128);
                    // Weight 64p + i lies in stored half p / 2 at qh byte i mod 32, bit pair 2·(p mod 2) + i / 32: for
                    // i < 32 pairs 0 and 2 of the two halves' byte i (planes 0, 1 from half 0, planes 2, 3 from half 1), for
                    // i ≥ 32 pairs 1 and 3.
                    byte* qh = blk + QhOffset;
                    for (int i = 0; i < 32; i++)
                    {
                        int a = qh[i], c = qh[32 + i];
                        o[128 + i] = (byte)((a & 3) | ((a >> 4) & 3) << 2 | (c & 3) << 4 | ((c >> 4) & 3) << 6);
                        o[160 + i] = (byte)(((a >> 2) & 3) | ((a >> 6) & 3) << 2 | ((c >> 2) & 3) << 4 | ((c >> 6) & 3) << 6);
                    }
                }
            }
        }
    }

    /// <summary>
    /// One repacked group (<paramref name="group"/>) · one token's Q8_K activations, AVX-512 + GFNI: row r to
    /// <paramref name="dst"/>[r] (tests, benchmarks; the matmul calls the loop through <see cref="Q6_KPackedAvx512"/>).
    /// </summary>
    public static void PackedDot1Avx512(byte* group, byte* xq, int n, float* dst)
    {
        int nb = Blocks(n);
        RequirePacked();
        PackedLoop512(group, xq, nb, dst);
    }

    /// <summary>
    /// One repacked group · tokens t = 0..1 at <paramref name="xq"/> + t·<paramref name="xqStride"/>: row r of token t to
    /// <paramref name="dst"/>[t·<paramref name="dstStride"/> + r] (tests, benchmarks).
    /// </summary>
    public static void PackedDot2Avx512(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        RequirePacked();
        PackedLoop512x2(group, xq, xqStride, nb, dst, dstStride);
    }

    /// <summary>The same for four tokens t = 0..3.</summary>
    public static void PackedDot4Avx512(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        RequirePacked();
        PackedLoop512x4(group, xq, xqStride, nb, dst, dstStride);
    }

    /// <summary>The one-token loop without the checks (the matmul driver: n is the weight's row length, checked at load).</summary>
    internal static void PackedKernel512(byte* group, byte* xq, int n, float* dst) => PackedLoop512(group, xq, n / BlockSize, dst);

    /// <summary>The two-token loop without the checks.</summary>
    internal static void PackedKernel512x2(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride) =>
        PackedLoop512x2(group, xq, xqStride, n / BlockSize, dst, dstStride);

    /// <summary>The four-token loop without the checks.</summary>
    internal static void PackedKernel512x4(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride) =>
        PackedLoop512x4(group, xq, xqStride, n / BlockSize, dst, dstStride);

    private static void RequirePacked()
    {
        if (!PackedSupported) KernelRung.ThrowUnsupported(nameof(DotQ6_K), Rung.Avx512);
    }
}
