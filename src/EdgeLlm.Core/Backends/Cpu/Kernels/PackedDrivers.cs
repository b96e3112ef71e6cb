namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// A four-token kernel whose weight type also has a GEMM over a copy repacked at load into groups of
/// <see cref="PackRows"/> interleaved rows (<see cref="CpuKernelRow.Repack"/>), dotted with the activations at
/// <see cref="RowJob.PackedX"/> (<see cref="RowJob.PackedXStride"/> bytes per token).
/// </summary>
internal unsafe interface IPackedGemmKernel : IFourTokenKernel
{
    /// <summary>Rows per repacked group.</summary>
    static abstract int PackRows { get; }

    /// <summary>Bytes of one repacked group of rows of <paramref name="n"/> values.</summary>
    static abstract long GroupBytes(int n);

    /// <summary>One group · tokens t = 0..3 at <paramref name="x"/> + t·<paramref name="xStride"/>: row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].</summary>
    static abstract void Packed4(byte* group, byte* x, long xStride, int n, float* dst, long dstStride);

    /// <summary>One group · one token: row r to <paramref name="dst"/>[r].</summary>
    static abstract void Packed1(byte* group, byte* x, int n, float* dst);
}

/// <summary>The range driver of the weight types with a repacked GEMM (<see cref="IPackedGemmKernel"/>).</summary>
internal static unsafe class PackedDrivers
{
    /// <summary>
    /// With the repacked copy (<see cref="RowJob.Packed"/>), any number of tokens (decode too, once a batch has made the
    /// copy): the rows of the whole groups go through the group GEMM (four tokens a step, the last nTokens mod 4 one by
    /// one), tiles of groups small enough to stay in L1/L2. A group cut by the range (a thread's range need not start on a group) is computed whole into a
    /// stack buffer and only its rows in the range are kept, so every row gets the same kernel whatever the split. The
    /// rows after the last whole group, and every call without the copy, run
    /// <see cref="RowDrivers.Tiles{TK}"/> on the stored rows.
    /// </summary>
    public static void Tiles<TK>(in RowJob j, long r0, long r1, float* scratch) where TK : struct, IPackedGemmKernel
    {
        int G = TK.PackRows;
        long packedRows = j.Rows / G * G;
        if (j.Packed == null || j.PackedX == null || r0 >= packedRows)
        {
            RowDrivers.Tiles<TK>(j, r0, r1, scratch);
            return;
        }
        long pEnd = Math.Min(r1, packedRows);
        int n = j.N;
        long rows = j.Rows;
        long groupBytes = TK.GroupBytes(n);
        long tile = Math.Max(1, RowDrivers.RowTileBytes / groupBytes);
        int full = j.NTokens & ~3;
        float* tmp = stackalloc float[4 * G];
        for (long ga = r0 / G, gEnd = (pEnd + G - 1) / G; ga < gEnd; ga += tile)
        {
            long gb = Math.Min(gEnd, ga + tile);
            for (int t = 0; t < j.NTokens; t += t < full ? 4 : 1)
            {
                bool four = t < full;
                byte* xt = j.PackedX + t * j.PackedXStride;
                float* d = j.Dst + t * rows;
                for (long g = ga; g < gb; g++)
                {
                    byte* pg = j.Packed + g * groupBytes;
                    long a = Math.Max(r0, g * G), b = Math.Min(pEnd, g * G + G);
                    if (b - a == G)
                    {
                        if (four) TK.Packed4(pg, xt, j.PackedXStride, n, d + g * G, rows);
                        else TK.Packed1(pg, xt, n, d + g * G);
                        continue;
                    }
                    if (four) TK.Packed4(pg, xt, j.PackedXStride, n, tmp, G);
                    else TK.Packed1(pg, xt, n, tmp);
                    for (int k = 0; k < (four ? 4 : 1); k++)
                        for (long r = a; r < b; r++) d[k * rows + r] = tmp[k * G + (r - g * G)];
                }
            }
        }
        if (pEnd < r1) RowDrivers.Tiles<TK>(j, pEnd, r1, scratch);
    }
}
