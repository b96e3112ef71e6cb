using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.X64KDecode;

/// <summary>The x64 loops over Q4_K's decode copy.</summary>
public enum KPackedWay { Avx2, Avx2Vnni, Avx512 }

/// <summary>A theory skipped (not missing) on a CPU that cannot run the <see cref="KPackedWay"/> loop.</summary>
public sealed class KPackedTheoryAttribute : TheoryAttribute
{
    public KPackedTheoryAttribute(KPackedWay way)
    {
        if (!X64PackedQ4_KTests.Supported(way)) Skip = $"this CPU cannot run the {way} loop";
    }
}

/// <summary>
/// Q4_K's decode copy (<see cref="DotQ4_K.Repack"/>: eight rows a group, block headers with d, dmin and the 6-bit scales
/// and mins as bytes, the quants as two nibble planes per 64-byte line) and its one-token loops
/// (<see cref="DotQ4_K.PackedDot1Avx512"/>, <see cref="DotQ4_K.PackedDot1Avx2"/> with AVX-VNNI off and on). Each row
/// of a group against the integer scalar rung (<see cref="DotQ4_K.DotScalar"/>, the same Q8_K activations) and a
/// float64 dot of the dequantized weights and activations, for 1, 3, 9 and 17 blocks and weights that are reference-
/// quantized, raw bytes, extreme scale patterns or subnormal d/dmin. The copy's bytes against the layout written out
/// from ggml's get_scale_min_k4 here. With one live sub-block at a time and a different scale and min in every (row,
/// block, sub-block), each row must give that sub-block's term alone: a scale or min taken from another sub-block,
/// row or block, or nibbles from another plane, fail.
/// </summary>
public sealed unsafe class X64PackedQ4_KTests
{
    private const int Rows = DotQ4_K.PackRows;

    public static bool Supported(KPackedWay way) => way switch
    {
        KPackedWay.Avx512 => KernelRung.IsSupported(Rung.Avx512),
        KPackedWay.Avx2 => KernelRung.IsSupported(Rung.Avx2),
        _ => KernelRung.IsSupported(Rung.Avx2) && AvxVnni.IsSupported,
    };

    /// <summary>Q4_K's copy for <see cref="KPackedCopyChecks"/>, with the block kinds of <see cref="Cases"/>.</summary>
    internal static readonly KPackedFormat Format = new()
    {
        Type = GgmlType.Q4_K,
        PackRows = Rows,
        BlockBytes = DotQ4_K.BlockBytes,
        PackedBytes = DotQ4_K.PackedBytes,
        Repack = DotQ4_K.Repack,
        DotScalar = DotQ4_K.DotScalar,
        Kind = (w, o, r, b, kind, rng) =>
        {
            switch (kind)
            {
                case "scales 63 mins 63": for (int i = 4; i < 16; i++) w[o + i] = 0xFF; break;
                case "scales 0":
                    for (int i = 0; i < 4; i++) w[o + 4 + i] = 0; // sc_0..3 and the high bits of sc_4..7
                    for (int i = 8; i < 12; i++) w[o + 4 + i] &= 0xF0; // sc_j = 0 for every j, the mins random
                    break;
                case "subnormal d dmin":
                    ushort d = (ushort)(rng.Next(1, 1024) | (rng.Next(2) << 15)), dm = (ushort)rng.Next(1, 1024);
                    w[o] = (byte)d; w[o + 1] = (byte)(d >> 8); w[o + 2] = (byte)dm; w[o + 3] = (byte)(dm >> 8);
                    break;
            }
        },
    };

    private static readonly KPackedLoops Avx512 = new()
    {
        Name = "Avx512", Dot1 = DotQ4_K.PackedDot1Avx512, Dot2 = DotQ4_K.PackedDot2Avx512, Dot4 = DotQ4_K.PackedDot4Avx512,
    };

    private static readonly KPackedLoops Avx2 = new()
    {
        Name = "Avx2",
        Dot1 = (g, x, n, d) => DotQ4_K.PackedDot1Avx2(g, x, n, d, vnni: false),
        Dot2 = (g, x, xs, n, d, ds) => DotQ4_K.PackedDot2Avx2(g, x, xs, n, d, ds, vnni: false),
        Dot4 = (g, x, xs, n, d, ds) => DotQ4_K.PackedDot4Avx2(g, x, xs, n, d, ds, vnni: false),
    };

    private static readonly KPackedLoops Avx2Vnni = new()
    {
        Name = "Avx2Vnni",
        Dot1 = (g, x, n, d) => DotQ4_K.PackedDot1Avx2(g, x, n, d, vnni: true),
        Dot2 = (g, x, xs, n, d, ds) => DotQ4_K.PackedDot2Avx2(g, x, xs, n, d, ds, vnni: true),
        Dot4 = (g, x, xs, n, d, ds) => DotQ4_K.PackedDot4Avx2(g, x, xs, n, d, ds, vnni: true),
    };

    /// <summary>The loops of <paramref name="way"/> over the copy.</summary>
    internal static KPackedLoops Loops(KPackedWay way) => way switch
    {
        KPackedWay.Avx512 => Avx512,
        KPackedWay.Avx2 => Avx2,
        _ => Avx2Vnni,
    };

    /// <summary>ggml's get_scale_min_k4 for sub-block j of the 12 bytes at s[o..].</summary>
    private static (int Scale, int Min) GgmlScaleMin(byte[] s, int o, int j) => j < 4
        ? (s[o + j] & 63, s[o + j + 4] & 63)
        : ((s[o + j + 4] & 0xF) | ((s[o + j - 4] >> 6) << 4), (s[o + j + 4] >> 4) | ((s[o + j] >> 6) << 4));

    /// <summary>Weight e (0..255) of a stored block at q[o..] (ggml: 32-byte chunks, low nibbles first half of 64).</summary>
    private static int StoredNibble(byte[] q, int o, int e) => (q[o + 32 * (e / 64) + e % 32] >> (e % 64 >= 32 ? 4 : 0)) & 0xF;

    public static TheoryData<int, string> Cases()
    {
        var d = new TheoryData<int, string>();
        foreach (int nb in new[] { 1, 3, 9, 17 })
            foreach (string kind in new[] { "gaussian", "raw", "zeros", "scales 63 mins 63", "scales 0", "subnormal d dmin" })
                d.Add(nb, kind);
        return d;
    }

    private static void MatchesReferences(KPackedWay way, int nb, string kind) =>
        KPackedCopyChecks.OneTokenMatchesIntegerAndFloat64References(Format, Loops(way), nb, kind, 7100 + 31 * nb + kind.Length * 7 + (int)way, $"{way} ");

    [KPackedTheory(KPackedWay.Avx512)]
    [MemberData(nameof(Cases))]
    public void Avx512MatchesIntegerAndFloat64References(int nb, string kind) => MatchesReferences(KPackedWay.Avx512, nb, kind);

    [KPackedTheory(KPackedWay.Avx2)]
    [MemberData(nameof(Cases))]
    public void Avx2MatchesIntegerAndFloat64References(int nb, string kind) => MatchesReferences(KPackedWay.Avx2, nb, kind);

    [KPackedTheory(KPackedWay.Avx2Vnni)]
    [MemberData(nameof(Cases))]
    public void Avx2VnniMatchesIntegerAndFloat64References(int nb, string kind) => MatchesReferences(KPackedWay.Avx2Vnni, nb, kind);

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(9)]
    [InlineData(17)]
    public void RepackWritesTheDocumentedLayout(int nb) =>
        KPackedCopyChecks.RepackWritesTheLayout(Format, nb, metaBytes: 160, quantBytes: 128, (rows, o, p, meta, qs, b, r) =>
        {
            Assert.Equal(rows[o] | rows[o + 1] << 8, p[meta + 2 * r] | p[meta + 2 * r + 1] << 8);
            Assert.Equal(rows[o + 2] | rows[o + 3] << 8, p[meta + 16 + 2 * r] | p[meta + 16 + 2 * r + 1] << 8);
            for (int j = 0; j < 8; j++)
            {
                (int sc, int mn) = GgmlScaleMin(rows, o + 4, j);
                Assert.Equal(sc, p[meta + 32 + 8 * r + j]);
                Assert.Equal(mn, p[meta + 96 + 16 * (j / 2) + 2 * r + j % 2]);
            }
            for (int e = 0; e < 256; e++)
            {
                int line = e / 128, i = e % 128, at = qs + 64 * line + i % 64;
                int nibble = i < 64 ? p[at] & 0xF : p[at] >> 4;
                Assert.True(StoredNibble(rows, o + 16, e) == nibble, $"{nb} blocks, block {b} row {r} weight {e}");
            }
        });

    /// <summary>
    /// One live sub-block s of block k at a time (activations zero elsewhere; a 16-sum of zeros is 0, so the mins term
    /// sees that sub-block only), scale 1 + (r + 3j + 5b) mod 63 and min 62 − (2r + j + b) mod 60, different across
    /// rows, sub-blocks and blocks: row r must give d·d_x·sc·Σ q4·q8 − dmin·d_x·m·Σ q8 of that sub-block (float64).
    /// </summary>
    private static void EachRowTakesItsOwnScaleAndMin(KPackedWay way, int nb)
    {
        int bb = DotQ4_K.BlockBytes;
        KPackedCopyChecks.RowsTakeTheirOwnScales(Format, Loops(way), nb, groupWeights: 32,
            rows =>
            {
                for (int r = 0; r < Rows; r++)
                    for (int b = 0; b < nb; b++)
                    {
                        int o = r * nb * bb + b * bb;
                        var sc = new int[8];
                        var mn = new int[8];
                        for (int j = 0; j < 8; j++) { sc[j] = 1 + (r + 3 * j + 5 * b) % 63; mn[j] = 62 - (2 * r + j + b) % 60; }
                        for (int j = 0; j < 4; j++)
                        {
                            rows[o + 4 + j] = (byte)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
                            rows[o + 8 + j] = (byte)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
                            rows[o + 12 + j] = (byte)((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
                        }
                    }
            },
            (rows, o, xq, yo, dx, s, r) =>
            {
                (int sc, int mn) = GgmlScaleMin(rows, o + 4, s);
                long dot = 0, sum = 0;
                for (int i = 0; i < 32; i++)
                {
                    int q8 = (sbyte)xq[yo + 4 + 32 * s + i];
                    dot += StoredNibble(rows, o + 16, 32 * s + i) * q8;
                    sum += q8;
                }
                double d = (double)BitConverter.ToHalf(rows, o), dmin = (double)BitConverter.ToHalf(rows, o + 2);
                return (d * dx * sc * dot - dmin * dx * mn * sum, Math.Abs(dx) * (Math.Abs(d) * sc * 15 + Math.Abs(dmin) * mn) * 32 * 128);
            }, $"{way} ");
    }

    [KPackedTheory(KPackedWay.Avx512)]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(9)]
    public void Avx512RowsTakeTheirOwnScalesAndMins(int nb) => EachRowTakesItsOwnScaleAndMin(KPackedWay.Avx512, nb);

    [KPackedTheory(KPackedWay.Avx2)]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(9)]
    public void Avx2RowsTakeTheirOwnScalesAndMins(int nb) => EachRowTakesItsOwnScaleAndMin(KPackedWay.Avx2, nb);

    [KPackedTheory(KPackedWay.Avx2Vnni)]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(9)]
    public void Avx2VnniRowsTakeTheirOwnScalesAndMins(int nb) => EachRowTakesItsOwnScaleAndMin(KPackedWay.Avx2Vnni, nb);
}
