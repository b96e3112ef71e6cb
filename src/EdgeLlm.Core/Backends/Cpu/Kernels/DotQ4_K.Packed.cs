using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// The x64 decode copy of Q4_K weights: groups of <see cref="PackRows"/> rows repacked once so that the one-token loops
/// (<see cref="PackedDot1Avx512"/>, <see cref="PackedDot1Avx2"/>) do no per-block unpacking of the 6-bit scales and
/// mins, convert the eight rows' d and dmin in one register each, and read the quants with aligned 64-byte loads.
/// A group of nb blocks is <see cref="PackedGroupBytes"/> bytes: first nb headers of <see cref="MetaBytes"/> bytes,
/// padded to a multiple of 64, then nb quant blocks of 8 × 128 bytes.
/// <list type="bullet">
/// <item>Header of block b (160 bytes): the eight rows' d (fp16, row r at 2r), their dmin (fp16, at 16 + 2r), their
/// scales as bytes (row r, sub-block j at 32 + 8r + j), their mins as bytes, pairs of sub-blocks per row
/// (row r, sub-block 2p + t at 96 + 16p + 2r + t).</item>
/// <item>Quants of block b (1024 bytes): row r at 128r, two 64-byte lines; byte i of line k holds weight 128k + i in its
/// low nibble and weight 128k + 64 + i in its high nibble (so each nibble plane matches 64 contiguous activations).</item>
/// </list>
/// Per eight stored rows (1152 bytes a block) the copy takes 1184: the scales and mins as plain bytes cost 32 more.
/// </summary>
public static unsafe partial class DotQ4_K
{
    /// <summary>Rows per repacked group.</summary>
    public const int PackRows = 8;

    /// <summary>Bytes of one block's header in a group (d, dmin, scales, mins of its eight rows).</summary>
    public const int MetaBytes = 160;

    /// <summary>Bytes of one block's quants in a group (eight rows of 128).</summary>
    public const int PackedQsBytes = PackRows * 128;

    internal const int MetaDmin = 16, MetaScales = 32, MetaMins = 96;

    /// <summary>Bytes of one repacked group of rows of <paramref name="n"/> values (a multiple of 64).</summary>
    public static long PackedGroupBytes(int n)
    {
        long nb = Blocks(n);
        return (nb * MetaBytes + 63) / 64 * 64 + nb * PackedQsBytes;
    }

    /// <summary>Bytes of the copy of the whole groups of <paramref name="rows"/> rows (the rows after the last whole group stay out).</summary>
    public static long PackedBytes(long rows, int n) => rows / PackRows * PackedGroupBytes(n);

    /// <summary>
    /// Repacks the whole groups of eight rows of a Q4_K matrix (row r at <paramref name="src"/> + r·<paramref name="rowBytes"/>)
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
                    RepackBlockRow(blk, blk + QsOffset, meta, r, qs + 128 * r);
                }
            }
        }
    }

    /// <summary>
    /// Row <paramref name="r"/>'s share of one block of a group in the header and nibble layout that Q4_K's and Q5_K's
    /// copies share (Q5_K's block starts with the same d, dmin and 12 scale bytes): its d and dmin, its unpacked scales
    /// and mins in <paramref name="meta"/>, and its 128 stored quant bytes <paramref name="q"/> as two 64-byte nibble lines
    /// at <paramref name="lines"/>. Line k takes stored chunks 2k (A: weights 128k + i, 128k + 32 + i in its low / high
    /// nibbles) and 2k + 1 (B: weights 128k + 64 + i, 128k + 96 + i): byte i &lt; 32 is A's low | B's low, byte 32 + i
    /// A's high | B's high.
    /// </summary>
    internal static void RepackBlockRow(byte* blk, byte* q, byte* meta, int r, byte* lines)
    {
        Unsafe.WriteUnaligned(meta + 2 * r, Unsafe.ReadUnaligned<ushort>(blk));
        Unsafe.WriteUnaligned(meta + MetaDmin + 2 * r, Unsafe.ReadUnaligned<ushort>(blk + 2));
        UnpackScales(blk + ScalesOffset, out ulong sc, out ulong mn);
        Unsafe.WriteUnaligned(meta + MetaScales + 8 * r, sc);
        for (int j = 0; j < 8; j++) meta[MetaMins + 16 * (j >> 1) + 2 * r + (j & 1)] = (byte)(mn >> (8 * j));
        for (int line = 0; line < 2; line++)
        {
            byte* a = q + 64 * line, bq = a + 32, ol = lines + 64 * line;
            for (int i = 0; i < 32; i++)
            {
                ol[i] = (byte)((a[i] & 0x0F) | (bq[i] << 4));
                ol[32 + i] = (byte)((a[i] >> 4) | (bq[i] & 0xF0));
            }
        }
    }

    /// <summary>
    /// One repacked group (<paramref name="group"/>) · one token's Q8_K activations, AVX-512: row r to <paramref name="dst"/>[r]
    /// (tests, benchmarks; the matmul calls the loop through <see cref="Q4_KPackedAvx512"/>).
    /// </summary>
    public static void PackedDot1Avx512(byte* group, byte* xq, int n, float* dst)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        PackedLoop512(group, xq, nb, dst);
    }

    /// <summary>The same on AVX2 with AVX-VNNI on or off (off runs on any AVX2 CPU).</summary>
    public static void PackedDot1Avx2(byte* group, byte* xq, int n, float* dst, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) { PackedLoop256<VnniOff>(group, xq, nb, dst); return; }
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_K), Rung.Avx2);
        PackedLoop256<VnniOn>(group, xq, nb, dst);
    }

    /// <summary>The AVX-512 loop without the checks (the matmul driver: n is the weight's row length, checked at load).</summary>
    internal static void PackedKernel512(byte* group, byte* xq, int n, float* dst) => PackedLoop512(group, xq, n / BlockSize, dst);

    /// <summary>The AVX2 loop without the checks.</summary>
    internal static void PackedKernel256<TVnni>(byte* group, byte* xq, int n, float* dst) where TVnni : struct, IIsaFlag =>
        PackedLoop256<TVnni>(group, xq, n / BlockSize, dst);
}
