namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// A quantized type's kernel facade in the standard shape (<c>DotTYPE.DotScalar / DotAvx2(vnni) / DotAvx512 /
/// DotNeon</c>), as a struct so <see cref="ScalarRung{T}"/> and friends can wrap any of them into an
/// <see cref="IRowKernel"/> per rung. A type whose rungs take more flags (Q4_0's VBMI, Q6_K's GFNI) has its own
/// row kernels below instead.
/// </summary>
internal unsafe interface IDotKernels
{
    static abstract float DotScalar(byte* w, byte* xq, int n);
    static abstract float DotAvx2(byte* w, byte* xq, int n, bool vnni);
    static abstract float DotAvx512(byte* w, byte* xq, int n);
    static abstract float DotNeon(byte* w, byte* xq, int n);
}

/// <summary>A facade that also has four-token loops on the x64 rungs (<c>Dot4Avx512</c>, <c>Dot4Avx2(vnni)</c>), bit-identical to four one-token calls.</summary>
internal unsafe interface IDot4Kernels : IDotKernels
{
    static abstract void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride);
    static abstract void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni);
}

internal unsafe struct ScalarRung<T> : IRowKernel where T : struct, IDotKernels
{
    public static float Dot(byte* row, byte* x, int n) => T.DotScalar(row, x, n);
}

internal unsafe struct Avx2Rung<T, TVnni> : IRowKernel where T : struct, IDotKernels where TVnni : struct, IIsaFlag
{
    public static float Dot(byte* row, byte* x, int n) => T.DotAvx2(row, x, n, TVnni.Enabled);
}

internal unsafe struct Avx512Rung<T> : IRowKernel where T : struct, IDotKernels
{
    public static float Dot(byte* row, byte* x, int n) => T.DotAvx512(row, x, n);
}

internal unsafe struct NeonRung<T> : IRowKernel where T : struct, IDotKernels
{
    public static float Dot(byte* row, byte* x, int n) => T.DotNeon(row, x, n);
}

internal unsafe struct Avx512Dot4Rung<T> : IFourTokenKernel where T : struct, IDot4Kernels
{
    public static float Dot(byte* row, byte* x, int n) => T.DotAvx512(row, x, n);
    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) => T.Dot4Avx512(row, x, xStride, n, dst, dstStride);
}

internal unsafe struct Avx2Dot4Rung<T, TVnni> : IFourTokenKernel where T : struct, IDot4Kernels where TVnni : struct, IIsaFlag
{
    public static float Dot(byte* row, byte* x, int n) => T.DotAvx2(row, x, n, TVnni.Enabled);
    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) => T.Dot4Avx2(row, x, xStride, n, dst, dstStride, TVnni.Enabled);
}

// ---- float types: rows dotted with the float activations ----

internal unsafe struct F32Rows : IRowKernel
{
    public static float Dot(byte* row, byte* x, int n) => DotF32.Dot((float*)row, (float*)x, n);
}

internal unsafe struct F16Rows : IRowKernel
{
    public static float Dot(byte* row, byte* x, int n) => DotF16.Dot((Half*)row, (float*)x, n);
}

/// <summary>BF16: each row widened to floats once (into the thread's scratch), then dotted per token.</summary>
internal unsafe struct BF16Rows : IRowKernel
{
    public static bool UsesScratch => true;

    public static byte* Prepare(byte* row, int n, float* scratch)
    {
        HalfConvert.BF16ToF32((ushort*)row, scratch, n);
        return (byte*)scratch;
    }

    public static float Dot(byte* row, byte* x, int n) => DotF32.Dot((float*)row, (float*)x, n);
}

// ---- the standard facade shape: one struct per type forwarding to its DotTYPE facade ----

internal unsafe struct Q8_0Kernels : IDotKernels
{
    public static float DotScalar(byte* w, byte* xq, int n) => DotQ8_0.DotScalar(w, xq, n);
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni) => DotQ8_0.DotAvx2(w, xq, n, vnni);
    public static float DotAvx512(byte* w, byte* xq, int n) => DotQ8_0.DotAvx512(w, xq, n, vnni: false);
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ8_0.DotNeon(w, xq, n);
}

/// <summary>Q8_0 on AVX-512 with its four-token loop (<see cref="DotQ8_0.Dot4Avx512"/>); the other rungs run <see cref="Q8_0Kernels"/>.</summary>
internal unsafe struct Q8_0Avx512Dot4 : IFourTokenKernel
{
    public static float Dot(byte* row, byte* x, int n) => DotQ8_0.DotAvx512(row, x, n, vnni: false);
    public static int PreparedFloats(int n) => n / DotQ8_0.BlockSize;
    public static void PrepareToken(byte* x, int n, float* prepared) => DotQ8_0.PrepareScalesAvx512(x, n, prepared);
    public static float DotPrepared(byte* row, byte* x, float* prepared, int n) => DotQ8_0.DotAvx512Prepared(row, x, prepared, n, vnni: false);

    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) => DotQ8_0.Dot4Avx512(row, x, xStride, n, dst, dstStride);
}

/// <summary>
/// Q8_0 on AVX-512 with AVX-VNNI: the stored rows as <see cref="Q8_0Avx512Dot4"/> (the one-token loop with AVX-VNNI's vpdpbusd), and the eight-row GEMM over the
/// repacked copy (<see cref="DotQ8_0.Repack"/>) with <see cref="Q8_0Panel"/> activations (<see cref="PackedDrivers.Tiles{TK}"/>).
/// </summary>
internal unsafe struct Q8_0PackedAvx512 : IPackedGemmKernel
{
    public static float Dot(byte* row, byte* x, int n) => DotQ8_0.DotAvx512(row, x, n, vnni: true);
    public static int PreparedFloats(int n) => n / DotQ8_0.BlockSize;
    public static void PrepareToken(byte* x, int n, float* prepared) => DotQ8_0.PrepareScalesAvx512(x, n, prepared);
    public static float DotPrepared(byte* row, byte* x, float* prepared, int n) => DotQ8_0.DotAvx512Prepared(row, x, prepared, n, vnni: true);
    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) => DotQ8_0.Dot4Avx512(row, x, xStride, n, dst, dstStride);
    public static int PackRows => DotQ8_0.PackRows;
    public static long GroupBytes(int n) => DotQ8_0.PackedBytes(DotQ8_0.PackRows, n);
    public static void Packed4(byte* group, byte* x, long xStride, int n, float* dst, long dstStride) => DotQ8_0.PackedDot4Vnni(group, x, xStride, n, dst, dstStride);
    public static void Packed1(byte* group, byte* x, int n, float* dst) => DotQ8_0.PackedDot1Vnni(group, x, n, dst);
}

/// <summary>
/// Q8_0 on AVX2 (VNNI on or off): the four-token loop on the stored rows (<see cref="DotQ8_0.Dot4Avx2"/>), and the eight-row GEMM over the
/// repacked copy (<see cref="DotQ8_0.Repack"/>) with <see cref="Q8_0Panel"/> activations (<see cref="PackedDrivers.Tiles{TK}"/>).
/// </summary>
internal unsafe struct Q8_0PackedAvx2<TVnni> : IPackedGemmKernel where TVnni : struct, IIsaFlag
{
    public static float Dot(byte* row, byte* x, int n) => DotQ8_0.DotAvx2(row, x, n, TVnni.Enabled);
    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) => DotQ8_0.Dot4Avx2(row, x, xStride, n, dst, dstStride, TVnni.Enabled);
    public static int PackRows => DotQ8_0.PackRows;
    public static long GroupBytes(int n) => DotQ8_0.PackedBytes(DotQ8_0.PackRows, n);
    public static void Packed4(byte* group, byte* x, long xStride, int n, float* dst, long dstStride) => DotQ8_0.PackedDot4Avx2(group, x, xStride, n, dst, dstStride, TVnni.Enabled);
    public static void Packed1(byte* group, byte* x, int n, float* dst) => DotQ8_0.PackedDot1Avx2(group, x, n, dst, TVnni.Enabled);
}

internal unsafe struct Q4_KKernels : IDot4Kernels
{
    public static float DotScalar(byte* w, byte* xq, int n) => DotQ4_K.DotScalar(w, xq, n);
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni) => DotQ4_K.DotAvx2(w, xq, n, vnni);
    public static float DotAvx512(byte* w, byte* xq, int n) => DotQ4_K.DotAvx512(w, xq, n);
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ4_K.DotNeon(w, xq, n);
    public static void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride) => DotQ4_K.Dot4Avx512(w, xq, xqStride, n, dst, dstStride);
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni) => DotQ4_K.Dot4Avx2(w, xq, xqStride, n, dst, dstStride, vnni);
}

internal unsafe struct Q4_1Kernels : IDot4Kernels
{
    public static float DotScalar(byte* w, byte* xq, int n) => DotQ4_1.DotScalar(w, xq, n);
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni) => DotQ4_1.DotAvx2(w, xq, n, vnni);
    public static float DotAvx512(byte* w, byte* xq, int n) => DotQ4_1.DotAvx512(w, xq, n);
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ4_1.DotNeon(w, xq, n);
    public static void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride) => DotQ4_1.Dot4Avx512(w, xq, xqStride, n, dst, dstStride);
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni) => DotQ4_1.Dot4Avx2(w, xq, xqStride, n, dst, dstStride, vnni);
}

internal unsafe struct Q5_0Kernels : IDot4Kernels
{
    public static float DotScalar(byte* w, byte* xq, int n) => DotQ5_0.DotScalar(w, xq, n);
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni) => DotQ5_0.DotAvx2(w, xq, n, vnni);
    public static float DotAvx512(byte* w, byte* xq, int n) => DotQ5_0.DotAvx512(w, xq, n);
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ5_0.DotNeon(w, xq, n);
    public static void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride) => DotQ5_0.Dot4Avx512(w, xq, xqStride, n, dst, dstStride);
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni) => DotQ5_0.Dot4Avx2(w, xq, xqStride, n, dst, dstStride, vnni);
}

internal unsafe struct Q5_1Kernels : IDot4Kernels
{
    public static float DotScalar(byte* w, byte* xq, int n) => DotQ5_1.DotScalar(w, xq, n);
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni) => DotQ5_1.DotAvx2(w, xq, n, vnni);
    public static float DotAvx512(byte* w, byte* xq, int n) => DotQ5_1.DotAvx512(w, xq, n);
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ5_1.DotNeon(w, xq, n);
    public static void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride) => DotQ5_1.Dot4Avx512(w, xq, xqStride, n, dst, dstStride);
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni) => DotQ5_1.Dot4Avx2(w, xq, xqStride, n, dst, dstStride, vnni);
}

internal unsafe struct IQ4_NLKernels : IDot4Kernels
{
    public static float DotScalar(byte* w, byte* xq, int n) => DotIQ4_NL.DotScalar(w, xq, n);
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni) => DotIQ4_NL.DotAvx2(w, xq, n, vnni);
    public static float DotAvx512(byte* w, byte* xq, int n) => DotIQ4_NL.DotAvx512(w, xq, n);
    public static float DotNeon(byte* w, byte* xq, int n) => DotIQ4_NL.DotNeon(w, xq, n);
    public static void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride) => DotIQ4_NL.Dot4Avx512(w, xq, xqStride, n, dst, dstStride);
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni) => DotIQ4_NL.Dot4Avx2(w, xq, xqStride, n, dst, dstStride, vnni);
}

internal unsafe struct Q5_KKernels : IDot4Kernels
{
    public static float DotScalar(byte* w, byte* xq, int n) => DotQ5_K.DotScalar(w, xq, n);
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni) => DotQ5_K.DotAvx2(w, xq, n, vnni);
    public static float DotAvx512(byte* w, byte* xq, int n) => DotQ5_K.DotAvx512(w, xq, n);
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ5_K.DotNeon(w, xq, n);
    public static void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride) => DotQ5_K.Dot4Avx512(w, xq, xqStride, n, dst, dstStride);
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni) => DotQ5_K.Dot4Avx2(w, xq, xqStride, n, dst, dstStride, vnni);
}

internal unsafe struct Q3_KKernels : IDot4Kernels
{
    public static float DotScalar(byte* w, byte* xq, int n) => DotQ3_K.DotScalar(w, xq, n);
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni) => DotQ3_K.DotAvx2(w, xq, n, vnni);
    public static float DotAvx512(byte* w, byte* xq, int n) => DotQ3_K.DotAvx512(w, xq, n);
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ3_K.DotNeon(w, xq, n);
    public static void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride) => DotQ3_K.Dot4Avx512(w, xq, xqStride, n, dst, dstStride);
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni) => DotQ3_K.Dot4Avx2(w, xq, xqStride, n, dst, dstStride, vnni);
}

internal unsafe struct Q2_KKernels : IDot4Kernels
{
    public static float DotScalar(byte* w, byte* xq, int n) => DotQ2_K.DotScalar(w, xq, n);
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni) => DotQ2_K.DotAvx2(w, xq, n, vnni);
    public static float DotAvx512(byte* w, byte* xq, int n) => DotQ2_K.DotAvx512(w, xq, n);
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ2_K.DotNeon(w, xq, n);
    public static void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride) => DotQ2_K.Dot4Avx512(w, xq, xqStride, n, dst, dstStride);
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni) => DotQ2_K.Dot4Avx2(w, xq, xqStride, n, dst, dstStride, vnni);
}

internal unsafe struct IQ4_XSKernels : IDot4Kernels
{
    public static float DotScalar(byte* w, byte* xq, int n) => DotIQ4_XS.DotScalar(w, xq, n);
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni) => DotIQ4_XS.DotAvx2(w, xq, n, vnni);
    public static float DotAvx512(byte* w, byte* xq, int n) => DotIQ4_XS.DotAvx512(w, xq, n);
    public static float DotNeon(byte* w, byte* xq, int n) => DotIQ4_XS.DotNeon(w, xq, n);
    public static void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride) => DotIQ4_XS.Dot4Avx512(w, xq, xqStride, n, dst, dstStride);
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni) => DotIQ4_XS.Dot4Avx2(w, xq, xqStride, n, dst, dstStride, vnni);
}

// ---- Q4_0: VBMI on AVX-512, and the panel activations on x64 ----

internal unsafe struct Q4_0Scalar : IRowKernel
{
    public static float Dot(byte* row, byte* x, int n) => DotQ4_0.DotScalar(row, x, n);
}

internal unsafe struct Q4_0Avx2<TVnni> : IRowKernel where TVnni : struct, IIsaFlag
{
    public static float Dot(byte* row, byte* x, int n) => DotQ4_0.DotAvx2(row, x, n, TVnni.Enabled);
}

internal unsafe struct Q4_0Avx512<TVbmi> : IRowKernel where TVbmi : struct, IIsaFlag
{
    public static float Dot(byte* row, byte* x, int n) => DotQ4_0.DotAvx512(row, x, n, TVbmi.Enabled);
}

internal unsafe struct Q4_0Neon : IRowKernel
{
    public static float Dot(byte* row, byte* x, int n) => DotQ4_0.DotNeon(row, x, n);
}

/// <summary>
/// A Q4_0 panel kernel that also runs the GEMM over the repacked copy (<see cref="DotQ4_0.RepackAvx2"/>,
/// <see cref="DotQ4_0.RepackAvx512"/>, <see cref="DotQ4_0.RepackNeon"/>): one group of rows (eight; 16 on AVX-512) · four tokens' panels,
/// · two, or · one token's panel (<see cref="RowDrivers.Q4_0PackedTiles{TK}"/>).
/// </summary>
internal unsafe interface IPackedQ4_0Kernel : IFourTokenKernel
{
    /// <summary>Rows per group of the kernel's layout.</summary>
    static virtual int PackRows => DotQ4_0.PackRows;

    /// <summary>Bytes per block of a group in the kernel's layout (a group of nb blocks takes nb times this).</summary>
    static abstract int PackedBlockBytes { get; }
    static abstract void Packed4(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride);
    static abstract void Packed2(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride);
    static abstract void Packed1(byte* group, byte* panel, int nb, float* dst);

    /// <summary>Whether the layout has a three-token pass (<see cref="Packed3"/>); without one three tokens take a pair, then one.</summary>
    static virtual bool HasPacked3 => false;
    static virtual void Packed3(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) =>
        throw new NotSupportedException("this layout has no three-token pass");

    /// <summary>
    /// Bytes per block of the float scale panel <see cref="Packed4Scaled"/> takes a group's scales from (made once per row
    /// tile by <see cref="ScalePanel"/>, then read by every four- and eight-token pass over the tile), or 0 where the layout has its
    /// scales in float already (NEON) and the driver never calls them.
    /// </summary>
    static virtual int ScalePanelBlockBytes => 0;
    static virtual void ScalePanel(byte* group, int nb, float* dst) => throw new NotSupportedException("this layout has no scale panel");
    static virtual void Packed4Scaled(byte* group, float* scales, byte* panel, long panelBytes, int nb, float* dst, long dstStride, bool prefetch) =>
        throw new NotSupportedException("this layout has no scale panel");
    /// <summary><see cref="Packed4Scaled"/> for eight tokens (the weight side once per block for all eight).</summary>
    static virtual void Packed8Scaled(byte* group, float* scales, byte* panel, long panelBytes, int nb, float* dst, long dstStride, bool prefetch) =>
        throw new NotSupportedException("this layout has no scale panel");
}

/// <summary>
/// Q4_0 against <see cref="Q8_0Panel"/> activations on AVX2 (VNNI on or off): the one- and four-token panel loops over
/// the stored rows, and the eight-row GEMM over the fp16-scale copy of <see cref="DotQ4_0.RepackAvx2"/> for one, two
/// and four tokens (decode included), and for four and eight tokens with the scales from a tile's float panel
/// (<see cref="DotQ4_0.ScalePanelAvx2"/>, batches of more than four), each token's float steps in the same order in all.
/// </summary>
internal unsafe struct Q4_0PanelAvx2<TVnni> : IPackedQ4_0Kernel where TVnni : struct, IIsaFlag
{
    public static int PackedBlockBytes => DotQ4_0.PackedBlockBytesAvx2;
    public static float Dot(byte* row, byte* x, int n) => DotQ4_0.DotPanelAvx2(row, x, n, TVnni.Enabled);
    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) => DotQ4_0.DotPanel4Avx2(row, x, xStride, n, dst, dstStride, TVnni.Enabled);
    public static void Packed4(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) =>
        DotQ4_0.PackedAvx2<DotQ4_0.Tokens4, TVnni>(group, panel, panelBytes, nb, dst, dstStride);
    public static void Packed2(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) =>
        DotQ4_0.PackedAvx2<DotQ4_0.Tokens2, TVnni>(group, panel, panelBytes, nb, dst, dstStride);
    public static void Packed1(byte* group, byte* panel, int nb, float* dst) => DotQ4_0.PackedAvx2<DotQ4_0.Tokens1, TVnni>(group, panel, 0, nb, dst, 0);
    public static int ScalePanelBlockBytes => DotQ4_0.ScalePanelBlockBytesAvx2;
    public static void ScalePanel(byte* group, int nb, float* dst) => DotQ4_0.ScalePanelAvx2Steps(group, nb, dst);
    public static void Packed4Scaled(byte* group, float* scales, byte* panel, long panelBytes, int nb, float* dst, long dstStride, bool prefetch) =>
        DotQ4_0.PackedAvx2Steps<DotQ4_0.Tokens4, TVnni, DotQ4_0.ScalesPanel>(group, scales, panel, panelBytes, nb, dst, dstStride, prefetch);
    public static void Packed8Scaled(byte* group, float* scales, byte* panel, long panelBytes, int nb, float* dst, long dstStride, bool prefetch) =>
        DotQ4_0.PackedAvx2Steps<DotQ4_0.Tokens8, TVnni, DotQ4_0.ScalesPanel>(group, scales, panel, panelBytes, nb, dst, dstStride, prefetch);
}

/// <summary>
/// Q4_0 against <see cref="Q8_0Panel"/> activations on AVX-512 (VBMI on or off; GFNI, used with VBMI only, in the
/// one-token loop over the stored rows); the GEMM over the fp16-scale copy of <see cref="DotQ4_0.RepackAvx512"/>.
/// </summary>
internal unsafe struct Q4_0PanelAvx512<TVbmi, TGfni> : IPackedQ4_0Kernel where TVbmi : struct, IIsaFlag where TGfni : struct, IIsaFlag
{
    public static int PackRows => DotQ4_0.PackRowsAvx512;
    public static int PackedBlockBytes => DotQ4_0.PackedBlockBytesAvx512;
    public static float Dot(byte* row, byte* x, int n) => DotQ4_0.DotPanelAvx512(row, x, n, TVbmi.Enabled, TGfni.Enabled);
    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) => DotQ4_0.DotPanel4Avx512(row, x, xStride, n, dst, dstStride, TVbmi.Enabled);
    public static void Packed4(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) => DotQ4_0.Packed4(group, panel, panelBytes, nb, dst, dstStride);
    public static void Packed2(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) => DotQ4_0.Packed2(group, panel, panelBytes, nb, dst, dstStride);
    public static void Packed1(byte* group, byte* panel, int nb, float* dst) => DotQ4_0.Packed1(group, panel, nb, dst);
    public static bool HasPacked3 => true;
    public static void Packed3(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) => DotQ4_0.Packed3(group, panel, panelBytes, nb, dst, dstStride);
    public static int ScalePanelBlockBytes => DotQ4_0.ScalePanelBlockBytes;
    public static void ScalePanel(byte* group, int nb, float* dst) => DotQ4_0.ScalePanel(group, nb, dst);
    public static void Packed4Scaled(byte* group, float* scales, byte* panel, long panelBytes, int nb, float* dst, long dstStride, bool prefetch) =>
        DotQ4_0.Packed4Scaled(group, scales, panel, panelBytes, nb, dst, dstStride, prefetch);
    public static void Packed8Scaled(byte* group, float* scales, byte* panel, long panelBytes, int nb, float* dst, long dstStride, bool prefetch) =>
        DotQ4_0.Packed8Scaled(group, scales, panel, panelBytes, nb, dst, dstStride, prefetch);
}

// ---- Q6_K: GFNI on both x64 rungs ----

internal unsafe struct Q6_KScalar : IRowKernel
{
    public static float Dot(byte* row, byte* x, int n) => DotQ6_K.DotScalar(row, x, n);
}

internal unsafe struct Q6_KAvx2<TVnni, TGfni> : IFourTokenKernel where TVnni : struct, IIsaFlag where TGfni : struct, IIsaFlag
{
    public static float Dot(byte* row, byte* x, int n) => DotQ6_K.DotAvx2(row, x, n, TVnni.Enabled, TGfni.Enabled);

    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) =>
        DotQ6_K.Dot4Avx2(row, x, xStride, n, dst, dstStride, TVnni.Enabled, TGfni.Enabled);
}

internal unsafe struct Q6_KAvx512<TGfni> : IFourTokenKernel where TGfni : struct, IIsaFlag
{
    public static float Dot(byte* row, byte* x, int n) => DotQ6_K.DotAvx512(row, x, n, TGfni.Enabled);

    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) =>
        DotQ6_K.Dot4Avx512(row, x, xStride, n, dst, dstStride, TGfni.Enabled);
}

internal unsafe struct Q6_KNeon : IRowKernel
{
    public static float Dot(byte* row, byte* x, int n) => DotQ6_K.DotNeon(row, x, n);
}

// ---- NEON four-token loops (prefill), sdot or the widening pair fixed per instantiation ----

/// <summary>A facade with a four-token NEON loop (<c>Dot4Neon(dp)</c>), bit-identical to four one-token <c>DotNeon</c> calls with the same dot-product choice.</summary>
internal unsafe interface INeonDot4Kernels
{
    static abstract float DotNeon(byte* w, byte* xq, int n);
    static abstract void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp);
}

internal unsafe struct NeonDot4Rung<T, TDp> : IFourTokenKernel where T : struct, INeonDot4Kernels where TDp : struct, IIsaFlag
{
    public static float Dot(byte* row, byte* x, int n) => T.DotNeon(row, x, n);
    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) => T.Dot4Neon(row, x, xStride, n, dst, dstStride, TDp.Enabled);
}

internal unsafe struct Q6_KNeonKernels : INeonDot4Kernels
{
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ6_K.DotNeon(w, xq, n);
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp) => DotQ6_K.Dot4Neon(w, xq, xqStride, n, dst, dstStride, dp);
}

/// <summary>
/// Q8_0 on NEON (sdot or the widening pair, <typeparamref name="TDp"/>): the four-token loop on the stored rows, and the
/// eight-row GEMM over the NEON-repacked copy (<see cref="DotQ8_0.RepackNeon"/>) with <see cref="Q8_0Panel"/> activations
/// (<see cref="PackedDrivers.Tiles{TK}"/>).
/// </summary>
internal unsafe struct Q8_0NeonPacked<TDp> : IPackedGemmKernel where TDp : struct, IIsaFlag
{
    public static float Dot(byte* row, byte* x, int n) => DotQ8_0.DotNeon(row, x, n);
    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) => DotQ8_0.Dot4Neon(row, x, xStride, n, dst, dstStride, TDp.Enabled);
    public static int PackRows => DotQ8_0.PackRows;
    public static long GroupBytes(int n) => DotQ8_0.PackedBytesNeon(DotQ8_0.PackRows, n);
    public static void Packed4(byte* group, byte* x, long xStride, int n, float* dst, long dstStride) => DotQ8_0.PackedDot4Neon(group, x, xStride, n, dst, dstStride, TDp.Enabled);
    public static void Packed1(byte* group, byte* x, int n, float* dst) => DotQ8_0.PackedDot1Neon(group, x, n, dst, TDp.Enabled);
}

internal unsafe struct Q4_KNeonKernels : INeonDot4Kernels
{
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ4_K.DotNeon(w, xq, n);
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp) => DotQ4_K.Dot4Neon(w, xq, xqStride, n, dst, dstStride, dp);
}

internal unsafe struct Q5_KNeonKernels : INeonDot4Kernels
{
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ5_K.DotNeon(w, xq, n);
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp) => DotQ5_K.Dot4Neon(w, xq, xqStride, n, dst, dstStride, dp);
}

internal unsafe struct Q5_0NeonKernels : INeonDot4Kernels
{
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ5_0.DotNeon(w, xq, n);
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp) => DotQ5_0.Dot4Neon(w, xq, xqStride, n, dst, dstStride, dp);
}

internal unsafe struct IQ4_NLNeonKernels : INeonDot4Kernels
{
    public static float DotNeon(byte* w, byte* xq, int n) => DotIQ4_NL.DotNeon(w, xq, n);
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp) => DotIQ4_NL.Dot4Neon(w, xq, xqStride, n, dst, dstStride, dp);
}

internal unsafe struct Q4_1NeonKernels : INeonDot4Kernels
{
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ4_1.DotNeon(w, xq, n);
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp) => DotQ4_1.Dot4Neon(w, xq, xqStride, n, dst, dstStride, dp);
}

internal unsafe struct Q5_1NeonKernels : INeonDot4Kernels
{
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ5_1.DotNeon(w, xq, n);
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp) => DotQ5_1.Dot4Neon(w, xq, xqStride, n, dst, dstStride, dp);
}

internal unsafe struct Q3_KNeonKernels : INeonDot4Kernels
{
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ3_K.DotNeon(w, xq, n);
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp) => DotQ3_K.Dot4Neon(w, xq, xqStride, n, dst, dstStride, dp);
}

internal unsafe struct Q2_KNeonKernels : INeonDot4Kernels
{
    public static float DotNeon(byte* w, byte* xq, int n) => DotQ2_K.DotNeon(w, xq, n);
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp) => DotQ2_K.Dot4Neon(w, xq, xqStride, n, dst, dstStride, dp);
}

internal unsafe struct IQ4_XSNeonKernels : INeonDot4Kernels
{
    public static float DotNeon(byte* w, byte* xq, int n) => DotIQ4_XS.DotNeon(w, xq, n);
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp) => DotIQ4_XS.Dot4Neon(w, xq, xqStride, n, dst, dstStride, dp);
}

/// <summary>
/// Q4_0 on NEON (sdot or the widening pair, <typeparamref name="TDp"/>): the four-token loop on the stored rows and the
/// eight-row GEMM over the NEON-repacked copy (<see cref="DotQ4_0.RepackNeon"/>) with <see cref="Q8_0Panel"/> activations
/// (<see cref="RowDrivers.Q4_0PackedTiles{TK}"/>, <see cref="RowJob.PackedX"/>), one token (decode) included. One, two and four tokens run the same
/// per-token arithmetic, so a token's result does not depend on its batch.
/// </summary>
internal unsafe struct Q4_0NeonPacked<TDp> : IPackedQ4_0Kernel where TDp : struct, IIsaFlag
{
    public static int PackedBlockBytes => DotQ4_0.PackedBlockBytes;
    public static float Dot(byte* row, byte* x, int n) => DotQ4_0.DotNeon(row, x, n);
    public static void Dot4(byte* row, byte* x, long xStride, int n, float* dst, long dstStride) => DotQ4_0.Dot4Neon(row, x, xStride, n, dst, dstStride, TDp.Enabled);
    public static void Packed4(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) => DotQ4_0.PackedNeon4<TDp>(group, panel, panelBytes, nb, dst, dstStride);
    public static void Packed1(byte* group, byte* panel, int nb, float* dst) => DotQ4_0.PackedNeon1<TDp>(group, panel, nb, dst);

    public static void Packed2(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) => DotQ4_0.PackedNeon2<TDp>(group, panel, panelBytes, nb, dst, dstStride);
}
