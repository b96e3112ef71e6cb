using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.ModelGen;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Kernels;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.X64KDecode;

/// <summary>A theory skipped (not missing) on a CPU without AVX-512 BW and 512-bit GFNI (Q5_K's copy needs both).</summary>
public sealed class Q5_KPackedTheoryAttribute : TheoryAttribute
{
    public Q5_KPackedTheoryAttribute()
    {
        if (!DotQ5_K.PackedSupported) Skip = "this CPU cannot run the AVX-512 + GFNI loops over Q5_K's copy";
    }
}

/// <summary>
/// Q5_K's copy (<see cref="DotQ5_K.Repack"/>: eight rows a group, block headers with the rows' d, dmin and 6-bit scales
/// and mins as bytes, per row two nibble lines, the rows' fifth-bit bytes after the nibble lines) and its one-, two- and
/// four-token AVX-512 + GFNI loops, and the matmul that runs them. One token: each row of a group against the integer
/// scalar rung (<see cref="DotQ5_K.DotScalar"/>, the same Q8_K activations) and a float64 dot of the dequantized weights
/// and activations, for 1, 3, 9 and 17 blocks, weights that are reference-quantized, raw bytes, half-zero, all scales and
/// mins 63, or subnormal d and dmin. The copy's bytes against the layout worked out here from ggml's dequantize_row_q5_K
/// and get_scale_min_k4 (<see cref="Q4_K.GetScaleMin"/>). With one live sub-block at a time and a different scale and min
/// in every (row, block, sub-block), each row must give that sub-block's terms alone: a scale or min taken from another
/// sub-block, row or block, or fifth bits from another plane or row, fail. Several tokens: each token's activations drawn
/// from their own seed and scaled by 1 + 3t, each (token, row) against the scalar rung and, bit for bit, against the
/// token computed alone; the matmul over 109 rows of 768 values (thirteen groups, five rows on the stored rows) on three
/// threads for batches of 1, 2, 3, 4, 5, 8 and 13 tokens, plain and batch-invariant; a Q5_K_M model's all-logits prefill
/// against the scalar rung's.
/// </summary>
public sealed unsafe class X64PackedQ5_KTests
{
    private const int G = DotQ5_K.PackRows;
    private const int Bb = DotQ5_K.BlockBytes;

    /// <summary>Q5_K's copy for <see cref="KPackedCopyChecks"/>, with the block kinds of <see cref="Cases"/> and its own magnitude (the mins term).</summary>
    internal static readonly KPackedFormat Format = new()
    {
        Type = GgmlType.Q5_K,
        PackRows = G,
        BlockBytes = Bb,
        PackedBytes = DotQ5_K.PackedBytes,
        Repack = DotQ5_K.Repack,
        DotScalar = DotQ5_K.DotScalar,
        Magnitude = (w, _, xDeq) => Magnitude5(w, xDeq),
        Kind = (w, o, r, b, kind, rng) =>
        {
            if (kind is "gaussian" or "zeros") return;
            SetHalf(w, o, rng);
            SetHalf(w, o + 2, rng);
            switch (kind)
            {
                case "scales 63":
                    for (int i = 0; i < 12; i++) w[o + 4 + i] = 0xFF;
                    break;
                case "subnormal d":
                    for (int k = 0; k < 2; k++)
                    {
                        ushort d = (ushort)(rng.Next(1, 1024) | (rng.Next(2) << 15));
                        w[o + 2 * k] = (byte)d;
                        w[o + 2 * k + 1] = (byte)(d >> 8);
                    }
                    break;
            }
        },
    };

    /// <summary>The AVX-512 + GFNI loops over the copy.</summary>
    internal static readonly KPackedLoops Avx512 = new()
    {
        Name = "Avx512",
        Dot1 = DotQ5_K.PackedDot1Avx512,
        Dot2 = DotQ5_K.PackedDot2Avx512,
        Dot4 = DotQ5_K.PackedDot4Avx512,
    };

    private static readonly Lazy<KPackedCopyChecks.MatMulData> MatMulData = new(() => KPackedCopyChecks.MakeMatMulData(Format));

    /// <summary>
    /// The 5-bit value (0..31) of weight e of the stored block at w[o..], from ggml's dequantize_row_q5_K: per 64-weight
    /// chunk c and l &lt; 32, weight 64c + l is the low nibble of qs[32c + l] plus 16 if bit 2c of qh[l] is set, weight
    /// 64c + 32 + l its high nibble plus 16 if bit 2c + 1 is set (qh at 16, qs at 48).
    /// </summary>
    private static int StoredQ5(byte[] w, int o, int e)
    {
        int c = e / 64, l = e % 32, hiHalf = e % 64 / 32;
        int q = w[o + 48 + 32 * c + l];
        int nibble = hiHalf == 0 ? q & 0xF : q >> 4;
        int fifth = (w[o + 16 + l] >> (2 * c + hiHalf)) & 1;
        return nibble | fifth << 4;
    }

    private static void ScaleMin(byte[] w, int o, int j, out int sc, out int m)
    {
        fixed (byte* p = w) Q4_K.GetScaleMin(j, p + o + 4, out sc, out m);
    }

    /// <summary>Writes 6-bit scale <paramref name="sc"/> and min <paramref name="m"/> of sub-block j into the 12 packed bytes at w[o + 4..] (the inverse of get_scale_min_k4).</summary>
    private static void SetScaleMin(byte[] w, int o, int j, int sc, int m)
    {
        int s = o + 4;
        if (j < 4)
        {
            w[s + j] = (byte)((w[s + j] & 0xC0) | sc);
            w[s + j + 4] = (byte)((w[s + j + 4] & 0xC0) | m);
        }
        else
        {
            w[s + j + 4] = (byte)((sc & 0xF) | (m & 0xF) << 4);
            w[s + j - 4] = (byte)((w[s + j - 4] & 0x3F) | (sc >> 4) << 6);
            w[s + j] = (byte)((w[s + j] & 0x3F) | (m >> 4) << 6);
        }
    }

    private static double Half(byte[] a, int o) => (double)BitConverter.UInt16BitsToHalf((ushort)(a[o] | (a[o + 1] << 8)));

    /// <summary>Σ |x'_i|·(|w'_i| + 2·dmin·m_i): what the float reassociation errors of the kernels scale with (the mins term included).</summary>
    private static double Magnitude5(byte[] w, float[] xDeq)
    {
        int n = xDeq.Length;
        float[] wDeq = DequantizeWeights(GgmlType.Q5_K, w, n);
        double mag = 0;
        for (int i = 0; i < n; i++)
        {
            int o = i / 256 * Bb;
            ScaleMin(w, o, i % 256 / 32, out _, out int m);
            mag += Math.Abs((double)xDeq[i]) * (Math.Abs((double)wDeq[i]) + 2 * Math.Abs(Half(w, o + 2)) * m);
        }
        return mag;
    }

    /// <summary>A random finite fp16 with magnitude in [2^-14, 2^0), either sign, at w[o..].</summary>
    private static void SetHalf(byte[] w, int o, Random rng)
    {
        ushort h = (ushort)((rng.Next(1, 16) << 10) | rng.Next(1024) | (rng.Next(2) << 15));
        w[o] = (byte)h;
        w[o + 1] = (byte)(h >> 8);
    }

    public static TheoryData<int, string> Cases()
    {
        var d = new TheoryData<int, string>();
        foreach (int nb in new[] { 1, 3, 9, 17 })
            foreach (string kind in new[] { "gaussian", "raw", "zeros", "scales 63", "subnormal d" })
                d.Add(nb, kind);
        return d;
    }

    [Q5_KPackedTheory]
    [MemberData(nameof(Cases))]
    public void OneTokenMatchesIntegerAndFloat64References(int nb, string kind) =>
        KPackedCopyChecks.OneTokenMatchesIntegerAndFloat64References(Format, Avx512, nb, kind, 8500 + 31 * nb + kind.Length * 7, "");

    /// <summary>
    /// Per block a 160-byte header (the rows' d, dmin, then the scales and mins as bytes), then per row two nibble lines
    /// (128 bytes at 128·r) and after all eight rows' nibbles each row's 32 fifth-bit bytes (at 1024 + 32·r).
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(9)]
    [InlineData(17)]
    public void RepackWritesTheDocumentedLayout(int nb) =>
        KPackedCopyChecks.RepackWritesTheLayout(Format, nb, metaBytes: 160, quantBytes: 160, (rows, o, p, meta, rowQuants, b, r) =>
        {
            int blockQuants = rowQuants - 160 * r, qs = blockQuants + 128 * r, qh = blockQuants + 1024 + 32 * r;
            Assert.Equal(rows[o] | rows[o + 1] << 8, p[meta + 2 * r] | p[meta + 2 * r + 1] << 8);
            Assert.Equal(rows[o + 2] | rows[o + 3] << 8, p[meta + 16 + 2 * r] | p[meta + 17 + 2 * r] << 8);
            for (int j = 0; j < 8; j++)
            {
                ScaleMin(rows, o, j, out int sc, out int m);
                Assert.True(sc == p[meta + 32 + 8 * r + j], $"{nb} blocks, block {b} row {r} scale {j}");
                Assert.True(m == p[meta + 96 + 16 * (j / 2) + 2 * r + j % 2], $"{nb} blocks, block {b} row {r} min {j}");
            }
            for (int e = 0; e < 256; e++)
            {
                int plane = e / 64, i = e % 64;
                int line = p[qs + 64 * (plane / 2) + i];
                int nibble = plane % 2 == 0 ? line & 0xF : line >> 4;
                int fifth = (p[qh + i % 32] >> (2 * plane + i / 32)) & 1;
                Assert.True(StoredQ5(rows, o, e) == (nibble | fifth << 4), $"{nb} blocks, block {b} row {r} weight {e}");
            }
        });

    /// <summary>
    /// One live sub-block j of block k at a time (activations zero elsewhere, so the mins term sees that sub-block only),
    /// scale 1 + (7r + 3j + 5b) mod 63 and min 1 + (5r + 11j + 3b) mod 63, different across rows, sub-blocks and blocks,
    /// the fifth bits of one row in four set everywhere: row r must give d_x·(d·sc·Σ q5·q8 − dmin·m·Σ q8) of that
    /// sub-block (float64).
    /// </summary>
    [Q5_KPackedTheory]
    [InlineData(1)]
    [InlineData(3)]
    public void RowsTakeTheirOwnScalesAndMins(int nb) =>
        KPackedCopyChecks.RowsTakeTheirOwnScales(Format, Avx512, nb, groupWeights: 32,
            rows =>
            {
                for (int r = 0; r < G; r++)
                    for (int b = 0; b < nb; b++)
                    {
                        int o = r * nb * Bb + b * Bb;
                        for (int j = 0; j < 8; j++) SetScaleMin(rows, o, j, 1 + (7 * r + 3 * j + 5 * b) % 63, 1 + (5 * r + 11 * j + 3 * b) % 63);
                        if (r % 4 == 1)
                            for (int i = 0; i < 32; i++) rows[o + 16 + i] = 0xFF;
                    }
            },
            (rows, o, xq, yo, dx, j, r) =>
            {
                ScaleMin(rows, o, j, out int sc, out int m);
                long dot = 0, sum = 0;
                for (int i = 0; i < 32; i++)
                {
                    int q8 = (sbyte)xq[yo + 4 + 32 * j + i];
                    dot += StoredQ5(rows, o, 32 * j + i) * (long)q8;
                    sum += q8;
                }
                double d = Half(rows, o), dmin = Half(rows, o + 2);
                return (dx * (d * sc * dot - dmin * m * sum), Math.Abs(dx) * (Math.Abs(d) * 63 * 31 + Math.Abs(dmin) * 63) * 32 * 128);
            }, "");

    [Q5_KPackedTheory]
    [InlineData(2, 1, "gaussian")]
    [InlineData(2, 3, "raw")]
    [InlineData(4, 1, "raw")]
    [InlineData(4, 3, "gaussian")]
    [InlineData(4, 9, "raw")]
    [InlineData(4, 3, "scales 63")]
    public void GroupLoopsMatchScalarAndTheOneTokenLoop(int tokens, int nb, string kind) =>
        KPackedCopyChecks.GroupLoopsMatchScalarAndTheOneTokenLoop(Format, Avx512, tokens, nb, KPackedCopyChecks.MakeRows(Format, nb, kind, 3300 + nb), $"{kind}: ");

    /// <summary>
    /// The matmul of a Q5_K weight on AVX-512 (the copy where the CPU has GFNI: checked to be made): every (token, row)
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
    [InlineData(13, true)]
    public void MatMulOverTheCopyMatchesScalarAndDecodeAlone(int tokens, bool batchInvariant) =>
        KPackedCopyChecks.MatMulMatchesScalarAndDecodeAlone(Format, MatMulData.Value, Variant.Avx512, tokens, batchInvariant, "blk.0.ffn_down.weight",
            bitExact: KernelRung.UseRepack || batchInvariant, copyExpected: KernelRung.UseRepack && DotQ5_K.PackedSupported);

    private static readonly int[] Prompt = [1, 17, 255, 3, 299, 42, 42, 7, 100, 260, 2, 0, 150, 151, 9, 33, 77];

    /// <summary>
    /// A random Q5_K_M model (ModelGen's mix: Q5_K matrices, Q6_K for the output and some ffn_down / attn_v) of rows of
    /// 256 and 768 values: the all-logits prefill of 17 tokens (in chunks of <paramref name="maxBatch"/>: the copy's four-,
    /// two- and one-token steps) on AVX-512 against the same prefill on the scalar rung (the reference loops), every
    /// logit within 2e-2 of the position's largest (a last-bit difference can flip one int8 of the next product's
    /// activations; a mixed-up token or row changes the logits by O(1)), and token-by-token decode within the same bound.
    /// </summary>
    [VariantTheory(Variant.Avx512)]
    [InlineData(13)]
    [InlineData(5)]
    public void Q5_K_MAllLogitsMatchTheScalarRung(int maxBatch)
    {
        var shape = new ModelShape { Dim = 256, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 768, Vocab = 300, Context = 64 };
        string path = TestPaths.TempFile($"q5kpack-q5_k_m-{maxBatch}.gguf");
        ModelGenerator.Write(new ModelGenOptions { Shape = shape, Format = WeightFormat.Q5_K_M, Seed = 13 }, path);
        var options = new BackendOptions { Threads = 2, MaxBatch = maxBatch, ContextSize = 64 };
        float[] fast = Prefill(path, options, Variant.Avx512, out int v, out float[] decode);
        float[] reference = Prefill(path, options, Variant.Scalar, out _, out _);
        for (int pos = 0; pos < Prompt.Length; pos++)
        {
            float scale = 0;
            for (int i = 0; i < v; i++) scale = Math.Max(scale, Math.Abs(reference[pos * v + i]));
            Assert.True(scale > 0.1f, $"position {pos}: reference logits all near zero");
            for (int i = 0; i < v; i++)
            {
                float f = fast[pos * v + i], r = reference[pos * v + i], d = decode[pos * v + i];
                Assert.True(Math.Abs(f - r) <= 2e-2f * scale, $"position {pos} logit {i}: prefill {f} vs scalar {r} (largest {scale})");
                Assert.True(Math.Abs(d - r) <= 2e-2f * scale, $"position {pos} logit {i}: decode {d} vs scalar {r} (largest {scale})");
            }
        }
    }

    private static float[] Prefill(string path, BackendOptions options, Variant variant, out int v, out float[] decode)
    {
        var (rung, flags) = KernelVariants.Of(variant);
        var file = GgufFile.Open(path);
        LlamaModel model;
        try
        {
            model = new LlamaModel(file, new CpuBackend(options.Threads, options.BatchInvariant, rung, flags), options, ownsFile: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
        using (model)
        {
            v = model.VocabSize;
            var all = new float[Prompt.Length * v];
            model.Forward(Prompt, 0, all, allLogits: true);
            model.Cache.Clear();
            decode = new float[Prompt.Length * v];
            for (int p = 0; p < Prompt.Length; p++) model.Forward(Prompt[p], p, decode.AsSpan(p * v, v));
            return all;
        }
    }
}
