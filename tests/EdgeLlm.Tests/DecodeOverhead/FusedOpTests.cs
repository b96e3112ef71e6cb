using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Quant;

namespace EdgeLlm.Tests.DecodeOverhead;

/// <summary>
/// The CPU backend's fused ops against float64 references and against the ops they replace (the same backend with the
/// fusion off): <see cref="IBackend.AddRmsNorm"/> (the residual add and the next norm in one pass), <see cref="IBackend.GluMatMul"/>
/// (the GLU applied where the down product quantizes its input) and <see cref="IBackend.RopeAttention"/> /
/// <see cref="CpuBackend.AttendSequences"/> (q rotated inside the attention units). Each must give exactly the bits of the
/// unfused ops on 1, 2 and 3 threads, for a lone token (serial paths) and batches (dispatched paths), and take fewer dispatches.
/// </summary>
public sealed unsafe class FusedOpTests
{
    private static void SameBits(float[] want, float[] got, string what)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(want[i]) == BitConverter.SingleToInt32Bits(got[i]), $"{what}: element {i}: {got[i]:R} fused vs {want[i]:R} unfused");
    }

    /// <summary>An F32 vector or a quantized matrix as a weight of <paramref name="b"/>, its bytes pinned for the test's life.</summary>
    private sealed class Pinned : IDisposable
    {
        private readonly GCHandle _h;
        public readonly BackendWeight W;

        public Pinned(IBackend b, string name, GgmlType type, long ne0, long rows, byte[] bytes)
        {
            _h = GCHandle.Alloc(bytes, GCHandleType.Pinned);
            W = b.LoadWeight(new TensorView(name, type, rows == 1 && type == GgmlType.F32 ? [ne0] : [ne0, rows], (byte*)_h.AddrOfPinnedObject(), bytes.Length));
        }

        public void Dispose() => _h.Free();
    }

    private static byte[] FloatBytes(float[] f) => MemoryMarshal.AsBytes(f.AsSpan()).ToArray();

    [Theory]
    [InlineData(1, 2048, 1)]
    [InlineData(1, 2048, 2)]
    [InlineData(4, 2048, 2)]
    [InlineData(5, 2053, 3)]
    [InlineData(3, 13, 1)]
    public void AddRmsNorm_is_add_then_norm_and_matches_float64(int tokens, int dim, int threads)
    {
        const float eps = 1e-5f;
        float[] x = QuantTestData.Gaussian(tokens * dim, 1 + dim, 3.0);
        float[] delta = QuantTestData.Gaussian(tokens * dim, 2 + dim, 0.5);
        float[] w = QuantTestData.Gaussian(dim, 3 + dim);
        foreach (bool dstIsDelta in new[] { false, true })
        {
            var (fx, fd, fusedDispatches) = Run(fused: true, dstIsDelta);
            var (ux, ud, unfusedDispatches) = Run(fused: false, dstIsDelta);
            string what = $"{tokens} rows of {dim}, {threads} threads, dst {(dstIsDelta ? "= delta" : "apart")}";
            SameBits(ux, fx, what + ": x");
            SameBits(ud, fd, what + ": dst");
            long elements = (long)tokens * dim;
            long want = elements > WorkerPool.SerialElements ? 1 : 0; // a dispatch is counted on one thread too
            Assert.True(fusedDispatches == want && unfusedDispatches == 2 * want, $"{what}: {fusedDispatches} dispatches fused, {unfusedDispatches} unfused");
            for (int t = 0; t < tokens; t++)
            {
                double ss = 0;
                var sum = new double[dim];
                for (int i = 0; i < dim; i++)
                {
                    sum[i] = (double)x[t * dim + i] + delta[t * dim + i];
                    Assert.True(Math.Abs(fx[t * dim + i] - sum[i]) <= Math.Pow(2, -24) * Math.Abs(sum[i]), $"{what}: x[{t}, {i}] {fx[t * dim + i]:R} vs float64 {sum[i]:R}");
                    ss += sum[i] * sum[i];
                }
                double scale = 1 / Math.Sqrt(ss / dim + eps);
                for (int i = 0; i < dim; i++)
                {
                    double want64 = sum[i] * scale * w[i];
                    Assert.True(Math.Abs(fd[t * dim + i] - want64) <= 6 * Math.Pow(2, -24) * Math.Abs(want64) + 1e-30, $"{what}: dst[{t}, {i}] {fd[t * dim + i]:R} vs float64 {want64:R}");
                }
            }
        }

        (float[] X, float[] Dst, long Dispatches) Run(bool fused, bool dstIsDelta)
        {
            using var b = new CpuBackend(threads);
            b.Prepare(new BackendLimits(tokens, dim, 4, 2, 2));
            using var pw = new Pinned(b, "norm", GgmlType.F32, dim, 1, FloatBytes(w));
            var bx = b.Allocate((long)tokens * dim);
            var bd = b.Allocate((long)tokens * dim);
            var dst = dstIsDelta ? bd : b.Allocate((long)tokens * dim);
            b.CopyIn(x, bx, 0);
            b.CopyIn(delta, bd, 0);
            long before = b.Dispatches;
            if (fused) b.AddRmsNorm(bx, bd, pw.W, dst, tokens, dim, eps);
            else
            {
                b.Add(bx, bd, (long)tokens * dim);
                b.RmsNorm(bx, pw.W, dst, tokens, dim, eps);
            }
            long dispatches = b.Dispatches - before;
            float[] ox = new float[tokens * dim], od = new float[tokens * dim];
            b.CopyOut(bx, 0, ox);
            b.CopyOut(dst, 0, od);
            return (ox, od, dispatches);
        }
    }

    public static TheoryData<GgmlType, int, int> NormProductCases()
    {
        var d = new TheoryData<GgmlType, int, int>();
        foreach (var type in new[] { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.F32 })
            foreach (int tokens in new[] { 1, 4, 9 })
                foreach (int threads in new[] { 1, 2, 3 })
                    d.Add(type, tokens, threads);
        return d;
    }

    /// <summary>
    /// <see cref="CpuBackend.NormMatMulGroup"/> (the norm of a layer's input, with the residual add, done where the product
    /// quantizes each token) against <see cref="IBackend.AddRmsNorm"/> / <see cref="IBackend.RmsNorm"/> then
    /// <see cref="IBackend.MatMulGroup"/>: the same bits in the residual, the normed rows and every member's output, one
    /// dispatch fewer where the rows' norm was dispatched (types whose kernels read floats run the two ops); the normed rows
    /// and the products also against float64. Three forms: add and norm into the delta's rows (a layer's norms), a norm into
    /// rows apart (layer 0's) and a norm in place (the final norm before the output layer).
    /// </summary>
    [Theory]
    [MemberData(nameof(NormProductCases))]
    public void NormMatMulGroup_is_norm_then_product_and_matches_float64(GgmlType type, int tokens, int threads)
    {
        foreach (string form in new[] { "add + norm", "norm", "norm in place" })
            NormProduct(type, tokens, threads, form);
    }

    private static void NormProduct(GgmlType type, int tokens, int threads, string form)
    {
        bool withDelta = form == "add + norm", inPlace = form == "norm in place";
        const int dim = 1536;
        const float eps = 1e-5f;
        int[] rows = [48, 16, 16]; // a layer's Q, K and V
        long rowBytes = GgmlTypes.RowBytes(type, dim);
        var weights = new byte[rows.Length][];
        var deq = new float[rows.Length][];
        for (int m = 0; m < rows.Length; m++)
        {
            weights[m] = new byte[rowBytes * rows[m]];
            deq[m] = new float[rows[m] * dim];
            for (int r = 0; r < rows[m]; r++)
            {
                float[] f = QuantTestData.Gaussian(dim, 1000 * m + 31 * r + 7, 0.05);
                byte[] q = type == GgmlType.F32 ? FloatBytes(f) : QuantRef.QuantizeRow(type, f);
                q.CopyTo(weights[m], r * rowBytes);
                if (type == GgmlType.F32) f.CopyTo(deq[m], r * dim);
                else QuantRef.DequantizeRow(type, q, deq[m].AsSpan(r * dim, dim));
            }
        }
        float[] x = QuantTestData.Gaussian(tokens * dim, 41, 3.0);
        float[] delta = QuantTestData.Gaussian(tokens * dim, 42, 0.5);
        float[] normW = QuantTestData.Gaussian(dim, 43);
        var (fx, fn, fo, fDispatches) = Run(fused: true);
        var (ux, un, uo, uDispatches) = Run(fused: false);
        string what = $"{type}, {tokens} tokens, {threads} threads, {form}";
        SameBits(ux, fx, what + ": residual");
        SameBits(un, fn, what + ": normed rows");
        for (int m = 0; m < rows.Length; m++) SameBits(uo[m], fo[m], what + $": product {m}");
        bool normDispatched = (long)tokens * dim > WorkerPool.SerialElements;
        long saved = type == GgmlType.F32 || !normDispatched ? 0 : 1;
        Assert.True(uDispatches - fDispatches == saved, $"{what}: {fDispatches} dispatches fused, {uDispatches} unfused, {saved} fewer expected");
        for (int t = 0; t < tokens; t++)
        {
            var s = new double[dim];
            double ss = 0;
            for (int i = 0; i < dim; i++)
            {
                s[i] = (double)x[t * dim + i] + (withDelta ? delta[t * dim + i] : 0);
                ss += s[i] * s[i];
            }
            double scale = 1 / Math.Sqrt(ss / dim + eps);
            var a = new double[dim];
            for (int i = 0; i < dim; i++)
            {
                a[i] = s[i] * scale * normW[i];
                Assert.True(Math.Abs(fn[t * dim + i] - a[i]) <= 6 * Math.Pow(2, -24) * Math.Abs(a[i]) + 1e-30, $"{what}: normed[{t}, {i}] {fn[t * dim + i]:R} vs float64 {a[i]:R}");
            }
            for (int m = 0; m < rows.Length; m++)
                for (int r = 0; r < rows[m]; r++)
                {
                    double want = 0, mag = 0;
                    for (int i = 0; i < dim; i++)
                    {
                        want += deq[m][r * dim + i] * a[i];
                        mag += Math.Abs(deq[m][r * dim + i] * a[i]);
                    }
                    double tol = type == GgmlType.F32 ? 1e-5 * mag : 2e-2 * mag;
                    Assert.True(Math.Abs(fo[m][t * rows[m] + r] - want) <= tol, $"{what}: product {m} [{t}, {r}] {fo[m][t * rows[m] + r]:G6} vs float64 {want:G6} (|w||a| {mag:G3})");
                }
        }

        (float[] X, float[] Normed, float[][] Out, long Dispatches) Run(bool fused)
        {
            using var b = new CpuBackend(threads, batchInvariant: true) { FuseNorm = fused };
            b.Prepare(new BackendLimits(tokens, dim, 4, 2, 2));
            using var pn = new Pinned(b, "blk.0.attn_norm.weight", GgmlType.F32, dim, 1, FloatBytes(normW));
            var pws = new Pinned[rows.Length];
            var ws = new BackendWeight[rows.Length];
            var dsts = new BackendBuffer[rows.Length];
            for (int m = 0; m < rows.Length; m++)
            {
                pws[m] = new Pinned(b, $"blk.0.attn_{"qkv"[m]}.weight", type, dim, rows[m], weights[m]);
                ws[m] = pws[m].W;
                dsts[m] = b.Allocate((long)tokens * rows[m]);
            }
            try
            {
                var bx = b.Allocate((long)tokens * dim);
                var bd = b.Allocate((long)tokens * dim); // the delta, and the normed rows (as the model: the norm overwrites it)
                b.CopyIn(delta, bd, 0);
                b.MatMulGroup(ws, bd, dsts, tokens); // the weights' first product (a repack, where their kernels take one) before the count
                b.CopyIn(x, bx, 0);
                b.CopyIn(delta, bd, 0);
                long before = b.Dispatches;
                var normed = inPlace ? bx : bd;
                b.NormMatMulGroup(bx, withDelta ? bd : null, pn.W, normed, dim, eps, ws, dsts, tokens);
                long dispatches = b.Dispatches - before;
                float[] ox = new float[tokens * dim], on = new float[tokens * dim];
                b.CopyOut(bx, 0, ox);
                b.CopyOut(normed, 0, on);
                var outs = new float[rows.Length][];
                for (int m = 0; m < rows.Length; m++)
                {
                    outs[m] = new float[tokens * rows[m]];
                    b.CopyOut(dsts[m], 0, outs[m]);
                }
                return (ox, on, outs, dispatches);
            }
            finally
            {
                foreach (var pw in pws) pw.Dispose();
            }
        }
    }

    public static TheoryData<GgmlType, int, int, GluKind> GluCases()
    {
        var d = new TheoryData<GgmlType, int, int, GluKind>();
        foreach (var type in new[] { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q4_1, GgmlType.F32 })
            foreach (int tokens in new[] { 1, 3, 12 })
                foreach (int threads in new[] { 1, 2, 3 })
                    d.Add(type, tokens, threads, tokens == 3 ? GluKind.GeluTanh : GluKind.Silu);
        return d;
    }

    [Theory]
    [MemberData(nameof(GluCases))]
    public void GluMatMul_is_glu_then_product_and_matches_float64(GgmlType type, int tokens, int threads, GluKind kind)
    {
        const int n = 512, rows = 40;
        long rowBytes = GgmlTypes.RowBytes(type, n);
        byte[] weights = new byte[rowBytes * rows];
        var deq = new float[rows * n];
        for (int r = 0; r < rows; r++)
        {
            float[] f = QuantTestData.Gaussian(n, 31 * r + 7, 0.05);
            byte[] q = type == GgmlType.F32 ? FloatBytes(f) : QuantRef.QuantizeRow(type, f);
            q.CopyTo(weights, r * rowBytes);
            if (type == GgmlType.F32) f.CopyTo(deq, r * n);
            else QuantRef.DequantizeRow(type, q, deq.AsSpan(r * n, n));
        }
        float[] gate = QuantTestData.Gaussian(tokens * n, 91, 2.0);
        float[] up = QuantTestData.Gaussian(tokens * n, 92);
        foreach (bool invariant in new[] { false, true })
        {
            var (fOut, fGate, fDispatches) = Run(fused: true, invariant);
            var (uOut, uGate, uDispatches) = Run(fused: false, invariant);
            string what = $"{type}, {tokens} tokens, {threads} threads, {kind}, batch invariant {invariant}";
            SameBits(uGate, fGate, what + ": gate");
            SameBits(uOut, fOut, what + ": product");
            bool gluDispatched = (long)tokens * n > WorkerPool.SerialElements;
            long saved = type == GgmlType.F32 || !gluDispatched ? 0 : 1;
            Assert.True(uDispatches - fDispatches == saved, $"{what}: {fDispatches} dispatches fused, {uDispatches} unfused, {saved} fewer expected");
            for (int t = 0; t < tokens; t++)
            {
                var a = new double[n];
                for (int i = 0; i < n; i++)
                {
                    double g = gate[t * n + i], u = up[t * n + i];
                    double act = kind == GluKind.Silu ? g / (1 + Math.Exp(-g)) : 0.5 * g * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (g + 0.044715 * g * g * g)));
                    a[i] = act * u;
                    Assert.True(Math.Abs(fGate[t * n + i] - a[i]) <= 1e-5 * (Math.Abs(a[i]) + 1e-3), $"{what}: gate[{t}, {i}] {fGate[t * n + i]:R} vs float64 {a[i]:R}");
                }
                for (int r = 0; r < rows; r++)
                {
                    double want = 0, mag = 0;
                    for (int i = 0; i < n; i++)
                    {
                        want += deq[r * n + i] * a[i];
                        mag += Math.Abs(deq[r * n + i] * a[i]);
                    }
                    double tol = type == GgmlType.F32 ? 1e-5 * mag : 2e-2 * mag;
                    Assert.True(Math.Abs(fOut[t * rows + r] - want) <= tol, $"{what}: out[{t}, {r}] {fOut[t * rows + r]:G6} vs float64 {want:G6} (|w||a| {mag:G3})");
                }
            }
        }

        (float[] Out, float[] Gate, long Dispatches) Run(bool fused, bool invariant)
        {
            using var b = new CpuBackend(threads, invariant) { FuseGlu = fused };
            b.Prepare(new BackendLimits(tokens, n, 4, 2, 2));
            using var pw = new Pinned(b, "blk.0.ffn_down.weight", type, n, rows, weights);
            var bg = b.Allocate((long)tokens * n);
            var bu = b.Allocate((long)tokens * n);
            var dst = b.Allocate((long)tokens * rows);
            b.CopyIn(gate, bg, 0);
            b.CopyIn(up, bu, 0);
            b.MatMul(pw.W, bu, dst, tokens); // the weight's first product (a repack, where its kernels take one) before the count
            b.CopyIn(gate, bg, 0);
            long before = b.Dispatches;
            b.GluMatMul(pw.W, bg, bu, kind, dst, tokens);
            long dispatches = b.Dispatches - before;
            float[] o = new float[tokens * rows], g = new float[tokens * n];
            b.CopyOut(dst, 0, o);
            b.CopyOut(bg, 0, g);
            return (o, g, dispatches);
        }
    }

    public static TheoryData<int, int, int, bool, int> RopeCases()
    {
        var d = new TheoryData<int, int, int, bool, int>();
        // tokens, startPos, rope dims (of 64), neox, threads: a lone token over a short context (serial attention), one over
        // a long context (dispatched), prompt batches, a partial rotation (Phi-style dims < head size).
        foreach (int threads in new[] { 1, 2, 3 })
        {
            d.Add(1, 5, 64, false, threads);
            d.Add(1, 200, 64, true, threads);
            d.Add(7, 0, 64, true, threads);
            d.Add(9, 11, 32, false, threads);
        }
        return d;
    }

    private const int HeadDim = 64, Heads = 8, KvHeads = 2, Context = 256;

    [Theory]
    [MemberData(nameof(RopeCases))]
    public void RopeAttention_rotates_q_inside_attention_with_the_bits_of_the_four_ops(int tokens, int startPos, int ropeDims, bool neox, int threads)
    {
        var rope = new RopeSpec(HeadDim, ropeDims, 10000f, 1f, null, neox);
        int qDim = Heads * HeadDim, kvDim = KvHeads * HeadDim, filled = startPos + tokens;
        float[] past = QuantTestData.Gaussian(2 * startPos * kvDim, 5); // keys and values of the earlier positions
        float[] q = QuantTestData.Gaussian(tokens * qDim, 6, 2.0);
        float[] k = QuantTestData.Gaussian(tokens * kvDim, 7);
        float[] v = QuantTestData.Gaussian(tokens * kvDim, 8);
        var options = new AttentionOptions(1f / MathF.Sqrt(HeadDim), 0f, 0);
        var (fOut, fKeys, fDispatches) = Run(fused: true);
        var (uOut, uKeys, uDispatches) = Run(fused: false);
        string what = $"{tokens} tokens at {startPos}, rope dims {ropeDims}, neox {neox}, {threads} threads";
        SameBits(uOut, fOut, what + ": attention");
        SameBits(uKeys, fKeys, what + ": stored keys");
        long ropeDispatches = (long)tokens * qDim > WorkerPool.SerialElements ? 1 : 0;
        Assert.True(uDispatches - fDispatches >= ropeDispatches, $"{what}: {fDispatches} dispatches fused, {uDispatches} unfused");

        // float64: rotate q and the new keys, attend causally over the cache.
        var keys = new double[filled * kvDim];
        var values = new double[filled * kvDim];
        for (int i = 0; i < startPos * kvDim; i++) { keys[i] = past[i]; values[i] = past[startPos * kvDim + i]; }
        for (int t = 0; t < tokens; t++)
            for (int i = 0; i < kvDim; i++) values[(startPos + t) * kvDim + i] = v[t * kvDim + i];
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < KvHeads; h++)
                Rotate64(k, (t * KvHeads + h) * HeadDim, startPos + t, keys, (startPos + t) * kvDim + h * HeadDim);
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < Heads; h++)
            {
                var qr = new double[HeadDim];
                Rotate64(q, (t * Heads + h) * HeadDim, startPos + t, qr, 0);
                int kvOff = h / (Heads / KvHeads) * HeadDim, last = startPos + t;
                var s = new double[last + 1];
                double max = double.NegativeInfinity, sum = 0;
                for (int j = 0; j <= last; j++)
                {
                    double dot = 0;
                    for (int d = 0; d < HeadDim; d++) dot += qr[d] * keys[j * kvDim + kvOff + d];
                    s[j] = dot * options.Scale;
                    max = Math.Max(max, s[j]);
                }
                for (int j = 0; j <= last; j++) sum += s[j] = Math.Exp(s[j] - max);
                for (int d = 0; d < HeadDim; d++)
                {
                    double o = 0;
                    for (int j = 0; j <= last; j++) o += s[j] / sum * values[j * kvDim + kvOff + d];
                    float got = fOut[(t * Heads + h) * HeadDim + d];
                    Assert.True(Math.Abs(got - o) <= 1e-4, $"{what}: out[{t}, head {h}, {d}] {got:R} vs float64 {o:R}");
                }
            }

        void Rotate64(float[] src, int at, int pos, double[] dst, int to)
        {
            for (int d = 0; d < HeadDim; d++) dst[to + d] = src[at + d];
            int half = ropeDims / 2;
            for (int i = 0; i < half; i++)
            {
                int a = neox ? i : 2 * i, bIdx = neox ? i + half : 2 * i + 1;
                double th = rope.Theta(pos, i), x0 = src[at + a], x1 = src[at + bIdx];
                dst[to + a] = x0 * Math.Cos(th) - x1 * Math.Sin(th);
                dst[to + bIdx] = x0 * Math.Sin(th) + x1 * Math.Cos(th);
            }
        }

        (float[] Out, float[] Keys, long Dispatches) Run(bool fused)
        {
            using var b = new CpuBackend(threads) { FuseRope = fused };
            b.Prepare(new BackendLimits(Math.Max(tokens, 1), qDim, Context, HeadDim, ropeDims));
            var cache = ((IBackend)b).CreateCache(1, Context, kvDim, KvCacheType.F32, KvCacheType.F32);
            if (startPos > 0)
            {
                b.CacheRows(cache, 0, false, 0, startPos, MemoryMarshal.AsBytes(past.AsSpan(0, startPos * kvDim)), write: true);
                b.CacheRows(cache, 0, true, 0, startPos, MemoryMarshal.AsBytes(past.AsSpan(startPos * kvDim)), write: true);
            }
            var bq = b.Allocate(tokens * qDim);
            var bk = b.Allocate(tokens * kvDim);
            var bv = b.Allocate(tokens * kvDim);
            var dst = b.Allocate(tokens * qDim);
            b.CopyIn(q, bq, 0);
            b.CopyIn(k, bk, 0);
            b.CopyIn(v, bv, 0);
            long before = b.Dispatches;
            b.RopeAttention(bq, bk, bv, cache, 0, startPos, tokens, Heads, KvHeads, rope, dst, options);
            long dispatches = b.Dispatches - before;
            float[] o = new float[tokens * qDim], keysOut = new float[filled * kvDim];
            b.CopyOut(dst, 0, o);
            b.CacheRows(cache, 0, false, 0, filled, MemoryMarshal.AsBytes(keysOut.AsSpan()), write: false);
            return (o, keysOut, dispatches);
        }
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, true)]
    [InlineData(3, false)]
    public void AttendSequences_with_q_rotated_inside_attention_gives_the_bits_of_a_rotation_first(int threads, bool neox)
    {
        var rope = new RopeSpec(HeadDim, HeadDim, 10000f, 1f, null, neox);
        int qDim = Heads * HeadDim, kvDim = KvHeads * HeadDim;
        int[] starts = [3, 40, 0, 17], counts = [1, 2, 1, 1];
        int total = counts.Sum();
        float[] q = QuantTestData.Gaussian(total * qDim, 16, 2.0);
        float[] k = QuantTestData.Gaussian(total * kvDim, 17);
        float[] v = QuantTestData.Gaussian(total * kvDim, 18);
        float[] past = QuantTestData.Gaussian(64 * kvDim, 19);
        var options = new AttentionOptions(0.125f, 0f, 0);
        var fused = Run(true);
        var unfused = Run(false);
        SameBits(unfused, fused, $"{threads} threads, neox {neox}");

        float[] Run(bool fuse)
        {
            using var b = new CpuBackend(threads) { FuseRope = fuse };
            b.Prepare(new BackendLimits(8, qDim, 64, HeadDim, HeadDim));
            var seqs = new SequenceBatch[starts.Length];
            for (int s = 0; s < seqs.Length; s++)
            {
                var cache = ((IBackend)b).CreateCache(1, 64, kvDim, KvCacheType.F32, KvCacheType.F32);
                if (starts[s] > 0)
                {
                    b.CacheRows(cache, 0, false, 0, starts[s], MemoryMarshal.AsBytes(past.AsSpan(0, starts[s] * kvDim)), write: true);
                    b.CacheRows(cache, 0, true, 0, starts[s], MemoryMarshal.AsBytes(past.AsSpan(0, starts[s] * kvDim)), write: true);
                }
                cache.Filled = starts[s];
                seqs[s] = new SequenceBatch(cache, starts[s], counts[s]);
            }
            var bq = b.Allocate(total * qDim);
            var bk = b.Allocate(total * kvDim);
            var bv = b.Allocate(total * kvDim);
            var dst = b.Allocate(total * qDim);
            b.CopyIn(q, bq, 0);
            b.CopyIn(k, bk, 0);
            b.CopyIn(v, bv, 0);
            b.AttendSequences(bq, bk, bv, dst, seqs, 0, Heads, KvHeads, rope, options);
            float[] o = new float[total * qDim];
            b.CopyOut(dst, 0, o);
            return o;
        }
    }

    public static TheoryData<int, GgmlType, int> AttendProductCases()
    {
        var d = new TheoryData<int, GgmlType, int>();
        foreach (int threads in new[] { 1, 2, 3 })
            foreach (var type in new[] { GgmlType.Q4_0, GgmlType.F32 })
                for (int shape = 0; shape < 4; shape++)
                    d.Add(threads, type, shape);
        return d;
    }

    /// <summary>
    /// <see cref="CpuBackend.AttendSequencesMatMul"/> (a decode step's attention of each sequence run inside the Wo product's
    /// dispatch, on the thread that quantizes its token) against <see cref="CpuBackend.AttendSequences"/> then
    /// <see cref="CpuBackend.MatMul"/>: the same bits in the attention output, the product and the stored keys; one dispatch
    /// fewer where the attention was dispatched and the step qualifies (2 to 8 sequences of one token each, several threads,
    /// a quantized weight); batches with a longer sequence and float weights run the two ops. The product also against float64.
    /// </summary>
    [Theory]
    [MemberData(nameof(AttendProductCases))]
    public void AttendSequencesMatMul_is_attention_then_product(int threads, GgmlType type, int shape)
    {
        var rope = new RopeSpec(HeadDim, HeadDim, 10000f, 1f, null, false);
        int qDim = Heads * HeadDim, kvDim = KvHeads * HeadDim;
        (int[] starts, int[] counts) = shape switch
        {
            0 => (new[] { 200, 220, 190, 210 }, new[] { 1, 1, 1, 1 }), // four decode sequences, long contexts (dispatched attention)
            1 => (new[] { 3, 9 }, new[] { 1, 1 }),                    // two, short contexts (serial attention)
            2 => (new[] { 60, 7, 101 }, new[] { 1, 1, 1 }),           // three, uneven
            _ => (new[] { 3, 40, 0, 17 }, new[] { 1, 2, 1, 1 }),      // a sequence of two tokens: the two ops
        };
        int total = counts.Sum();
        const int rows = 96;
        long rowBytes = GgmlTypes.RowBytes(type, qDim);
        byte[] weights = new byte[rowBytes * rows];
        var deq = new float[rows * qDim];
        for (int r = 0; r < rows; r++)
        {
            float[] f = QuantTestData.Gaussian(qDim, 53 * r + 5, 0.05);
            byte[] qb = type == GgmlType.F32 ? FloatBytes(f) : QuantRef.QuantizeRow(type, f);
            qb.CopyTo(weights, r * rowBytes);
            if (type == GgmlType.F32) f.CopyTo(deq, r * qDim);
            else QuantRef.DequantizeRow(type, qb, deq.AsSpan(r * qDim, qDim));
        }
        float[] q = QuantTestData.Gaussian(total * qDim, 26, 2.0);
        float[] k = QuantTestData.Gaussian(total * kvDim, 27);
        float[] v = QuantTestData.Gaussian(total * kvDim, 28);
        float[] past = QuantTestData.Gaussian(2 * Context * kvDim, 29);
        var options = new AttentionOptions(0.125f, 0f, 0);
        var (fAtt, fOut, fKeys, fDispatches) = Run(true);
        var (uAtt, uOut, uKeys, uDispatches) = Run(false);
        string what = $"{threads} threads, {type}, starts [{string.Join(", ", starts)}], counts [{string.Join(", ", counts)}]";
        SameBits(uAtt, fAtt, what + ": attention");
        SameBits(uOut, fOut, what + ": product");
        SameBits(uKeys, fKeys, what + ": stored keys");
        bool qualifies = threads > 1 && type != GgmlType.F32 && counts.All(c => c == 1);
        long saved = uDispatches - fDispatches;
        Assert.True(qualifies ? saved is 0 or 1 : saved == 0, $"{what}: {fDispatches} dispatches fused, {uDispatches} unfused");
        if (qualifies && shape == 0) Assert.True(saved == 1, $"{what}: the dispatched attention should ride in the product's dispatch ({fDispatches} vs {uDispatches})");
        for (int t = 0; t < total; t++)
            for (int r = 0; r < rows; r++)
            {
                double want = 0, mag = 0;
                for (int i = 0; i < qDim; i++)
                {
                    want += deq[r * qDim + i] * (double)fAtt[t * qDim + i];
                    mag += Math.Abs(deq[r * qDim + i] * (double)fAtt[t * qDim + i]);
                }
                double tol = type == GgmlType.F32 ? 1e-5 * mag : 2e-2 * mag;
                Assert.True(Math.Abs(fOut[t * rows + r] - want) <= tol, $"{what}: product [{t}, {r}] {fOut[t * rows + r]:G6} vs float64 {want:G6}");
            }

        (float[] Att, float[] Out, float[] Keys, long Dispatches) Run(bool fuse)
        {
            using var b = new CpuBackend(threads, batchInvariant: true) { FuseAttention = fuse };
            b.Prepare(new BackendLimits(8, qDim, Context, HeadDim, HeadDim));
            using var pw = new Pinned(b, "blk.0.attn_output.weight", type, qDim, rows, weights);
            var seqs = new SequenceBatch[starts.Length];
            var caches = new KvCache[starts.Length];
            for (int s = 0; s < seqs.Length; s++)
            {
                var cache = caches[s] = ((IBackend)b).CreateCache(1, Context, kvDim, KvCacheType.F32, KvCacheType.F32);
                if (starts[s] > 0)
                {
                    b.CacheRows(cache, 0, false, 0, starts[s], MemoryMarshal.AsBytes(past.AsSpan(0, starts[s] * kvDim)), write: true);
                    b.CacheRows(cache, 0, true, 0, starts[s], MemoryMarshal.AsBytes(past.AsSpan(Context * kvDim, starts[s] * kvDim)), write: true);
                }
                cache.Filled = starts[s];
                seqs[s] = new SequenceBatch(cache, starts[s], counts[s]);
            }
            var bq = b.Allocate(total * qDim);
            var bk = b.Allocate(total * kvDim);
            var bv = b.Allocate(total * kvDim);
            var att = b.Allocate(total * qDim);
            var outB = b.Allocate(total * rows);
            b.CopyIn(q, bq, 0);
            b.MatMul(pw.W, bq, outB, total); // the weight's first product (a repack, where its kernels take one) before the count
            b.CopyIn(k, bk, 0);
            b.CopyIn(v, bv, 0);
            long before = b.Dispatches;
            b.AttendSequencesMatMul(bq, bk, bv, att, seqs, 0, Heads, KvHeads, rope, options, pw.W, outB);
            long dispatches = b.Dispatches - before;
            float[] a = new float[total * qDim], o = new float[total * rows];
            b.CopyOut(att, 0, a);
            b.CopyOut(outB, 0, o);
            var keys = new List<float>();
            for (int s = 0; s < seqs.Length; s++)
            {
                var kk = new float[(starts[s] + counts[s]) * kvDim];
                b.CacheRows(caches[s], 0, false, 0, starts[s] + counts[s], MemoryMarshal.AsBytes(kk.AsSpan()), write: false);
                keys.AddRange(kk);
            }
            return (a, o, keys.ToArray(), dispatches);
        }
    }
}
