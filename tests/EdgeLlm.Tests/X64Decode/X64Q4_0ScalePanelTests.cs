using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.X64Decode;

/// <summary>
/// The float scale panel of the AVX-512 Q4_0 GEMM (<see cref="DotQ4_0.ScalePanelAvx512"/>, converted once per row tile
/// for batches of more than four tokens) and the driver that uses it (<see cref="RowDrivers.Q4_0PackedTiles{TK}"/> with
/// the AVX-512 row of <see cref="KernelTable"/>). The panel is checked bit for bit against .NET's own fp16 → float
/// conversion of every (row, block) scale, fp16 bit patterns of every class (normal, subnormal, ±0, ±inf), and normal
/// ones only (every exponent, both signs: the fast conversion a step of normal scales takes). The driver
/// runs batches of 1 to 13 tokens (passes of eight, four, three, two and one token: 1, 2, 3, 4, 4+1, 4+2, 4+3, 8,
/// 8+1, 8+2, 8+3, 8+4, 8+4+1; without the panel up to four) with odd and even block counts (the kernel takes blocks two at a
/// time, an odd nb's last block alone) over rows that span several row tiles and end in a partial group of 16 (24 and
/// 40 rows: a whole group and eight left, which the eight-row layout packed), cut into three uneven thread ranges, with a different
/// scale for every (row, block) (|d_w| from 0.01 to 0.17, signs alternating) and independent activations per token;
/// each result against a double reference Σ_b d_w·d_x·Σ(q − 8)·y computed from the stored bytes, tolerance 1e-5·M'
/// (M' = Σ_b |d_w·d_x|·Σ(|q − 8| + 8)·|y|, the kernel's float terms); a scale from another row, block or group, or a
/// token from another slot of the four-token pass, is off by about the result itself, far outside that. The rows of
/// whole groups must also have the bits the one-token kernel (<see cref="DotQ4_0.PackedDot1Avx512"/>, decode) gives the
/// same token alone. Block counts: 9 (a tile of many groups), 64 (three groups a tile), 200 (one group a tile), 1040
/// (a group too wide for the panel: the per-pass conversion).
/// </summary>
public unsafe class X64Q4_0ScalePanelTests
{
    private const int G = DotQ4_0.PackRowsAvx512;

    [X64LoopTheory(X64Loop.Q4_0PanelNoVbmi)]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(9)]
    [InlineData(43)]
    [InlineData(1, true)]
    [InlineData(4, true)]
    [InlineData(43, true)]
    public void ScalePanelHoldsEachRowsScaleAtItsBlockAndRow(int nb, bool normalOnly = false)
    {
        int n = nb * 32;
        long rowBytes = (long)nb * DotQ4_0.BlockBytes;
        var rows = new byte[G * rowBytes];
        var rng = new Random(300 + nb);
        var special = new ushort[] { 0x0000, 0x8000, 0x0001, 0x83ff, 0x0400, 0x7bff, 0xfc00, 0x7c00, 0x3c00 };
        for (int r = 0; r < G; r++)
        {
            byte[] w = Weights(GgmlType.Q4_0, n, "raw", 310 + r);
            for (int b = 0; b < nb; b++)
            {
                int i = b * G + r;
                // normalOnly: every fp16 exponent 1..30 with random sign and mantissa, the extremes 0x0400 and 0x7bff
                // included (the kernels' fast conversion); else one scale in three of another class too.
                ushort h = normalOnly
                    ? (ushort)(rng.Next(2) << 15 | (i % 7 == 0 ? (i % 14 == 0 ? 0x0400 : 0x7bff) : (1 + i % 30) << 10 | rng.Next(1024)))
                    : i % 3 == 0 ? special[i / 3 % special.Length] : (ushort)(rng.Next(0x10000) & 0xfbff);
                w[b * 18] = (byte)h;
                w[b * 18 + 1] = (byte)(h >> 8);
            }
            w.CopyTo(rows, r * rowBytes);
        }
        var packed = new byte[DotQ4_0.PackedBytesAvx512(G, n)];
        var panel = new float[nb * G + 16];
        Array.Fill(panel, float.NaN);
        fixed (byte* pr = rows) fixed (byte* pp = packed) fixed (float* ps = panel)
        {
            DotQ4_0.RepackAvx512(pr, rowBytes, G, n, pp);
            DotQ4_0.ScalePanelAvx512(pp, nb, ps);
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

    [X64LoopTheory(X64Loop.Q4_0PanelNoVbmi)]
    [InlineData(1, 9, 67)]
    [InlineData(1, 7, 35)]
    [InlineData(2, 5, 67)]
    [InlineData(3, 3, 205)]
    [InlineData(3, 64, 67)]
    [InlineData(4, 64, 67)]
    [InlineData(4, 7, 205)]
    [InlineData(4, 1, 35)]
    [InlineData(5, 64, 67)]
    [InlineData(7, 64, 67)]
    [InlineData(7, 5, 205)]
    [InlineData(5, 7, 67)]
    [InlineData(8, 1, 35)]
    [InlineData(8, 5, 205)]
    [InlineData(13, 3, 67)]
    [InlineData(10, 9, 67)]
    [InlineData(11, 64, 205)]
    [InlineData(12, 5, 35)]
    [InlineData(4, 9, 24)]
    [InlineData(2, 9, 40)]
    [InlineData(6, 9, 67)]
    [InlineData(8, 64, 67)]
    [InlineData(9, 200, 35)]
    [InlineData(13, 64, 67)]
    [InlineData(13, 9, 205)]
    [InlineData(9, 1040, 19)]
    public void BatchThroughTheScalePanelMatchesTheReferenceAndDecode(int tokens, int nb, int nRows)
    {
        int n = nb * 32;
        long rowBytes = (long)nb * DotQ4_0.BlockBytes, panelBytes = Q8_0Panel.BytesFor(n);
        var rows = new byte[nRows * rowBytes];
        for (int r = 0; r < nRows; r++)
        {
            byte[] w = Weights(GgmlType.Q4_0, n, "raw", 400 + r);
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
            float[] x = Activations(n, 32, 500 + 7 * t + nb);
            for (int i = 0; i < n; i++) x[i] *= 1 + t;
            xq[t] = QuantizeActivations(GgmlType.Q4_0, x);
            X64DecodeLoopTests.Panel(xq[t], n).CopyTo(panels, t * panelBytes);
        }
        CpuKernelRow row = KernelTable.Resolve(GgmlType.Q4_0, Rung.Avx512, new KernelFlags(false, false, false))!;
        Assert.True(row.Packs);
        var packed = new byte[row.PackedBytes(nRows, n)];
        var dst = new float[(tokens + 1) * nRows];
        Array.Fill(dst, float.NaN);
        var scratch = new float[n];
        long[] cuts = { 0, nRows / 3 + 1, 2 * nRows / 3 + 3, nRows };
        var alone = new float[tokens * G];
        long wholeRows = nRows / G * G;
        fixed (byte* pr = rows) fixed (byte* pp = packed) fixed (byte* px = panels) fixed (float* pd = dst) fixed (float* ps = scratch)
        fixed (float* pa = alone)
        {
            row.Repack(pr, rowBytes, nRows, n, pp);
            var job = new RowJob
            {
                W = pr, RowBytes = rowBytes, Rows = nRows, N = n, X = px, XStride = panelBytes, Dst = pd, NTokens = tokens, Packed = pp,
            };
            for (int k = 0; k + 1 < cuts.Length; k++) row.Rows(in job, cuts[k], cuts[k + 1], ps);

            // Decode: each token alone through the one-token kernel, group by group.
            for (long g = 0; g < wholeRows / G; g++)
            {
                for (int t = 0; t < tokens; t++) DotQ4_0.PackedDot1Avx512(pp + g * DotQ4_0.PackedBytesAvx512(G, n), px + t * panelBytes, n, pa + t * G);
                for (int t = 0; t < tokens; t++)
                    for (int r = 0; r < G; r++)
                    {
                        float got = dst[t * nRows + g * G + r], one = alone[t * G + r];
                        Assert.True(BitConverter.SingleToUInt32Bits(got) == BitConverter.SingleToUInt32Bits(one),
                            $"{tokens} tokens, nb {nb}: token {t} row {g * G + r}: {got} in the batch vs {one} alone");
                    }
            }
        }
        for (int i = tokens * nRows; i < dst.Length; i++) Assert.True(float.IsNaN(dst[i]), $"{tokens} tokens, nb {nb}: wrote past the batch at {i}");
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
                Assert.True(Math.Abs(got - want) <= 1e-5 * mag, $"{tokens} tokens, nb {nb}: token {t} row {r}: {got} vs reference {want:G9} (tol {1e-5 * mag:G3})");
            }
    }
}
