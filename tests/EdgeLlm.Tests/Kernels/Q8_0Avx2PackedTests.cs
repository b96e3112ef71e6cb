using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.Kernels;

/// <summary>
/// The AVX2 eight-row Q8_0 GEMM over the repacked copy (<see cref="DotQ8_0.PackedDot4Avx2"/>,
/// <see cref="DotQ8_0.PackedDot1Avx2"/>) with AVX-VNNI off (vpsignb + vpmaddubsw) and on (vpdpbusd), driven as a matmul
/// drives it (the AVX2 row of the kernel table: <see cref="PackedDrivers.Tiles{TK}"/>), against the integer scalar
/// rung per row and token within 1e-5·M (M = Σ|x'||w'|, <see cref="KernelTestData.Magnitude"/>). Batches of 1, 3, 4, 5,
/// 8 and 13 tokens (each scaled differently, so a token read in place of another is far outside the tolerance); 3,
/// 8, 61 and 203 rows of 1024 values (no whole group, one, several 32 KiB tiles of three groups with a tail of five
/// rows on the stored rows), driven as uneven ranges the way a matmul's threads split them, cuts inside groups
/// included; rows of every weight kind ("raw": random bytes with q = −128, random fp16 scales). Then batch invariance:
/// every token of the batch must get the same bits as that token alone through the same driver (the one-token step).
/// Variants the CPU lacks are skipped.
/// </summary>
public sealed unsafe class Q8_0Avx2PackedTests
{
    private const int N = 1024, MaxTokens = 13;

    public static TheoryData<int, int> Cases()
    {
        var d = new TheoryData<int, int>();
        foreach (int rows in new[] { 3, 8, 61, 203 })
            foreach (int tokens in new[] { 1, 3, 4, 5, 8, 13 })
                d.Add(rows, tokens);
        return d;
    }

    [VariantTheory(Variant.Avx2)]
    [MemberData(nameof(Cases))]
    public void VnniOffMatchesTheScalarRung(int rows, int tokens) => Check(Variant.Avx2, rows, tokens);

    [VariantTheory(Variant.Avx2Vnni)]
    [MemberData(nameof(Cases))]
    public void VnniOnMatchesTheScalarRung(int rows, int tokens) => Check(Variant.Avx2Vnni, rows, tokens);

    private static void Check(Variant v, int rows, int tokens)
    {
        CpuKernelRow row = KernelVariants.Row(GgmlType.Q8_0, v);
        Assert.True(row.Packs, $"{v}: the Q8_0 row has no repacked GEMM");
        string[] kinds = { "gaussian", "raw", "zeros" };
        long rowBytes = GgmlTypes.RowBytes(GgmlType.Q8_0, N);
        var w = new byte[rows * rowBytes];
        var wDeq = new float[rows][];
        var wRow = new byte[rows][];
        for (int r = 0; r < rows; r++)
        {
            wRow[r] = Weights(GgmlType.Q8_0, N, kinds[r % 3], 7300 + r);
            if (r % 3 == 1) wRow[r][2 + 34 * (r % 32)] = 0x80;
            wRow[r].CopyTo(w, r * rowBytes);
            wDeq[r] = DequantizeWeights(GgmlType.Q8_0, wRow[r], N);
        }
        long xb = ActivationQuant.BytesFor(GgmlType.Q8_0, N), pb = Q8_0Panel.BytesFor(N);
        var xq = new byte[MaxTokens * xb];
        var panel = new byte[MaxTokens * pb];
        var xDeq = new float[MaxTokens][];
        for (int t = 0; t < MaxTokens; t++)
        {
            float[] a = Activations(N, 32, 7900 + t);
            for (int i = 0; i < N; i++) a[i] *= 1 + 2 * t;
            byte[] q = QuantizeActivations(GgmlType.Q8_0, a);
            q.CopyTo(xq, t * xb);
            xDeq[t] = DequantizeActivations(GgmlType.Q8_0, q, N);
        }
        var packed = new byte[Math.Max(1, row.PackedBytes(rows, N))];
        long[] cuts = { 0, rows * 2 / 7, rows * 3 / 5, rows };
        fixed (byte* pw = w) fixed (byte* px = xq) fixed (byte* pp = panel) fixed (byte* pk = packed)
        {
            for (int t = 0; t < MaxTokens; t++) Q8_0Panel.FromBlocks(px + t * xb, pp + t * pb, N);
            row.Repack(pw, rowBytes, rows, N, pk);
            float[] batch = Run(row, pw, rowBytes, rows, px, xb, pp, pb, pk, tokens, cuts);
            for (int t = 0; t < tokens; t++)
                for (int r = 0; r < rows; r++)
                {
                    float scalar = DotQ8_0.DotScalar(pw + r * rowBytes, px + t * xb, N);
                    double m = Magnitude(GgmlType.Q8_0, wRow[r], wDeq[r], xDeq[t]);
                    float got = batch[t * rows + r];
                    Assert.True(Math.Abs(got - scalar) <= 1e-5 * m,
                        $"{v} {rows} rows, {tokens} tokens: token {t} row {r}: {got} vs scalar {scalar} (tol {1e-5 * m:G3})");
                }
            for (int i = tokens * rows; i < batch.Length; i++)
                Assert.True(float.IsNaN(batch[i]), $"{v} {rows} rows, {tokens} tokens: wrote past the batch at {i}");

            // Batch invariance: each token alone (the one-token step, split the same way) gets the same bits.
            for (int t = 0; t < tokens; t++)
            {
                float[] alone = Run(row, pw, rowBytes, rows, px + t * xb, xb, pp + t * pb, pb, pk, 1, cuts);
                for (int r = 0; r < rows; r++)
                    Assert.True(BitConverter.SingleToInt32Bits(alone[r]) == BitConverter.SingleToInt32Bits(batch[t * rows + r]),
                        $"{v} {rows} rows: token {t} of {tokens}, row {r}: {batch[t * rows + r]} in the batch vs {alone[r]} alone");
            }
        }
    }

    /// <summary>The row's range driver over [cuts[k], cuts[k+1]) for each k, with the repacked copy and the panels; dst has one spare token of NaN.</summary>
    private static float[] Run(CpuKernelRow row, byte* w, long rowBytes, int rows, byte* xq, long xb, byte* panel, long pb, byte* packed,
        int tokens, long[] cuts)
    {
        var dst = new float[(tokens + 1) * rows];
        Array.Fill(dst, float.NaN);
        var scratch = new float[N];
        fixed (float* pd = dst) fixed (float* ps = scratch)
        {
            var job = new RowJob
            {
                W = w, RowBytes = rowBytes, Rows = rows, N = N, Dst = pd, NTokens = tokens,
                X = xq, XStride = xb,
                Packed = packed, PackedX = panel, PackedXStride = pb,
            };
            for (int k = 0; k + 1 < cuts.Length; k++) row.Rows(in job, cuts[k], cuts[k + 1], ps);
        }
        return dst;
    }
}
