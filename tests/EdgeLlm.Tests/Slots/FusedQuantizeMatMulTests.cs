using EdgeLlm.Backends.Cpu;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Kernels;

namespace EdgeLlm.Tests.Slots;

/// <summary>
/// A server step's matmul (2 to 8 tokens, one per slot) quantizes its activations inside the product's own dispatch,
/// the threads splitting the tokens and meeting at a barrier before the rows. Every thread then reads every token's
/// quantized row, so a thread that started on its rows before the others had written theirs would read the previous
/// product's activations. Each product here follows one over different activations (so stale rows differ) and must
/// give exactly the bits the one-thread backend gives (which quantizes every token on the caller first), for 2, 3 and 5
/// threads (5 threads for 2 tokens: threads with no token to quantize), and must agree with a float64 reference of the
/// dequantized weights and the unquantized activations to the quantization error.
/// </summary>
public sealed unsafe class FusedQuantizeMatMulTests
{
    private const int N = 512, Rows = 72;

    public static TheoryData<GgmlType, int, int> Cases()
    {
        var d = new TheoryData<GgmlType, int, int>();
        foreach (var t in new[] { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q6_K, GgmlType.Q4_K })
            foreach (int threads in new[] { 2, 3, 5 })
                foreach (int tokens in new[] { 2, 3, 4, 8 })
                    d.Add(t, threads, tokens);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Fused_quantize_gives_the_one_thread_bits(GgmlType t, int threads, int tokens)
    {
        long rowBytes = GgmlTypes.RowBytes(t, N);
        var w = GC.AllocateUninitializedArray<byte>((int)(rowBytes * Rows), pinned: true);
        var deq = new float[Rows * N];
        for (int r = 0; r < Rows; r++)
        {
            float[] f = K256TestData.Gaussian(N, 31 * (int)t + r, 0.05);
            byte[] q = QuantRef.QuantizeRow(t, f);
            q.CopyTo(w, r * rowBytes);
            QuantRef.DequantizeRow(t, q, deq.AsSpan(r * N, N));
        }
        float[] stale = new float[tokens * N], x = new float[tokens * N];
        for (int k = 0; k < tokens; k++)
        {
            float[] a = K256TestData.Gaussian(N, 900 + k), b = K256TestData.Gaussian(N, 700 + k);
            for (int i = 0; i < N; i++)
            {
                stale[k * N + i] = -3f * a[i];
                x[k * N + i] = (1 + k) * b[i];
            }
        }

        float[] one = Run(1), many = Run(threads);
        for (int i = 0; i < one.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(one[i]) == BitConverter.SingleToInt32Bits(many[i]),
                $"{t}, {threads} threads, {tokens} tokens: token {i / Rows} row {i % Rows}: {many[i]} vs one thread {one[i]}");
        for (int k = 0; k < tokens; k++)
            for (int r = 0; r < Rows; r++)
            {
                double want = 0, mag = 0;
                for (int i = 0; i < N; i++)
                {
                    want += (double)deq[r * N + i] * x[k * N + i];
                    mag += Math.Abs((double)deq[r * N + i] * x[k * N + i]);
                }
                double got = many[k * Rows + r];
                Assert.True(Math.Abs(got - want) <= 2e-2 * mag,
                    $"{t}, {threads} threads: token {k} row {r}: {got} vs float64 {want:G6} (|w||x| {mag:G3})");
            }

        float[] Run(int n)
        {
            fixed (byte* pw = w)
            {
                using var backend = new CpuBackend(threads: n, batchInvariant: true);
                backend.Prepare(new BackendLimits(tokens, N, 4, 2, 2));
                var weight = backend.LoadWeight(new TensorView("w", t, [N, Rows], pw, rowBytes * Rows));
                var bx = backend.Allocate(tokens * N);
                var bd = backend.Allocate(tokens * Rows);
                backend.CopyIn(stale, bx, 0);
                backend.MatMul(weight, bx, bd, tokens);
                backend.CopyIn(x, bx, 0);
                backend.MatMul(weight, bx, bd, tokens);
                var got = new float[tokens * Rows];
                backend.CopyOut(bd, 0, got);
                return got;
            }
        }
    }
}
