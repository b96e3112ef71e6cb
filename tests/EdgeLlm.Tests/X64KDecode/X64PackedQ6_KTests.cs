using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Kernels;

namespace EdgeLlm.Tests.X64KDecode;

/// <summary>A theory skipped (not missing) on a CPU without AVX-512 BW and 512-bit GFNI (Q6_K's copy needs both).</summary>
public sealed class Q6_KPackedTheoryAttribute : TheoryAttribute
{
    public Q6_KPackedTheoryAttribute()
    {
        if (!DotQ6_K.PackedSupported) Skip = "this CPU cannot run the AVX-512 + GFNI loops over Q6_K's copy";
    }
}

/// <summary>
/// Q6_K's copy (<see cref="DotQ6_K.Repack"/>: eight rows a group, block headers with the rows' d and transposed scales,
/// per row the two ql lines and a line of high-bit pairs) and its one-, two- and four-token AVX-512 + GFNI loops, and the
/// matmul that runs them. One token: each row of a group against the integer scalar rung (<see cref="DotQ6_K.DotScalar"/>,
/// the same Q8_K activations) and a float64 dot of the dequantized weights and activations, for 1, 3, 9 and 17 blocks,
/// weights that are reference-quantized, raw bytes, half-zero, extreme scales (−128, 127) or subnormal d. The copy's
/// bytes against the layout worked out here from ggml's dequantize_row_q6_K. With one live 16-weight group at a time and a
/// different scale in every (row, block, group), each row must give that group's term alone: a scale taken from another
/// group, row or block, or 6-bit values from another plane, fail. Several tokens: each token's activations drawn from
/// their own seed and scaled by 1 + 3t, each (token, row) against the scalar rung and, bit for bit, against the token
/// computed alone; the matmul over 109 rows of 768 values (thirteen groups, five rows on the stored rows) on three
/// threads for batches of 1, 2, 3, 4, 5, 8 and 13 tokens. (The all-logits Q4_K_M prefill of
/// <see cref="X64PackedQ4_KBatchTests"/> runs the model's Q6_K matrices through the copy too.)
/// </summary>
public sealed unsafe class X64PackedQ6_KTests
{
    private const int G = DotQ6_K.PackRows;
    private const int Bb = DotQ6_K.BlockBytes;

    /// <summary>Q6_K's copy for <see cref="KPackedCopyChecks"/>, with the block kinds of <see cref="Cases"/>.</summary>
    internal static readonly KPackedFormat Format = new()
    {
        Type = GgmlType.Q6_K,
        PackRows = G,
        BlockBytes = Bb,
        PackedBytes = DotQ6_K.PackedBytes,
        Repack = DotQ6_K.Repack,
        DotScalar = DotQ6_K.DotScalar,
        Kind = (w, o, r, b, kind, rng) =>
        {
            switch (kind)
            {
                case "scales -128 127":
                    for (int g = 0; g < 16; g++) w[o + 192 + g] = (byte)((g + r + b) % 2 == 0 ? 0x80 : 0x7F);
                    break;
                case "subnormal d":
                    ushort d = (ushort)(rng.Next(1, 1024) | (rng.Next(2) << 15));
                    w[o + 208] = (byte)d;
                    w[o + 209] = (byte)(d >> 8);
                    break;
            }
        },
    };

    /// <summary>The AVX-512 + GFNI loops over the copy.</summary>
    internal static readonly KPackedLoops Avx512 = new()
    {
        Name = "Avx512",
        Dot1 = DotQ6_K.PackedDot1Avx512,
        Dot2 = DotQ6_K.PackedDot2Avx512,
        Dot4 = DotQ6_K.PackedDot4Avx512,
    };

    private static readonly Lazy<KPackedCopyChecks.MatMulData> MatMulData = new(() => KPackedCopyChecks.MakeMatMulData(Format));

    /// <summary>
    /// The 6-bit value (0..63) of weight e of the stored block at w[o..], from ggml's dequantize_row_q6_K: per 128-weight
    /// half h and l &lt; 32, weights l, l + 32, l + 64, l + 96 are the low nibbles of ql[l], ql[l + 32], their high
    /// nibbles, each with bit pairs 0, 1, 2, 3 of qh[l] on top.
    /// </summary>
    private static int StoredQ6(byte[] w, int o, int e)
    {
        int h = e / 128, rest = e % 128, l = rest % 32, k = rest / 32;
        int ql = w[o + 64 * h + l + (k % 2 == 1 ? 32 : 0)];
        int nibble = k < 2 ? ql & 0xF : ql >> 4;
        int hi = (w[o + 128 + 32 * h + l] >> (2 * k)) & 3;
        return nibble | hi << 4;
    }

    public static TheoryData<int, string> Cases()
    {
        var d = new TheoryData<int, string>();
        foreach (int nb in new[] { 1, 3, 9, 17 })
            foreach (string kind in new[] { "gaussian", "raw", "zeros", "scales -128 127", "subnormal d" })
                d.Add(nb, kind);
        return d;
    }

    [Q6_KPackedTheory]
    [MemberData(nameof(Cases))]
    public void OneTokenMatchesIntegerAndFloat64References(int nb, string kind) =>
        KPackedCopyChecks.OneTokenMatchesIntegerAndFloat64References(Format, Avx512, nb, kind, 8100 + 31 * nb + kind.Length * 7, "");

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(9)]
    [InlineData(17)]
    public void RepackWritesTheDocumentedLayout(int nb) =>
        KPackedCopyChecks.RepackWritesTheLayout(Format, nb, metaBytes: 144, quantBytes: 192, (rows, o, p, meta, qs, b, r) =>
        {
            Assert.Equal(rows[o + 208] | rows[o + 209] << 8, p[meta + 2 * r] | p[meta + 2 * r + 1] << 8);
            for (int g = 0; g < 16; g++)
                Assert.True(rows[o + 192 + g] == p[meta + 16 + 16 * r + 4 * (g % 4) + g / 4], $"{nb} blocks, block {b} row {r} scale {g}");
            for (int e = 0; e < 256; e++)
            {
                int plane = e / 64, i = e % 64;
                int line = p[qs + 64 * (plane / 2) + i];
                int nibble = plane % 2 == 0 ? line & 0xF : line >> 4;
                int hi = (p[qs + 128 + i] >> (2 * plane)) & 3;
                Assert.True(StoredQ6(rows, o, e) == (nibble | hi << 4), $"{nb} blocks, block {b} row {r} weight {e}");
            }
        });

    /// <summary>
    /// One live group g of block k at a time (activations zero elsewhere, so the bsums offset sees that group only),
    /// scale ((7r + 3g + 5b) mod 255) − 127, different across rows, groups and blocks (negative ones included): row r
    /// must give d·d_x·sc_g·Σ (q6 − 32)·q8 of that group (float64).
    /// </summary>
    [Q6_KPackedTheory]
    [InlineData(1)]
    [InlineData(3)]
    public void RowsTakeTheirOwnScales(int nb) =>
        KPackedCopyChecks.RowsTakeTheirOwnScales(Format, Avx512, nb, groupWeights: 16,
            rows =>
            {
                for (int r = 0; r < G; r++)
                    for (int b = 0; b < nb; b++)
                        for (int g = 0; g < 16; g++) rows[r * nb * Bb + b * Bb + 192 + g] = (byte)(sbyte)((7 * r + 3 * g + 5 * b) % 255 - 127);
            },
            (rows, o, xq, yo, dx, g, r) =>
            {
                int sc = (sbyte)rows[o + 192 + g];
                long dot = 0;
                for (int i = 0; i < 16; i++) dot += (StoredQ6(rows, o, 16 * g + i) - 32) * (long)(sbyte)xq[yo + 4 + 16 * g + i];
                double d = (double)BitConverter.ToHalf(rows, o + 208);
                return (d * dx * sc * dot, Math.Abs(d * dx) * 128 * 32 * 16 * 128);
            }, "");

    [Q6_KPackedTheory]
    [InlineData(2, 1, "gaussian")]
    [InlineData(2, 3, "raw")]
    [InlineData(4, 1, "raw")]
    [InlineData(4, 3, "gaussian")]
    [InlineData(4, 9, "raw")]
    [InlineData(4, 3, "scales -128 127")]
    [InlineData(4, 1, "zeros")]
    [InlineData(4, 2, "scales -128 127")]
    [InlineData(4, 8, "subnormal d")]
    [InlineData(4, 17, "gaussian")]
    public void GroupLoopsMatchScalarAndTheOneTokenLoop(int tokens, int nb, string kind) =>
        KPackedCopyChecks.GroupLoopsMatchScalarAndTheOneTokenLoop(Format, Avx512, tokens, nb, KPackedCopyChecks.MakeRows(Format, nb, kind, 3300 + nb), $"{kind}: ");

    /// <summary>
    /// The matmul of a Q6_K weight on AVX-512 (the copy where the CPU has GFNI: checked to be made): every (token, row)
    /// of a batch against the scalar rung, and bit for bit against the same token decoded alone. With
    /// <paramref name="batchInvariant"/> the backend's batch-invariant mode (the server's), which keeps the copy.
    /// </summary>
    [VariantTheory(Variant.Avx512)]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(4, false)]
    [InlineData(5, false)]
    [InlineData(8, false)]
    [InlineData(13, false)]
    [InlineData(5, true)]
    [InlineData(4, true)]
    [InlineData(13, true)]
    public void MatMulOverTheCopyMatchesScalarAndDecodeAlone(int tokens, bool batchInvariant) =>
        KPackedCopyChecks.MatMulMatchesScalarAndDecodeAlone(Format, MatMulData.Value, Variant.Avx512, tokens, batchInvariant, "blk.0.ffn_down.weight",
            bitExact: true, copyExpected: KernelRung.UseRepack && DotQ6_K.PackedSupported);
}
