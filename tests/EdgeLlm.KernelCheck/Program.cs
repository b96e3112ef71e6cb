using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Text.Json;
using EdgeLlm.Backends;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Compute;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Quant;

using EdgeLlm.Tests.Kernels;
using EdgeLlm.Tests.Model;

namespace EdgeLlm.KernelCheck;

/// <summary>
/// The kernel agreement checks of tests/EdgeLlm.Tests/Kernels, runnable as one Native AOT file under qemu, for every
/// weight type × every rung this CPU runs × odd block counts, the batched matmul of every type (prefill's row drivers
/// and four-token loops, against the Scalar rung), plus the stories260K greedy-256 check and the
/// models-visible family logits against llama.cpp (llama, qwen2, phi3, gemma, gemma2). One line per check, then
/// "N passed, N failed"; exit code 1 on any failure.
///   kernelcheck [REPO]                  the checks (REPO: holds models/ and tests/data/; default: the current folder)
///   kernelcheck --reference-text N [REPO]  print the text `edgellm run -n N --temp 0` must print (for the scripts)
/// The NEON rung runs with sdot when the CPU has it; EDGELLM_KERNEL_DP=0 forces the widening path.
/// </summary>
internal static unsafe class Program
{
    private static int passed, failed;

    private static int Main(string[] args)
    {
        if (args.Length >= 2 && args[0] == "--reference-text")
        {
            string r = args.Length > 2 ? args[2] : ".";
            Console.Out.Write(ReferenceText(r, int.Parse(args[1])) + "\n");
            return 0;
        }
        string repo = args.Length > 0 ? args[0] : ".";
        Console.WriteLine($"kernelcheck: rung {KernelRung.Selected}, dot product {(KernelRung.UseDotProd ? "on" : "off")}, variants {string.Join(' ', KernelVariants.SupportedVariants())}");
        Guard("rung: Best is the selected rung", () => Check(KernelRung.Selected == KernelRung.Best() || Environment.GetEnvironmentVariable("EDGELLM_KERNEL_RUNG") != null, $"{KernelRung.Selected} vs {KernelRung.Best()}"));
        foreach (GgmlType t in QuantTypes) QuantChecks(t);
        foreach (GgmlType t in K256TestData.Types) K256Checks(t);
        foreach (GgmlType t in KernelVariants.TableQuantTypes()) BatchedChecks(t);
        // Q4_0 again with 67 blocks a row: the repacked GEMM's four-block steps and its last nb mod 4 blocks.
        BatchedChecks(GgmlType.Q4_0, 2144);
        if (KernelRung.Selected == Rung.Neon)
        {
            NeonDecodeChecks(GgmlType.Q4_0);
            NeonDecodeChecks(GgmlType.Q8_0);
        }
        FloatChecks();
        if (KernelRung.IsSupported(Rung.Neon)) NeonScaleChecks();
        Guard("stories260K greedy 256 (LlamaModel, selected rung)", () => Greedy256(repo));
        foreach (string family in Families)
            Guard($"models-visible {family}: 40 positions (batch and token by token) vs llama.cpp top-10 within {FamilyTolerance}", () => FamilyLogits(repo, family));
        foreach (string type in QuantTypeLogits.Types)
            Guard($"llama-{type}.gguf logits vs llama.cpp's (selected rung)", () =>
            {
                var r = QuantTypeLogits.Check(Path.Combine(repo, "tests", "data", "models-visible"), type, threads: 1);
                Console.WriteLine($"  {r}");
                return r.Passes ? null : r.ToString();
            });
        Console.WriteLine($"{passed} passed, {failed} failed");
        return failed == 0 ? 0 : 1;
    }

    private static void Guard(string name, Func<string?> check)
    {
        string? err;
        try { err = check(); }
        catch (Exception e) { err = $"{e.GetType().Name}: {e.Message}"; }
        if (err == null) { passed++; Console.WriteLine($"PASS {name}"); }
        else { failed++; Console.WriteLine($"FAIL {name}: {err}"); }
    }

    private static string? Check(bool ok, string detail) => ok ? null : detail;

    // ---- quantized dots ----

    private static readonly GgmlType[] QuantTypes =
        { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL };
    private static readonly string[] Kinds = { "gaussian", "raw", "zeros", "subnormal" };

    private static string Name(Variant v) => v == Variant.Neon ? (KernelRung.UseDotProd ? "Neon+Dp" : "Neon") : v.ToString();

    private sealed record Case(int N, byte[] W, float[] X, byte[] Xq, float[] WDeq, float[] XDeq, double M);

    private static int BlockSize(GgmlType t) => GgmlTypes.Geometry(t).BlockSize;

    private static void QuantChecks(GgmlType t)
    {
        int[] blocks = BlockSize(t) == 32 ? new[] { 1, 3, 7, 33 } : new[] { 1, 3, 5 };
        foreach (int nb in blocks)
            foreach (string kind in Kinds)
            {
                Case c = Make(t, nb, kind);
                // Scalar rung vs the float reference over the dequantized activations (same integer sums, other order).
                Guard($"{t} Scalar {nb} blocks {kind}: vs QuantRef over dequantized activations", () =>
                {
                    float scalar = Dot(t, Variant.Scalar, c);
                    double reference = QuantRef.Dot(t, c.W, c.XDeq) + OffsetCorrection(t, c);
                    double tol = 1e-5 * c.M;
                    return Check(c.M > 0 && Math.Abs(scalar - reference) <= tol, $"{scalar} vs reference {reference} (tol {tol:G3})");
                });
                foreach (Variant v in KernelVariants.SupportedVariants())
                {
                    if (v == Variant.Scalar) continue;
                    Guard($"{t} {Name(v)} {nb} blocks {kind}: vs Scalar rung", () =>
                    {
                        float scalar = Dot(t, Variant.Scalar, c), simd = Dot(t, v, c);
                        double tol = 1e-5 * c.M;
                        return Check(Math.Abs(simd - scalar) <= tol, $"{simd} vs scalar {scalar} (tol {tol:G3})");
                    });
                }
            }
        foreach (Variant v in KernelVariants.SupportedVariants())
        {
            Guard($"{t} {Name(v)}: zero weights or zero activations give 0", () =>
            {
                int n = 3 * BlockSize(t);
                byte[] zeroW = new byte[GgmlTypes.RowBytes(t, n)];
                byte[] w = Weights(t, n, "raw", 7);
                byte[] xq = QuantizeActivations(t, Activations(n, BlockSize(t), 8));
                byte[] zeroXq = QuantizeActivations(t, new float[n]);
                fixed (byte* pzw = zeroW) fixed (byte* pw = w) fixed (byte* pxq = xq) fixed (byte* pzx = zeroXq)
                {
                    float a = KernelVariants.Run(t, v, pzw, pxq, n), b = KernelVariants.Run(t, v, pw, pzx, n);
                    return Check(a == 0f && b == 0f, $"{a}, {b}");
                }
            });
            Guard($"{t} {Name(v)}: hand-computed block", () =>
            {
                (byte[] w, byte[] x, int n, float want) = Hand(t);
                fixed (byte* pw = w) fixed (byte* px = x)
                {
                    float got = KernelVariants.Run(t, v, pw, px, n);
                    return Check(got == want, $"{got} vs {want}");
                }
            });
        }
        Guard($"{t}: Dot uses the selected rung", () =>
        {
            Variant sel = KernelRung.Selected switch
            {
                Rung.Avx512 => KernelRung.UseAvx512Vbmi ? Variant.Avx512 : Variant.Avx512NoVbmi,
                Rung.Avx2 => KernelRung.UseAvxVnni ? Variant.Avx2Vnni : Variant.Avx2,
                Rung.Neon => Variant.Neon,
                _ => Variant.Scalar,
            };
            Case c = Make(t, 3, "raw");
            fixed (byte* w = c.W) fixed (byte* xq = c.Xq)
            {
                float a = KernelVariants.Run(t, sel, w, xq, c.N), b = KernelVariants.RunSelected(t, w, xq, c.N);
                return Check(a == b, $"{b} vs {Name(sel)} {a}");
            }
        });
    }

    /// <summary>The Q8_K-activation types of issue 12 (Q5_K, IQ4_XS, Q3_K, Q2_K) on the shared K256TestData cases.</summary>
    private static void K256Checks(GgmlType t)
    {
        foreach (int nb in K256TestData.BlockCounts)
            foreach (string kind in K256TestData.Kinds)
            {
                K256TestData.Case c = K256TestData.Make(t, nb, kind);
                Guard($"{t} Scalar {nb} blocks {kind}: vs QuantRef over dequantized activations", () =>
                {
                    float scalar = K256TestData.Dot(t, Variant.Scalar, c), reference = QuantRef.Dot(t, c.W, c.XDeq);
                    double tol = 1e-5 * c.M;
                    return Check(c.M > 0 && Math.Abs(scalar - reference) <= tol, $"{scalar} vs reference {reference} (tol {tol:G3})");
                });
                foreach (Variant v in KernelVariants.SupportedVariants())
                {
                    if (v == Variant.Scalar) continue;
                    Guard($"{t} {Name(v)} {nb} blocks {kind}: vs Scalar rung", () =>
                    {
                        float scalar = K256TestData.Dot(t, Variant.Scalar, c), simd = K256TestData.Dot(t, v, c);
                        double tol = 1e-5 * c.M;
                        return Check(Math.Abs(simd - scalar) <= tol, $"{simd} vs scalar {scalar} (tol {tol:G3})");
                    });
                }
            }
        Guard($"{t}: Dot uses the selected rung", () =>
        {
            Variant sel = KernelRung.Selected switch
            {
                Rung.Avx512 => Variant.Avx512NoVbmi,
                Rung.Avx2 => KernelRung.UseAvxVnni ? Variant.Avx2Vnni : Variant.Avx2,
                Rung.Neon => Variant.Neon,
                _ => Variant.Scalar,
            };
            K256TestData.Case c = K256TestData.Make(t, 3, "raw");
            fixed (byte* w = c.W) fixed (byte* xq = c.Xq)
            {
                float a = KernelVariants.Run(t, sel, w, xq, c.N), b = KernelVariants.RunSelected(t, w, xq, c.N);
                return Check(a == b, $"{b} vs {Name(sel)} {a}");
            }
        });
    }

    private static Case Make(GgmlType t, int nb, string kind)
    {
        int n = nb * BlockSize(t);
        int seed = (int)t * 1000 + nb * 10 + kind.Length;
        byte[] w = Weights(t, n, kind, seed);
        float[] x = Activations(n, BlockSize(t) == 32 ? 32 : 256, seed + 1);
        byte[] xq = QuantizeActivations(t, x);
        var wDeq = new float[n];
        QuantRef.DequantizeRow(t, w, wDeq);
        float[] xDeq = DequantizeActivations(t, xq, n);
        return new Case(n, w, x, xq, wDeq, xDeq, Magnitude(t, w, xq, wDeq, xDeq));
    }

    // ---- the batched matmul (prefill): row drivers with their four-token loops ----

    private static readonly int[] Batches = { 1, 3, 4, 5, 8, 13 };

    /// <summary>
    /// The range driver of each variant's table row (what prefill runs: four-token loops on four tokens or more, the
    /// rest one by one) on 101 rows of 2048 values, driven as three uneven ranges (0-29, 29-64, 64-101) so the 32 KiB row
    /// tiles cut them several times, batches of 1, 3, 4, 5, 8 and 13 tokens, token k scaled by k + 0.5 so a loop that
    /// reads the wrong token of a group is far off: every (token, row) against the Scalar rung's one-token dot within
    /// 1e-5·M, and (NEON, whose four-token loops keep the one-token loop's order) equal to the variant's one-token dot;
    /// nothing written past the batch.
    /// </summary>
    private static void BatchedChecks(GgmlType t, int n = 2048)
    {
        const int rows = 101, maxTokens = 13;
        long[] cuts = { 0, 29, 64, rows };
        int bs = BlockSize(t);
        long rowBytes = GgmlTypes.RowBytes(t, n);
        var w = new byte[rowBytes * rows];
        var wDeq = new float[rows][];
        for (int r = 0; r < rows; r++)
        {
            byte[] q = Weights(t, n, "gaussian", 7000 + 100 * (int)t + r);
            q.CopyTo(w, r * rowBytes);
            wDeq[r] = new float[n];
            QuantRef.DequantizeRow(t, q, wDeq[r]);
        }
        long xb = ActivationQuant.BytesFor(t, n);
        var xq = new byte[maxTokens * xb];
        var xDeq = new float[maxTokens][];
        for (int k = 0; k < maxTokens; k++)
        {
            float[] x = Activations(n, bs == 32 ? 32 : 256, 9000 + 13 * (int)t + k);
            for (int i = 0; i < n; i++) x[i] *= k + 0.5f;
            byte[] q = QuantizeActivations(t, x);
            q.CopyTo(xq, k * xb);
            xDeq[k] = DequantizeActivations(t, q, n);
        }
        var want = new float[maxTokens * rows];
        var mag = new double[maxTokens * rows];
        CpuKernelRow scalar = KernelVariants.Row(t, Variant.Scalar);
        fixed (byte* pw = w) fixed (byte* px = xq)
            for (int k = 0; k < maxTokens; k++)
                for (int r = 0; r < rows; r++)
                {
                    want[k * rows + r] = scalar.Dot(pw + r * rowBytes, px + k * xb, n);
                    mag[k * rows + r] = Magnitude(t, w.AsSpan((int)(r * rowBytes), (int)rowBytes).ToArray(), xq.AsSpan((int)(k * xb), (int)xb).ToArray(), wDeq[r], xDeq[k]);
                }
        foreach (Variant v in KernelVariants.SupportedVariants())
        {
            CpuKernelRow row = KernelVariants.Row(t, v);
            byte[] act = xq;
            long stride = xb;
            if (row.Panel)
            {
                stride = Q8_0Panel.BytesFor(n);
                act = new byte[maxTokens * stride];
                fixed (byte* pq = xq) fixed (byte* pp = act)
                    for (int k = 0; k < maxTokens; k++) Q8_0Panel.FromBlocks(pq + k * xb, pp + k * stride, n);
            }
            foreach (int tokens in Batches)
                Guard($"{t} {Name(v)} batched matmul, {tokens} tokens x {rows} rows of {n} (3 ranges): vs Scalar rung{(v == Variant.Neon ? ", == one-token loop" : "")}", () =>
                {
                    var dst = new float[(tokens + 1) * rows];
                    Array.Fill(dst, float.NaN);
                    var scratch = new float[n];
                    fixed (byte* pw = w) fixed (byte* pa = act) fixed (float* pd = dst) fixed (float* ps = scratch)
                    {
                        var job = new RowJob { W = pw, RowBytes = rowBytes, Rows = rows, N = n, X = pa, XStride = stride, Dst = pd, NTokens = tokens };
                        for (int c = 0; c + 1 < cuts.Length; c++) row.Rows(in job, cuts[c], cuts[c + 1], ps);
                        for (int i = tokens * rows; i < dst.Length; i++)
                            if (!float.IsNaN(dst[i])) return $"wrote past the batch at {i}";
                        for (int k = 0; k < tokens; k++)
                            for (int r = 0; r < rows; r++)
                            {
                                float got = dst[k * rows + r], reference = want[k * rows + r];
                                double tol = 1e-5 * mag[k * rows + r];
                                if (!(Math.Abs(got - reference) <= tol)) return $"token {k} row {r}: {got} vs scalar {reference} (tol {tol:G3})";
                                if (v == Variant.Neon)
                                {
                                    float one = row.Dot(pw + r * rowBytes, pa + k * stride, n);
                                    if (BitConverter.SingleToInt32Bits(got) != BitConverter.SingleToInt32Bits(one)) return $"token {k} row {r}: {got} vs one-token loop {one}";
                                }
                            }
                    }
                    return null;
                });
            if (row.Packs) PackedChecks(t, v, row, n, w, rowBytes, act, stride, want, mag);
        }
    }

    /// <summary>
    /// The same driver with the repacked copy (<see cref="CpuKernelRow.Repack"/>: Q4_0 on AVX-512, AVX2 and NEON, Q8_0 on
    /// AVX-512 with AVX-VNNI, AVX2 and NEON) as a matmul runs it once a batch has made one: 12 whole groups of eight rows through the
    /// group GEMM (groups cut by the uneven ranges computed whole, their rows in range kept), row 101 on the stored rows;
    /// every batch size against the Scalar rung within 1e-5·M, nothing written past the batch, and on NEON each token's
    /// result in the batch equal bit for bit to the same token alone through the packed path (what
    /// <c>BackendOptions.BatchInvariant</c> promises).
    /// </summary>
    private static void PackedChecks(GgmlType t, Variant v, CpuKernelRow row, int n, byte[] w, long rowBytes, byte[] act, long stride, float[] want, double[] mag)
    {
        const int rows = 101;
        long[] cuts = { 0, 29, 64, rows };
        var packed = GC.AllocateUninitializedArray<byte>(checked((int)row.PackedBytes(rows, n)), pinned: true);
        byte[] panel = Array.Empty<byte>();
        long panelStride = Q8_0Panel.BytesFor(n);
        if (row.PackedPanel)
        {
            long xb = ActivationQuant.BytesFor(t, n);
            panel = new byte[13 * panelStride];
            fixed (byte* pq = act) fixed (byte* pp = panel)
                for (int k = 0; k < 13; k++) Q8_0Panel.FromBlocks(pq + k * xb, pp + k * panelStride, n);
        }
        fixed (byte* pw = w) fixed (byte* pk = packed) row.Repack(pw, rowBytes, rows, n, pk);
        float[] Run(int first, int tokens)
        {
            var dst = new float[(tokens + 1) * rows];
            Array.Fill(dst, float.NaN);
            var scratch = new float[n];
            fixed (byte* pw = w) fixed (byte* pa = act) fixed (byte* pp = panel) fixed (byte* pk = packed) fixed (float* pd = dst) fixed (float* ps = scratch)
            {
                var job = new RowJob
                {
                    W = pw, RowBytes = rowBytes, Rows = rows, N = n, X = pa + first * stride, XStride = stride, Dst = pd, NTokens = tokens,
                    Packed = pk, PackedX = row.PackedPanel ? pp + first * panelStride : null, PackedXStride = panelStride,
                };
                for (int c = 0; c + 1 < cuts.Length; c++) row.Rows(in job, cuts[c], cuts[c + 1], ps);
            }
            return dst;
        }
        foreach (int tokens in Batches)
            Guard($"{t} {Name(v)} batched matmul over the repacked copy, {tokens} tokens x {rows} rows of {n} (3 ranges): vs Scalar rung{(v == Variant.Neon ? ", == each token alone" : "")}", () =>
            {
                float[] dst = Run(0, tokens);
                for (int i = tokens * rows; i < dst.Length; i++)
                    if (!float.IsNaN(dst[i])) return $"wrote past the batch at {i}";
                for (int k = 0; k < tokens; k++)
                {
                    float[]? alone = v == Variant.Neon ? Run(k, 1) : null;
                    for (int r = 0; r < rows; r++)
                    {
                        float got = dst[k * rows + r], reference = want[k * rows + r];
                        double tol = 1e-5 * mag[k * rows + r];
                        if (!(Math.Abs(got - reference) <= tol)) return $"token {k} row {r}: {got} vs scalar {reference} (tol {tol:G3})";
                        if (alone != null && BitConverter.SingleToInt32Bits(got) != BitConverter.SingleToInt32Bits(alone[r]))
                            return $"token {k} row {r}: {got} in the batch vs {alone[r]} alone";
                    }
                }
                return null;
            });
        if (t is GgmlType.Q4_0 or GgmlType.Q8_0 && v == Variant.Neon && System.Runtime.Intrinsics.Arm.Dp.IsSupported)
            Guard($"{t} Neon repacked GEMM: sdot and the widening path give the same bits (12 groups x 4 tokens, and 1 token; rows of {n})", () =>
            {
                var a = new float[5 * 8];
                var b = new float[5 * 8];
                bool q8 = t == GgmlType.Q8_0;
                fixed (byte* pk = packed) fixed (byte* pp = panel) fixed (float* da = a) fixed (float* db = b)
                    for (int g = 0; g < rows / 8; g++)
                    {
                        byte* group = pk + g * row.PackedBytes(8, n);
                        // Both GEMMs take the panel (tokens 0-3, then token 4 alone).
                        if (q8)
                        {
                            DotQ8_0.PackedDot4Neon(group, pp, panelStride, n, da, 8, dp: true);
                            DotQ8_0.PackedDot4Neon(group, pp, panelStride, n, db, 8, dp: false);
                            DotQ8_0.PackedDot1Neon(group, pp + 4 * panelStride, n, da + 32, dp: true);
                            DotQ8_0.PackedDot1Neon(group, pp + 4 * panelStride, n, db + 32, dp: false);
                        }
                        else
                        {
                            DotQ4_0.PackedDot4Neon(group, pp, panelStride, n, da, 8, dp: true);
                            DotQ4_0.PackedDot4Neon(group, pp, panelStride, n, db, 8, dp: false);
                            DotQ4_0.PackedDot1Neon(group, pp + 4 * panelStride, n, da + 32, dp: true);
                            DotQ4_0.PackedDot1Neon(group, pp + 4 * panelStride, n, db + 32, dp: false);
                        }
                        for (int i = 0; i < a.Length; i++)
                            if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i]))
                                return $"group {g} result {i}: sdot {a[i]} vs widening {b[i]}";
                    }
                return null;
            });
    }

    /// <summary>
    /// Decode over the repacked copy on NEON (Q4_0 and Q8_0), through the backend as the model runs it: a fresh <see cref="CpuBackend"/>
    /// (2 threads) whose first matmul of the weight is a lone token (the copy is made there), then a batch of 5 tokens, then each of
    /// the 5 again alone; 101 rows of 2144 values (12 groups of eight, 5 rows after them; 67 blocks, 3 after the last
    /// four). Every result within 1e-5·M of the Scalar rung, and with the copy (not <c>EDGELLM_KERNEL_REPACK=0</c>) each
    /// token alone equal bit for bit to the same token in the batch: decode and batches run the same kernel, so
    /// batch invariance holds without <c>BatchInvariant</c> (a decode on the one-row loops sums in another order and fails
    /// that). The first lone token is compared with its later run alone too (the copy made by a one-token matmul is used).
    /// </summary>
    private static void NeonDecodeChecks(GgmlType t)
    {
        const int n = 2144, rows = 101, tokens = 5;
        long rowBytes = GgmlTypes.RowBytes(t, n), xb = ActivationQuant.BytesFor(t, n);
        var w = new byte[rowBytes * rows];
        var wDeq = new float[rows][];
        for (int r = 0; r < rows; r++)
        {
            byte[] q = Weights(t, n, r % 3 == 0 ? "raw" : "gaussian", 8100 + r);
            q.CopyTo(w, r * rowBytes);
            wDeq[r] = new float[n];
            QuantRef.DequantizeRow(t, q, wDeq[r]);
        }
        var x = new float[tokens * n];
        var want = new float[tokens * rows];
        var mag = new double[tokens * rows];
        CpuKernelRow scalar = KernelVariants.Row(t, Variant.Scalar);
        for (int k = 0; k < tokens; k++)
        {
            float[] xk = Activations(n, 32, 8200 + k);
            for (int i = 0; i < n; i++) xk[i] *= k + 0.5f;
            xk.CopyTo(x, k * n);
            byte[] xq = QuantizeActivations(t, xk);
            float[] xDeq = DequantizeActivations(t, xq, n);
            fixed (byte* pw = w) fixed (byte* px = xq)
                for (int r = 0; r < rows; r++)
                {
                    want[k * rows + r] = scalar.Dot(pw + r * rowBytes, px, n);
                    mag[k * rows + r] = Magnitude(t, w.AsSpan((int)(r * rowBytes), (int)rowBytes).ToArray(), xq, wDeq[r], xDeq);
                }
        }
        Guard($"{t} {Name(Variant.Neon)} decode through the backend over the repacked copy (first matmul one token, then {tokens} in a batch, then each alone; {rows} rows of {n}, 2 threads): vs Scalar rung{(KernelRung.UseRepack ? ", alone == in the batch" : "")}", () =>
        {
            fixed (byte* pw = w)
            {
                using var backend = new CpuBackend(threads: 2);
                backend.Prepare(new BackendLimits(tokens, n, 4, 2, 2));
                var weight = backend.LoadWeight(new TensorView("decode.weight", t, [n, rows], pw, rowBytes * rows));
                var bx = backend.Allocate((long)tokens * n);
                var bd = backend.Allocate((long)tokens * rows);
                float[] Run(int first, int count)
                {
                    fixed (float* p = x) Buffer.MemoryCopy(p + first * n, ((CpuBuffer)bx).Data, count * n * 4L, count * n * 4L);
                    backend.MatMul(weight, bx, bd, count);
                    var got = new float[count * rows];
                    backend.CopyOut(bd, 0, got);
                    return got;
                }
                float[] firstAlone = Run(tokens - 1, 1);
                float[] batch = Run(0, tokens);
                for (int k = 0; k < tokens; k++)
                {
                    float[] alone = Run(k, 1);
                    for (int r = 0; r < rows; r++)
                    {
                        float got = alone[r], reference = want[k * rows + r];
                        double tol = 1e-5 * mag[k * rows + r];
                        if (!(Math.Abs(got - reference) <= tol)) return $"token {k} alone, row {r}: {got} vs scalar {reference} (tol {tol:G3})";
                        if (!(Math.Abs(batch[k * rows + r] - reference) <= tol)) return $"token {k} in the batch, row {r}: {batch[k * rows + r]} vs scalar {reference} (tol {tol:G3})";
                        if (KernelRung.UseRepack && BitConverter.SingleToInt32Bits(got) != BitConverter.SingleToInt32Bits(batch[k * rows + r]))
                            return $"token {k} row {r}: {got} alone vs {batch[k * rows + r]} in the batch";
                        if (k == tokens - 1 && BitConverter.SingleToInt32Bits(got) != BitConverter.SingleToInt32Bits(firstAlone[r]))
                            return $"token {k} row {r}: {firstAlone[r]} as the first matmul vs {got} later";
                    }
                }
            }
            return null;
        });
    }

    /// <summary>Q4_1/Q5_1: the weight block's offset m (fp16 at byte 2), else 0.</summary>
    private static bool HasOffset(GgmlType t) => t is GgmlType.Q4_1 or GgmlType.Q5_1;

    private static double Offset(GgmlType t, byte[] w, int block) =>
        HasOffset(t) ? (double)BitConverter.ToHalf(w, block * GgmlTypes.Geometry(t).BlockBytes + 2) : 0;

    /// <summary>
    /// Q4_1/Q5_1 kernels use the Q8_1 block's stored s = fp16(d·Σq) where the float dot over the dequantized activations
    /// has m·d·Σq: Σ_blocks m·(s − d·Σq), exact in double (as in tests/EdgeLlm.Tests/Kernels/Block32DotTests.cs).
    /// </summary>
    private static double OffsetCorrection(GgmlType t, Case c)
    {
        if (!HasOffset(t)) return 0;
        double sum = 0;
        for (int b = 0; b < c.N / 32; b++)
        {
            double d = (double)BitConverter.ToHalf(c.Xq, b * 36), s = (double)BitConverter.ToHalf(c.Xq, b * 36 + 2);
            int qsum = 0;
            for (int j = 0; j < 32; j++) qsum += (sbyte)c.Xq[b * 36 + 4 + j];
            sum += Offset(t, c.W, b) * (s - d * qsum);
        }
        return sum;
    }

    private static float Dot(GgmlType t, Variant v, Case c)
    {
        fixed (byte* w = c.W) fixed (byte* xq = c.Xq) return KernelVariants.Run(t, v, w, xq, c.N);
    }

    /// <summary>Seeded weights as in the xunit KernelTestData: "gaussian" (quantized by the reference quantizer, a few
    /// ±0.5 outliers), "raw" (random bytes, random finite fp16 scales), "zeros" (gaussian with every other block zero),
    /// "subnormal" (random bytes, every fp16 scale and min a subnormal half or ±0: the NEON loops convert those four
    /// blocks at a time by a multiply that sees a denormal float operand, which must not be flushed to zero).</summary>
    private static byte[] Weights(GgmlType t, int n, string kind, int seed)
    {
        var rng = new Random(seed);
        int bs = BlockSize(t), bb = GgmlTypes.Geometry(t).BlockBytes;
        if (kind is "raw" or "subnormal")
        {
            var raw = new byte[n / bs * bb];
            rng.NextBytes(raw);
            for (int b = 0; b < n / bs; b++)
            {
                int o = b * bb;
                switch (t)
                {
                    case GgmlType.Q4_0:
                    case GgmlType.Q5_0:
                    case GgmlType.IQ4_NL:
                    case GgmlType.Q8_0: SetHalf(raw, o, rng, kind); break;
                    case GgmlType.Q4_1:
                    case GgmlType.Q5_1:
                    case GgmlType.Q4_K: SetHalf(raw, o, rng, kind); SetHalf(raw, o + 2, rng, kind); break;
                    case GgmlType.Q6_K: SetHalf(raw, o + 208, rng, kind); break;
                }
            }
            return raw;
        }
        float[] f = Gaussian(n, seed, 0.02);
        for (int i = 0; i < n; i += 97) f[i] = (i & 1) == 0 ? 0.5f : -0.5f;
        byte[] q = QuantRef.QuantizeRow(t, f);
        if (kind == "zeros")
            for (int b = 1; b < n / bs; b += 2) Array.Clear(q, b * bb, bb);
        return q;
    }

    private static void SetHalf(byte[] a, int o, Random rng, string kind)
    {
        // "subnormal": exponent field 0, mantissa 0..1023 (0 gives ±0, about one scale in a thousand).
        int exponent = kind == "subnormal" ? 0 : rng.Next(1, 16);
        ushort h = (ushort)((exponent << 10) | rng.Next(1024) | (rng.Next(2) << 15));
        a[o] = (byte)h;
        a[o + 1] = (byte)(h >> 8);
    }

    /// <summary>N(0, 1) activations; block 1 tiny (its Q8_0 scale underflows), blocks 2, 7, … zero, a 1e3 outlier.</summary>
    private static float[] Activations(int n, int blockSize, int seed)
    {
        float[] x = Gaussian(n, seed);
        int nb = n / blockSize;
        for (int b = 2; b < nb; b += 5) Array.Clear(x, b * blockSize, blockSize);
        if (nb >= 4) x[3] = 1000f;
        if (nb >= 2)
            for (int i = blockSize; i < 2 * blockSize; i++) x[i] *= 1e-20f;
        return x;
    }

    private static float[] Gaussian(int n, int seed, double sigma = 1.0)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            double u = 1.0 - rng.NextDouble(), v = rng.NextDouble();
            x[i] = (float)(sigma * Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * v));
        }
        return x;
    }

    private static byte[] QuantizeActivations(GgmlType weightType, float[] x)
    {
        var xq = new byte[ActivationQuant.BytesFor(weightType, x.Length)];
        fixed (float* px = x) fixed (byte* pq = xq) ActivationQuant.QuantizeFor(weightType, px, pq, x.Length);
        return xq;
    }

    private static float[] DequantizeActivations(GgmlType weightType, byte[] xq, int n)
    {
        var x = new float[n];
        fixed (byte* pq = xq) fixed (float* px = x)
        {
            GgmlType format = ActivationQuant.FormatFor(weightType);
            if (format == GgmlType.Q8_0) QuantRef.DequantizeRow(GgmlType.Q8_0, pq, px, n);
            else if (format == GgmlType.Q8_1) ActivationQuant.DequantizeQ8_1(pq, px, n);
            else ActivationQuant.DequantizeQ8_K(pq, px, n);
        }
        return x;
    }

    /// <summary>
    /// Σ |x'_i|·(|w'_i| + 2·μ_i) (+ Σ_blocks |m·s| for Q4_1/Q5_1): the magnitude float reassociation errors scale with
    /// (μ: Q4_K's dmin·m, the Q4_1/Q5_1 block offset m; s the Q8_1 block's d·Σq).
    /// </summary>
    private static double Magnitude(GgmlType t, byte[] w, byte[] xq, float[] wDeq, float[] xDeq)
    {
        double m = 0;
        if (HasOffset(t))
            for (int b = 0; b < xDeq.Length / 32; b++) m += Math.Abs(Offset(t, w, b) * (double)BitConverter.ToHalf(xq, b * 36 + 2));
        for (int i = 0; i < xDeq.Length; i++)
        {
            double mu = Math.Abs(Offset(t, w, i / 32));
            if (t is GgmlType.Q4_K or GgmlType.Q5_K)
                fixed (byte* p = w)
                {
                    byte* blk = p + i / 256 * GgmlTypes.Geometry(t).BlockBytes;
                    Q4_K.GetScaleMin(i % 256 / 32, blk + 4, out _, out int mi);
                    mu = Math.Abs((double)(float)BitConverter.UInt16BitsToHalf((ushort)(blk[2] | (blk[3] << 8)))) * mi;
                }
            m += Math.Abs((double)xDeq[i]) * (Math.Abs((double)wDeq[i]) + 2 * mu);
        }
        return m;
    }

    /// <summary>One hand-computed block per type (worked out in tests/EdgeLlm.Tests/Kernels/QuantDotTests.cs and Block32DotTests.cs).</summary>
    private static (byte[] W, byte[] X, int N, float Want) Hand(GgmlType t)
    {
        switch (t)
        {
            case GgmlType.Q4_1:
            {
                byte[] w = new byte[20];
                w[1] = 0x3C; w[3] = 0x40;
                Array.Fill(w, (byte)0x31, 4, 16);
                return (w, Q8_1Block(0x3800, 0x5000, _ => 2), 32, 128f);
            }
            case GgmlType.Q5_0:
            {
                byte[] w = new byte[22];
                w[1] = 0x3C; w[2] = 0xFF; w[3] = 0xFF;
                Array.Fill(w, (byte)0x21, 6, 16);
                return (w, Q8Block(0x3800, _ => 2), 32, -208f);
            }
            case GgmlType.Q5_1:
            {
                byte[] w = new byte[24];
                w[1] = 0x38; w[3] = 0xBC; w[6] = 0xFF; w[7] = 0xFF;
                Array.Fill(w, (byte)0x10, 8, 16);
                return (w, Q8_1Block(0x3C00, 0x5000, _ => 1), 32, 104f);
            }
            case GgmlType.IQ4_NL:
            {
                byte[] w = new byte[18];
                w[1] = 0x3C;
                Array.Fill(w, (byte)0xF0, 2, 16);
                return (w, Q8Block(0x3800, j => (sbyte)(j < 16 ? 1 : -1)), 32, -1920f);
            }
            case GgmlType.Q4_0:
            {
                byte[] w = new byte[18];
                w[1] = 0x3C;
                Array.Fill(w, (byte)0x9A, 2, 16);
                return (w, Q8Block(0x3800, _ => 3), 32, 72f);
            }
            case GgmlType.Q8_0:
                return (Q8Block(0x4000, j => (sbyte)(j - 16)), Q8Block(0x3800, _ => 1), 32, -16f);
            case GgmlType.Q4_K:
            {
                byte[] w = new byte[144];
                w[1] = 0x3C; w[3] = 0x3C;
                for (int i = 4; i < 12; i++) w[i] = 1;
                for (int i = 12; i < 16; i++) w[i] = 0x11;
                Array.Fill(w, (byte)0x31, 16, 128);
                return (w, Q8KBlock(0.25f, 2), 256, 128f);
            }
            default:
            {
                byte[] w = new byte[210];
                Array.Fill(w, (byte)0x21, 0, 128);
                Array.Fill(w, (byte)0xE4, 128, 64);
                Array.Fill(w, (byte)2, 192, 16);
                w[209] = 0x3C;
                return (w, Q8KBlock(0.5f, 1), 256, -1664f);
            }
        }
    }

    private static byte[] Q8Block(ushort d, Func<int, sbyte> q)
    {
        var b = new byte[34];
        b[0] = (byte)d;
        b[1] = (byte)(d >> 8);
        for (int j = 0; j < 32; j++) b[2 + j] = (byte)q(j);
        return b;
    }

    private static byte[] Q8_1Block(ushort d, ushort s, Func<int, sbyte> q)
    {
        var b = new byte[36];
        b[0] = (byte)d; b[1] = (byte)(d >> 8);
        b[2] = (byte)s; b[3] = (byte)(s >> 8);
        for (int j = 0; j < 32; j++) b[4 + j] = (byte)q(j);
        return b;
    }

    private static byte[] Q8KBlock(float d, sbyte q)
    {
        var b = new byte[ActivationQuant.Q8_KBlockBytes];
        BitConverter.TryWriteBytes(b.AsSpan(0, 4), d);
        Array.Fill(b, (byte)q, 4, 256);
        for (int g = 0; g < 16; g++) BitConverter.TryWriteBytes(b.AsSpan(260 + 2 * g, 2), (short)(16 * q));
        return b;
    }

    // ---- float dots ----

    private static readonly int[] Lengths = { 0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 257, 1000, 4099 };
    private static readonly string[] Widths = { "Dot", "512", "256", "128", "Scalar" };

    /// <summary>
    /// The vector scale helpers of the NEON K-quant loops against their scalar references: <c>NeonScales.KScales</c>
    /// against <c>DotQ4_K.UnpackScales</c> on 20,000 random 12-byte fields (and all-ones bytes), <c>HalfPair</c> and
    /// <c>Half1</c> against <c>Fp16.Read</c> on all 65,536 halves, bit for bit.
    /// </summary>
    private static void NeonScaleChecks()
    {
        Guard("Q8_0Panel.FromBlocks (NEON) == the panel computed here from the Q8_0 bytes (quants, (float)Half d, d·(8·Σq)), 1-67 blocks", () =>
        {
            var rng = new Random(1515);
            foreach (int nb in new[] { 1, 3, 4, 5, 7, 8, 33, 67 })
                foreach (string kind in new[] { "quantized", "raw", "extreme", "subnormal" })
                {
                    int n = nb * 32;
                    byte[] xq;
                    if (kind == "quantized") xq = QuantizeActivations(GgmlType.Q8_0, Activations(n, 32, 1600 + nb));
                    else
                    {
                        xq = new byte[nb * ActivationQuant.Q8_0BlockBytes];
                        rng.NextBytes(xq);
                        for (int b = 0; b < nb; b++)
                        {
                            int o = b * ActivationQuant.Q8_0BlockBytes;
                            // extreme: every quant -128 or 127 (the largest block sums); subnormal: the scale a subnormal half or ±0.
                            if (kind == "extreme") for (int j = 0; j < 32; j++) xq[o + 2 + j] = (byte)(rng.Next(2) == 0 ? 0x80 : 0x7F);
                            ushort h = kind == "subnormal" ? (ushort)(rng.Next(0x400) | (rng.Next(2) << 15)) : (ushort)BitConverter.HalfToUInt16Bits((Half)(rng.NextDouble() * 4 - 2));
                            xq[o] = (byte)h;
                            xq[o + 1] = (byte)(h >> 8);
                        }
                    }
                    var got = new byte[Q8_0Panel.BytesFor(n)];
                    fixed (byte* px = xq) fixed (byte* pp = got) Q8_0Panel.FromBlocks(px, pp, n);
                    for (int b = 0; b < nb; b++)
                    {
                        int o = b * ActivationQuant.Q8_0BlockBytes, sum = 0;
                        for (int j = 0; j < 32; j++)
                        {
                            sum += (sbyte)xq[o + 2 + j];
                            if (got[b * 32 + j] != xq[o + 2 + j]) return $"{kind} {nb} blocks: quant {b}.{j} {got[b * 32 + j]} vs {xq[o + 2 + j]}";
                        }
                        float d = (float)BitConverter.ToHalf(xq, o), c = d * (8 * sum);
                        float gd = BitConverter.ToSingle(got, nb * 32 + 4 * b), gc = BitConverter.ToSingle(got, nb * 36 + 4 * b);
                        if (BitConverter.SingleToInt32Bits(gd) != BitConverter.SingleToInt32Bits(d)) return $"{kind} {nb} blocks: d of block {b} {gd} vs {d}";
                        if (BitConverter.SingleToInt32Bits(gc) != BitConverter.SingleToInt32Bits(c)) return $"{kind} {nb} blocks: c of block {b} {gc} vs {c} (sum {sum})";
                    }
                }
            return null;
        });
        Guard("Neon KScales == UnpackScales (Q4_K/Q5_K packed sub-block scales and mins), 20,001 fields", () =>
        {
            var rng = new Random(1414);
            byte* f = stackalloc byte[16];
            int* sc = stackalloc int[8];
            short* mn = stackalloc short[8];
            for (int i = 0; i <= 20000; i++)
            {
                for (int k = 0; k < 16; k++) f[k] = i == 20000 ? (byte)0xFF : (byte)rng.Next(256);
                DotQ4_K.UnpackScales(f, out ulong wantSc, out ulong wantMn);
                NeonScales.KScales(f, out var lo, out var hi, out var mins8);
                lo.Store(sc);
                hi.Store(sc + 4);
                mins8.Store(mn);
                for (int j = 0; j < 8; j++)
                    if (sc[j] != (int)((wantSc >> (8 * j)) & 0xFF) || mn[j] != (short)((wantMn >> (8 * j)) & 0xFF))
                        return $"field {i} sub-block {j}: scale {sc[j]} min {mn[j]} vs {(wantSc >> (8 * j)) & 0xFF} {(wantMn >> (8 * j)) & 0xFF}";
            }
            return null;
        });
        Guard("Neon HalfPair and Half1 == Fp16.Read on every half", () =>
        {
            ushort* h = stackalloc ushort[2];
            for (int v = 0; v < 65536; v++)
            {
                h[0] = (ushort)v;
                h[1] = (ushort)(v ^ 0x8001);
                float a = Fp16.Read((byte*)h), b = Fp16.Read((byte*)(h + 1));
                var pair = NeonScales.HalfPair((byte*)h);
                float one = NeonScales.Half1((byte*)h);
                if (BitConverter.SingleToInt32Bits(pair.GetElement(0)) != BitConverter.SingleToInt32Bits(a) ||
                    BitConverter.SingleToInt32Bits(pair.GetElement(1)) != BitConverter.SingleToInt32Bits(b) ||
                    BitConverter.SingleToInt32Bits(one) != BitConverter.SingleToInt32Bits(a))
                    return $"half 0x{v:x4}: {pair.GetElement(0)}, {pair.GetElement(1)}, {one} vs {a}, {b}";
            }
            return null;
        });
    }

    /// <summary>F32·F32 and F16·F32 against float64: |Δ| ≤ (n + 16)·2^-24·Σ|a·b|, every ladder width.</summary>
    private static void FloatChecks()
    {
        foreach (string width in Widths)
        {
            Guard($"F32 {width}: every length vs float64", () =>
            {
                foreach (int n in Lengths)
                {
                    float[] a = Gaussian(n, 100 + n), b = Gaussian(n, 200 + n);
                    double exact = 0, mag = 0;
                    for (int i = 0; i < n; i++) { exact += (double)a[i] * b[i]; mag += Math.Abs((double)a[i] * b[i]); }
                    float got;
                    fixed (float* pa = a) fixed (float* pb = b)
                        got = width switch
                        {
                            "Dot" => DotF32.Dot(pa, pb, n),
                            "512" => DotF32.Dot512(pa, pb, n),
                            "256" => DotF32.Dot256(pa, pb, n),
                            "128" => DotF32.Dot128(pa, pb, n),
                            _ => DotF32.DotScalar(pa, pb, n),
                        };
                    double tol = (n + 16) * Math.Pow(2, -24) * mag;
                    if (!(Math.Abs(got - exact) <= tol)) return $"n {n}: {got} vs {exact} (tol {tol:G3})";
                }
                return null;
            });
            Guard($"F16 {width}: every length vs float64 (max, subnormals, -0)", () =>
            {
                foreach (int n in Lengths)
                {
                    float[] wf = Gaussian(n, 300 + n, 0.5);
                    if (n > 5) { wf[1] = 65504f; wf[2] = 3e-7f; wf[3] = -0f; wf[4] = -6e-5f; }
                    var w = new Half[n];
                    for (int i = 0; i < n; i++) w[i] = (Half)wf[i];
                    float[] x = Gaussian(n, 400 + n);
                    double exact = 0, mag = 0;
                    for (int i = 0; i < n; i++) { double p = (double)(float)w[i] * x[i]; exact += p; mag += Math.Abs(p); }
                    float got;
                    fixed (Half* pw = w) fixed (float* px = x)
                        got = width switch
                        {
                            "Dot" => DotF16.Dot(pw, px, n),
                            "512" => DotF16.Dot512(pw, px, n),
                            "256" => DotF16.Dot256(pw, px, n),
                            "128" => DotF16.Dot128(pw, px, n),
                            _ => DotF16.DotScalar(pw, px, n),
                        };
                    double tol = (n + 16) * Math.Pow(2, -24) * mag;
                    if (!(Math.Abs(got - exact) <= tol)) return $"n {n}: {got} vs {exact} (tol {tol:G3})";
                    for (int i = 0; i < n; i++)
                        if (BitConverter.SingleToInt32Bits(DotF16.ToFloat(w[i])) != BitConverter.SingleToInt32Bits((float)w[i]))
                            return $"ToFloat({BitConverter.HalfToUInt16Bits(w[i]):X4}) = {DotF16.ToFloat(w[i])}, want {(float)w[i]}";
                }
                return null;
            });
        }
    }

    // ---- model families (tests/data/models-visible, see its README and FamilyLogitsTests) ----

    private static readonly string[] Families = { "llama", "qwen2", "phi3", "gemma", "gemma2" };
    private const double FamilyTolerance = 0.01;

    /// <summary>The 40 tokens at positions 0..39 in one batch and one at a time: every top-10 logit llama.cpp lists, within 0.01.</summary>
    private static string? FamilyLogits(string repo, string name)
    {
        string dir = Path.Combine(repo, "tests/data/models-visible");
        JsonElement root = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, name + ".json"))).RootElement;
        var tokens = new List<int>();
        foreach (JsonElement e in root.GetProperty("token_ids").EnumerateArray()) tokens.Add(e.GetInt32());
        JsonElement top = root.GetProperty("top10");
        if (tokens.Count != 40 || top.GetArrayLength() != 40) return $"reference has {tokens.Count} tokens and {top.GetArrayLength()} positions, want 40";
        using var model = LlamaModel.Load(Path.Combine(dir, name + ".gguf"), new BackendOptions { Threads = 2, ContextSize = 64 });
        int vocab = model.VocabSize;
        var batch = new float[tokens.Count * vocab];
        model.Forward(tokens.ToArray(), 0, batch, allLogits: true);
        model.Cache.Clear();
        var single = new float[tokens.Count * vocab];
        for (int p = 0; p < tokens.Count; p++) model.Forward(tokens[p], p, single.AsSpan(p * vocab, vocab));
        double worst = 0;
        int pos = 0;
        foreach (JsonElement position in top.EnumerateArray())
        {
            foreach (JsonElement pair in position.EnumerateArray())
            {
                int id = pair[0].GetInt32();
                double want = pair[1].GetDouble();
                worst = Math.Max(worst, Math.Max(Math.Abs(batch[pos * vocab + id] - want), Math.Abs(single[pos * vocab + id] - want)));
            }
            pos++;
        }
        Console.WriteLine($"  {name}: max |diff| {worst:E2}");
        return worst <= FamilyTolerance ? null : $"max |diff| {worst:E3} > {FamilyTolerance}";
    }

    // ---- stories260K ----

    private static JsonElement Reference(string repo) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(repo, "tests/data/stories260K.reference_greedy.json"))).RootElement;

    private static int[] ReferenceIds(JsonElement root)
    {
        var ids = new List<int>();
        foreach (JsonElement e in root.GetProperty("generated_token_ids").EnumerateArray()) ids.Add(e.GetInt32());
        return ids.ToArray();
    }

    /// <summary>Greedy decoding from BOS for 256 positions through LlamaModel must give the float64 reference's tokens.</summary>
    private static string? Greedy256(string repo)
    {
        JsonElement root = Reference(repo);
        int[] expected = ReferenceIds(root);
        if (expected.Length != 256) return $"reference has {expected.Length} tokens, want 256";
        using var model = LlamaModel.Load(Path.Combine(repo, "models/stories260K.gguf"), new BackendOptions { Threads = 2, ContextSize = 256 });
        var logits = new float[model.VocabSize];
        int token = root.GetProperty("bos_token_id").GetInt32();
        for (int pos = 0; pos < expected.Length; pos++)
        {
            model.Forward(token, pos, logits);
            if (pos == 0)
                foreach (JsonElement e in root.GetProperty("step0_top5_logits").EnumerateArray())
                {
                    int id = e.GetProperty("token_id").GetInt32();
                    double want = e.GetProperty("logit").GetDouble();
                    if (!(Math.Abs(logits[id] - want) <= 1e-3)) return $"step 0 logit of {id}: {logits[id]} vs {want}";
                }
            int best = 0;
            for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
            if (best != expected[pos]) return $"position {pos}: token {best}, reference {expected[pos]}";
            token = best;
        }
        return null;
    }

    /// <summary>The text `edgellm run -n N --temp 0` prints for the first N reference tokens (as CommandTests builds it).</summary>
    private static string ReferenceText(string repo, int n)
    {
        JsonElement root = Reference(repo);
        int[] ids = ReferenceIds(root);
        using var f = GgufFile.Open(Path.Combine(repo, "models/stories260K.gguf"));
        var dec = Tokenizer.FromGguf(f).CreateDecoder(stripLeadingSpace: true);
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < n && i < ids.Length; i++) sb.Append(dec.Append(ids[i]));
        sb.Append(dec.Flush());
        string text = sb.ToString();
        if (!root.GetProperty("generated_text").GetString()!.StartsWith(text, StringComparison.Ordinal))
            throw new InvalidOperationException("the decoded reference tokens do not start the reference file's generated_text");
        return text;
    }
}
