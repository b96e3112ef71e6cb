using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Tests.Kernels;
using static EdgeLlm.Tests.Kernels.KernelTestData;

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

    private static byte[] Repack(byte[] rows, int n, int groups = 1)
    {
        var packed = new byte[DotQ6_K.PackedBytes(G * groups, n)];
        fixed (byte* pr = rows) fixed (byte* pp = packed) DotQ6_K.Repack(pr, (long)n / 256 * Bb, G * groups, n, pp);
        return packed;
    }

    /// <summary>The one-token loop over the copy placed at a 64-byte aligned address, as the backend's arena hands it out.</summary>
    private static void Run1(byte[] packed, byte[] xq, int n, float[] dst)
    {
        byte* a = (byte*)NativeMemory.AlignedAlloc((nuint)packed.Length, 64);
        try
        {
            packed.AsSpan().CopyTo(new Span<byte>(a, packed.Length));
            fixed (byte* px = xq) fixed (float* pd = dst) DotQ6_K.PackedDot1Avx512(a, px, n, pd);
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
            foreach (string kind in new[] { "gaussian", "raw", "zeros", "scales -128 127", "subnormal d" })
                d.Add(nb, kind);
        return d;
    }

    /// <summary>Eight rows of <paramref name="nb"/> blocks of the given kind (different per row).</summary>
    private static byte[] MakeRows(int nb, string kind, int seed)
    {
        int n = nb * 256;
        var rows = new byte[G * nb * Bb];
        var rng = new Random(seed);
        for (int r = 0; r < G; r++)
        {
            byte[] w = Weights(GgmlType.Q6_K, n, kind is "gaussian" or "zeros" ? kind : "raw", seed + 17 * r);
            for (int b = 0; b < nb; b++)
            {
                int o = b * Bb;
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
            }
            w.CopyTo(rows, r * nb * Bb);
        }
        return rows;
    }

    [Q6_KPackedTheory]
    [MemberData(nameof(Cases))]
    public void OneTokenMatchesIntegerAndFloat64References(int nb, string kind)
    {
        int n = nb * 256;
        int seed = 8100 + 31 * nb + kind.Length * 7;
        byte[] rows = MakeRows(nb, kind, seed);
        float[] x = Activations(n, 256, seed + 5);
        byte[] xq = QuantizeActivations(GgmlType.Q6_K, x);
        float[] xDeq = DequantizeActivations(GgmlType.Q6_K, xq, n);
        var got = new float[G];
        Run1(Repack(rows, n), xq, n, got);
        for (int r = 0; r < G; r++)
        {
            byte[] w = rows.AsSpan(r * nb * Bb, nb * Bb).ToArray();
            float[] wDeq = DequantizeWeights(GgmlType.Q6_K, w, n);
            double m = Magnitude(GgmlType.Q6_K, w, wDeq, xDeq), reference = 0;
            for (int i = 0; i < n; i++) reference += (double)wDeq[i] * xDeq[i];
            float scalar;
            fixed (byte* pw = w) fixed (byte* px = xq) scalar = DotQ6_K.DotScalar(pw, px, n);
            Assert.True(Math.Abs(got[r] - scalar) <= 1e-5 * m + 1e-30, $"{nb} blocks {kind} row {r}: {got[r]} vs integer reference {scalar} (M {m:G3})");
            Assert.True(Math.Abs(got[r] - reference) <= 1e-5 * m + 1e-30, $"{nb} blocks {kind} row {r}: {got[r]} vs float64 {reference} (M {m:G3})");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(9)]
    [InlineData(17)]
    public void RepackWritesTheDocumentedLayout(int nb)
    {
        int n = nb * 256;
        byte[] rows = MakeRows(nb, "raw", 400 + nb);
        byte[] p = Repack(rows, n);
        int metaRegion = (nb * 144 + 63) / 64 * 64;
        Assert.Equal(metaRegion + nb * 1536, p.Length);
        Assert.Equal(0, p.Length % 64);
        for (int i = nb * 144; i < metaRegion; i++) Assert.Equal(0, p[i]);
        for (int b = 0; b < nb; b++)
            for (int r = 0; r < G; r++)
            {
                int o = r * nb * Bb + b * Bb, meta = b * 144, qs = metaRegion + b * 1536 + 192 * r;
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
            }
    }

    /// <summary>
    /// One live group g of block k at a time (activations zero elsewhere, so the bsums offset sees that group only),
    /// scale ((7r + 3g + 5b) mod 255) − 127, different across rows, groups and blocks (negative ones included): row r
    /// must give d·d_x·sc_g·Σ (q6 − 32)·q8 of that group (float64).
    /// </summary>
    [Q6_KPackedTheory]
    [InlineData(1)]
    [InlineData(3)]
    public void RowsTakeTheirOwnScales(int nb)
    {
        int n = nb * 256;
        byte[] rows = MakeRows(nb, "raw", 900 + nb);
        for (int r = 0; r < G; r++)
            for (int b = 0; b < nb; b++)
                for (int g = 0; g < 16; g++) rows[r * nb * Bb + b * Bb + 192 + g] = (byte)(sbyte)((7 * r + 3 * g + 5 * b) % 255 - 127);
        byte[] packed = Repack(rows, n);
        float[] x = Activations(n, 256, 77 + nb);
        var got = new float[G];
        for (int k = 0; k < nb; k++)
            for (int g = 0; g < 16; g++)
            {
                var xs = new float[n];
                for (int i = 0; i < 16; i++) xs[k * 256 + 16 * g + i] = x[(k * 256 + 16 * g + i) % n] + 0.25f;
                byte[] xq = QuantizeActivations(GgmlType.Q6_K, xs);
                Run1(packed, xq, n, got);
                int yo = k * ActivationQuant.Q8_KBlockBytes;
                double dx = BitConverter.ToSingle(xq, yo);
                for (int r = 0; r < G; r++)
                {
                    int o = r * nb * Bb + k * Bb;
                    int sc = (sbyte)rows[o + 192 + g];
                    long dot = 0;
                    for (int i = 0; i < 16; i++) dot += (StoredQ6(rows, o, 16 * g + i) - 32) * (long)(sbyte)xq[yo + 4 + 16 * g + i];
                    double d = (double)BitConverter.ToHalf(rows, o + 208);
                    double want = d * dx * sc * dot, mag = Math.Abs(d * dx) * 128 * 32 * 16 * 128;
                    Assert.True(Math.Abs(got[r] - want) <= 1e-6 * mag, $"block {k} of {nb}, group {g}, row {r}: {got[r]} vs {want}");
                }
            }
    }

    [Q6_KPackedTheory]
    [InlineData(2, 1, "gaussian")]
    [InlineData(2, 3, "raw")]
    [InlineData(4, 1, "raw")]
    [InlineData(4, 3, "gaussian")]
    [InlineData(4, 9, "raw")]
    [InlineData(4, 3, "scales -128 127")]
    public void GroupLoopsMatchScalarAndTheOneTokenLoop(int tokens, int nb, string kind)
    {
        int n = nb * 256;
        const int dstStride = 11; // not the group's eight: the t·stride offset of each token's rows is checked
        byte[] stored = MakeRows(nb, kind, 3300 + nb);
        var xq = new byte[tokens][];
        for (int t = 0; t < tokens; t++)
        {
            float[] a = Activations(n, 256, 3900 + 7 * t + nb);
            for (int i = 0; i < n; i++) a[i] *= 1 + 3 * t;
            xq[t] = QuantizeActivations(GgmlType.Q6_K, a);
        }
        int xStride = xq[0].Length;
        var xAll = new byte[tokens * xStride];
        for (int t = 0; t < tokens; t++) xq[t].CopyTo(xAll, t * xStride);

        long bytes = DotQ6_K.PackedBytes(G, n);
        byte* packed = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        var got = new float[tokens * dstStride];
        var alone = new float[G];
        try
        {
            fixed (byte* ps = stored) DotQ6_K.Repack(ps, (long)nb * Bb, G, n, packed);
            fixed (byte* px = xAll) fixed (float* pd = got)
            {
                if (tokens == 2) DotQ6_K.PackedDot2Avx512(packed, px, xStride, n, pd, dstStride);
                else DotQ6_K.PackedDot4Avx512(packed, px, xStride, n, pd, dstStride);
            }
            for (int t = 0; t < tokens; t++)
            {
                fixed (byte* px = xq[t]) fixed (float* pa = alone) DotQ6_K.PackedDot1Avx512(packed, px, n, pa);
                float[] xDeq = DequantizeActivations(GgmlType.Q6_K, xq[t], n);
                for (int r = 0; r < G; r++)
                {
                    byte[] w = stored.AsSpan(r * nb * Bb, nb * Bb).ToArray();
                    float scalar;
                    fixed (byte* pw = w) fixed (byte* px = xq[t]) scalar = DotQ6_K.DotScalar(pw, px, n);
                    double m = Magnitude(GgmlType.Q6_K, w, DequantizeWeights(GgmlType.Q6_K, w, n), xDeq);
                    float v = got[t * dstStride + r];
                    Assert.True(Math.Abs(v - scalar) <= 1e-5 * m + 1e-30, $"{tokens} tokens, {nb} blocks {kind}: token {t} row {r}: {v} vs scalar {scalar} (M {m:G3})");
                    Assert.True(BitConverter.SingleToInt32Bits(v) == BitConverter.SingleToInt32Bits(alone[r]),
                        $"{tokens} tokens, {nb} blocks {kind}: token {t} row {r}: {v} in the group loop vs {alone[r]} alone");
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(packed);
        }
    }

    private const int N = 768, Rows = 13 * G + 5, MaxTokens = 13;

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
    public void MatMulOverTheCopyMatchesScalarAndDecodeAlone(int tokens, bool batchInvariant)
    {
        var (rung, flags) = KernelVariants.Of(Variant.Avx512);
        long rowBytes = GgmlTypes.RowBytes(GgmlType.Q6_K, N);
        var w = new byte[Rows * rowBytes];
        var wRow = new byte[Rows][];
        for (int r = 0; r < Rows; r++)
        {
            wRow[r] = Weights(GgmlType.Q6_K, N, r % 2 == 0 ? "gaussian" : "raw", 5100 + r);
            wRow[r].CopyTo(w, r * rowBytes);
        }
        var x = new float[MaxTokens * N];
        var xq = new byte[MaxTokens][];
        for (int k = 0; k < MaxTokens; k++)
        {
            float[] a = Activations(N, 256, 5700 + k);
            for (int i = 0; i < N; i++) a[i] *= 1 + 3 * k;
            a.CopyTo(x, k * N);
            xq[k] = QuantizeActivations(GgmlType.Q6_K, a);
        }
        using var b = new CpuBackend(3, batchInvariant, rung, flags);
        b.Prepare(new BackendLimits(MaxTokens, N, 16, 64, 64));
        fixed (byte* pw = w)
        {
            var weight = b.LoadWeight(new TensorView("blk.0.ffn_down.weight", GgmlType.Q6_K, [N, Rows], pw, w.Length));
            var xb = b.Allocate(MaxTokens * N);
            var db = b.Allocate(MaxTokens * Rows);
            float* px = ((CpuBuffer)xb).Data, pd = ((CpuBuffer)db).Data;
            var alone = new float[tokens * Rows];
            for (int k = 0; k < tokens; k++)
            {
                new ReadOnlySpan<float>(x, k * N, N).CopyTo(new Span<float>(px, N));
                b.MatMul(weight, xb, db, 1);
                new Span<float>(pd, Rows).CopyTo(alone.AsSpan(k * Rows, Rows));
            }
            if (KernelRung.UseRepack && DotQ6_K.PackedSupported)
                Assert.True(((CpuWeight)weight).Packed != null, "no Q6_K copy was made for the AVX-512 + GFNI matmul");
            new ReadOnlySpan<float>(x, 0, tokens * N).CopyTo(new Span<float>(px, tokens * N));
            b.MatMul(weight, xb, db, tokens);
            for (int k = 0; k < tokens; k++)
            {
                float[] xDeq = DequantizeActivations(GgmlType.Q6_K, xq[k], N);
                for (int r = 0; r < Rows; r++)
                {
                    float want;
                    fixed (byte* pr = wRow[r]) fixed (byte* pq = xq[k]) want = DotQ6_K.DotScalar(pr, pq, N);
                    double tol = 1e-5 * Magnitude(GgmlType.Q6_K, wRow[r], DequantizeWeights(GgmlType.Q6_K, wRow[r], N), xDeq);
                    float got = pd[k * Rows + r], one = alone[k * Rows + r];
                    Assert.True(Math.Abs(got - want) <= tol, $"token {k} of {tokens}, row {r}: {got} vs scalar {want} (tol {tol:G3})");
                    Assert.True(Math.Abs(one - want) <= tol, $"token {k} alone, row {r}: {one} vs scalar {want} (tol {tol:G3})");
                    Assert.True(BitConverter.SingleToInt32Bits(got) == BitConverter.SingleToInt32Bits(one),
                        $"token {k} of {tokens}, row {r}: {got} in the batch vs {one} decoded alone");
                }
            }
        }
    }
}
