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
/// |16·8·128·32| &lt; 2^20), int → float, and one FMA with d_w·(d_x/16) (the factor 16 folded into the token's scale, a
/// power of two: exact). Without the dot-product extension the values are shifted back (q − 8) and the products
/// accumulate in int16 lanes (smlal, smlal2 against the quad broadcast; ≤ 8·8·128 per lane), widened pairwise (saddlp)
/// and pair-added (addp) to the same four row sums, scaled by d_w·d_x: the same integers and float products, so both
/// paths give the same bits. Every token runs the same steps whether it comes with three others (<see cref="PackedNeon4{TDp}"/>)
/// or alone (<see cref="PackedNeon1{TDp}"/>), so a token's result does not depend on its batch. The result differs from the
/// one-row loops' by float rounding only (the per-block products are summed in another order).
/// </summary>
public static unsafe partial class DotQ4_0
{
    /// <summary>
    /// Repacks the whole groups of eight rows of a Q4_0 matrix (<paramref name="rows"/> rows of <paramref name="n"/>
    /// values, <paramref name="rowBytes"/> apart) into <paramref name="dst"/> (<see cref="PackedBytes"/> bytes) in the NEON layout.
    /// </summary>
    public static void RepackNeon(byte* src, long rowBytes, long rows, int n, byte* dst)
    {
        int nb = Blocks(n);
        for (long g = 0; g < rows / PackRows; g++)
        {
            byte* pg = dst + g * nb * (long)PackedBlockBytes;
            for (int b = 0; b < nb; b++)
            {
                byte* pb = pg + b * (long)PackedBlockBytes;
                for (int r = 0; r < PackRows; r++)
                {
                    byte* blk = src + (g * PackRows + r) * rowBytes + b * (long)BlockBytes;
                    ((float*)pb)[r] = Fp16.Read(blk);
                    byte* half = pb + 32 + 64 * (r / 4) + 4 * (r % 4);
                    for (int k = 0; k < 4; k++)
                        Unsafe.WriteUnaligned(half + 16 * k, Unsafe.ReadUnaligned<uint>(blk + 2 + 4 * k) ^ 0x88888888u);
                }
            }
        }
    }

    /// <summary>Whether the NEON repacked GEMM can run here with <paramref name="dp"/> (sdot needs the extension).</summary>
    private static void RequirePackedNeon(bool dp) => NeonDot.Require(nameof(DotQ4_0), dp);

    /// <summary>
    /// One NEON-repacked group (eight rows) · four tokens' Q8_0 blocks (<paramref name="xq"/> + t·<paramref name="xqStride"/>),
    /// sdot when <paramref name="dp"/>: row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].
    /// </summary>
    public static void PackedDot4Neon(byte* group, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp)
    {
        int nb = Blocks(n);
        RequirePackedNeon(dp);
        if (dp) PackedNeon4<DotProdOn>(group, xq, xqStride, nb, dst, dstStride);
        else PackedNeon4<DotProdOff>(group, xq, xqStride, nb, dst, dstStride);
    }

    /// <summary>One NEON-repacked group (eight rows) · one token's Q8_0 blocks: row r to <paramref name="dst"/>[r].</summary>
    public static void PackedDot1Neon(byte* group, byte* xq, int n, float* dst, bool dp)
    {
        int nb = Blocks(n);
        RequirePackedNeon(dp);
        if (dp) PackedNeon1<DotProdOn>(group, xq, nb, dst);
        else PackedNeon1<DotProdOff>(group, xq, nb, dst);
    }

    internal static void PackedNeon4<TDp>(byte* group, byte* xq, long xqStride, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector128<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
        byte* y0 = xq, y1 = xq + xqStride, y2 = xq + 2 * xqStride, y3 = xq + 3 * xqStride;
        byte* pb = group;
        for (int b = 0; b < nb; b++, pb += PackedBlockBytes, y0 += XB, y1 += XB, y2 += XB, y3 += XB)
        {
            float s0 = TokenScale<TDp>(y0), s1 = TokenScale<TDp>(y1), s2 = TokenScale<TDp>(y2), s3 = TokenScale<TDp>(y3);
            Vector128<float> dLo = AdvSimd.LoadVector128((float*)pb), dHi = AdvSimd.LoadVector128((float*)pb + 4);
            Unpack<TDp>(pb + 32, out Vector128<sbyte> l0, out Vector128<sbyte> h0, out Vector128<sbyte> l1, out Vector128<sbyte> h1,
                out Vector128<sbyte> l2, out Vector128<sbyte> h2, out Vector128<sbyte> l3, out Vector128<sbyte> h3);
            a0 = HalfToken<TDp>(a0, l0, h0, l1, h1, l2, h2, l3, h3, y0, dLo, s0);
            a1 = HalfToken<TDp>(a1, l0, h0, l1, h1, l2, h2, l3, h3, y1, dLo, s1);
            a2 = HalfToken<TDp>(a2, l0, h0, l1, h1, l2, h2, l3, h3, y2, dLo, s2);
            a3 = HalfToken<TDp>(a3, l0, h0, l1, h1, l2, h2, l3, h3, y3, dLo, s3);
            Unpack<TDp>(pb + 96, out l0, out h0, out l1, out h1, out l2, out h2, out l3, out h3);
            b0 = HalfToken<TDp>(b0, l0, h0, l1, h1, l2, h2, l3, h3, y0, dHi, s0);
            b1 = HalfToken<TDp>(b1, l0, h0, l1, h1, l2, h2, l3, h3, y1, dHi, s1);
            b2 = HalfToken<TDp>(b2, l0, h0, l1, h1, l2, h2, l3, h3, y2, dHi, s2);
            b3 = HalfToken<TDp>(b3, l0, h0, l1, h1, l2, h2, l3, h3, y3, dHi, s3);
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

    internal static void PackedNeon1<TDp>(byte* group, byte* xq, int nb, float* dst) where TDp : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector128<float> a = default, c = default;
        byte* pb = group, y = xq;
        for (int b = 0; b < nb; b++, pb += PackedBlockBytes, y += XB)
        {
            float s = TokenScale<TDp>(y);
            Vector128<float> dLo = AdvSimd.LoadVector128((float*)pb), dHi = AdvSimd.LoadVector128((float*)pb + 4);
            Unpack<TDp>(pb + 32, out Vector128<sbyte> l0, out Vector128<sbyte> h0, out Vector128<sbyte> l1, out Vector128<sbyte> h1,
                out Vector128<sbyte> l2, out Vector128<sbyte> h2, out Vector128<sbyte> l3, out Vector128<sbyte> h3);
            a = HalfToken<TDp>(a, l0, h0, l1, h1, l2, h2, l3, h3, y, dLo, s);
            Unpack<TDp>(pb + 96, out l0, out h0, out l1, out h1, out l2, out h2, out l3, out h3);
            c = HalfToken<TDp>(c, l0, h0, l1, h1, l2, h2, l3, h3, y, dHi, s);
        }
        a.Store(dst);
        c.Store(dst + 4);
    }

    /// <summary>The token's block scale d_x, divided by 16 on the sdot path (whose weights are 16·(q − 8)): exact, a power of two.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float TokenScale<TDp>(byte* y) where TDp : struct, IIsaFlag => TDp.Enabled ? Fp16.Read(y) * 0.0625f : Fp16.Read(y);

    /// <summary>
    /// A row half's 64 stored bytes (four vectors, quads k = 0..3 of four rows) into the low-nibble (<c>l</c>k) and
    /// high-nibble (<c>h</c>k) weights: 16·(q − 8) for sdot, q − 8 for the widening path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Unpack<TDp>(byte* p, out Vector128<sbyte> l0, out Vector128<sbyte> h0, out Vector128<sbyte> l1, out Vector128<sbyte> h1,
        out Vector128<sbyte> l2, out Vector128<sbyte> h2, out Vector128<sbyte> l3, out Vector128<sbyte> h3) where TDp : struct, IIsaFlag
    {
        Unpack1<TDp>(AdvSimd.LoadVector128(p), out l0, out h0);
        Unpack1<TDp>(AdvSimd.LoadVector128(p + 16), out l1, out h1);
        Unpack1<TDp>(AdvSimd.LoadVector128(p + 32), out l2, out h2);
        Unpack1<TDp>(AdvSimd.LoadVector128(p + 48), out l3, out h3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Unpack1<TDp>(Vector128<byte> v, out Vector128<sbyte> lo, out Vector128<sbyte> hi) where TDp : struct, IIsaFlag
    {
        Vector128<sbyte> l16 = AdvSimd.ShiftLeftLogical(v, 4).AsSByte();
        if (TDp.Enabled)
        {
            lo = l16;
            hi = AdvSimd.And(v, Vector128.Create((byte)0xF0)).AsSByte();
        }
        else
        {
            lo = AdvSimd.ShiftRightArithmetic(l16, 4);
            hi = AdvSimd.ShiftRightArithmetic(v.AsSByte(), 4);
        }
    }

    /// <summary>
    /// One token's share of a block for one row half: the four rows' Σ w·x (exact int32) → float, times the rows'
    /// d_w and the token's scale <paramref name="s"/>, added to <paramref name="acc"/> (lane r: row r of the half).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> HalfToken<TDp>(Vector128<float> acc, Vector128<sbyte> l0, Vector128<sbyte> h0, Vector128<sbyte> l1, Vector128<sbyte> h1,
        Vector128<sbyte> l2, Vector128<sbyte> h2, Vector128<sbyte> l3, Vector128<sbyte> h3, byte* y, Vector128<float> dw, float s) where TDp : struct, IIsaFlag
    {
        Vector128<sbyte> x0 = AdvSimd.LoadVector128((sbyte*)(y + 2)), x1 = AdvSimd.LoadVector128((sbyte*)(y + 18));
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
        return AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), dw * s);
    }

    /// <summary>The widening step: four rows' quad products (rows 0-1 into <paramref name="p"/>, 2-3 into <paramref name="q"/>) against the broadcast activation quad.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quad(ref Vector128<short> p, ref Vector128<short> q, Vector128<sbyte> w, Vector128<sbyte> x)
    {
        p = AdvSimd.MultiplyWideningLowerAndAdd(p, w.GetLower(), x.GetLower());
        q = AdvSimd.MultiplyWideningUpperAndAdd(q, w, x);
    }
}
