using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.X64Decode;

/// <summary>
/// The AVX-512 GEMM over Q4_0 weights repacked with their fp16 scales (<see cref="DotQ4_0.RepackAvx512"/>: groups of 16
/// rows, steps of two blocks, the 32 scales of a step in one line, a one-block last step when nb is odd), what AVX-512
/// decode runs since the copy became the one-token kernel: <see cref="DotQ4_0.PackedDot1Avx512"/>, <see cref="DotQ4_0.PackedDot2Avx512"/>,
/// <see cref="DotQ4_0.PackedDot3Avx512"/> and <see cref="DotQ4_0.PackedDot4Avx512"/> for a group, each row against the integer scalar rung
/// (<see cref="DotQ4_0.DotScalar"/>) on the same Q8_0 activations, with the panel loops' tolerance (2e-6·M', M' with the
/// 8·d_w offset the kernels add and take off in float); odd and even block counts, scales normal, fp16 subnormal with
/// ±0, or all ±0. A token's result must have the same bits whichever of the
/// four kernels computes it (batch invariance: decode and batched rows share the copy). One live block at a time with a
/// distinct subnormal scale per row and block checks that each row takes its own scale and nibbles in every block.
/// </summary>
public unsafe class X64PackedQ4_0Tests
{
    private const int Rows = DotQ4_0.PackRowsAvx512, Tokens = 4;
    private static readonly int[] BlockCounts = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 17, 40, 43, 64 };
    private static readonly string[] Kinds = { "gaussian", "raw", "subnormal", "zero-scales" };

    public static TheoryData<int, string> Cases()
    {
        var d = new TheoryData<int, string>();
        foreach (int nb in BlockCounts)
            foreach (string kind in Kinds)
                d.Add(nb, kind);
        return d;
    }

    private static byte[] Repack(byte[] rows, int n)
    {
        var packed = new byte[DotQ4_0.PackedBytesAvx512(Rows, n)];
        Assert.Equal((long)Rows * n / 32 * DotQ4_0.BlockBytes, packed.Length);
        fixed (byte* pr = rows) fixed (byte* pp = packed) DotQ4_0.RepackAvx512(pr, (long)n / 32 * DotQ4_0.BlockBytes, Rows, n, pp);
        return packed;
    }

    /// <summary>
    /// Row r, token t of one group through the one-, two-, three- (tokens 0..2, then 1..3) and four-token kernels:
    /// [kernel][t·16 + r].
    /// </summary>
    private static float[][] RunAll(byte[] packed, byte[] panels, long panelBytes, int n)
    {
        var one = new float[Tokens * Rows];
        var two = new float[Tokens * Rows];
        var three = new float[Tokens * Rows];
        var four = new float[Tokens * Rows];
        var threeLate = new float[Tokens * Rows];
        fixed (byte* pg = packed) fixed (byte* pp = panels) fixed (float* d1 = one) fixed (float* d2 = two) fixed (float* d4 = four)
        fixed (float* d3 = three) fixed (float* d3b = threeLate)
        {
            for (int t = 0; t < Tokens; t++) DotQ4_0.PackedDot1Avx512(pg, pp + t * panelBytes, n, d1 + t * Rows);
            DotQ4_0.PackedDot2Avx512(pg, pp, panelBytes, n, d2, Rows);
            DotQ4_0.PackedDot2Avx512(pg, pp + 2 * panelBytes, panelBytes, n, d2 + 2 * Rows, Rows);
            DotQ4_0.PackedDot3Avx512(pg, pp, panelBytes, n, d3, Rows);
            DotQ4_0.PackedDot3Avx512(pg, pp + panelBytes, panelBytes, n, d3b + Rows, Rows);
            DotQ4_0.PackedDot4Avx512(pg, pp, panelBytes, n, d4, Rows);
        }
        // Token 3 from the second three-token call, token 0 from the first: every token through the three-token kernel.
        Array.Copy(threeLate, 3 * Rows, three, 3 * Rows, Rows);
        return new[] { one, two, four, three };
    }

    [X64LoopTheory(X64Loop.Q4_0PanelNoVbmi)]
    [MemberData(nameof(Cases))]
    public void PackedAvx512MatchesScalarRungAndIsBatchInvariant(int nb, string kind)
    {
        int n = nb * 32;
        long rowBytes = (long)nb * DotQ4_0.BlockBytes, panelBytes = Q8_0Panel.BytesFor(n);
        var rows = new byte[Rows * rowBytes];
        for (int r = 0; r < Rows; r++)
            X64DecodeLoopTests.MakeWeights(GgmlType.Q4_0, n, kind, 5100 + nb * 10 + kind.Length + 1000 * r).CopyTo(rows, r * rowBytes);
        var xq = new byte[Tokens][];
        var panels = new byte[Tokens * panelBytes];
        for (int t = 0; t < Tokens; t++)
        {
            // Tokens scaled 1, 10, 100, 1000: a result taken from another token is far outside the tolerance.
            float[] x = Activations(n, 32, 6100 + nb + 31 * t);
            for (int i = 0; i < n; i++) x[i] *= MathF.Pow(10, t);
            xq[t] = QuantizeActivations(GgmlType.Q4_0, x);
            X64DecodeLoopTests.Panel(xq[t], n).CopyTo(panels, t * panelBytes);
        }
        float[][] got = RunAll(Repack(rows, n), panels, panelBytes, n);
        for (int t = 0; t < Tokens; t++)
            for (int r = 0; r < Rows; r++)
            {
                byte[] w = rows.AsSpan((int)(r * rowBytes), (int)rowBytes).ToArray();
                double m = X64DecodeLoopTests.PanelMagnitude(w, DequantizeWeights(GgmlType.Q4_0, w, n), DequantizeActivations(GgmlType.Q4_0, xq[t], n));
                float want;
                fixed (byte* pw = w) fixed (byte* px = xq[t]) want = DotQ4_0.DotScalar(pw, px, n);
                float one = got[0][t * Rows + r];
                Assert.True(Math.Abs(one - want) <= 2e-6 * m, $"{nb} blocks {kind}, token {t} row {r}: {one} vs scalar {want} (tol {2e-6 * m:G3})");
                if (kind == "zero-scales") Assert.Equal(0f, Math.Abs(one));
                Assert.True(BitConverter.SingleToUInt32Bits(one) == BitConverter.SingleToUInt32Bits(got[1][t * Rows + r]),
                    $"{nb} blocks {kind}, token {t} row {r}: {one} alone vs {got[1][t * Rows + r]} in a pair");
                Assert.True(BitConverter.SingleToUInt32Bits(one) == BitConverter.SingleToUInt32Bits(got[2][t * Rows + r]),
                    $"{nb} blocks {kind}, token {t} row {r}: {one} alone vs {got[2][t * Rows + r]} in a four-token tile");
                Assert.True(BitConverter.SingleToUInt32Bits(one) == BitConverter.SingleToUInt32Bits(got[3][t * Rows + r]),
                    $"{nb} blocks {kind}, token {t} row {r}: {one} alone vs {got[3][t * Rows + r]} in a three-token pass");
            }
    }

    /// <summary>
    /// Activations zero outside block k (one token), every (row, block) scale a different fp16 subnormal of alternating
    /// sign: row r must give d_w[r, k]·d_x[k]·Σ(q−8)·y of that block alone (double reference), for every k and r, so a
    /// scale taken from another row or block, nibbles from another row or block half, or a short last step laid out
    /// wrong fail. nb = 9 and 43 end in a one-block step, 6 in a two-block one.
    /// </summary>
    [X64LoopTheory(X64Loop.Q4_0PanelNoVbmi)]
    [InlineData(9)]
    [InlineData(6)]
    [InlineData(43)]
    public void EachRowTakesItsOwnScaleAndNibblesInEveryBlock(int nb)
    {
        int n = nb * 32;
        long rowBytes = (long)nb * DotQ4_0.BlockBytes, panelBytes = Q8_0Panel.BytesFor(n);
        var rows = new byte[Rows * rowBytes];
        for (int r = 0; r < Rows; r++)
        {
            byte[] w = Weights(GgmlType.Q4_0, n, "raw", 90 + r);
            for (int b = 0; b < nb; b++)
            {
                ushort h = (ushort)((((b + r) & 1) << 15) | (1 + 3 * (b * Rows + r)));
                w[b * 18] = (byte)h;
                w[b * 18 + 1] = (byte)(h >> 8);
            }
            w.CopyTo(rows, r * rowBytes);
        }
        byte[] packed = Repack(rows, n);
        float[] x = Activations(n, 32, 99);
        var dst = new float[Rows];
        for (int k = 0; k < nb; k++)
        {
            float[] xk = new float[n];
            Array.Copy(x, k * 32, xk, k * 32, 32);
            xk[k * 32 + 5] = 3f;
            byte[] xq = QuantizeActivations(GgmlType.Q4_0, xk);
            byte[] p = X64DecodeLoopTests.Panel(xq, n);
            fixed (byte* pg = packed) fixed (byte* pp = p) fixed (float* pd = dst) DotQ4_0.PackedDot1Avx512(pg, pp, n, pd);
            double dx = (double)BitConverter.ToHalf(xq, k * 34);
            for (int r = 0; r < Rows; r++)
            {
                int o = (int)(r * rowBytes) + k * 18;
                double dw = (double)BitConverter.ToHalf(rows, o);
                long isum = 0;
                for (int j = 0; j < 16; j++)
                    isum += ((rows[o + 2 + j] & 0x0F) - 8) * (sbyte)xq[k * 34 + 2 + j] + ((rows[o + 2 + j] >> 4) - 8) * (sbyte)xq[k * 34 + 18 + j];
                double want = dw * dx * isum;
                double mag = Math.Abs(dw * dx) * 16 * 15 * 127 * 2;
                Assert.True(Math.Abs(dst[r] - want) <= 1e-6 * mag, $"block {k} of {nb}, row {r}: {dst[r]} vs {want}");
            }
        }
    }
}
