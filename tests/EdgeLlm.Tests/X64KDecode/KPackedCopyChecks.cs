using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Tests.Kernels;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.X64KDecode;

/// <summary>
/// A K-quant's decode copy as <see cref="KPackedCopyChecks"/> sees it: the stored type, the rows of a group, the stored
/// block's bytes, the copy's size and repack, and the integer scalar rung the loops are held to. <see cref="Kind"/> turns
/// the stored block at <c>row[o..]</c> (row r, block b) into the named kind ("scales ..." or "subnormal ..."; "gaussian",
/// "zeros" and "raw" need nothing): <see cref="X64PackedQ6_KTests"/> shows one.
/// </summary>
internal sealed unsafe class KPackedFormat
{
    public delegate void RepackFn(byte* src, long rowBytes, long rows, int n, byte* dst);
    public delegate float ScalarFn(byte* w, byte* xq, int n);
    public delegate void KindFn(byte[] row, int o, int r, int b, string kind, Random rng);

    public required GgmlType Type { get; init; }
    public required int PackRows { get; init; }
    public required int BlockBytes { get; init; }
    public required Func<long, int, long> PackedBytes { get; init; }
    public required RepackFn Repack { get; init; }
    public required ScalarFn DotScalar { get; init; }
    public required KindFn Kind { get; init; }

    /// <summary>
    /// The magnitude M the tolerances scale with, for a row w (dequantized wDeq) against activations xDeq; null:
    /// <see cref="KernelTestData.Magnitude"/> (Q5_K supplies its own: the mins term of its sub-blocks).
    /// </summary>
    public Func<byte[], float[], float[], double>? Magnitude { get; init; }

    /// <summary><see cref="Magnitude"/>, or the shared one.</summary>
    public double MagnitudeOf(byte[] w, float[] wDeq, float[] xDeq) =>
        Magnitude?.Invoke(w, wDeq, xDeq) ?? KernelTestData.Magnitude(Type, w, wDeq, xDeq);
}

/// <summary>One x64 loop set over a copy: one token, and (where the way has them) two and four tokens with strides.</summary>
internal sealed unsafe class KPackedLoops
{
    public delegate void Dot1Fn(byte* group, byte* xq, int n, float* dst);
    public delegate void DotNFn(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride);

    public required string Name { get; init; }
    public required Dot1Fn Dot1 { get; init; }
    public DotNFn? Dot2 { get; init; }
    public DotNFn? Dot4 { get; init; }
}

/// <summary>
/// The checks every x64 K-quant decode copy takes (Q4_K's in <see cref="X64PackedQ4_KTests"/> and
/// <see cref="X64PackedQ4_KBatchTests"/>, Q6_K's in <see cref="X64PackedQ6_KTests"/>): the copy's bytes against the
/// layout worked out from the stored block; one token, each row of a group against the integer scalar rung and a float64
/// dot of the dequantized weights and activations; one live scale group at a time, each row giving that group's term
/// alone; two and four tokens, each (token, row) against the scalar rung and bit for bit against the token computed alone;
/// and the backend's matmul over 109 rows of 768 values (thirteen groups, five rows on the stored rows) on three threads
/// for any batch, plain or batch-invariant, against the scalar rung and decode alone. Data and tolerances are the same
/// for every type; what differs (the layout, the scale encodings) comes in as callbacks.
/// </summary>
internal static unsafe class KPackedCopyChecks
{
    /// <summary><paramref name="groups"/> groups of rows (stored, <paramref name="n"/> values each) as the copy.</summary>
    public static byte[] Repack(KPackedFormat f, byte[] rows, int n, int groups = 1)
    {
        var packed = new byte[f.PackedBytes((long)f.PackRows * groups, n)];
        fixed (byte* pr = rows) fixed (byte* pp = packed) f.Repack(pr, (long)n / 256 * f.BlockBytes, (long)f.PackRows * groups, n, pp);
        return packed;
    }

    /// <summary>The one-token loop over the copy placed at a 64-byte aligned address, as the backend's arena hands it out.</summary>
    public static void RunOneToken(KPackedLoops loops, byte[] packed, byte[] xq, int n, float[] dst)
    {
        byte* a = (byte*)NativeMemory.AlignedAlloc((nuint)packed.Length, 64);
        try
        {
            packed.AsSpan().CopyTo(new Span<byte>(a, packed.Length));
            fixed (byte* px = xq) fixed (float* pd = dst) loops.Dot1(a, px, n, pd);
        }
        finally
        {
            NativeMemory.AlignedFree(a);
        }
    }

    /// <summary>One group's rows of <paramref name="nb"/> blocks of the given kind (different per row), stored one after another.</summary>
    public static byte[] MakeRows(KPackedFormat f, int nb, string kind, int seed)
    {
        int n = nb * 256, bb = f.BlockBytes;
        var rows = new byte[f.PackRows * nb * bb];
        var rng = new Random(seed);
        for (int r = 0; r < f.PackRows; r++)
        {
            byte[] w = Weights(f.Type, n, kind is "gaussian" or "zeros" ? kind : "raw", seed + 17 * r);
            for (int b = 0; b < nb; b++) f.Kind(w, b * bb, r, b, kind, rng);
            w.CopyTo(rows, r * nb * bb);
        }
        return rows;
    }

    /// <summary>
    /// One token over a group of <see cref="MakeRows"/>(<paramref name="nb"/>, <paramref name="kind"/>, <paramref name="seed"/>)
    /// with activations of seed + 5: each row within 1e-5·M of the integer scalar rung and of the float64 dot.
    /// </summary>
    public static void OneTokenMatchesIntegerAndFloat64References(KPackedFormat f, KPackedLoops loops, int nb, string kind, int seed, string label)
    {
        int n = nb * 256, bb = f.BlockBytes;
        byte[] rows = MakeRows(f, nb, kind, seed);
        float[] x = Activations(n, 256, seed + 5);
        byte[] xq = QuantizeActivations(f.Type, x);
        float[] xDeq = DequantizeActivations(f.Type, xq, n);
        var got = new float[f.PackRows];
        RunOneToken(loops, Repack(f, rows, n), xq, n, got);
        for (int r = 0; r < f.PackRows; r++)
        {
            byte[] w = rows.AsSpan(r * nb * bb, nb * bb).ToArray();
            float[] wDeq = DequantizeWeights(f.Type, w, n);
            double m = f.MagnitudeOf(w, wDeq, xDeq), reference = 0;
            for (int i = 0; i < n; i++) reference += (double)wDeq[i] * xDeq[i];
            float scalar;
            fixed (byte* pw = w) fixed (byte* px = xq) scalar = f.DotScalar(pw, px, n);
            Assert.True(Math.Abs(got[r] - scalar) <= 1e-5 * m + 1e-30, $"{label}{nb} blocks {kind} row {r}: {got[r]} vs integer reference {scalar} (M {m:G3})");
            Assert.True(Math.Abs(got[r] - reference) <= 1e-5 * m + 1e-30, $"{label}{nb} blocks {kind} row {r}: {got[r]} vs float64 {reference} (M {m:G3})");
        }
    }

    /// <summary>Checks one (block, row) of the copy: the stored rows, the stored block's offset, the copy, and where this block's header and this row's quants start in it.</summary>
    public delegate void LayoutCheck(byte[] rows, int o, byte[] packed, int meta, int qs, int b, int r);

    /// <summary>
    /// The copy of <paramref name="nb"/> raw blocks a row: per block a header of <paramref name="metaBytes"/> (all blocks'
    /// headers first, zero-padded to 64 bytes), then per block each row's <paramref name="quantBytes"/> of quants in row
    /// order; <paramref name="check"/> compares each (block, row) with the stored bytes.
    /// </summary>
    public static void RepackWritesTheLayout(KPackedFormat f, int nb, int metaBytes, int quantBytes, LayoutCheck check)
    {
        int n = nb * 256, bb = f.BlockBytes, g = f.PackRows;
        byte[] rows = MakeRows(f, nb, "raw", 400 + nb);
        byte[] p = Repack(f, rows, n);
        int metaRegion = (nb * metaBytes + 63) / 64 * 64;
        Assert.Equal(metaRegion + nb * g * quantBytes, p.Length);
        Assert.Equal(0, p.Length % 64);
        for (int i = nb * metaBytes; i < metaRegion; i++) Assert.Equal(0, p[i]);
        for (int b = 0; b < nb; b++)
            for (int r = 0; r < g; r++)
                check(rows, r * nb * bb + b * bb, p, b * metaBytes, metaRegion + b * g * quantBytes + quantBytes * r, b, r);
    }

    /// <summary>What row r must give with only group g of block k live: the stored block at rows[o..], the Q8_K activations with the block at xq[yo..] and its d_x.</summary>
    public delegate (double Want, double Magnitude) LiveGroupTerm(byte[] rows, int o, byte[] xq, int yo, double dx, int g, int r);

    /// <summary>
    /// Raw rows (seed 900 + nb) given their own scales by <paramref name="setScales"/>; one live group of
    /// <paramref name="groupWeights"/> weights of one block at a time (activations of seed 77 + nb, plus 0.25, zero
    /// elsewhere): every row within 1e-6·magnitude of <paramref name="term"/>.
    /// </summary>
    public static void RowsTakeTheirOwnScales(KPackedFormat f, KPackedLoops loops, int nb, int groupWeights, Action<byte[]> setScales,
        LiveGroupTerm term, string label)
    {
        int n = nb * 256, bb = f.BlockBytes;
        byte[] rows = MakeRows(f, nb, "raw", 900 + nb);
        setScales(rows);
        byte[] packed = Repack(f, rows, n);
        float[] x = Activations(n, 256, 77 + nb);
        var got = new float[f.PackRows];
        for (int k = 0; k < nb; k++)
            for (int g = 0; g < 256 / groupWeights; g++)
            {
                var xs = new float[n];
                for (int i = 0; i < groupWeights; i++) xs[k * 256 + groupWeights * g + i] = x[(k * 256 + groupWeights * g + i) % n] + 0.25f;
                byte[] xq = QuantizeActivations(f.Type, xs);
                RunOneToken(loops, packed, xq, n, got);
                int yo = k * ActivationQuant.Q8_KBlockBytes;
                double dx = BitConverter.ToSingle(xq, yo);
                for (int r = 0; r < f.PackRows; r++)
                {
                    var (want, mag) = term(rows, r * nb * bb + k * bb, xq, yo, dx, g, r);
                    Assert.True(Math.Abs(got[r] - want) <= 1e-6 * mag, $"{label}block {k} of {nb}, group {g}, row {r}: {got[r]} vs {want}");
                }
            }
    }

    /// <summary>
    /// The two- or four-token loop over a group of the stored rows (<paramref name="nb"/> blocks a row), each token's
    /// activations from seed 3900 + 7t + nb scaled by 1 + 3t, results at a stride of 11 (not the group's rows): each
    /// (token, row) within 1e-5·M of the scalar rung and bit for bit the one-token loop's.
    /// </summary>
    public static void GroupLoopsMatchScalarAndTheOneTokenLoop(KPackedFormat f, KPackedLoops loops, int tokens, int nb, byte[] stored, string label)
    {
        int n = nb * 256, bb = f.BlockBytes, g = f.PackRows;
        const int dstStride = 11; // not the group's eight: the t·stride offset of each token's rows is checked
        var xq = new byte[tokens][];
        for (int t = 0; t < tokens; t++)
        {
            float[] a = Activations(n, 256, 3900 + 7 * t + nb);
            for (int i = 0; i < n; i++) a[i] *= 1 + 3 * t;
            xq[t] = QuantizeActivations(f.Type, a);
        }
        int xStride = xq[0].Length;
        var xAll = new byte[tokens * xStride];
        for (int t = 0; t < tokens; t++) xq[t].CopyTo(xAll, t * xStride);

        long bytes = f.PackedBytes(g, n);
        byte* packed = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        var got = new float[tokens * dstStride];
        var alone = new float[g];
        try
        {
            fixed (byte* ps = stored) f.Repack(ps, (long)nb * bb, g, n, packed);
            var many = tokens == 2 ? loops.Dot2 : tokens == 4 ? loops.Dot4 : null;
            Assert.True(many != null, $"{loops.Name} has no {tokens}-token loop");
            fixed (byte* px = xAll) fixed (float* pd = got) many!(packed, px, xStride, n, pd, dstStride);
            for (int t = 0; t < tokens; t++)
            {
                fixed (byte* px = xq[t]) fixed (float* pa = alone) loops.Dot1(packed, px, n, pa);
                float[] xDeq = DequantizeActivations(f.Type, xq[t], n);
                for (int r = 0; r < g; r++)
                {
                    byte[] w = stored.AsSpan(r * nb * bb, nb * bb).ToArray();
                    float scalar;
                    fixed (byte* pw = w) fixed (byte* px = xq[t]) scalar = f.DotScalar(pw, px, n);
                    double m = f.MagnitudeOf(w, DequantizeWeights(f.Type, w, n), xDeq);
                    float v = got[t * dstStride + r];
                    Assert.True(Math.Abs(v - scalar) <= 1e-5 * m + 1e-30, $"{label}{tokens} tokens, {nb} blocks: token {t} row {r}: {v} vs scalar {scalar} (M {m:G3})");
                    Assert.True(BitConverter.SingleToInt32Bits(v) == BitConverter.SingleToInt32Bits(alone[r]),
                        $"{label}{tokens} tokens, {nb} blocks: token {t} row {r}: {v} in the group loop vs {alone[r]} alone");
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(packed);
        }
    }

    public const int MatMulN = 768, MatMulMaxTokens = 13;

    /// <summary>The matmul's rows: thirteen groups (several cache tiles, ranges cut inside groups on three threads) and five on the stored rows.</summary>
    public static int MatMulRows(KPackedFormat f) => 13 * f.PackRows + 5;

    /// <summary>The matmul's weights (row r: gaussian or raw through the format's <see cref="KPackedFormat.Kind"/>, seed 5100 + r) and activations (token k: seed 5700 + k, scaled by 1 + 3k), made once per type.</summary>
    public sealed class MatMulData
    {
        public required byte[] Weights { get; init; }
        public required float[] X { get; init; }
        public required byte[][] Xq { get; init; }

        /// <summary>Token k, row r at [k·rows + r]: the scalar rung's dot and 1e-5·M, worked out once for every batch.</summary>
        public required float[] Want { get; init; }
        public required double[] Tolerance { get; init; }
    }

    public static MatMulData MakeMatMulData(KPackedFormat f)
    {
        int rowsN = MatMulRows(f);
        long rowBytes = GgmlTypes.RowBytes(f.Type, MatMulN);
        var w = new byte[rowsN * rowBytes];
        var wRow = new byte[rowsN][];
        for (int r = 0; r < rowsN; r++)
        {
            string kind = r % 2 == 0 ? "gaussian" : "raw";
            wRow[r] = Weights(f.Type, MatMulN, kind, 5100 + r);
            var rng = new Random(5100 + r);
            for (int b = 0; b < MatMulN / 256; b++) f.Kind(wRow[r], b * f.BlockBytes, r, b, kind, rng); // e.g. finite block scales on raw rows
            wRow[r].CopyTo(w, r * rowBytes);
        }
        var x = new float[MatMulMaxTokens * MatMulN];
        var xq = new byte[MatMulMaxTokens][];
        for (int k = 0; k < MatMulMaxTokens; k++)
        {
            float[] a = Activations(MatMulN, 256, 5700 + k);
            for (int i = 0; i < MatMulN; i++) a[i] *= 1 + 3 * k;
            a.CopyTo(x, k * MatMulN);
            xq[k] = QuantizeActivations(f.Type, a);
        }
        var want = new float[MatMulMaxTokens * rowsN];
        var tol = new double[MatMulMaxTokens * rowsN];
        var wDeq = new float[rowsN][];
        for (int r = 0; r < rowsN; r++) wDeq[r] = DequantizeWeights(f.Type, wRow[r], MatMulN);
        for (int k = 0; k < MatMulMaxTokens; k++)
        {
            float[] xDeq = DequantizeActivations(f.Type, xq[k], MatMulN);
            for (int r = 0; r < rowsN; r++)
            {
                fixed (byte* pr = wRow[r]) fixed (byte* pq = xq[k]) want[k * rowsN + r] = f.DotScalar(pr, pq, MatMulN);
                tol[k * rowsN + r] = 1e-5 * f.MagnitudeOf(wRow[r], wDeq[r], xDeq);
            }
        }
        return new MatMulData { Weights = w, X = x, Xq = xq, Want = want, Tolerance = tol };
    }

    /// <summary>
    /// The backend's matmul of the weight (named <paramref name="tensor"/>) on <paramref name="variant"/>, plain or
    /// batch-invariant: each token decoded alone, then the batch of <paramref name="tokens"/>; every (token, row), batched
    /// and alone, within 1e-5·M of the scalar rung, and where <paramref name="bitExact"/> the batch bit for bit the token
    /// alone. With <paramref name="copyExpected"/> the weight must hold a copy.
    /// </summary>
    public static void MatMulMatchesScalarAndDecodeAlone(KPackedFormat f, MatMulData data, Variant variant, int tokens, bool invariant,
        string tensor, bool bitExact, bool copyExpected)
    {
        var (rung, flags) = KernelVariants.Of(variant);
        int rowsN = MatMulRows(f);
        string label = $"{variant}{(invariant ? " batch-invariant" : "")}";
        using var b = new CpuBackend(3, invariant, rung, flags);
        b.Prepare(new BackendLimits(MatMulMaxTokens, MatMulN, 16, 64, 64));
        fixed (byte* pw = data.Weights)
        {
            var weight = b.LoadWeight(new TensorView(tensor, f.Type, [MatMulN, rowsN], pw, data.Weights.Length));
            var xb = b.Allocate(MatMulMaxTokens * MatMulN);
            var db = b.Allocate(MatMulMaxTokens * rowsN);
            float* px = ((CpuBuffer)xb).Data, pd = ((CpuBuffer)db).Data;
            var alone = new float[tokens * rowsN];
            for (int k = 0; k < tokens; k++)
            {
                new ReadOnlySpan<float>(data.X, k * MatMulN, MatMulN).CopyTo(new Span<float>(px, MatMulN));
                b.MatMul(weight, xb, db, 1);
                new Span<float>(pd, rowsN).CopyTo(alone.AsSpan(k * rowsN, rowsN));
            }
            if (copyExpected) Assert.True(((CpuWeight)weight).Packed != null, $"{label}: no {f.Type} copy was made for the matmul");
            new ReadOnlySpan<float>(data.X, 0, tokens * MatMulN).CopyTo(new Span<float>(px, tokens * MatMulN));
            b.MatMul(weight, xb, db, tokens);
            for (int k = 0; k < tokens; k++)
                for (int r = 0; r < rowsN; r++)
                {
                    float want = data.Want[k * rowsN + r];
                    double tol = data.Tolerance[k * rowsN + r];
                    float got = pd[k * rowsN + r], one = alone[k * rowsN + r];
                    Assert.True(Math.Abs(got - want) <= tol, $"{label}: token {k} of {tokens}, row {r}: {got} vs scalar {want} (tol {tol:G3})");
                    Assert.True(Math.Abs(one - want) <= tol, $"{label}: token {k} alone, row {r}: {one} vs scalar {want} (tol {tol:G3})");
                    if (bitExact)
                        Assert.True(BitConverter.SingleToInt32Bits(got) == BitConverter.SingleToInt32Bits(one),
                            $"{label}: token {k} of {tokens}, row {r}: {got} in the batch vs {one} decoded alone");
                }
        }
    }
}
