namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>A one-token kernel over a copy repacked for decode in groups of <see cref="PackRows"/> interleaved rows.</summary>
internal unsafe interface IPackedDecodeKernel
{
    /// <summary>Rows per repacked group.</summary>
    static abstract int PackRows { get; }

    /// <summary>Bytes of one repacked group of rows of <paramref name="n"/> values.</summary>
    static abstract long GroupBytes(int n);

    /// <summary>One group · one token's activations at <paramref name="x"/>: row r to <paramref name="dst"/>[r].</summary>
    static abstract void Packed1(byte* group, byte* x, int n, float* dst);

    /// <summary>The most tokens of a product that read the copy (more run the stored rows' four-token loop).</summary>
    static abstract int MaxTokens { get; }

    /// <summary>
    /// One group · tokens t = 0..1 at <paramref name="x"/> + t·<paramref name="xStride"/>: row r of token t to
    /// <paramref name="dst"/>[t·<paramref name="dstStride"/> + r], the same bits as <see cref="Packed1"/> per token.
    /// </summary>
    static abstract void Packed2(byte* group, byte* x, long xStride, int n, float* dst, long dstStride);

    /// <summary>The same for four tokens.</summary>
    static abstract void Packed4(byte* group, byte* x, long xStride, int n, float* dst, long dstStride);
}

/// <summary>Q4_K's AVX-512 one-, two- and four-token loops over <see cref="DotQ4_K.Repack"/>'s copy.</summary>
internal unsafe struct Q4_KPackedAvx512 : IPackedDecodeKernel
{
    public static int PackRows => DotQ4_K.PackRows;
    public static long GroupBytes(int n) => DotQ4_K.PackedGroupBytes(n);
    public static void Packed1(byte* group, byte* x, int n, float* dst) => DotQ4_K.PackedKernel512(group, x, n, dst);
    /// <summary>Every batch: the four-token loop over the copy beat the stored rows' four-token loop in prefill too.</summary>
    public static int MaxTokens => int.MaxValue;
    public static void Packed2(byte* group, byte* x, long xStride, int n, float* dst, long dstStride) =>
        DotQ4_K.PackedKernel512x2(group, x, xStride, n, dst, dstStride);
    public static void Packed4(byte* group, byte* x, long xStride, int n, float* dst, long dstStride) =>
        DotQ4_K.PackedKernel512x4(group, x, xStride, n, dst, dstStride);
}

/// <summary>Q6_K's AVX-512 + GFNI one-, two- and four-token loops over <see cref="DotQ6_K.Repack"/>'s copy.</summary>
internal unsafe struct Q6_KPackedAvx512 : IPackedDecodeKernel
{
    public static int PackRows => DotQ6_K.PackRows;
    public static long GroupBytes(int n) => DotQ6_K.PackedGroupBytes(n);
    public static void Packed1(byte* group, byte* x, int n, float* dst) => DotQ6_K.PackedKernel512(group, x, n, dst);
    /// <summary>Every batch, as Q4_K's copy on AVX-512 (a token gets its one-token bits in every loop).</summary>
    public static int MaxTokens => int.MaxValue;
    public static void Packed2(byte* group, byte* x, long xStride, int n, float* dst, long dstStride) =>
        DotQ6_K.PackedKernel512x2(group, x, xStride, n, dst, dstStride);
    public static void Packed4(byte* group, byte* x, long xStride, int n, float* dst, long dstStride) =>
        DotQ6_K.PackedKernel512x4(group, x, xStride, n, dst, dstStride);
}

/// <summary>Q5_K's AVX-512 + GFNI one-, two- and four-token loops over <see cref="DotQ5_K.Repack"/>'s copy.</summary>
internal unsafe struct Q5_KPackedAvx512 : IPackedDecodeKernel
{
    public static int PackRows => DotQ5_K.PackRows;
    public static long GroupBytes(int n) => DotQ5_K.PackedGroupBytes(n);
    public static void Packed1(byte* group, byte* x, int n, float* dst) => DotQ5_K.PackedKernel512(group, x, n, dst);
    /// <summary>Every batch, as Q4_K's and Q6_K's copies on AVX-512 (a token gets its one-token bits in every loop).</summary>
    public static int MaxTokens => int.MaxValue;
    public static void Packed2(byte* group, byte* x, long xStride, int n, float* dst, long dstStride) =>
        DotQ5_K.PackedKernel512x2(group, x, xStride, n, dst, dstStride);
    public static void Packed4(byte* group, byte* x, long xStride, int n, float* dst, long dstStride) =>
        DotQ5_K.PackedKernel512x4(group, x, xStride, n, dst, dstStride);
}

/// <summary>
/// Q4_K's AVX2 one-, two- and four-token loops over <see cref="DotQ4_K.Repack"/>'s copy, AVX-VNNI as
/// <typeparamref name="TVnni"/> (<c>DotQ4_K.PackedAvx2Multi.cs</c>: a token gets its one-token bits in any batch).
/// </summary>
internal unsafe struct Q4_KPackedAvx2<TVnni> : IPackedDecodeKernel where TVnni : struct, IIsaFlag
{
    public static int PackRows => DotQ4_K.PackRows;
    public static long GroupBytes(int n) => DotQ4_K.PackedGroupBytes(n);
    public static void Packed1(byte* group, byte* x, int n, float* dst) => DotQ4_K.PackedKernel256<TVnni>(group, x, n, dst);
    /// <summary>Every batch: the four-token loop over the copy beat the stored rows' four-token loop in prefill (perf/README, avx2k).</summary>
    public static int MaxTokens => int.MaxValue;
    public static void Packed2(byte* group, byte* x, long xStride, int n, float* dst, long dstStride) =>
        DotQ4_K.PackedKernel256x2<TVnni>(group, x, xStride, n, dst, dstStride);
    public static void Packed4(byte* group, byte* x, long xStride, int n, float* dst, long dstStride) =>
        DotQ4_K.PackedKernel256x4<TVnni>(group, x, xStride, n, dst, dstStride);
}

/// <summary>The range driver of the types whose small batches (Q4_K on AVX-512 and AVX2, Q5_K and Q6_K on AVX-512 with GFNI: every batch) read a repacked copy, the others the stored rows.</summary>
internal static unsafe class PackedDecodeDrivers
{
    /// <summary>
    /// With the copy (<see cref="RowJob.Packed"/>) and at most <see cref="IPackedDecodeKernel.MaxTokens"/> tokens, the
    /// whole groups in [<paramref name="r0"/>, <paramref name="r1"/>) through <typeparamref name="TP"/>: tiles of groups
    /// small enough to stay in cache, each tile read by four tokens at a time (<see cref="IPackedDecodeKernel.Packed4"/>),
    /// then two, then one, so a decode step of several sequences or a speculative verify reads each group once per four
    /// tokens; every token gets the bits it gets alone. A group cut by the range is computed whole into a stack buffer and
    /// only its rows in the range kept, so a row gets the same kernel whatever the split. The rows after the last whole
    /// group, larger batches (the stored rows' four-token loop) and every call without the copy run
    /// <see cref="RowDrivers.Tiles{TK}"/> on the stored rows.
    /// </summary>
    public static void Tiles<TK, TP>(in RowJob j, long r0, long r1, float* scratch)
        where TK : struct, IFourTokenKernel where TP : struct, IPackedDecodeKernel
    {
        int G = TP.PackRows;
        long packedRows = j.Rows / G * G;
        if (j.Packed == null || j.NTokens > TP.MaxTokens || r0 >= packedRows)
        {
            RowDrivers.Tiles<TK>(j, r0, r1, scratch);
            return;
        }
        long pEnd = Math.Min(r1, packedRows);
        int n = j.N;
        long rows = j.Rows, groupBytes = TP.GroupBytes(n);
        long tile = Math.Max(1, RowDrivers.RowTileBytes / groupBytes);
        float* tmp = stackalloc float[4 * G];
        for (long ga = r0 / G, gEnd = (pEnd + G - 1) / G; ga < gEnd; ga += tile)
        {
            long gb = Math.Min(gEnd, ga + tile);
            for (int t = 0, step; t < j.NTokens; t += step)
            {
                int left = j.NTokens - t;
                step = left >= 4 ? 4 : left >= 2 ? 2 : 1;
                byte* xt = j.X + t * j.XStride;
                float* d = j.Dst + t * rows;
                for (long g = ga; g < gb; g++)
                {
                    byte* pg = j.Packed + g * groupBytes;
                    long a = Math.Max(r0, g * G), b = Math.Min(pEnd, g * G + G);
                    bool whole = b - a == G;
                    float* o = whole ? d + g * G : tmp;
                    long oStride = whole ? rows : G;
                    if (step == 4) TP.Packed4(pg, xt, j.XStride, n, o, oStride);
                    else if (step == 2) TP.Packed2(pg, xt, j.XStride, n, o, oStride);
                    else TP.Packed1(pg, xt, n, o);
                    if (whole) continue;
                    for (int k = 0; k < step; k++)
                        for (long r = a; r < b; r++) d[k * rows + r] = tmp[k * G + (r - g * G)];
                }
            }
        }
        if (pEnd < r1) RowDrivers.Tiles<TK>(j, pEnd, r1, scratch);
    }
}
