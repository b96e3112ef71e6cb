using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Kernels;
using EdgeLlm.Tests.X64Decode;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.Avx2Packed;

/// <summary>
/// The AVX2 Q4_0 prefill GEMM over the fp16-scale copy with a float scale panel per row tile
/// (<see cref="DotQ4_0.ScalePanelAvx2"/>, eight tokens a pass): the panel bit for bit against .NET's fp16 → float
/// conversion of every (row, block) scale (every class: normal, subnormal, ±0, ±inf); the batched driver
/// (<see cref="RowDrivers.Q4_0PackedTiles{TK}"/> with the AVX2 row of <see cref="KernelTable"/>, VNNI off and on) for
/// batches of 1, 3, 4, 5, 8, 9, 13 and 16 tokens (passes of eight, four, two and one), rows spanning several row tiles
/// and ending in a partial group, cut into three uneven thread ranges, each result against a double reference
/// Σ_b d_w·d_x·Σ(q − 8)·y from the stored bytes (tolerance 1e-5·M', M' = Σ_b |d_w·d_x|·Σ(|q − 8| + 8)·|y|), with a
/// different scale per (row, block) and each token scaled differently, so a token from another slot of an eight-token
/// pass, a row from another group or a scale from another block is off by about the result itself; the rows of whole
/// groups must also have the bits the one-token kernel (<see cref="DotQ4_0.PackedDot1Avx2"/>, decode) gives the token
/// alone. Variants the CPU lacks are skipped.
/// </summary>
public unsafe class Avx2Q4_0ScalePanelTests
{
    private const int G = DotQ4_0.PackRows;

    [VariantTheory(Variant.Avx2)]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(9)]
    [InlineData(43)]
    public void ScalePanelHoldsEachRowsScaleInItsLane(int nb)
    {
        int n = nb * 32;
        long rowBytes = (long)nb * DotQ4_0.BlockBytes;
        var rows = new byte[G * rowBytes];
        var rng = new Random(700 + nb);
        var special = new ushort[] { 0x0000, 0x8000, 0x0001, 0x83ff, 0x0400, 0x7bff, 0xfc00, 0x7c00, 0x3c00 };
        for (int r = 0; r < G; r++)
        {
            byte[] w = Weights(GgmlType.Q4_0, n, "raw", 710 + r);
            for (int b = 0; b < nb; b++)
            {
                int i = b * G + r;
                ushort h = i % 3 == 0 ? special[i / 3 % special.Length] : (ushort)(rng.Next(0x10000) & 0xfbff);
                w[b * 18] = (byte)h;
                w[b * 18 + 1] = (byte)(h >> 8);
            }
            w.CopyTo(rows, r * rowBytes);
        }
        var packed = new byte[DotQ4_0.PackedBytesAvx2(G, n)];
        var panel = new float[nb * G + 16];
        Array.Fill(panel, float.NaN);
        fixed (byte* pr = rows) fixed (byte* pp = packed) fixed (float* ps = panel)
        {
            DotQ4_0.RepackAvx2(pr, rowBytes, G, n, pp);
            DotQ4_0.ScalePanelAvx2(pp, nb, ps);
        }
        for (int b = 0; b < nb; b++)
            for (int r = 0; r < G; r++)
            {
                float want = (float)BitConverter.ToHalf(rows, (int)(r * rowBytes) + b * 18);
                Assert.True(BitConverter.SingleToUInt32Bits(want) == BitConverter.SingleToUInt32Bits(panel[G * b + r]),
                    $"{nb} blocks: block {b} row {r}: {panel[G * b + r]} vs {want}");
            }
        for (int i = nb * G; i < panel.Length; i++) Assert.True(float.IsNaN(panel[i]), $"{nb} blocks: wrote past the panel at {i}");
    }

    public static TheoryData<int, int, int> DriverCases()
    {
        var d = new TheoryData<int, int, int>();
        foreach (int tokens in new[] { 1, 3, 4, 5, 8, 9, 13, 16 })
        {
            d.Add(tokens, 64, 203);   // three groups a tile: several tiles, a partial last group
            d.Add(tokens, 9, 67);     // many groups a tile
        }
        d.Add(13, 200, 35);           // one group a tile
        d.Add(9, 1040, 19);           // a group too wide for the stack panel: the scales converted per pass
        return d;
    }

    [VariantTheory(Variant.Avx2)]
    [MemberData(nameof(DriverCases))]
    public void VnniOffBatchMatchesTheReferenceAndDecode(int tokens, int nb, int nRows) => CheckBatch(tokens, nb, nRows, vnni: false);

    [VariantTheory(Variant.Avx2Vnni)]
    [MemberData(nameof(DriverCases))]
    public void VnniOnBatchMatchesTheReferenceAndDecode(int tokens, int nb, int nRows) => CheckBatch(tokens, nb, nRows, vnni: true);

    private static void CheckBatch(int tokens, int nb, int nRows, bool vnni)
    {
        int n = nb * 32;
        long rowBytes = (long)nb * DotQ4_0.BlockBytes, panelBytes = Q8_0Panel.BytesFor(n);
        var rows = new byte[nRows * rowBytes];
        for (int r = 0; r < nRows; r++)
        {
            byte[] w = Weights(GgmlType.Q4_0, n, "raw", 800 + r);
            for (int b = 0; b < nb; b++)
            {
                float d = 0.01f * (1 + (b * G + r) * 7 % 17) * (((b + r) & 1) == 0 ? 1 : -1);
                ushort h = BitConverter.HalfToUInt16Bits((Half)d);
                w[b * 18] = (byte)h;
                w[b * 18 + 1] = (byte)(h >> 8);
            }
            w.CopyTo(rows, r * rowBytes);
        }
        var xq = new byte[tokens][];
        var panels = new byte[tokens * panelBytes];
        for (int t = 0; t < tokens; t++)
        {
            float[] x = Activations(n, 32, 900 + 7 * t + nb);
            for (int i = 0; i < n; i++) x[i] *= 1 + t;
            xq[t] = QuantizeActivations(GgmlType.Q4_0, x);
            X64DecodeLoopTests.Panel(xq[t], n).CopyTo(panels, t * panelBytes);
        }
        CpuKernelRow row = KernelTable.Resolve(GgmlType.Q4_0, Rung.Avx2, new KernelFlags(vnni, false, false))!;
        Assert.True(row.Packs);
        var packed = new byte[row.PackedBytes(nRows, n)];
        var dst = new float[(tokens + 1) * nRows];
        Array.Fill(dst, float.NaN);
        var scratch = new float[n];
        long[] cuts = { 0, nRows / 3 + 1, 2 * nRows / 3 + 3, nRows };
        var alone = new float[tokens * G];
        long wholeRows = nRows / G * G;
        string v = vnni ? "AVX-VNNI" : "no AVX-VNNI";
        fixed (byte* pr = rows) fixed (byte* pp = packed) fixed (byte* px = panels) fixed (float* pd = dst) fixed (float* ps = scratch)
        fixed (float* pa = alone)
        {
            row.Repack(pr, rowBytes, nRows, n, pp);
            var job = new RowJob
            {
                W = pr, RowBytes = rowBytes, Rows = nRows, N = n, X = px, XStride = panelBytes, Dst = pd, NTokens = tokens, Packed = pp,
            };
            for (int k = 0; k + 1 < cuts.Length; k++) row.Rows(in job, cuts[k], cuts[k + 1], ps);

            for (long g = 0; g < wholeRows / G; g++)
            {
                for (int t = 0; t < tokens; t++) DotQ4_0.PackedDot1Avx2(pp + g * DotQ4_0.PackedBytesAvx2(G, n), px + t * panelBytes, n, pa + t * G, vnni);
                for (int t = 0; t < tokens; t++)
                    for (int r = 0; r < G; r++)
                    {
                        float got = dst[t * nRows + g * G + r], one = alone[t * G + r];
                        Assert.True(BitConverter.SingleToUInt32Bits(got) == BitConverter.SingleToUInt32Bits(one),
                            $"{v}, {tokens} tokens, nb {nb}: token {t} row {g * G + r}: {got} in the batch vs {one} alone");
                    }
            }
        }
        for (int i = tokens * nRows; i < dst.Length; i++) Assert.True(float.IsNaN(dst[i]), $"{v}, {tokens} tokens, nb {nb}: wrote past the batch at {i}");
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < nRows; r++)
            {
                double want = 0, mag = 0;
                for (int b = 0; b < nb; b++)
                {
                    int o = (int)(r * rowBytes) + b * 18;
                    double dw = (double)BitConverter.ToHalf(rows, o), dx = (double)BitConverter.ToHalf(xq[t], b * 34);
                    long isum = 0, asum = 0;
                    for (int k = 0; k < 16; k++)
                    {
                        int qLo = (rows[o + 2 + k] & 0x0F) - 8, qHi = (rows[o + 2 + k] >> 4) - 8;
                        int yLo = (sbyte)xq[t][b * 34 + 2 + k], yHi = (sbyte)xq[t][b * 34 + 18 + k];
                        isum += qLo * yLo + qHi * yHi;
                        asum += (Math.Abs(qLo) + 8) * Math.Abs(yLo) + (Math.Abs(qHi) + 8) * Math.Abs(yHi);
                    }
                    want += dw * dx * isum;
                    mag += Math.Abs(dw * dx) * asum;
                }
                float got = dst[t * nRows + r];
                Assert.True(Math.Abs(got - want) <= 1e-5 * mag, $"{v}, {tokens} tokens, nb {nb}: token {t} row {r}: {got} vs reference {want:G9} (tol {1e-5 * mag:G3})");
            }
    }
}
