using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using EdgeLlm.Model;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The batched matmul (what prefill runs: a range driver of <see cref="RowDrivers"/>, four-token kernels and Q4_0's
/// panel) of every type of the <see cref="TypeTraits"/> table, on every kernel variant (rung and ISA flags), against an
/// independent reference: Σ_i w'_i·x'_i in double, w' the weights dequantized by the reference code
/// (<see cref="QuantRef"/>), x' the activations the kernel was given (the quantized Q8_0 / Q8_1 / Q8_K blocks,
/// dequantized; for Q8_1 the offset term takes the block's stored s as ggml defines it). Batches of 1, 2, 3, 4, 5, 6, 8 and
/// 13 tokens (below one four-token group, whole groups, groups and a tail of one, two or three), each token scaled differently so a kernel
/// that reads the wrong token of a group is far outside the tolerance; 101 rows of 2048 values, so the row tiles of
/// <see cref="RowDrivers.Tiles{TK}"/> (32 KiB) cut the rows several times, driven as three uneven ranges the way the
/// threads of a matmul split them; Q4_0 on AVX-512 and AVX2 (VNNI on and off) and Q8_0 on AVX-512 with AVX-VNNI and on AVX2 (VNNI on and off) also with the weights
/// repacked for the eight-row GEMM (<see cref="DotQ4_0.Repack"/>, <see cref="DotQ8_0.Repack"/>). Variants the CPU lacks are reported as skipped.
/// Tolerance 1e-5·M, M = Σ|x'_i|·(|w'_i| + 2μ_i) + Σ_b|m_b·s_b|, μ the size of the offset a kernel adds and takes
/// off again in float (Q4_0's 8·d of the panel loops, the mins of Q4_1/Q5_1/Q4_K/Q5_K/Q2_K): the float rounding of
/// the kernels' per-block terms, as in <see cref="QuantDotTests"/>. A result from the wrong token is off by about
/// |result| ≈ 3·10^-2·M here.
/// </summary>
public sealed unsafe class BatchedMatMulTests
{
    private const int N = 2048, Rows = 101, MaxTokens = 13;
    private static readonly int[] Batches = { 1, 2, 3, 4, 5, 6, 8, 13 };
    private static readonly long[] Cuts = { 0, 29, 64, Rows };

    public static TheoryData<GgmlType, int> Cases()
    {
        var d = new TheoryData<GgmlType, int>();
        foreach (var t in TypeTraits.All)
            foreach (int b in Batches)
                d.Add(t.Type, b);
        return d;
    }

    [VariantTheory(Variant.Scalar)]
    [MemberData(nameof(Cases))]
    public void Scalar(GgmlType t, int tokens) => Check(t, Variant.Scalar, tokens);

    [VariantTheory(Variant.Avx2)]
    [MemberData(nameof(Cases))]
    public void Avx2(GgmlType t, int tokens) => Check(t, Variant.Avx2, tokens);

    [VariantTheory(Variant.Avx2Vnni)]
    [MemberData(nameof(Cases))]
    public void Avx2Vnni(GgmlType t, int tokens) => Check(t, Variant.Avx2Vnni, tokens);

    [VariantTheory(Variant.Avx2Gfni)]
    [MemberData(nameof(Cases))]
    public void Avx2Gfni(GgmlType t, int tokens) => Check(t, Variant.Avx2Gfni, tokens);

    [VariantTheory(Variant.Avx512)]
    [MemberData(nameof(Cases))]
    public void Avx512(GgmlType t, int tokens) => Check(t, Variant.Avx512, tokens);

    [VariantTheory(Variant.Avx512NoVbmi)]
    [MemberData(nameof(Cases))]
    public void Avx512NoVbmi(GgmlType t, int tokens) => Check(t, Variant.Avx512NoVbmi, tokens);

    [VariantTheory(Variant.Neon)]
    [MemberData(nameof(Cases))]
    public void Neon(GgmlType t, int tokens) => Check(t, Variant.Neon, tokens);

    /// <summary>
    /// The whole matmul of the selected table (activations quantized per token by the pool, rows shared out statically
    /// and in claimed chunks over two threads) against the same reference, then the last token alone through the same
    /// backend (decode after a prefill).
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void MatMulOnTwoThreads(GgmlType t, int tokens)
    {
        Data d = DataOf(t);
        using var backend = new CpuBackend(threads: 2);
        backend.Prepare(new BackendLimits(tokens, N, 4, 2, 2));
        var weight = backend.LoadWeight(new TensorView("w", t, [N, Rows], d.W, d.RowBytes * Rows));
        var bx = backend.Allocate(tokens * N);
        var bd = backend.Allocate(tokens * Rows);
        fixed (float* p = d.X) Buffer.MemoryCopy(p, ((CpuBuffer)bx).Data, tokens * N * 4L, tokens * N * 4L);
        backend.MatMul(weight, bx, bd, tokens);
        var got = new float[tokens * Rows];
        backend.CopyOut(bd, 0, got);
        Compare(d, $"{t} MatMul selected rung, 2 threads", got, tokens);

        // Then one token through the same backend, as decode runs after a prefill: where the batch made a repacked
        // copy (Q8_0 on AVX-512 with AVX-VNNI), the one-token matmul reads it, split between the threads in whole groups.
        int last = tokens - 1;
        var b1 = backend.Allocate(N);
        var d1 = backend.Allocate(Rows);
        fixed (float* p = d.X) Buffer.MemoryCopy(p + last * N, ((CpuBuffer)b1).Data, N * 4L, N * 4L);
        backend.MatMul(weight, b1, d1, 1);
        var one = new float[Rows];
        backend.CopyOut(d1, 0, one);
        for (int r = 0; r < Rows; r++)
        {
            double want = d.Want[last * Rows + r], tol = 1e-5 * d.M[last * Rows + r];
            Assert.True(Math.Abs(one[r] - want) <= tol,
                $"{t} MatMul selected rung, 2 threads, one token after a batch of {tokens}: row {r}: {one[r]} vs reference {want:G9} (tol {tol:G3})");
        }
    }

    private static void Check(GgmlType t, Variant v, int tokens)
    {
        Data d = DataOf(t);
        var (rung, flags) = KernelVariants.Of(v);
        CpuKernelRow row = KernelTable.Resolve(t, rung, flags) ?? throw new ArgumentException($"no kernel for {t}");
        Check(d, row, $"{t} {v}", tokens, null);
        if (row.Packs)
        {
            // The same driver with the repacked copy (Q4_0 and Q8_0 on AVX-512 and AVX2): 12 whole groups
            // of eight rows, the 101st row and the rows around the uneven range cuts on the stored rows.
            var packed = GC.AllocateUninitializedArray<byte>((int)row.PackedBytes(Rows, N), pinned: true);
            fixed (byte* pp = packed)
            {
                row.Repack(d.W, d.RowBytes, Rows, N, pp);
                Check(d, row, $"{t} {v} repacked", tokens, pp);
            }
        }
    }

    private static void Check(Data d, CpuKernelRow row, string what, int tokens, byte* packed)
    {
        GgmlType t = d.Type;
        var dst = new float[(tokens + 1) * Rows];
        Array.Fill(dst, float.NaN);
        var scratch = new float[N];
        byte[] act = d.Activations(row);
        byte[] panel = row.PackedPanel ? d.Panel() : Array.Empty<byte>();
        fixed (byte* px = act) fixed (byte* pp = panel) fixed (float* pd = dst) fixed (float* ps = scratch)
        {
            var job = new RowJob
            {
                W = d.W, RowBytes = d.RowBytes, Rows = Rows, N = N, Dst = pd, NTokens = tokens,
                X = t is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 ? (byte*)d.XPinned : px,
                XStride = d.Stride(row),
                Packed = packed,
                PackedX = row.PackedPanel ? pp : null,
                PackedXStride = Q8_0Panel.BytesFor(N),
            };
            for (int k = 0; k + 1 < Cuts.Length; k++) row.Rows(in job, Cuts[k], Cuts[k + 1], ps);
        }
        for (int i = tokens * Rows; i < dst.Length; i++)
            Assert.True(float.IsNaN(dst[i]), $"{what} {tokens} tokens: wrote past the batch at {i}");
        Compare(d, what, dst, tokens);
    }

    private static void Compare(Data d, string what, float[] got, int tokens)
    {
        for (int tk = 0; tk < tokens; tk++)
            for (int r = 0; r < Rows; r++)
            {
                double want = d.Want[tk * Rows + r], tol = 1e-5 * d.M[tk * Rows + r];
                float have = got[tk * Rows + r];
                Assert.True(Math.Abs(have - want) <= tol,
                    $"{what}, {tokens} tokens: token {tk} row {r}: {have} vs reference {want:G9} (tol {tol:G3})");
            }
    }

    private static readonly ConcurrentDictionary<GgmlType, Data> Cache = new();

    private static Data DataOf(GgmlType t) => Cache.GetOrAdd(t, static t => new Data(t));

    /// <summary>One type's weights (101 rows, pinned), 13 tokens of activations and the reference results.</summary>
    private sealed class Data
    {
        public readonly GgmlType Type;
        public readonly long RowBytes;
        public readonly byte* W;
        public readonly float[] X;
        public readonly float* XPinned;
        /// <summary>The activations in the type's quantized format, every token (null for the float types).</summary>
        public readonly byte[]? Xq;
        public readonly double[] Want, M;

        public Data(GgmlType t)
        {
            Type = t;
            var traits = TypeTraits.Of(t)!;
            RowBytes = GgmlTypes.RowBytes(t, N);
            var wArr = GC.AllocateUninitializedArray<byte>((int)(RowBytes * Rows), pinned: true);
            W = (byte*)Marshal.UnsafeAddrOfPinnedArrayElement(wArr, 0);
            _keep = wArr;
            var wDeq = new float[Rows * N];
            for (int r = 0; r < Rows; r++)
            {
                float[] f = K256TestData.Gaussian(N, 100 * (int)t + r, 0.02);
                for (int i = r % 89; i < N; i += 89) f[i] = (i & 1) == 0 ? 0.3f : -0.3f;
                byte[] q = QuantRef.QuantizeRow(t, f);
                q.CopyTo(wArr, r * RowBytes);
                QuantRef.DequantizeRow(t, q, wDeq.AsSpan(r * N, N));
            }

            X = GC.AllocateUninitializedArray<float>(MaxTokens * N, pinned: true);
            XPinned = (float*)Marshal.UnsafeAddrOfPinnedArrayElement(X, 0);
            for (int tk = 0; tk < MaxTokens; tk++)
            {
                float[] g = K256TestData.Gaussian(N, 5000 + 13 * (int)t + tk);
                float scale = 0.5f + tk;
                for (int i = 0; i < N; i++) X[tk * N + i] = g[i] * scale;
            }

            // x': what the kernel is given. For the quantized types the activations go through the format's quantizer
            // once; the reference reads back the same bytes.
            var xDeq = new double[MaxTokens * N];
            double[] sTerm = new double[MaxTokens * (N / 32)];
            if (traits.IsQuantized)
            {
                long xb = ActivationQuant.FormatBytes(traits.Activation, N);
                Xq = new byte[MaxTokens * xb];
                fixed (float* px = X) fixed (byte* pq = Xq)
                    for (int tk = 0; tk < MaxTokens; tk++)
                    {
                        ActivationQuant.Quantizer(traits.Activation)(px + tk * N, pq + tk * xb, N);
                        float[] back = KernelTestData.DequantizeActivations(t, Xq.AsSpan((int)(tk * xb), (int)xb).ToArray(), N);
                        for (int i = 0; i < N; i++) xDeq[tk * N + i] = back[i];
                        if (traits.Activation == GgmlType.Q8_1)
                            for (int b = 0; b < N / 32; b++)
                            {
                                // ggml's Q8_1 block: d, s = d·Σq (both fp16), then the 32 quants.
                                byte* blk = pq + tk * xb + b * 36;
                                sTerm[tk * (N / 32) + b] = (double)BitConverter.UInt16BitsToHalf((ushort)(blk[2] | (blk[3] << 8)));
                            }
                    }
            }
            else
            {
                for (int i = 0; i < X.Length; i++) xDeq[i] = X[i];
            }

            Want = new double[MaxTokens * Rows];
            M = new double[MaxTokens * Rows];
            var mu = new double[N];
            var mins = new double[N / 32];
            for (int r = 0; r < Rows; r++)
            {
                Offsets(t, wArr.AsSpan((int)(r * RowBytes), (int)RowBytes), mu, mins);
                for (int tk = 0; tk < MaxTokens; tk++)
                {
                    double s = 0, m = 0;
                    for (int i = 0; i < N; i++)
                    {
                        double w = wDeq[r * N + i], x = xDeq[tk * N + i];
                        s += w * x;
                        m += Math.Abs(x) * (Math.Abs(w) + 2 * mu[i]);
                    }
                    if (traits.Activation == GgmlType.Q8_1)
                        for (int b = 0; b < N / 32; b++)
                        {
                            // The kernels add m_b·s_b where the float dot of w' = d·q + m has m_b·Σx'.
                            double sx = 0;
                            for (int i = b * 32; i < b * 32 + 32; i++) sx += xDeq[tk * N + i];
                            double sb = sTerm[tk * (N / 32) + b];
                            s += mins[b] * (sb - sx);
                            m += Math.Abs(mins[b] * sb);
                        }
                    Want[tk * Rows + r] = s;
                    M[tk * Rows + r] = m;
                }
            }
        }

        private readonly byte[] _keep;

        /// <summary>x at the row's activation format: the panel for a row that takes one, else the quantized blocks.</summary>
        public byte[] Activations(CpuKernelRow row)
        {
            if (Xq is null) return Array.Empty<byte>();
            return row.Panel ? Panel() : Xq;
        }

        /// <summary>x as <see cref="Q8_0Panel"/>s, every token, built from the Q8_0 blocks.</summary>
        public byte[] Panel()
        {
            if (Xq is null) throw new InvalidOperationException($"{Type} takes float activations");
            long xb = ActivationQuant.FormatBytes(GgmlType.Q8_0, N), pb = Q8_0Panel.BytesFor(N);
            var panel = new byte[MaxTokens * pb];
            fixed (byte* pq = Xq) fixed (byte* pp = panel)
                for (int tk = 0; tk < MaxTokens; tk++) Q8_0Panel.FromBlocks(pq + tk * xb, pp + tk * pb, N);
            return panel;
        }

        public long Stride(CpuKernelRow row) =>
            Xq is null ? N * sizeof(float) : row.Panel ? Q8_0Panel.BytesFor(N) : row.ActivationBytes(N);

        /// <summary>
        /// μ_i: the offset the kernels add in float and take off again (or the min they subtract) for weight i, and
        /// the per-32-block min m_b of the Q8_1 types, read from the block layouts of ggml-common.h.
        /// </summary>
        private static void Offsets(GgmlType t, ReadOnlySpan<byte> row, double[] mu, double[] mins)
        {
            Array.Clear(mu);
            Array.Clear(mins);
            int bb = GgmlTypes.Geometry(t).BlockBytes;
            for (int i = 0; i < N; i++)
            {
                switch (t)
                {
                    case GgmlType.Q4_0:
                        mu[i] = 8 * Math.Abs(Half(row, i / 32 * bb));
                        break;
                    case GgmlType.Q4_1:
                    case GgmlType.Q5_1:
                        mins[i / 32] = Half(row, i / 32 * bb + 2);
                        mu[i] = Math.Abs(mins[i / 32]);
                        break;
                    case GgmlType.Q4_K:
                    case GgmlType.Q5_K:
                    {
                        int b = i / 256, j = i % 256 / 32;
                        ReadOnlySpan<byte> sc = row.Slice(b * bb + 4, 12);
                        int m = j < 4 ? sc[j + 4] & 63 : (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
                        mu[i] = Math.Abs(Half(row, b * bb + 2)) * m;
                        break;
                    }
                    case GgmlType.Q2_K:
                    {
                        int b = i / 256;
                        mu[i] = Math.Abs(Half(row, b * bb + 82)) * (row[b * bb + i % 256 / 16] >> 4);
                        break;
                    }
                }
            }
        }

        private static double Half(ReadOnlySpan<byte> a, int o) => (double)BitConverter.UInt16BitsToHalf((ushort)(a[o] | (a[o + 1] << 8)));
    }
}

/// <summary>A theory for one kernel variant: skipped, with the reason, on a CPU that cannot run it.</summary>
public sealed class VariantTheoryAttribute : TheoryAttribute
{
    public VariantTheoryAttribute(Variant variant)
    {
        if (!KernelVariants.SupportedVariants().Contains(variant))
            Skip = $"this CPU cannot run the {variant} kernels";
    }
}
