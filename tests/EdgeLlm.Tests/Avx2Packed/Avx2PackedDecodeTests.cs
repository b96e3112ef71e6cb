using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Kernels;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.Avx2Packed;

/// <summary>
/// Decode on the AVX2 rung (VNNI off and on) through a <see cref="CpuBackend"/> without batch invariance asked for:
/// Q4_0 and Q8_0 one-token matmuls run the GEMM over the repacked copy (the copy is made at the first, one-token,
/// matmul), so a token decoded alone gets the same bits as the same token inside a batch of 4 and of 5 (a four-token
/// tile, a pair, a lone tail token), row by row; a decode that read the stored rows (the one-row loops, another float
/// summation) would differ in the last bits. Each result is also checked against the integer scalar rung within the
/// panel loops' tolerance (Q4_0: 2e-6·M', Q8_0: 1e-5·M), tokens scaled differently so a wrong token is far outside it.
/// 61 rows of 1024 values (seven groups and five rows on the stored rows), two threads (a range cut inside a group).
/// Variants the CPU lacks are skipped.
/// </summary>
public sealed unsafe class Avx2PackedDecodeTests
{
    private const int N = 1024, Rows = 61, MaxTokens = 5;

    [VariantTheory(Variant.Avx2)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q8_0)]
    public void VnniOffDecodeAloneEqualsBatch(GgmlType t) => Check(t, Variant.Avx2);

    [VariantTheory(Variant.Avx2Vnni)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q8_0)]
    public void VnniOnDecodeAloneEqualsBatch(GgmlType t) => Check(t, Variant.Avx2Vnni);

    private static void Check(GgmlType t, Variant v)
    {
        var (rung, flags) = KernelVariants.Of(v);
        string[] kinds = { "gaussian", "raw" };
        var (w, wRow, x, xq) = DecodeCase(t, N, Rows, MaxTokens, r => Weights(t, N, kinds[r % 2], 8100 + r), 32, 8700);
        using var b = new CpuBackend(2, false, rung, flags);
        b.Prepare(new BackendLimits(MaxTokens, N, 16, 64, 64));
        fixed (byte* pw = w)
        {
            var weight = b.LoadWeight(new TensorView("blk.0.ffn_up.weight", t, [N, Rows], pw, w.Length));
            var xb = b.Allocate(MaxTokens * N);
            var db = b.Allocate(MaxTokens * Rows);
            float* px = ((CpuBuffer)xb).Data, pd = ((CpuBuffer)db).Data;
            var alone = new float[MaxTokens * Rows];
            for (int k = 0; k < MaxTokens; k++)
            {
                new ReadOnlySpan<float>(x, k * N, N).CopyTo(new Span<float>(px, N));
                b.MatMul(weight, xb, db, 1);
                new Span<float>(pd, Rows).CopyTo(alone.AsSpan(k * Rows, Rows));
            }
            for (int k = 0; k < MaxTokens; k++)
                for (int r = 0; r < Rows; r++)
                {
                    float want;
                    fixed (byte* pr = wRow[r]) fixed (byte* pq = xq[k])
                        want = t == GgmlType.Q4_0 ? DotQ4_0.DotScalar(pr, pq, N) : DotQ8_0.DotScalar(pr, pq, N);
                    float[] wDeq = DequantizeWeights(t, wRow[r], N), xDeq = DequantizeActivations(t, xq[k], N);
                    double tol = t == GgmlType.Q4_0 ? 2e-6 * X64Decode.X64DecodeLoopTests.PanelMagnitude(wRow[r], wDeq, xDeq) : 1e-5 * Magnitude(t, wRow[r], wDeq, xDeq);
                    float got = alone[k * Rows + r];
                    Assert.True(Math.Abs(got - want) <= tol, $"{v} {t}: token {k} row {r} alone: {got} vs scalar {want} (tol {tol:G3})");
                }
            if (!KernelRung.UseRepack) return;
            foreach (int tokens in new[] { 4, 5 })
            {
                new ReadOnlySpan<float>(x, 0, tokens * N).CopyTo(new Span<float>(px, tokens * N));
                b.MatMul(weight, xb, db, tokens);
                for (int k = 0; k < tokens; k++)
                    for (int r = 0; r < Rows; r++)
                    {
                        float inBatch = pd[k * Rows + r], one = alone[k * Rows + r];
                        Assert.True(BitConverter.SingleToInt32Bits(inBatch) == BitConverter.SingleToInt32Bits(one),
                            $"{v} {t}: token {k} of {tokens}, row {r}: {inBatch} in the batch vs {one} decoded alone");
                    }
            }
        }
    }
}
