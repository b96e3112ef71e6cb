using EdgeLlm.Backends.Cpu.Kernels;

namespace EdgeLlm.Tests.X64Decode;

/// <summary>
/// The bytes of the two x64 fp16-scale Q4_0 copies (<see cref="DotQ4_0.RepackAvx512"/>, <see cref="DotQ4_0.RepackAvx2"/>)
/// against the layouts written out independently: each stored byte of row r, block b is looked up where the layout says
/// it goes. AVX2: groups of eight rows; a group is steps of four blocks (the last step has nb mod 4 when that is not
/// zero); a step of k blocks is the k blocks' fp16 scales (block j of the step: 16 bytes, row r's at 2·r), then k runs
/// of 128 quant bytes (qs bytes 0..7 of every row in the first 64, 8..15 in the second), a row's eight bytes in its ymm
/// slot: the first ymm holds rows 0, 1 in the low 128-bit lane and 4, 5 in the high one, the second rows 2, 3 and 6, 7
/// (what one vphaddd folds into rows 0..7). AVX-512: groups of 16 rows; steps of two blocks (one when nb is odd, last);
/// a step of k blocks is the k blocks' fp16 scales (block j: 32 bytes, row r's at 2·r), then k blocks of four 64-byte
/// runs, run m holding qs bytes 4m..4m+3 of row r at 4·r. Every output byte must be written exactly once, and the rows
/// after the last whole group are not in the copy. Plain code: runs on every CPU.
/// </summary>
public unsafe class X64Q4_0RepackLayoutTests
{
    public static TheoryData<bool, int, int> Cases()
    {
        var d = new TheoryData<bool, int, int>();
        foreach (bool avx2 in new[] { false, true })
            foreach (int nb in new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 13 })
                d.Add(avx2, nb, nb % 2 == 0 ? 19 : avx2 ? 16 : 40);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void PackedBytesAreWhereTheLayoutSays(bool avx2, int nb, int rows)
    {
        int n = nb * 32, g = avx2 ? 8 : 16, groups = rows / g;
        long rowBytes = nb * 18L;
        var src = new byte[rows * rowBytes];
        new Random(40 + nb + rows).NextBytes(src);
        long size = avx2 ? DotQ4_0.PackedBytesAvx2(rows, n) : DotQ4_0.PackedBytesAvx512(rows, n);
        Assert.Equal(groups * g * rowBytes, size);
        var dst = new byte[size];
        fixed (byte* ps = src) fixed (byte* pd = dst)
        {
            if (avx2) DotQ4_0.RepackAvx2(ps, rowBytes, rows, n, pd);
            else DotQ4_0.RepackAvx512(ps, rowBytes, rows, n, pd);
        }
        // AVX2: where a row's eight bytes sit in a 64-byte run, in units of eight bytes.
        int[] ymmRows = [0, 1, 4, 5, 2, 3, 6, 7];
        var written = new int[size];
        string what = avx2 ? "AVX2" : "AVX-512";
        int stepBlocks = avx2 ? 4 : 2;
        long blockBytes = g * 18L;
        for (int gi = 0; gi < groups; gi++)
            for (int b = 0; b < nb; b++)
            {
                int step = b / stepBlocks, j = b % stepBlocks, k = Math.Min(stepBlocks, nb - stepBlocks * step);
                long stepBase = (long)gi * nb * blockBytes + step * stepBlocks * blockBytes;
                for (int r = 0; r < g; r++)
                {
                    long stored = (gi * (long)g + r) * rowBytes + b * 18L;
                    for (int i = 0; i < 2; i++)
                    {
                        long at = stepBase + 2 * g * j + 2 * r + i;
                        Assert.True(src[stored + i] == dst[at], $"{what} nb {nb}: group {gi} block {b} row {r} scale byte {i} at {at}: {dst[at]} vs {src[stored + i]}");
                        written[at]++;
                    }
                    for (int q = 0; q < 16; q++)
                    {
                        long at = avx2
                            ? stepBase + 16 * k + 128 * j + 64 * (q / 8) + 8 * Array.IndexOf(ymmRows, r) + q % 8
                            : stepBase + 32 * k + 256 * j + 64 * (q / 4) + 4 * r + q % 4;
                        Assert.True(src[stored + 2 + q] == dst[at], $"{what} nb {nb}: group {gi} block {b} row {r} qs byte {q} at {at}: {dst[at]} vs {src[stored + 2 + q]}");
                        written[at]++;
                    }
                }
            }
        for (long i = 0; i < size; i++) Assert.True(written[i] == 1, $"{what} nb {nb}: output byte {i} described {written[i]} times");
    }
}
