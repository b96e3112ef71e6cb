using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Kernels.KernelTestData;

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

    /// <summary>ggml's get_scale_min_k4 for sub-block j of the 12 bytes at s[o..].</summary>
    private static (int Scale, int Min) GgmlScaleMin(byte[] s, int o, int j) => j < 4
        ? (s[o + j] & 63, s[o + j + 4] & 63)
        : ((s[o + j + 4] & 0xF) | ((s[o + j - 4] >> 6) << 4), (s[o + j + 4] >> 4) | ((s[o + j] >> 6) << 4));

    /// <summary>Weight e (0..255) of a stored block at q[o..] (ggml: 32-byte chunks, low nibbles first half of 64).</summary>
    private static int StoredNibble(byte[] q, int o, int e) => (q[o + 32 * (e / 64) + e % 32] >> (e % 64 >= 32 ? 4 : 0)) & 0xF;

    private static byte[] Repack(byte[] rows, int n)
    {
        long bytes = DotQ4_K.PackedBytes(Rows, n);
        var packed = new byte[bytes];
        fixed (byte* pr = rows) fixed (byte* pp = packed) DotQ4_K.Repack(pr, (long)n / 256 * DotQ4_K.BlockBytes, Rows, n, pp);
        return packed;
    }

    private static void Run(KPackedWay way, byte[] packed, byte[] xq, int n, float[] dst)
    {
        // The copy at a 64-byte aligned address, as the backend's arena hands it out.
        byte* a = (byte*)NativeMemory.AlignedAlloc((nuint)packed.Length, 64);
        try
        {
            packed.AsSpan().CopyTo(new Span<byte>(a, packed.Length));
            fixed (byte* px = xq) fixed (float* pd = dst)
            {
                switch (way)
                {
                    case KPackedWay.Avx512: DotQ4_K.PackedDot1Avx512(a, px, n, pd); break;
                    case KPackedWay.Avx2: DotQ4_K.PackedDot1Avx2(a, px, n, pd, vnni: false); break;
                    default: DotQ4_K.PackedDot1Avx2(a, px, n, pd, vnni: true); break;
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(a);
        }
    }

    public static TheoryData<int, string> Cases()
    {
        var d = new TheoryData<int, string>();
        foreach (int nb in new[] { 1, 3, 9, 17 })
            foreach (string kind in new[] { "gaussian", "raw", "zeros", "scales 63 mins 63", "scales 0", "subnormal d dmin" })
                d.Add(nb, kind);
        return d;
    }

    /// <summary>Eight rows of <paramref name="nb"/> blocks of the given kind (different per row).</summary>
    private static byte[] MakeRows(int nb, string kind, int seed)
    {
        int n = nb * 256, bb = DotQ4_K.BlockBytes;
        var rows = new byte[Rows * nb * bb];
        var rng = new Random(seed);
        for (int r = 0; r < Rows; r++)
        {
            byte[] w = Weights(GgmlType.Q4_K, n, kind is "gaussian" or "zeros" ? kind : "raw", seed + 17 * r);
            for (int b = 0; b < nb; b++)
            {
                int o = b * bb;
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
            }
            w.CopyTo(rows, r * nb * bb);
        }
        return rows;
    }

    private static void MatchesReferences(KPackedWay way, int nb, string kind)
    {
        int n = nb * 256, bb = DotQ4_K.BlockBytes;
        int seed = 7100 + 31 * nb + kind.Length * 7 + (int)way;
        byte[] rows = MakeRows(nb, kind, seed);
        float[] x = Activations(n, 256, seed + 5);
        byte[] xq = QuantizeActivations(GgmlType.Q4_K, x);
        float[] xDeq = DequantizeActivations(GgmlType.Q4_K, xq, n);
        var got = new float[Rows];
        Run(way, Repack(rows, n), xq, n, got);
        for (int r = 0; r < Rows; r++)
        {
            byte[] w = rows.AsSpan(r * nb * bb, nb * bb).ToArray();
            float[] wDeq = DequantizeWeights(GgmlType.Q4_K, w, n);
            double m = Magnitude(GgmlType.Q4_K, w, wDeq, xDeq), reference = 0;
            for (int i = 0; i < n; i++) reference += (double)wDeq[i] * xDeq[i];
            float scalar;
            fixed (byte* pw = w) fixed (byte* px = xq) scalar = DotQ4_K.DotScalar(pw, px, n);
            Assert.True(Math.Abs(got[r] - scalar) <= 1e-5 * m + 1e-30, $"{way} {nb} blocks {kind} row {r}: {got[r]} vs integer reference {scalar} (M {m:G3})");
            Assert.True(Math.Abs(got[r] - reference) <= 1e-5 * m + 1e-30, $"{way} {nb} blocks {kind} row {r}: {got[r]} vs float64 {reference} (M {m:G3})");
        }
    }

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
    public void RepackWritesTheDocumentedLayout(int nb)
    {
        int n = nb * 256, bb = DotQ4_K.BlockBytes;
        byte[] rows = MakeRows(nb, "raw", 400 + nb);
        byte[] p = Repack(rows, n);
        int metaRegion = (nb * 160 + 63) / 64 * 64;
        Assert.Equal(metaRegion + nb * 1024, p.Length);
        Assert.Equal(0, p.Length % 64);
        for (int i = nb * 160; i < metaRegion; i++) Assert.Equal(0, p[i]);
        for (int b = 0; b < nb; b++)
            for (int r = 0; r < Rows; r++)
            {
                int o = r * nb * bb + b * bb, meta = b * 160, qs = metaRegion + b * 1024 + 128 * r;
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
            }
    }

    /// <summary>
    /// One live sub-block s of block k at a time (activations zero elsewhere; a 16-sum of zeros is 0, so the mins term
    /// sees that sub-block only), scale 1 + (r + 3j + 5b) mod 63 and min 62 − (2r + j + b) mod 60, different across
    /// rows, sub-blocks and blocks: row r must give d·d_x·sc·Σ q4·q8 − dmin·d_x·m·Σ q8 of that sub-block (float64).
    /// </summary>
    private static void EachRowTakesItsOwnScaleAndMin(KPackedWay way, int nb)
    {
        int n = nb * 256, bb = DotQ4_K.BlockBytes;
        byte[] rows = MakeRows(nb, "raw", 900 + nb);
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
        byte[] packed = Repack(rows, n);
        float[] x = Activations(n, 256, 77 + nb);
        var got = new float[Rows];
        for (int k = 0; k < nb; k++)
            for (int s = 0; s < 8; s++)
            {
                var xs = new float[n];
                for (int i = 0; i < 32; i++) xs[k * 256 + 32 * s + i] = x[(k * 256 + 32 * s + i) % n] + 0.25f;
                byte[] xq = QuantizeActivations(GgmlType.Q4_K, xs);
                Run(way, packed, xq, n, got);
                int yo = k * 292;
                double dx = BitConverter.ToSingle(xq, yo);
                for (int r = 0; r < Rows; r++)
                {
                    int o = r * nb * bb + k * bb;
                    (int sc, int mn) = GgmlScaleMin(rows, o + 4, s);
                    long dot = 0, sum = 0;
                    for (int i = 0; i < 32; i++)
                    {
                        int q8 = (sbyte)xq[yo + 4 + 32 * s + i];
                        dot += StoredNibble(rows, o + 16, 32 * s + i) * q8;
                        sum += q8;
                    }
                    double d = (double)BitConverter.ToHalf(rows, o), dmin = (double)BitConverter.ToHalf(rows, o + 2);
                    double want = d * dx * sc * dot - dmin * dx * mn * sum;
                    double mag = Math.Abs(dx) * (Math.Abs(d) * sc * 15 + Math.Abs(dmin) * mn) * 32 * 128;
                    Assert.True(Math.Abs(got[r] - want) <= 1e-6 * mag, $"{way} block {k} of {nb}, sub-block {s}, row {r}: {got[r]} vs {want}");
                }
            }
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
