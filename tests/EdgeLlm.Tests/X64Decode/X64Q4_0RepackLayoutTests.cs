using EdgeLlm.Backends.Cpu.Kernels;

namespace EdgeLlm.Tests.X64Decode;

/// <summary>
/// The bytes of the two x64 fp16-scale Q4_0 copies (<see cref="DotQ4_0.RepackAvx512"/>, <see cref="DotQ4_0.RepackAvx2"/>,
/// one loop driven by a slot table) against the layout written out independently: each stored byte of row r, block b
/// is looked up where the layout says it goes. Groups of eight rows; a group is steps of four blocks (the last step has
/// nb mod 4 when that is not zero); a step of k blocks is the k blocks' fp16 scales (block j of the step: 16 bytes,
/// row r's at 2·r), then k runs of 128 quant bytes (qs bytes 0..7 of every row in the first 64, 8..15 in the second).
/// In a 64-byte run the AVX-512 layout keeps the rows in order; the AVX2 one holds in its first ymm rows 0, 1 in the low
/// 128-bit lane and 4, 5 in the high one, in its second ymm rows 2, 3 and 6, 7 (what one vphaddd folds into rows 0..7).
/// Every output byte must be written exactly once, and the rows after the last whole group are not in the copy. Plain
/// code: runs on every CPU.
/// </summary>
public unsafe class X64Q4_0RepackLayoutTests
{
    public static TheoryData<bool, int, int> Cases()
    {
        var d = new TheoryData<bool, int, int>();
        foreach (bool avx2 in new[] { false, true })
            foreach (int nb in new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 13 })
                d.Add(avx2, nb, nb % 2 == 0 ? 19 : 16);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void PackedBytesAreWhereTheLayoutSays(bool avx2, int nb, int rows)
    {
        int n = nb * 32, groups = rows / 8;
        long rowBytes = nb * 18L;
        var src = new byte[rows * rowBytes];
        new Random(40 + nb + rows).NextBytes(src);
        long size = avx2 ? DotQ4_0.PackedBytesAvx2(rows, n) : DotQ4_0.PackedBytesAvx512(rows, n);
        Assert.Equal(groups * 8 * rowBytes, size);
        var dst = new byte[size];
        fixed (byte* ps = src) fixed (byte* pd = dst)
        {
            if (avx2) DotQ4_0.RepackAvx2(ps, rowBytes, rows, n, pd);
            else DotQ4_0.RepackAvx512(ps, rowBytes, rows, n, pd);
        }
        // Where a row's eight bytes sit in a 64-byte run, in units of eight bytes.
        int[] ymmRows = avx2 ? [0, 1, 4, 5, 2, 3, 6, 7] : [0, 1, 2, 3, 4, 5, 6, 7];
        var written = new int[size];
        string what = avx2 ? "AVX2" : "AVX-512";
        for (int g = 0; g < groups; g++)
            for (int b = 0; b < nb; b++)
            {
                int step = b / 4, j = b % 4, k = Math.Min(4, nb - 4 * step);
                long stepBase = (long)g * nb * 144 + step * 4L * 144;
                for (int r = 0; r < 8; r++)
                {
                    long stored = (g * 8L + r) * rowBytes + b * 18L;
                    int slot = Array.IndexOf(ymmRows, r);
                    for (int i = 0; i < 2; i++)
                    {
                        long at = stepBase + 16 * j + 2 * r + i;
                        Assert.True(src[stored + i] == dst[at], $"{what} nb {nb}: group {g} block {b} row {r} scale byte {i} at {at}: {dst[at]} vs {src[stored + i]}");
                        written[at]++;
                    }
                    for (int q = 0; q < 16; q++)
                    {
                        long at = stepBase + 16 * k + 128 * j + 64 * (q / 8) + 8 * slot + q % 8;
                        Assert.True(src[stored + 2 + q] == dst[at], $"{what} nb {nb}: group {g} block {b} row {r} qs byte {q} at {at}: {dst[at]} vs {src[stored + 2 + q]}");
                        written[at]++;
                    }
                }
            }
        for (long i = 0; i < size; i++) Assert.True(written[i] == 1, $"{what} nb {nb}: output byte {i} described {written[i]} times");
    }
}
