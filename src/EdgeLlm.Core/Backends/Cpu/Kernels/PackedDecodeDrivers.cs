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
}

/// <summary>Q4_K's AVX-512 decode loop over <see cref="DotQ4_K.Repack"/>'s copy.</summary>
internal unsafe struct Q4_KPackedAvx512 : IPackedDecodeKernel
{
    public static int PackRows => DotQ4_K.PackRows;
    public static long GroupBytes(int n) => DotQ4_K.PackedGroupBytes(n);
    public static void Packed1(byte* group, byte* x, int n, float* dst) => DotQ4_K.PackedKernel512(group, x, n, dst);
}

/// <summary>Q4_K's AVX2 decode loop over <see cref="DotQ4_K.Repack"/>'s copy, AVX-VNNI as <typeparamref name="TVnni"/>.</summary>
internal unsafe struct Q4_KPackedAvx2<TVnni> : IPackedDecodeKernel where TVnni : struct, IIsaFlag
{
    public static int PackRows => DotQ4_K.PackRows;
    public static long GroupBytes(int n) => DotQ4_K.PackedGroupBytes(n);
    public static void Packed1(byte* group, byte* x, int n, float* dst) => DotQ4_K.PackedKernel256<TVnni>(group, x, n, dst);
}

/// <summary>The range driver of the types whose decode reads a repacked copy while batches read the stored rows.</summary>
internal static unsafe class PackedDecodeDrivers
{
    /// <summary>
    /// With the copy (<see cref="RowJob.Packed"/>) and one to three tokens, the whole groups
    /// in [<paramref name="r0"/>, <paramref name="r1"/>) through <typeparamref name="TP"/>, each token in turn while the
    /// group is in cache; a group cut by the range is computed whole into a stack buffer and only its rows in the range
    /// kept, so a row gets the same kernel whatever the split. The rows after the last whole group, batches of four
    /// tokens or more (the four-token loop shares each block's unpacking) and every call without the copy run
    /// <see cref="RowDrivers.Tiles{TK}"/> on the stored rows.
    /// </summary>
    public static void Tiles<TK, TP>(in RowJob j, long r0, long r1, float* scratch)
        where TK : struct, IFourTokenKernel where TP : struct, IPackedDecodeKernel
    {
        int G = TP.PackRows;
        long packedRows = j.Rows / G * G;
        if (j.Packed == null || j.NTokens >= 4 || r0 >= packedRows)
        {
            RowDrivers.Tiles<TK>(j, r0, r1, scratch);
            return;
        }
        long pEnd = Math.Min(r1, packedRows);
        int n = j.N;
        long rows = j.Rows, groupBytes = TP.GroupBytes(n);
        float* tmp = stackalloc float[TP.PackRows];
        for (long g = r0 / G, gEnd = (pEnd + G - 1) / G; g < gEnd; g++)
        {
            byte* pg = j.Packed + g * groupBytes;
            long a = Math.Max(r0, g * G), b = Math.Min(pEnd, g * G + G);
            for (int t = 0; t < j.NTokens; t++)
            {
                float* d = j.Dst + t * rows;
                if (b - a == G)
                {
                    TP.Packed1(pg, j.X + t * j.XStride, n, d + g * G);
                    continue;
                }
                TP.Packed1(pg, j.X + t * j.XStride, n, tmp);
                for (long r = a; r < b; r++) d[r] = tmp[r - g * G];
            }
        }
        if (pEnd < r1) RowDrivers.Tiles<TK>(j, pEnd, r1, scratch);
    }
}
