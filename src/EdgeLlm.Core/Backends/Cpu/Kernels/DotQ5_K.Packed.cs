using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// The x64 copy of Q5_K weights for the AVX-512 + GFNI loops (<see cref="PackedDot1Avx512"/>, two and four tokens):
/// groups of <see cref="PackRows"/> rows repacked once so that the loops do no per-block unpacking of the 6-bit scales
/// and mins, convert the eight rows' d and dmin in one register each, and read the quants with aligned 64-byte loads.
/// A group of nb blocks is <see cref="PackedGroupBytes"/> bytes: first nb headers of <see cref="MetaBytes"/> bytes,
/// padded to a multiple of 64, then nb quant blocks of <see cref="PackedQsBytes"/> bytes.
/// <list type="bullet">
/// <item>Header of block b (160 bytes, the layout of Q4_K's copy): the eight rows' d (fp16, row r at 2r), their dmin
/// (fp16, at 16 + 2r), their scales as bytes (row r, sub-block j at 32 + 8r + j), their mins as bytes, pairs of
/// sub-blocks per row (row r, sub-block 2p + t at 96 + 16p + 2r + t).</item>
/// <item>Quants of block b (1280 bytes): first the eight rows' low four bits, row r at 128r, two 64-byte lines; byte i
/// of line k holds weight 128k + i in its low nibble and weight 128k + 64 + i in its high nibble (each nibble plane
/// matches 64 contiguous activations). Then the eight rows' fifth bits, row r at 1024 + 32r (rows 2s and 2s + 1 share
/// a line), the stored qh bytes unchanged: bit 2p of byte i is the fifth bit of weight 64p + i, bit 2p + 1 that of
/// weight 64p + 32 + i; with the 32 bytes in both halves of a zmm, plane p's fifth bits go to bit 4 in one
/// vgf2p8affineqb (the matrix of bit 2p in the low four qwords, of bit 2p + 1 in the high four).</item>
/// </list>
/// Per eight stored rows (1408 bytes a block) the copy takes 1440: the scales and mins as plain bytes cost 32 more.
/// </summary>
public static unsafe partial class DotQ5_K
{
    /// <summary>Rows per repacked group.</summary>
    public const int PackRows = 8;

    /// <summary>Bytes of one block's header in a group (d, dmin, scales, mins of its eight rows: Q4_K's header).</summary>
    public const int MetaBytes = DotQ4_K.MetaBytes;

    /// <summary>Bytes of one block's low-nibble lines in a group (eight rows of 128).</summary>
    public const int PackedLowBytes = PackRows * 128;

    /// <summary>Bytes of one block's quants in a group (the nibble lines, then eight rows of 32 fifth-bit bytes).</summary>
    public const int PackedQsBytes = PackedLowBytes + PackRows * 32;

    private const int MetaScales = DotQ4_K.MetaScales;

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
    /// Repacks the whole groups of eight rows of a Q5_K matrix (row r at <paramref name="src"/> + r·<paramref name="rowBytes"/>)
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
                    DotQ4_K.RepackBlockRow(blk, blk + QsOffset, meta, r, qs + 128 * r);
                    Buffer.MemoryCopy(blk + QhOffset, qs + PackedLowBytes + 32 * r, 32, 32);
                }
            }
        }
    }

    /// <summary>
    /// One repacked group (<paramref name="group"/>) · one token's Q8_K activations, AVX-512 + GFNI: row r to
    /// <paramref name="dst"/>[r] (tests, benchmarks; the matmul calls the loop through <see cref="Q5_KPackedAvx512"/>).
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
        if (!PackedSupported) KernelRung.ThrowUnsupported(nameof(DotQ5_K), Rung.Avx512);
    }
}
