using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Kernels;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.X64KDecode;

/// <summary>
/// The driver of Q4_K's decode copy (<see cref="PackedDecodeDrivers.Tiles{TK, TP}"/>) through a <see cref="CpuBackend"/>
/// on AVX-512 and AVX2 (VNNI off and on): decode steps of 1, 2 and 3 tokens (a server step of several sequences) over
/// 61 rows (seven groups of eight and five rows after the last whole group, which run the stored rows), on 2 and 3
/// threads (ranges that cut a group, so a group is computed into the stack buffer and only its rows in the range kept).
/// Every (token, row) against the integer scalar rung (<see cref="DotQ4_K.DotScalar"/>, an independent loop over the
/// stored rows with the same Q8_K activations) within 1e-5·M (M as in <see cref="KernelTestData.Magnitude"/>, the mins
/// counted); tokens scaled 1, 4, 7 so a token that reads another token's activations is far outside it. The kernel tests
/// (<see cref="X64PackedQ4_KTests"/>) check one group; these check the group and token bookkeeping around it, also
/// with the driver called directly on ranges that cut groups (the backend's ranges are whole groups): before
/// them, the driver with every token reading token 0's activations, a cut group's rows taken from the wrong offset
/// of the stack buffer, or the rows after the last whole group never computed, passed every test.
/// </summary>
public sealed unsafe class Q4_KPackedDecodeDriverTests
{
    private const int N = 1024, Rows = 61, MaxTokens = 3;

    [KPackedTheory(KPackedWay.Avx512)]
    [InlineData(2)]
    [InlineData(3)]
    public void Avx512DecodeStepsMatchTheScalarRung(int threads) => Check(Variant.Avx512, threads);

    [KPackedTheory(KPackedWay.Avx2)]
    [InlineData(2)]
    [InlineData(3)]
    public void Avx2DecodeStepsMatchTheScalarRung(int threads) => Check(Variant.Avx2, threads);

    [KPackedTheory(KPackedWay.Avx2Vnni)]
    [InlineData(2)]
    [InlineData(3)]
    public void Avx2VnniDecodeStepsMatchTheScalarRung(int threads) => Check(Variant.Avx2Vnni, threads);

    private static void Check(Variant v, int threads)
    {
        const GgmlType t = GgmlType.Q4_K;
        var (rung, flags) = KernelVariants.Of(v);
        long rowBytes = GgmlTypes.RowBytes(t, N);
        string[] kinds = { "gaussian", "raw" };
        var (w, wRow, x, xq) = DecodeCase(t, N, Rows, MaxTokens, r => Weights(t, N, kinds[r % 2], 9100 + r), 256, 9700);
        // The reference: the scalar rung on the stored rows, and its tolerance, per (token, row).
        var (want, tol) = ScalarReference(t, N, wRow, xq, &DotQ4_K.DotScalar);
        // The driver called directly, as threads whose ranges do not start or end on a group would call it (the backend's
        // ranges are whole groups): rows 0-12, 13-36, 37-60.
        CpuKernelRow row = KernelTable.Resolve(t, rung, flags)!;
        Assert.True(row.Packs && row.PackedOneToken, $"{v}: Q4_K has no decode copy here");
        long xStride = xq[0].Length;
        var xAll = new byte[MaxTokens * xStride];
        for (int k = 0; k < MaxTokens; k++) xq[k].CopyTo(xAll, k * xStride);
        var packed = new byte[row.PackedBytes(Rows, N)];
        var direct = new float[MaxTokens * Rows];
        var scratch = new float[N];
        long[] cuts = { 0, 13, 37, Rows };
        fixed (byte* pw = w) fixed (byte* pp = packed) fixed (byte* px = xAll) fixed (float* pd = direct) fixed (float* ps = scratch)
        {
            row.Repack(pw, rowBytes, Rows, N, pp);
            for (int tokens = 1; tokens <= MaxTokens; tokens++)
            {
                Array.Fill(direct, float.NaN);
                var job = new RowJob { W = pw, RowBytes = rowBytes, Rows = Rows, N = N, X = px, XStride = xStride, Dst = pd, NTokens = tokens, Packed = pp };
                for (int c = 0; c + 1 < cuts.Length; c++) row.Rows(in job, cuts[c], cuts[c + 1], ps);
                for (int k = 0; k < tokens; k++)
                    for (int r = 0; r < Rows; r++)
                        Assert.True(Math.Abs(direct[k * Rows + r] - want[k * Rows + r]) <= tol[k * Rows + r],
                            $"{v}, driver on uneven ranges, {tokens} tokens: token {k} row {r}: {direct[k * Rows + r]} vs scalar {want[k * Rows + r]} (tol {tol[k * Rows + r]:G3})");
            }
        }

        using var b = new CpuBackend(threads, false, rung, flags);
        b.Prepare(new BackendLimits(MaxTokens, N, 16, 64, 64));
        fixed (byte* pw = w)
        {
            var weight = b.LoadWeight(new TensorView("blk.0.ffn_up.weight", t, [N, Rows], pw, w.Length));
            var xb = b.Allocate(MaxTokens * N);
            var db = b.Allocate(MaxTokens * Rows);
            float* px = ((CpuBuffer)xb).Data, pd = ((CpuBuffer)db).Data;
            foreach (int tokens in new[] { 1, 2, 3, 1 })
            {
                new ReadOnlySpan<float>(x, 0, tokens * N).CopyTo(new Span<float>(px, tokens * N));
                new Span<float>(pd, MaxTokens * Rows).Fill(float.NaN); // a row the driver skips stays NaN
                b.MatMul(weight, xb, db, tokens);
                for (int k = 0; k < tokens; k++)
                    for (int r = 0; r < Rows; r++)
                    {
                        float got = pd[k * Rows + r], ref0 = want[k * Rows + r];
                        Assert.True(Math.Abs(got - ref0) <= tol[k * Rows + r],
                            $"{v}, {threads} threads, step of {tokens}: token {k} row {r}: {got} vs scalar {ref0} (tol {tol[k * Rows + r]:G3})");
                    }
            }
        }
    }
}
