using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Kernels;

namespace EdgeLlm.Tests.Grouped;

/// <summary>
/// <see cref="CpuBackend.MatMulGroup"/>: several weights that read one input as one product (the activations quantized
/// once, one dispatch over the rows of all of them, each weight writing its own output). Every output must carry exactly
/// the bits of the separate products it replaces (the same backend with <see cref="CpuBackend.GroupMatMuls"/> off runs
/// them one after another), for the weight mixes a layer has (Q/K/V of one type; Q4_K_M's Q4_K beside Q6_K, which share
/// the Q8_K activations; Q4_0's panel beside Q8_0 and Q5_0 blocks; float members), 1, 3, 4, 8 and 13 tokens (a lone
/// decode token quantized on the caller, a server step quantized inside the dispatch, a prefill batch quantized by a
/// dispatch of its own), 1 to 3 threads, with and without batch invariance (the repacked GEMMs for every batch size).
/// Each grouped product follows one over other activations, so a member that read stale or another member's input would
/// differ; and every output is checked against a float64 product of the dequantized weights and the unquantized input.
/// The dispatch count says the group really ran as one product (one dispatch, two for a prefill batch), and that weights
/// whose kernels take different activation formats (Q4_0's Q8_0 and Q4_K's Q8_K) run as separate products.
/// </summary>
public sealed unsafe class GroupedMatMulTests
{
    private const int N = 512;

    /// <summary>The members of each case: type and row count (Q/K/V-like: a wide one and two narrow ones).</summary>
    private static readonly Dictionary<string, (GgmlType Type, int Rows)[]> Sets = new()
    {
        ["q4_0 qkv"] = [(GgmlType.Q4_0, 64), (GgmlType.Q4_0, 24), (GgmlType.Q4_0, 24)],
        ["q8_0 qkv"] = [(GgmlType.Q8_0, 64), (GgmlType.Q8_0, 24), (GgmlType.Q8_0, 24)],
        ["q4_k_m qkv"] = [(GgmlType.Q4_K, 64), (GgmlType.Q4_K, 24), (GgmlType.Q6_K, 24)],
        ["q5_k/q6_k gate-up"] = [(GgmlType.Q5_K, 72), (GgmlType.Q6_K, 72)],
        ["q4_1/q5_1"] = [(GgmlType.Q4_1, 48), (GgmlType.Q5_1, 40)],
        ["q4_0/q8_0/q5_0"] = [(GgmlType.Q4_0, 40), (GgmlType.Q8_0, 32), (GgmlType.Q5_0, 24)],
        ["iq4_nl/q4_0"] = [(GgmlType.IQ4_NL, 40), (GgmlType.Q4_0, 48)],
        ["f16/f16/f32"] = [(GgmlType.F16, 40), (GgmlType.F16, 37), (GgmlType.F32, 13)],
        ["f32/q8_0"] = [(GgmlType.F32, 24), (GgmlType.Q8_0, 40)],
        ["q4_0/q4_k apart"] = [(GgmlType.Q4_0, 40), (GgmlType.Q4_K, 32)],
    };

    public static TheoryData<string, int, int> Cases()
    {
        var d = new TheoryData<string, int, int>();
        foreach (string set in Sets.Keys)
            foreach (int tokens in new[] { 1, 3, 4, 8, 13 })
                foreach (int threads in new[] { 1, 2, 3 })
                    d.Add(set, tokens, threads);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Grouped_product_gives_the_bits_of_the_separate_products(string set, int tokens, int threads)
    {
        var members = Sets[set];
        int count = members.Length;
        var weights = new byte[count][];
        var deq = new float[count][];
        for (int m = 0; m < count; m++)
        {
            var (t, rows) = members[m];
            long rowBytes = GgmlTypes.RowBytes(t, N);
            weights[m] = GC.AllocateUninitializedArray<byte>((int)(rowBytes * rows), pinned: true);
            deq[m] = new float[rows * N];
            for (int r = 0; r < rows; r++)
            {
                float[] f = K256TestData.Gaussian(N, 97 * m + 31 * (int)t + r, 0.05);
                byte[] q = QuantRef.QuantizeRow(t, f);
                q.CopyTo(weights[m], r * rowBytes);
                QuantRef.DequantizeRow(t, q, deq[m].AsSpan(r * N, N));
            }
        }
        float[] stale = new float[tokens * N], x = new float[tokens * N];
        for (int k = 0; k < tokens; k++)
        {
            float[] a = K256TestData.Gaussian(N, 900 + k), b = K256TestData.Gaussian(N, 700 + k);
            for (int i = 0; i < N; i++)
            {
                stale[k * N + i] = -3f * a[i];
                x[k * N + i] = (1 + 0.5f * k) * b[i];
            }
        }
        bool shared = true;
        for (int m = 1; m < count; m++)
            shared &= !TypeTraits.Of(members[m].Type)!.IsQuantized || !TypeTraits.Of(members[0].Type)!.IsQuantized
                || TypeTraits.Of(members[m].Type)!.Activation == TypeTraits.Of(members[0].Type)!.Activation;
        // A product is one dispatch, two when a batch of more than InlineQuantizeTokens is quantized first.
        int Cost(bool quantized) => quantized && tokens > MatMul.InlineQuantizeTokens ? 2 : 1;
        int separateCost = members.Sum(mb => Cost(TypeTraits.Of(mb.Type)!.IsQuantized));
        int groupCost = shared ? Cost(members.Any(mb => TypeTraits.Of(mb.Type)!.IsQuantized)) : separateCost;

        foreach (bool invariant in new[] { false, true })
        {
            var (separate, separateDispatches) = Run(group: false, invariant);
            var (grouped, groupedDispatches) = Run(group: true, invariant);
            string what = $"{set}, {tokens} tokens, {threads} threads, batch invariant {invariant}";
            Assert.Equal(separateCost, separateDispatches);
            Assert.True(groupedDispatches == groupCost, $"{what}: {groupedDispatches} dispatches for the group, {groupCost} expected");
            for (int m = 0; m < count; m++)
            {
                int rows = members[m].Rows;
                for (int i = 0; i < grouped[m].Length; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(grouped[m][i]) == BitConverter.SingleToInt32Bits(separate[m][i]),
                        $"{what}: member {m} ({members[m].Type}) token {i / rows} row {i % rows}: {grouped[m][i]} grouped vs {separate[m][i]} alone");
                for (int k = 0; k < tokens; k++)
                    for (int r = 0; r < rows; r++)
                    {
                        double want = 0, mag = 0;
                        for (int i = 0; i < N; i++)
                        {
                            double p = (double)deq[m][r * N + i] * x[k * N + i];
                            want += p;
                            mag += Math.Abs(p);
                        }
                        double got = grouped[m][k * rows + r];
                        Assert.True(Math.Abs(got - want) <= 2e-2 * mag,
                            $"{what}: member {m} ({members[m].Type}) token {k} row {r}: {got} vs float64 {want:G6} (|w||x| {mag:G3})");
                    }
            }
        }

        (float[][] Out, long Dispatches) Run(bool group, bool invariant)
        {
            var handles = weights.Select(w => GCHandle.Alloc(w, GCHandleType.Pinned)).ToArray();
            try
            {
                using var backend = new CpuBackend(threads, invariant) { GroupMatMuls = group };
                backend.Prepare(new BackendLimits(tokens, N, 4, 2, 2));
                var ws = new BackendWeight[count];
                var ds = new BackendBuffer[count];
                for (int m = 0; m < count; m++)
                {
                    var (t, rows) = members[m];
                    ws[m] = backend.LoadWeight(new TensorView($"w{m}", t, [N, rows], (byte*)handles[m].AddrOfPinnedObject(), weights[m].Length));
                    ds[m] = backend.Allocate((long)tokens * rows);
                }
                var bx = backend.Allocate((long)tokens * N);
                backend.CopyIn(stale, bx, 0);
                backend.MatMulGroup(ws, bx, ds, tokens);
                backend.CopyIn(x, bx, 0);
                long before = backend.Dispatches;
                backend.MatMulGroup(ws, bx, ds, tokens);
                long dispatches = backend.Dispatches - before;
                var outs = new float[count][];
                for (int m = 0; m < count; m++)
                {
                    outs[m] = new float[tokens * members[m].Rows];
                    backend.CopyOut(ds[m], 0, outs[m]);
                }
                return (outs, dispatches);
            }
            finally
            {
                foreach (var h in handles) h.Free();
            }
        }
    }

    /// <summary>A group with more outputs than weights is refused; weights of other row lengths run as separate products.</summary>
    [Fact]
    public void Mismatched_groups_are_refused()
    {
        byte[] w = new byte[GgmlTypes.RowBytes(GgmlType.F32, 64) * 8];
        fixed (byte* p = w)
        {
            using var backend = new CpuBackend(2);
            backend.Prepare(new BackendLimits(2, 64, 4, 2, 2));
            var a = backend.LoadWeight(new TensorView("a", GgmlType.F32, [64, 8], p, w.Length));
            var b = backend.LoadWeight(new TensorView("b", GgmlType.F32, [32, 16], p, w.Length));
            var x = backend.Allocate(128);
            var d0 = backend.Allocate(16);
            var d1 = backend.Allocate(32);
            var e = Assert.Throws<ArgumentException>(() => backend.MatMulGroup([a, a], x, [d0], 2));
            Assert.Contains("2 weights and 1 outputs", e.Message);
            // Rows of different lengths run as separate products (each reads its own width of x): two dispatches.
            long before = backend.Dispatches;
            backend.MatMulGroup([a, b], x, [d0, d1], 2);
            Assert.Equal(2, backend.Dispatches - before);
        }
    }
}
