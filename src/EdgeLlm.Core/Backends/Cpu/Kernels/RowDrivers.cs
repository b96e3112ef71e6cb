namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One matmul call as the row drivers see it: weight row r at <see cref="W"/> + r·<see cref="RowBytes"/>, the
/// activations of token t at <see cref="X"/> + t·<see cref="XStride"/> (floats for the float types, else the
/// quantized blocks or panel the type's kernels take), dst[t·<see cref="Rows"/> + r].
/// </summary>
internal unsafe struct RowJob
{
    public byte* W;
    public long RowBytes;
    public long Rows;
    public int N;
    public byte* X;
    public long XStride;
    public float* Dst;
    public int NTokens;
    /// <summary>The weights repacked for the GEMM (<see cref="CpuKernelRow.Repack"/>: whole groups of <see cref="CpuKernelRow.PackRows"/> rows), or null.</summary>
    public byte* Packed;
    /// <summary>The activations a repacked GEMM takes when they differ from <see cref="X"/> (Q8_0: the <see cref="Q8_0Panel"/>), or null.</summary>
    public byte* PackedX;
    public long PackedXStride;
}

/// <summary>
/// A weight type's one-row, one-token kernel on one rung with its ISA flags fixed (a struct, so each instantiation of
/// <see cref="RowDrivers"/> calls it directly: nothing is dispatched per row or block).
/// </summary>
internal unsafe interface IRowKernel
{
    /// <summary>Row <paramref name="row"/> · the activations of one token, <paramref name="n"/> values.</summary>
    static abstract float Dot(byte* row, byte* x, int n);

    /// <summary>
    /// What the row driver dots: the row itself, or (BF16) the row widened into the thread's
    /// <paramref name="scratch"/> (<paramref name="n"/> floats) once for all tokens.
    /// </summary>
    static virtual byte* Prepare(byte* row, int n, float* scratch) => row;

    /// <summary>True when <see cref="Prepare"/> writes into the scratch row (the kernel dots the prepared row, not the stored one).</summary>
    static virtual bool UsesScratch => false;

    /// <summary>
    /// Floats a token's activations take once prepared for <see cref="DotPrepared"/> (0, the default: the kernel
    /// prepares nothing). <see cref="RowDrivers.Rows{TK}"/> prepares each token once per call into the thread's
    /// scratch, so the rows do not redo it (Q8_0 on AVX-512: the activation block scales as floats).
    /// </summary>
    static virtual int PreparedFloats(int n) => 0;

    /// <summary>Writes <see cref="PreparedFloats"/>(n) floats of token data to <paramref name="prepared"/>.</summary>
    static virtual void PrepareToken(byte* x, int n, float* prepared) { }

    /// <summary><see cref="Dot"/> with the token's prepared data: the same bits. Only called where <see cref="PreparedFloats"/> is positive.</summary>
    static virtual float DotPrepared(byte* row, byte* x, float* prepared, int n) =>
        throw new NotSupportedException("DotPrepared of a kernel that prepares no token data");
}

/// <summary>A kernel that also dots one row with four tokens at once, unpacking each weight block once for all four.</summary>
internal unsafe interface IFourTokenKernel : IRowKernel
{
    /// <summary>Row · tokens t = 0..3 at <paramref name="x"/> + t·<paramref name="xStride"/>; result t to <paramref name="dst"/>[t·<paramref name="dstStride"/>].</summary>
    static abstract void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride);
}

/// <summary>
/// The two range drivers every weight type runs through, instantiated per (type, rung, flags) by
/// <see cref="KernelTable"/>, which stores a function pointer to the instantiation: <see cref="Rows{TK}"/> reads each
/// row once and dots it with every token while it is in cache; <see cref="Tiles{TK}"/> (types with a four-token
/// kernel) walks tiles of rows small enough to stay in L1/L2, four tokens at a time.
/// </summary>
internal static unsafe class RowDrivers
{
    /// <summary>Rows dotted against each four-token group before moving on, so the row tile stays in L1/L2 (bytes).</summary>
    internal const int RowTileBytes = 32 * 1024;

    /// <summary>Rows [<paramref name="r0"/>, <paramref name="r1"/>), each with every token.</summary>
    public static void Rows<TK>(in RowJob j, long r0, long r1, float* scratch) where TK : struct, IRowKernel
    {
        int n = j.N;
        long rows = j.Rows;
        int pf = TK.PreparedFloats(n);
        // Token data prepared once per call (n floats of scratch hold it for up to n / pf tokens).
        if (pf > 0 && !TK.UsesScratch && scratch != null && (long)pf * j.NTokens <= n)
        {
            for (int t = 0; t < j.NTokens; t++) TK.PrepareToken(j.X + t * j.XStride, n, scratch + t * pf);
            for (long r = r0; r < r1; r++)
            {
                byte* row = j.W + r * j.RowBytes;
                for (int t = 0; t < j.NTokens; t++) j.Dst[t * rows + r] = TK.DotPrepared(row, j.X + t * j.XStride, scratch + t * pf, n);
            }
            return;
        }
        for (long r = r0; r < r1; r++)
        {
            byte* row = TK.Prepare(j.W + r * j.RowBytes, n, scratch);
            for (int t = 0; t < j.NTokens; t++) j.Dst[t * rows + r] = TK.Dot(row, j.X + t * j.XStride, n);
        }
    }

    /// <summary>
    /// Fewer than four tokens: <see cref="Rows{TK}"/>. Else tiles of rows, each dotted with four tokens at a time by
    /// <see cref="IFourTokenKernel.Dot4"/>, the last nTokens mod 4 tokens one by one.
    /// </summary>
    public static void Tiles<TK>(in RowJob j, long r0, long r1, float* scratch) where TK : struct, IFourTokenKernel
    {
        if (j.NTokens < 4)
        {
            Rows<TK>(j, r0, r1, scratch);
            return;
        }
        int n = j.N;
        long rows = j.Rows;
        long tile = Math.Max(4, RowTileBytes / j.RowBytes);
        int full = j.NTokens & ~3;
        for (long ra = r0; ra < r1; ra += tile)
        {
            long rb = Math.Min(r1, ra + tile);
            for (int t = 0; t < full; t += 4)
            {
                byte* xt = j.X + t * j.XStride;
                float* d = j.Dst + t * rows;
                for (long r = ra; r < rb; r++) TK.Dot4(j.W + r * j.RowBytes, xt, j.XStride, n, d + r, rows);
            }
            for (int t = full; t < j.NTokens; t++)
            {
                byte* xt = j.X + t * j.XStride;
                for (long r = ra; r < rb; r++) j.Dst[t * rows + r] = TK.Dot(j.W + r * j.RowBytes, xt, n);
            }
        }
    }

    /// <summary>The most rows of a group of any Q4_0 repacked layout (<see cref="DotQ4_0.PackRowsAvx512"/>).</summary>
    private const int MaxPackRows = DotQ4_0.PackRowsAvx512;

    /// <summary>The largest float scale panel <see cref="Q4_0PackedTiles{TK}"/> puts on a worker's stack.</summary>
    internal const int MaxScalePanelBytes = 64 * 1024;

    /// <summary>
    /// Q4_0 with the repacked copy (<see cref="RowJob.Packed"/>, AVX-512 and AVX2), any number of tokens: the rows of
    /// the whole groups (<see cref="IPackedQ4_0Kernel.PackRows"/>: eight, 16 on AVX-512) go through the group GEMM (<see cref="IPackedQ4_0Kernel.Packed4"/>, four tokens a
    /// step, the last nTokens mod 4 three at a time with <see cref="IPackedQ4_0Kernel.Packed3"/> where the layout has it (AVX-512),
    /// else two with <see cref="IPackedQ4_0Kernel.Packed2"/>, and one with <see cref="IPackedQ4_0Kernel.Packed1"/>: a decode
    /// step of two or three sequences shares each block's unpacking too; every token's sums are formed the same way by
    /// all of them, so a token gets the same bits in a batch of any
    /// size), tiles of groups small enough to stay in L1/L2. A
    /// group cut by the range (a thread's range need not start on a group) is computed whole into a stack buffer and
    /// only its rows in the range are kept, so every row gets the same kernel whatever the split. The rows after the
    /// last whole group run <see cref="Rows{TK}"/> (the one-token loop for every token, as alone); every call without
    /// the copy runs <see cref="Tiles{TK}"/>. On AVX-512 and AVX2 a batch of more than four tokens takes each tile's fp16 scales
    /// from a float panel converted once per tile (<see cref="IPackedQ4_0Kernel.ScalePanel"/>, same bits) and runs eight
    /// tokens a pass while eight are left (<see cref="IPackedQ4_0Kernel.Packed8Scaled"/>), then four, three, two, one.
    /// </summary>
    public static void Q4_0PackedTiles<TK>(in RowJob j, long r0, long r1, float* scratch) where TK : struct, IPackedQ4_0Kernel
    {
        int G = TK.PackRows;
        long packedRows = j.Rows / G * G;
        if (j.Packed == null)
        {
            Tiles<TK>(j, r0, r1, scratch);
            return;
        }
        if (r0 >= packedRows)
        {
            Rows<TK>(j, r0, r1, scratch);
            return;
        }
        long pEnd = Math.Min(r1, packedRows);
        int n = j.N, nb = n / DotQ4_0.BlockSize;
        long rows = j.Rows;
        long groupBytes = (long)nb * TK.PackedBlockBytes;
        long tile = Math.Max(1, RowTileBytes / groupBytes);
        float* tmp = stackalloc float[8 * MaxPackRows];
        // Where the layout keeps fp16 scales (AVX-512, AVX2) and a tile gets more than one pass, its scales are
        // converted once per tile into a float panel on the stack (at most ~14 KiB, or one group's n·2 bytes; a group
        // wider than MaxScalePanelBytes keeps converting per pass).
        long panelGroupBytes = (long)nb * TK.ScalePanelBlockBytes;
        bool scalePanel = panelGroupBytes > 0 && j.NTokens > 4 && panelGroupBytes <= MaxScalePanelBytes;
        int panelFloats = scalePanel ? (int)(Math.Min(tile, Math.Max(1, MaxScalePanelBytes / panelGroupBytes)) * panelGroupBytes / sizeof(float)) : 0;
        float* sp = stackalloc float[panelFloats];
        if (scalePanel) tile = panelFloats * sizeof(float) / panelGroupBytes;
        // The GEMM's activations: the panel the matmul made for it where they differ from X (NEON), else X (x64's panel).
        byte* px = j.PackedX != null ? j.PackedX : j.X;
        long pxStride = j.PackedX != null ? j.PackedXStride : j.XStride;
        for (long ga = r0 / G, gEnd = (pEnd + G - 1) / G; ga < gEnd; ga += tile)
        {
            long gb = Math.Min(gEnd, ga + tile);
            if (scalePanel)
                for (long g = ga; g < gb; g++)
                    TK.ScalePanel(j.Packed + g * groupBytes, nb, sp + (g - ga) * (panelGroupBytes / sizeof(float)));
            for (int t = 0, step; t < j.NTokens; t += step)
            {
                int left = j.NTokens - t;
                step = left >= 8 && scalePanel ? 8 : left >= 4 ? 4 : left == 3 && TK.HasPacked3 ? 3 : left >= 2 ? 2 : 1;
                byte* xt = px + t * pxStride;
                float* d = j.Dst + t * rows;
                for (long g = ga; g < gb; g++)
                {
                    byte* pg = j.Packed + g * groupBytes;
                    long a = Math.Max(r0, g * G), b = Math.Min(pEnd, g * G + G);
                    bool whole = b - a == G;
                    float* o = whole ? d + g * G : tmp;
                    long oStride = whole ? rows : G;
                    if (step == 8)
                        TK.Packed8Scaled(pg, sp + (g - ga) * (panelGroupBytes / sizeof(float)), xt, pxStride, nb, o, oStride, t == 0);
                    else if (step == 4 && scalePanel)
                        TK.Packed4Scaled(pg, sp + (g - ga) * (panelGroupBytes / sizeof(float)), xt, pxStride, nb, o, oStride, t == 0);
                    else if (step == 4) TK.Packed4(pg, xt, pxStride, nb, o, oStride);
                    else if (step == 3) TK.Packed3(pg, xt, pxStride, nb, o, oStride);
                    else if (step == 2) TK.Packed2(pg, xt, pxStride, nb, o, oStride);
                    else TK.Packed1(pg, xt, nb, o);
                    if (whole) continue;
                    for (int k = 0; k < step; k++)
                        for (long r = a; r < b; r++) d[k * rows + r] = tmp[k * G + (r - g * G)];
                }
            }
        }
        // The rows after the last whole group one token at a time (fewer than a group): the four-token loop sums in
        // another order, and a token must get the same bits in a batch of any size as alone.
        if (pEnd < r1) Rows<TK>(j, pEnd, r1, scratch);
    }

    /// <summary>
    /// One row, one token through <typeparamref name="TK"/>, prepared as <see cref="Rows{TK}"/> prepares it (the
    /// table's <c>Dot</c>: tests, tools; a kernel that widens its row gets a scratch row allocated here).
    /// </summary>
    public static float Dot<TK>(byte* row, byte* x, int n) where TK : struct, IRowKernel
    {
        if (!TK.UsesScratch) return TK.Dot(row, x, n);
        var scratch = new float[n];
        fixed (float* s = scratch) return TK.Dot(TK.Prepare(row, n, s), x, n);
    }
}
