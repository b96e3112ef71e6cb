using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Kernels;
using EdgeLlm.Tests.X64Decode;
using static EdgeLlm.Tests.Kernels.KernelTestData;

namespace EdgeLlm.Tests.Avx2Packed;

/// <summary>
/// The AVX2 GEMM over Q4_0 weights repacked with their fp16 scales (<see cref="DotQ4_0.RepackAvx2"/>: steps of four
/// blocks, a short last step when nb mod 4 ≠ 0, rows in the slot order of the vphaddd fold), what AVX2 decode and
/// prefill run: <see cref="DotQ4_0.PackedDot1Avx2"/>, <see cref="DotQ4_0.PackedDot2Avx2"/> and
/// <see cref="DotQ4_0.PackedDot4Avx2"/> for a group of eight rows with AVX-VNNI off (vpmaddubsw) and on (vpdpbusd),
/// each row against the integer scalar rung (<see cref="DotQ4_0.DotScalar"/>) on the same Q8_0 activations with the
/// panel loops' tolerance (2e-6·M', M' with the 8·d_w offset the kernels add and take off in float). Block counts on
/// both sides of the four-block step (nb mod 4 = 0, 1, 2, 3), scales normal, fp16 subnormal with ±0, or all ±0; tokens
/// scaled 1, 10, 100, 1000, so a result taken from another token's panel is far outside the tolerance. A token's
/// result must have the same bits whichever of the three kernels computes it, and with AVX-VNNI on or off (the integer
/// block sums are exact either way). One live block at a time with a distinct subnormal scale per row and block checks
/// that each row takes its own scale and nibbles in every block (a wrong slot, block or scale offset fails).
/// Variants the CPU lacks are skipped.
/// </summary>
public unsafe class Avx2PackedQ4_0Tests
{
    private const int Rows = DotQ4_0.PackRows, Tokens = 4;
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

    [VariantTheory(Variant.Avx2)]
    [MemberData(nameof(Cases))]
    public void VnniOffMatchesScalarRungAndIsBatchInvariant(int nb, string kind) => CheckGroup(nb, kind, vnni: false);

    [VariantTheory(Variant.Avx2Vnni)]
    [MemberData(nameof(Cases))]
    public void VnniOnMatchesScalarRungAndIsBatchInvariant(int nb, string kind)
    {
        float[][] on = CheckGroup(nb, kind, vnni: true);
        float[][] off = CheckGroup(nb, kind, vnni: false);
        for (int i = 0; i < on[0].Length; i++)
            Assert.True(BitConverter.SingleToUInt32Bits(on[0][i]) == BitConverter.SingleToUInt32Bits(off[0][i]),
                $"{nb} blocks {kind}, token {i / Rows} row {i % Rows}: {on[0][i]} with AVX-VNNI vs {off[0][i]} without");
    }

    private static byte[] Repack(byte[] rows, int n)
    {
        var packed = new byte[DotQ4_0.PackedBytesAvx2(Rows, n)];
        Assert.Equal((long)Rows * n / 32 * DotQ4_0.BlockBytes, packed.Length);
        fixed (byte* pr = rows) fixed (byte* pp = packed) DotQ4_0.RepackAvx2(pr, (long)n / 32 * DotQ4_0.BlockBytes, Rows, n, pp);
        return packed;
    }

    /// <summary>Row r, token t of one group through the one-, two- and four-token kernels: [kernel][t·8 + r].</summary>
    private static float[][] RunAll(byte[] packed, byte[] panels, long panelBytes, int n, bool vnni)
    {
        var one = new float[Tokens * Rows];
        var two = new float[Tokens * Rows];
        var four = new float[Tokens * Rows];
        fixed (byte* pg = packed) fixed (byte* pp = panels) fixed (float* d1 = one) fixed (float* d2 = two) fixed (float* d4 = four)
        {
            for (int t = 0; t < Tokens; t++) DotQ4_0.PackedDot1Avx2(pg, pp + t * panelBytes, n, d1 + t * Rows, vnni);
            DotQ4_0.PackedDot2Avx2(pg, pp, panelBytes, n, d2, Rows, vnni);
            DotQ4_0.PackedDot2Avx2(pg, pp + 2 * panelBytes, panelBytes, n, d2 + 2 * Rows, Rows, vnni);
            DotQ4_0.PackedDot4Avx2(pg, pp, panelBytes, n, d4, Rows, vnni);
        }
        return new[] { one, two, four };
    }

    private static float[][] CheckGroup(int nb, string kind, bool vnni)
    {
        int n = nb * 32;
        long rowBytes = (long)nb * DotQ4_0.BlockBytes, panelBytes = Q8_0Panel.BytesFor(n);
        var rows = new byte[Rows * rowBytes];
        for (int r = 0; r < Rows; r++)
            X64DecodeLoopTests.MakeWeights(GgmlType.Q4_0, n, kind, 5300 + nb * 10 + kind.Length + 1000 * r).CopyTo(rows, r * rowBytes);
        var xq = new byte[Tokens][];
        var panels = new byte[Tokens * panelBytes];
        for (int t = 0; t < Tokens; t++)
        {
            float[] x = Activations(n, 32, 6300 + nb + 31 * t);
            for (int i = 0; i < n; i++) x[i] *= MathF.Pow(10, t);
            xq[t] = QuantizeActivations(GgmlType.Q4_0, x);
            X64DecodeLoopTests.Panel(xq[t], n).CopyTo(panels, t * panelBytes);
        }
        float[][] got = RunAll(Repack(rows, n), panels, panelBytes, n, vnni);
        string v = vnni ? "AVX-VNNI" : "no AVX-VNNI";
        for (int t = 0; t < Tokens; t++)
            for (int r = 0; r < Rows; r++)
            {
                byte[] w = rows.AsSpan((int)(r * rowBytes), (int)rowBytes).ToArray();
                double m = X64DecodeLoopTests.PanelMagnitude(w, DequantizeWeights(GgmlType.Q4_0, w, n), DequantizeActivations(GgmlType.Q4_0, xq[t], n));
                float want;
                fixed (byte* pw = w) fixed (byte* px = xq[t]) want = DotQ4_0.DotScalar(pw, px, n);
                float one = got[0][t * Rows + r];
                Assert.True(Math.Abs(one - want) <= 2e-6 * m, $"{v}, {nb} blocks {kind}, token {t} row {r}: {one} vs scalar {want} (tol {2e-6 * m:G3})");
                if (kind == "zero-scales") Assert.Equal(0f, Math.Abs(one));
                Assert.True(BitConverter.SingleToUInt32Bits(one) == BitConverter.SingleToUInt32Bits(got[1][t * Rows + r]),
                    $"{v}, {nb} blocks {kind}, token {t} row {r}: {one} alone vs {got[1][t * Rows + r]} in a pair");
                Assert.True(BitConverter.SingleToUInt32Bits(one) == BitConverter.SingleToUInt32Bits(got[2][t * Rows + r]),
                    $"{v}, {nb} blocks {kind}, token {t} row {r}: {one} alone vs {got[2][t * Rows + r]} in a four-token tile");
            }
        return got;
    }

    [VariantTheory(Variant.Avx2)]
    [InlineData(9)]
    [InlineData(6)]
    [InlineData(43)]
    [InlineData(4)]
    public void VnniOffEachRowTakesItsOwnScaleAndNibblesInEveryBlock(int nb) => CheckOwnBlocks(nb, vnni: false);

    [VariantTheory(Variant.Avx2Vnni)]
    [InlineData(9)]
    [InlineData(6)]
    [InlineData(43)]
    [InlineData(4)]
    public void VnniOnEachRowTakesItsOwnScaleAndNibblesInEveryBlock(int nb) => CheckOwnBlocks(nb, vnni: true);

    /// <summary>
    /// Activations zero outside block k (one token), every (row, block) scale a different fp16 subnormal of alternating
    /// sign: row r must give d_w[r, k]·d_x[k]·Σ(q−8)·y of that block alone (double reference), for every k and r, so a
    /// scale taken from another row or block, nibbles from another row, slot or block half, or a short last step laid
    /// out wrong fail. nb = 9, 6 and 43 end in a last step of one, two and three blocks, nb = 4 in a whole one.
    /// </summary>
    private static void CheckOwnBlocks(int nb, bool vnni)
    {
        int n = nb * 32;
        long rowBytes = (long)nb * DotQ4_0.BlockBytes, panelBytes = Q8_0Panel.BytesFor(n);
        var rows = new byte[Rows * rowBytes];
        for (int r = 0; r < Rows; r++)
        {
            byte[] w = Weights(GgmlType.Q4_0, n, "raw", 190 + r);
            for (int b = 0; b < nb; b++)
            {
                ushort h = (ushort)((((b + r) & 1) << 15) | (1 + 3 * (b * Rows + r)));
                w[b * 18] = (byte)h;
                w[b * 18 + 1] = (byte)(h >> 8);
            }
            w.CopyTo(rows, r * rowBytes);
        }
        byte[] packed = Repack(rows, n);
        float[] x = Activations(n, 32, 199);
        var dst = new float[Rows];
        for (int k = 0; k < nb; k++)
        {
            float[] xk = new float[n];
            Array.Copy(x, k * 32, xk, k * 32, 32);
            xk[k * 32 + 5] = 3f;
            byte[] xq = QuantizeActivations(GgmlType.Q4_0, xk);
            byte[] p = X64DecodeLoopTests.Panel(xq, n);
            Assert.Equal(panelBytes, p.Length);
            fixed (byte* pg = packed) fixed (byte* pp = p) fixed (float* pd = dst) DotQ4_0.PackedDot1Avx2(pg, pp, n, pd, vnni);
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
