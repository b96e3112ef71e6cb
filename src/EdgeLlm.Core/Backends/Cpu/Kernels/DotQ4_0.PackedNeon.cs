using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q4_0 weights repacked for the GEMM on the NEON rung: eight rows interleaved per block so that one 16-byte vector
/// holds four consecutive quant bytes of four rows (one int32 lane per row) and a dot step by selected lane (sdot
/// v.4s, w.16b, x.4b[k]) adds each row's four products into its own lane: no horizontal sums, one activation vector
/// shared by four rows. A group of eight rows takes the same bytes as the x64 repack (<see cref="PackedBlockBytes"/>
/// per block, 11% more than Q4_0): per block <c>f32 d[8]</c> (the rows' scales, widened from fp16), then for the row
/// halves h = 0, 1 and k = 0..3, 16 bytes holding qs bytes 4k..4k+3 of rows 4h, 4h+1, 4h+2, 4h+3, each stored xor
/// 0x88. With the Q4_0 nibble order (byte j: weight j low, weight j + 16 high) a byte b = qs ^ 0x88 gives
/// b &lt;&lt; 4 = 16·(q_lo − 8) and b &amp; 0xF0 = 16·(q_hi − 8) as signed bytes (two instructions for 32 weights), which
/// meet activation quads k of bytes 0..15 and of bytes 16..31. Per block, row half and token: eight sdot (exact int32:
/// |16·8·128·32| &lt; 2^20), int → float, and one FMA with d_w·d_x/16 (the factor 16 folded into one of the two scales, a
/// power of two: exact, so either way gives the same float). Without the dot-product extension the values are shifted back (q − 8) and the products
/// accumulate in int16 lanes (smlal, smlal2 against the quad broadcast; ≤ 8·8·128 per lane), widened pairwise (saddlp)
/// and pair-added (addp) to the same four row sums, scaled by d_w·d_x: the same integers and float products, so both
/// paths give the same bits. The activations come as the <see cref="Q8_0Panel"/> (quants back to back, the block scales
/// converted to float once per token and matmul), so no group converts a token's fp16 scales again. Every token runs the same steps
/// whether it comes with three others (<see cref="PackedNeon4{TDp}"/>), one (<see cref="PackedNeon2{TDp}"/>) or alone
/// (<see cref="PackedNeon1{TDp}"/>), so a token's result does not depend on its batch; on NEON a lone token (decode) takes
/// this path too where the copy exists (<see cref="CpuKernelRow.PackedOneToken"/>), so decode and batches run the same
/// kernel. The result differs from the one-row loops' by float rounding only (the per-block products are summed in another order).
/// </summary>
public static unsafe partial class DotQ4_0
{
    /// <summary>
    /// Repacks the whole groups of eight rows of a Q4_0 matrix (<paramref name="rows"/> rows of <paramref name="n"/>
    /// values, <paramref name="rowBytes"/> apart) into <paramref name="dst"/> (<see cref="PackedBytes"/> bytes) in the NEON layout.
    /// Per block and row half: the four rows' 16 quant bytes loaded as four vectors, xor 0x88, and transposed as a 4×4
    /// matrix of 32-bit quads (trn1/trn2 on words, then on doublewords) into the four stored vectors; the eight fp16
    /// scales gathered into two vectors and converted by <see cref="Fp16.ToFloatMul"/> (exact, as <see cref="Fp16.Read"/>).
    /// </summary>
    public static void RepackNeon(byte* src, long rowBytes, long rows, int n, byte* dst)
    {
        if (!AdvSimd.Arm64.IsSupported) KernelRung.ThrowUnsupported(nameof(RepackNeon), Rung.Neon);
        int nb = Blocks(n);
        Vector128<byte> flip = Vector128.Create((byte)0x88);
        for (long g = 0; g < rows / PackRows; g++)
        {
            byte* pb = dst + g * nb * (long)PackedBlockBytes;
            byte* r0 = src + g * PackRows * rowBytes;
            for (int b = 0; b < nb; b++, pb += PackedBlockBytes, r0 += BlockBytes)
            {
                byte* r4 = r0 + 4 * rowBytes;
                AdvSimd.Store((float*)pb, RowScales4(r0, rowBytes));
                AdvSimd.Store((float*)pb + 4, RowScales4(r4, rowBytes));
                RepackHalf(r0, rowBytes, pb + 32, flip);
                RepackHalf(r4, rowBytes, pb + 96, flip);
            }
        }
    }

    /// <summary>The fp16 scales of one block of four rows (at <paramref name="r"/> + k·<paramref name="rowBytes"/>) as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> RowScales4(byte* r, long rowBytes) => Fp16.ToFloatMul(Vector128.Create(
        (uint)Unsafe.ReadUnaligned<ushort>(r), (uint)Unsafe.ReadUnaligned<ushort>(r + rowBytes),
        (uint)Unsafe.ReadUnaligned<ushort>(r + 2 * rowBytes), (uint)Unsafe.ReadUnaligned<ushort>(r + 3 * rowBytes)));

    /// <summary>Four rows' quant bytes of one block (rows at <paramref name="r"/> + k·<paramref name="rowBytes"/>) into the four stored vectors of a row half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RepackHalf(byte* r, long rowBytes, byte* dst, Vector128<byte> flip)
    {
        Vector128<uint> q0 = AdvSimd.Xor(AdvSimd.LoadVector128(r + 2), flip).AsUInt32();
        Vector128<uint> q1 = AdvSimd.Xor(AdvSimd.LoadVector128(r + rowBytes + 2), flip).AsUInt32();
        Vector128<uint> q2 = AdvSimd.Xor(AdvSimd.LoadVector128(r + 2 * rowBytes + 2), flip).AsUInt32();
        Vector128<uint> q3 = AdvSimd.Xor(AdvSimd.LoadVector128(r + 3 * rowBytes + 2), flip).AsUInt32();
        // t0 = (r0 k0, r1 k0, r0 k2, r1 k2), t1 = (r0 k1, r1 k1, r0 k3, r1 k3); t2, t3 the same of rows 2 and 3.
        Vector128<ulong> t0 = AdvSimd.Arm64.TransposeEven(q0, q1).AsUInt64(), t1 = AdvSimd.Arm64.TransposeOdd(q0, q1).AsUInt64();
        Vector128<ulong> t2 = AdvSimd.Arm64.TransposeEven(q2, q3).AsUInt64(), t3 = AdvSimd.Arm64.TransposeOdd(q2, q3).AsUInt64();
        AdvSimd.Store((ulong*)dst, AdvSimd.Arm64.TransposeEven(t0, t2));
        AdvSimd.Store((ulong*)(dst + 16), AdvSimd.Arm64.TransposeEven(t1, t3));
        AdvSimd.Store((ulong*)(dst + 32), AdvSimd.Arm64.TransposeOdd(t0, t2));
        AdvSimd.Store((ulong*)(dst + 48), AdvSimd.Arm64.TransposeOdd(t1, t3));
    }

    /// <summary>Whether the NEON repacked GEMM can run here with <paramref name="dp"/> (sdot needs the extension).</summary>
    private static void RequirePackedNeon(bool dp) => NeonDot.Require(nameof(DotQ4_0), dp);

    /// <summary>
    /// One NEON-repacked group (eight rows) · four tokens' <see cref="Q8_0Panel"/> activations (<paramref name="panel"/> +
    /// t·<paramref name="panelBytes"/>), sdot when <paramref name="dp"/>: row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].
    /// </summary>
    public static void PackedDot4Neon(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride, bool dp)
    {
        int nb = Blocks(n);
        RequirePackedNeon(dp);
        if (dp) PackedNeon4<DotProdOn>(group, panel, panelBytes, nb, dst, dstStride);
        else PackedNeon4<DotProdOff>(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>One NEON-repacked group (eight rows) · one token's <see cref="Q8_0Panel"/>: row r to <paramref name="dst"/>[r].</summary>
    public static void PackedDot1Neon(byte* group, byte* panel, int n, float* dst, bool dp)
    {
        int nb = Blocks(n);
        RequirePackedNeon(dp);
        if (dp) PackedNeon1<DotProdOn>(group, panel, nb, dst);
        else PackedNeon1<DotProdOff>(group, panel, nb, dst);
    }

    /// <summary>
    /// Four tokens: per block the group's eight d_w (two vectors, divided by 16 once on the sdot path) and the stored
    /// vectors unpacked once for the four tokens; per token and row half one scalar load of its float block scale from the
    /// panel (converted once per token and matmul by <see cref="Q8_0Panel.FromBlocks"/>, not again per group), the
    /// product d_w·d_x by lane and the token's step (<see cref="HalfToken{TDp}"/>).
    /// </summary>
    internal static void PackedNeon4<TDp>(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag
    {
        Vector128<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
        Vector128<byte> hiMask = Vector128.Create((byte)0xF0);
        byte* y0 = panel, y1 = panel + panelBytes, y2 = panel + 2 * panelBytes, y3 = panel + 3 * panelBytes;
        float* c0 = Q8_0Panel.Scales(y0, nb), c1 = Q8_0Panel.Scales(y1, nb), c2 = Q8_0Panel.Scales(y2, nb), c3 = Q8_0Panel.Scales(y3, nb);
        byte* pb = group;
        for (int b = 0; b < nb; b++, pb += PackedBlockBytes, y0 += 32, y1 += 32, y2 += 32, y3 += 32)
        {
            Vector128<float> dLo = WeightScales<TDp>(pb), dHi = WeightScales<TDp>(pb + 16);
            Vector128<float> s0 = Vector128.CreateScalarUnsafe(c0[b]), s1 = Vector128.CreateScalarUnsafe(c1[b]);
            Vector128<float> s2 = Vector128.CreateScalarUnsafe(c2[b]), s3 = Vector128.CreateScalarUnsafe(c3[b]);
            Unpack<TDp>(pb + 32, hiMask, out Vector128<sbyte> l0, out Vector128<sbyte> h0, out Vector128<sbyte> l1, out Vector128<sbyte> h1,
                out Vector128<sbyte> l2, out Vector128<sbyte> h2, out Vector128<sbyte> l3, out Vector128<sbyte> h3);
            a0 = HalfToken<TDp>(a0, l0, h0, l1, h1, l2, h2, l3, h3, Lo(y0), Hi(y0), AdvSimd.MultiplyBySelectedScalar(dLo, s0, 0));
            a1 = HalfToken<TDp>(a1, l0, h0, l1, h1, l2, h2, l3, h3, Lo(y1), Hi(y1), AdvSimd.MultiplyBySelectedScalar(dLo, s1, 0));
            a2 = HalfToken<TDp>(a2, l0, h0, l1, h1, l2, h2, l3, h3, Lo(y2), Hi(y2), AdvSimd.MultiplyBySelectedScalar(dLo, s2, 0));
            a3 = HalfToken<TDp>(a3, l0, h0, l1, h1, l2, h2, l3, h3, Lo(y3), Hi(y3), AdvSimd.MultiplyBySelectedScalar(dLo, s3, 0));
            Unpack<TDp>(pb + 96, hiMask, out l0, out h0, out l1, out h1, out l2, out h2, out l3, out h3);
            b0 = HalfToken<TDp>(b0, l0, h0, l1, h1, l2, h2, l3, h3, Lo(y0), Hi(y0), AdvSimd.MultiplyBySelectedScalar(dHi, s0, 0));
            b1 = HalfToken<TDp>(b1, l0, h0, l1, h1, l2, h2, l3, h3, Lo(y1), Hi(y1), AdvSimd.MultiplyBySelectedScalar(dHi, s1, 0));
            b2 = HalfToken<TDp>(b2, l0, h0, l1, h1, l2, h2, l3, h3, Lo(y2), Hi(y2), AdvSimd.MultiplyBySelectedScalar(dHi, s2, 0));
            b3 = HalfToken<TDp>(b3, l0, h0, l1, h1, l2, h2, l3, h3, Lo(y3), Hi(y3), AdvSimd.MultiplyBySelectedScalar(dHi, s3, 0));
        }
        a0.Store(dst);
        b0.Store(dst + 4);
        a1.Store(dst + dstStride);
        b1.Store(dst + dstStride + 4);
        a2.Store(dst + 2 * dstStride);
        b2.Store(dst + 2 * dstStride + 4);
        a3.Store(dst + 3 * dstStride);
        b3.Store(dst + 3 * dstStride + 4);
    }

    /// <summary>
    /// One token (decode, and the last nTokens mod 4 of a batch): per block the activation halves loaded once for both
    /// row halves, the eight rows' d_w (two vectors) times the token's float scale by lane, the stored vectors unpacked and
    /// dotted by lane (the steps of <see cref="PackedNeon4{TDp}"/>, so a token gets the same bits alone or in a batch).
    /// </summary>
    internal static void PackedNeon1<TDp>(byte* group, byte* panel, int nb, float* dst) where TDp : struct, IIsaFlag
    {
        Vector128<float> a = default, c = default;
        Vector128<byte> hiMask = Vector128.Create((byte)0xF0);
        float* sc = Q8_0Panel.Scales(panel, nb);
        byte* pb = group, y = panel;
        int b = 0;
        for (; b + 4 <= nb; b += 4, pb += 4 * PackedBlockBytes, y += 128)
        {
            Vector128<float> s = TokenScales4<TDp>(sc + b);
            Block1<TDp>(ref a, ref c, pb, y, s, 0, hiMask);
            Block1<TDp>(ref a, ref c, pb + PackedBlockBytes, y + 32, s, 1, hiMask);
            Block1<TDp>(ref a, ref c, pb + 2 * PackedBlockBytes, y + 64, s, 2, hiMask);
            Block1<TDp>(ref a, ref c, pb + 3 * PackedBlockBytes, y + 96, s, 3, hiMask);
        }
        for (; b < nb; b++, pb += PackedBlockBytes, y += 32)
            Block1<TDp>(ref a, ref c, pb, y, TokenScale<TDp>(sc + b), 0, hiMask);
        a.Store(dst);
        c.Store(dst + 4);
    }

    /// <summary>
    /// Two tokens (<paramref name="panel"/>, <paramref name="panel"/> + <paramref name="panelBytes"/>: a decode step of two
    /// sequences, or a batch's last two): the weights unpacked once for both, each token's steps those of
    /// <see cref="PackedNeon1{TDp}"/> (same bits as alone); token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].
    /// </summary>
    internal static void PackedNeon2<TDp>(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag
    {
        Vector128<float> a0 = default, b0 = default, a1 = default, b1 = default;
        Vector128<byte> hiMask = Vector128.Create((byte)0xF0);
        byte* pb = group, y0 = panel, y1 = panel + panelBytes;
        float* c0 = Q8_0Panel.Scales(y0, nb), c1 = Q8_0Panel.Scales(y1, nb);
        int b = 0;
        for (; b + 4 <= nb; b += 4, pb += 4 * PackedBlockBytes, y0 += 128, y1 += 128)
        {
            Vector128<float> s0 = TokenScales4<TDp>(c0 + b), s1 = TokenScales4<TDp>(c1 + b);
            Block2<TDp>(ref a0, ref b0, ref a1, ref b1, pb, y0, y1, s0, s1, 0, hiMask);
            Block2<TDp>(ref a0, ref b0, ref a1, ref b1, pb + PackedBlockBytes, y0 + 32, y1 + 32, s0, s1, 1, hiMask);
            Block2<TDp>(ref a0, ref b0, ref a1, ref b1, pb + 2 * PackedBlockBytes, y0 + 64, y1 + 64, s0, s1, 2, hiMask);
            Block2<TDp>(ref a0, ref b0, ref a1, ref b1, pb + 3 * PackedBlockBytes, y0 + 96, y1 + 96, s0, s1, 3, hiMask);
        }
        for (; b < nb; b++, pb += PackedBlockBytes, y0 += 32, y1 += 32)
            Block2<TDp>(ref a0, ref b0, ref a1, ref b1, pb, y0, y1, TokenScale<TDp>(c0 + b), TokenScale<TDp>(c1 + b), 0, hiMask);
        a0.Store(dst);
        b0.Store(dst + 4);
        a1.Store(dst + dstStride);
        b1.Store(dst + dstStride + 4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block2<TDp>(ref Vector128<float> a0, ref Vector128<float> b0, ref Vector128<float> a1, ref Vector128<float> b1, byte* pb,
        byte* y0, byte* y1, Vector128<float> s0, Vector128<float> s1, [ConstantExpected(Max = (byte)3)] byte lane, Vector128<byte> hiMask)
        where TDp : struct, IIsaFlag
    {
        Vector128<float> dLo = AdvSimd.LoadVector128((float*)pb), dHi = AdvSimd.LoadVector128((float*)pb + 4);
        Vector128<sbyte> x00 = Lo(y0), x01 = Hi(y0), x10 = Lo(y1), x11 = Hi(y1);
        Unpack<TDp>(pb + 32, hiMask, out Vector128<sbyte> l0, out Vector128<sbyte> h0, out Vector128<sbyte> l1, out Vector128<sbyte> h1,
            out Vector128<sbyte> l2, out Vector128<sbyte> h2, out Vector128<sbyte> l3, out Vector128<sbyte> h3);
        a0 = HalfToken<TDp>(a0, l0, h0, l1, h1, l2, h2, l3, h3, x00, x01, AdvSimd.MultiplyBySelectedScalar(dLo, s0, lane));
        a1 = HalfToken<TDp>(a1, l0, h0, l1, h1, l2, h2, l3, h3, x10, x11, AdvSimd.MultiplyBySelectedScalar(dLo, s1, lane));
        Unpack<TDp>(pb + 96, hiMask, out l0, out h0, out l1, out h1, out l2, out h2, out l3, out h3);
        b0 = HalfToken<TDp>(b0, l0, h0, l1, h1, l2, h2, l3, h3, x00, x01, AdvSimd.MultiplyBySelectedScalar(dHi, s0, lane));
        b1 = HalfToken<TDp>(b1, l0, h0, l1, h1, l2, h2, l3, h3, x10, x11, AdvSimd.MultiplyBySelectedScalar(dHi, s1, lane));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block1<TDp>(ref Vector128<float> a, ref Vector128<float> c, byte* pb, byte* y, Vector128<float> s,
        [ConstantExpected(Max = (byte)3)] byte lane, Vector128<byte> hiMask) where TDp : struct, IIsaFlag
    {
        Vector128<float> dLo = AdvSimd.LoadVector128((float*)pb), dHi = AdvSimd.LoadVector128((float*)pb + 4);
        Vector128<sbyte> x0 = Lo(y), x1 = Hi(y);
        Unpack<TDp>(pb + 32, hiMask, out Vector128<sbyte> l0, out Vector128<sbyte> h0, out Vector128<sbyte> l1, out Vector128<sbyte> h1,
            out Vector128<sbyte> l2, out Vector128<sbyte> h2, out Vector128<sbyte> l3, out Vector128<sbyte> h3);
        a = HalfToken<TDp>(a, l0, h0, l1, h1, l2, h2, l3, h3, x0, x1, AdvSimd.MultiplyBySelectedScalar(dLo, s, lane));
        Unpack<TDp>(pb + 96, hiMask, out l0, out h0, out l1, out h1, out l2, out h2, out l3, out h3);
        c = HalfToken<TDp>(c, l0, h0, l1, h1, l2, h2, l3, h3, x0, x1, AdvSimd.MultiplyBySelectedScalar(dHi, s, lane));
    }

    /// <summary>Panel quants 0..15 of the block at <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Lo(byte* y) => AdvSimd.LoadVector128((sbyte*)y);

    /// <summary>Panel quants 16..31 of the block at <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Hi(byte* y) => AdvSimd.LoadVector128((sbyte*)(y + 16));

    /// <summary>
    /// Four rows' d_w of a block (at <paramref name="p"/>), divided by 16 on the sdot path (whose weights are 16·(q − 8)):
    /// exact (a power of two; the smallest fp16 subnormal over 16 is still a normal float), so (d_w/16)·d_x is the same
    /// float as d_w·(d_x/16), which <see cref="TokenScale{TDp}"/> gives the one- and two-token kernels.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> WeightScales<TDp>(byte* p) where TDp : struct, IIsaFlag
    {
        Vector128<float> d = AdvSimd.LoadVector128((float*)p);
        return TDp.Enabled ? d * Vector128.Create(0.0625f) : d;
    }

    /// <summary>
    /// The token's float scales d_x of four blocks (from the panel: one load), divided by 16 on the sdot path: exact, a
    /// power of two; lane k equals <see cref="TokenScale{TDp}"/> of block k.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> TokenScales4<TDp>(float* p) where TDp : struct, IIsaFlag
    {
        Vector128<float> d = AdvSimd.LoadVector128(p);
        return TDp.Enabled ? d * Vector128.Create(0.0625f) : d;
    }

    /// <summary>The token's float block scale d_x (from the panel) in lane 0, divided by 16 on the sdot path: exact, a power of two.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> TokenScale<TDp>(float* p) where TDp : struct, IIsaFlag =>
        Vector128.CreateScalarUnsafe(TDp.Enabled ? *p * 0.0625f : *p);

    /// <summary>
    /// A row half's 64 stored bytes (four vectors, quads k = 0..3 of four rows) into the low-nibble (<c>l</c>k) and
    /// high-nibble (<c>h</c>k) weights: 16·(q − 8) for sdot, q − 8 for the widening path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Unpack<TDp>(byte* p, Vector128<byte> hiMask, out Vector128<sbyte> l0, out Vector128<sbyte> h0, out Vector128<sbyte> l1, out Vector128<sbyte> h1,
        out Vector128<sbyte> l2, out Vector128<sbyte> h2, out Vector128<sbyte> l3, out Vector128<sbyte> h3) where TDp : struct, IIsaFlag
    {
        Unpack1<TDp>(AdvSimd.LoadVector128(p), hiMask, out l0, out h0);
        Unpack1<TDp>(AdvSimd.LoadVector128(p + 16), hiMask, out l1, out h1);
        Unpack1<TDp>(AdvSimd.LoadVector128(p + 32), hiMask, out l2, out h2);
        Unpack1<TDp>(AdvSimd.LoadVector128(p + 48), hiMask, out l3, out h3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Unpack1<TDp>(Vector128<byte> v, Vector128<byte> hiMask, out Vector128<sbyte> lo, out Vector128<sbyte> hi) where TDp : struct, IIsaFlag
    {
        Vector128<sbyte> l16 = AdvSimd.ShiftLeftLogical(v, 4).AsSByte();
        if (TDp.Enabled)
        {
            lo = l16;
            hi = AdvSimd.And(v, hiMask).AsSByte();
        }
        else
        {
            lo = AdvSimd.ShiftRightArithmetic(l16, 4);
            hi = AdvSimd.ShiftRightArithmetic(v.AsSByte(), 4);
        }
    }

    /// <summary>
    /// One token's share of a block for one row half: the four rows' Σ w·x (exact int32) → float, times
    /// <paramref name="ds"/> (the rows' d_w times the token's scale), added to <paramref name="acc"/> (lane r: row r of the half).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> HalfToken<TDp>(Vector128<float> acc, Vector128<sbyte> l0, Vector128<sbyte> h0, Vector128<sbyte> l1, Vector128<sbyte> h1,
        Vector128<sbyte> l2, Vector128<sbyte> h2, Vector128<sbyte> l3, Vector128<sbyte> h3, Vector128<sbyte> x0, Vector128<sbyte> x1, Vector128<float> ds) where TDp : struct, IIsaFlag
    {
        Vector128<int> isum;
        if (TDp.Enabled)
        {
            isum = Dp.DotProductBySelectedQuadruplet(Vector128<int>.Zero, l0, x0, 0);
            isum = Dp.DotProductBySelectedQuadruplet(isum, h0, x1, 0);
            isum = Dp.DotProductBySelectedQuadruplet(isum, l1, x0, 1);
            isum = Dp.DotProductBySelectedQuadruplet(isum, h1, x1, 1);
            isum = Dp.DotProductBySelectedQuadruplet(isum, l2, x0, 2);
            isum = Dp.DotProductBySelectedQuadruplet(isum, h2, x1, 2);
            isum = Dp.DotProductBySelectedQuadruplet(isum, l3, x0, 3);
            isum = Dp.DotProductBySelectedQuadruplet(isum, h3, x1, 3);
        }
        else
        {
            // Lanes of the int16 sums: rows 0-1 (p) and 2-3 (q), four quad positions each; eight products a lane.
            Vector128<short> p = Vector128<short>.Zero, q = Vector128<short>.Zero;
            Quad(ref p, ref q, l0, AdvSimd.DuplicateSelectedScalarToVector128(x0.AsInt32(), 0).AsSByte());
            Quad(ref p, ref q, h0, AdvSimd.DuplicateSelectedScalarToVector128(x1.AsInt32(), 0).AsSByte());
            Quad(ref p, ref q, l1, AdvSimd.DuplicateSelectedScalarToVector128(x0.AsInt32(), 1).AsSByte());
            Quad(ref p, ref q, h1, AdvSimd.DuplicateSelectedScalarToVector128(x1.AsInt32(), 1).AsSByte());
            Quad(ref p, ref q, l2, AdvSimd.DuplicateSelectedScalarToVector128(x0.AsInt32(), 2).AsSByte());
            Quad(ref p, ref q, h2, AdvSimd.DuplicateSelectedScalarToVector128(x1.AsInt32(), 2).AsSByte());
            Quad(ref p, ref q, l3, AdvSimd.DuplicateSelectedScalarToVector128(x0.AsInt32(), 3).AsSByte());
            Quad(ref p, ref q, h3, AdvSimd.DuplicateSelectedScalarToVector128(x1.AsInt32(), 3).AsSByte());
            isum = AdvSimd.Arm64.AddPairwise(AdvSimd.AddPairwiseWidening(p), AdvSimd.AddPairwiseWidening(q));
        }
        return AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), ds);
    }

    /// <summary>The widening step: four rows' quad products (rows 0-1 into <paramref name="p"/>, 2-3 into <paramref name="q"/>) against the broadcast activation quad.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quad(ref Vector128<short> p, ref Vector128<short> q, Vector128<sbyte> w, Vector128<sbyte> x)
    {
        p = AdvSimd.MultiplyWideningLowerAndAdd(p, w.GetLower(), x.GetLower());
        q = AdvSimd.MultiplyWideningUpperAndAdd(q, w, x);
    }
}
