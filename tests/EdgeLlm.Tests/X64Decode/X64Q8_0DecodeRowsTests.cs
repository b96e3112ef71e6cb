using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Kernels;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.X64Decode;

/// <summary>
/// Q8_0 decode on AVX-512 through the row driver (<see cref="RowDrivers.Rows{TK}"/>), which converts each token's
/// activation scales once per call into the thread's scratch and runs <see cref="DotQ8_0.DotAvx512Prepared"/> per
/// row: AVX-VNNI off (<see cref="Q8_0Avx512Dot4"/>) and on (<see cref="Q8_0PackedAvx512"/>). The driver is called
/// directly on uneven ranges with 1, 2 and 3 tokens (tokens scaled 1, 4, 7, so a token that reads another token's
/// scales is far off), once with no scratch (the fallback to the one-row loop): every (token, row) must be within
/// 1e-5·M of the integer scalar rung and have the bits of <see cref="DotQ8_0.DotAvx512(byte*, byte*, int, bool)"/>
/// on that row alone (a token's result does not depend on the call or the batch). Then a <see cref="CpuBackend"/>
/// on 1-3 threads with steps of 1, 2, 3, 4, 5 tokens against the scalar rung.
/// </summary>
public sealed unsafe class X64Q8_0DecodeRowsTests
{
    private const int N = 1088, Rows = 37, MaxTokens = 5; // 34 blocks a row: four 8-block steps and a tail of two

    [X64LoopTheory(X64Loop.Q8_0Avx512)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void NoVnniMatchesScalarRung(int threads) => Check(Variant.Avx512NoVbmi, threads);

    [X64LoopTheory(X64Loop.Q8_0Avx512Vnni)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void VnniMatchesScalarRung(int threads) => Check(Variant.Avx512, threads);

    private static void Check(Variant v, int threads)
    {
        const GgmlType t = GgmlType.Q8_0;
        var (rung, flags) = KernelVariants.Of(v);
        long rowBytes = GgmlTypes.RowBytes(t, N);
        string[] kinds = { "gaussian", "raw", "subnormal" };
        var (w, wRow, x, xq) = DecodeCase(t, N, Rows, MaxTokens, r => X64DecodeLoopTests.MakeWeights(t, N, kinds[r % 3], 5100 + r), 32, 6100);
        var (want, tol) = ScalarReference(t, N, wRow, xq, &DotQ8_0.DotScalar);

        CpuKernelRow row = KernelTable.Resolve(t, rung, flags)!;
        long xStride = xq[0].Length;
        var xAll = new byte[MaxTokens * xStride];
        for (int k = 0; k < MaxTokens; k++) xq[k].CopyTo(xAll, k * xStride);
        var direct = new float[MaxTokens * Rows];
        var scratch = new float[N];
        long[] cuts = { 0, 5, 20, Rows };
        fixed (byte* pw = w) fixed (byte* px = xAll) fixed (float* pd = direct) fixed (float* ps = scratch)
        {
            for (int tokens = 1; tokens <= 3; tokens++)
            {
                Array.Fill(direct, float.NaN);
                var job = new RowJob { W = pw, RowBytes = rowBytes, Rows = Rows, N = N, X = px, XStride = xStride, Dst = pd, NTokens = tokens };
                for (int c = 0; c + 1 < cuts.Length; c++) row.Rows(in job, cuts[c], cuts[c + 1], c == 1 ? null : ps);
                for (int k = 0; k < tokens; k++)
                    for (int r = 0; r < Rows; r++)
                    {
                        float got = direct[k * Rows + r];
                        Assert.True(Math.Abs(got - want[k * Rows + r]) <= tol[k * Rows + r],
                            $"{v}, driver, {tokens} tokens: token {k} row {r}: {got} vs scalar {want[k * Rows + r]} (tol {tol[k * Rows + r]:G3})");
                        float alone = DotQ8_0.DotAvx512(pw + r * rowBytes, px + k * xStride, N, flags.Vnni);
                        Assert.True(BitConverter.SingleToUInt32Bits(alone) == BitConverter.SingleToUInt32Bits(got),
                            $"{v}, driver, {tokens} tokens: token {k} row {r}: {got} vs the row alone {alone}");
                    }
            }
        }

        using var b = new CpuBackend(threads, false, rung, flags);
        b.Prepare(new BackendLimits(MaxTokens, N, 16, 64, 64));
        fixed (byte* pw = w)
        {
            var weight = b.LoadWeight(new TensorView("blk.0.ffn_up.weight", t, [N, Rows], pw, w.Length));
            var xb = b.Allocate(MaxTokens * N);
            var db = b.Allocate(MaxTokens * Rows);
            float* pxf = ((CpuBuffer)xb).Data, pd = ((CpuBuffer)db).Data;
            foreach (int tokens in new[] { 1, 2, 3, 4, 5, 1 })
            {
                new ReadOnlySpan<float>(x, 0, tokens * N).CopyTo(new Span<float>(pxf, tokens * N));
                new Span<float>(pd, MaxTokens * Rows).Fill(float.NaN);
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
