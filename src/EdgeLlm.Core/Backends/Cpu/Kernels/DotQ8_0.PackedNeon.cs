using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q8_0 weights repacked for the GEMM on the NEON rung: eight rows interleaved per block so that one 16-byte vector
/// holds four consecutive quants of four rows (one int32 lane per row) and a dot step by selected lane (sdot v.4s,
/// w.16b, x.4b[k]) adds each row's four products into its own lane: no horizontal sums, one activation vector shared
/// by four rows. Per block of a group of eight rows (<see cref="PackedNeonBlockBytes"/> bytes, 6% more than the eight
/// stored blocks): <c>f32 d[8]</c> (the rows' scales, widened from fp16 at repack time), then for the row halves
/// h = 0, 1 and k = 0..7, 16 bytes holding quants 4k..4k+3 of rows 4h, 4h+1, 4h+2, 4h+3, as stored (signed bytes).
/// The activations are the <see cref="Q8_0Panel"/> (quants back to back, the block scales already float), so a
/// token's block costs two vector loads and one scalar load whatever the number of rows. Per block, row half and
/// token: eight sdot (Σ over the block of w·x per row, exact in int32), int → float, and one FMA with d_w·d_x.
/// Without the dot-product extension the products of two quads go into int16 lanes (smull, smlal against the quads
/// broadcast: |w·x| ≤ 128·127, two of them ≤ 32512, no overflow), are widened pairwise into int32 (sadalp) and
/// pair-added (addp) to the same four row sums: the same integers and float steps, so both paths give the same bits.
/// Every token runs the same steps whether it comes with three others (<see cref="PackedNeon4{TDp}"/>) or alone
/// (<see cref="PackedNeon1{TDp}"/>), so a token's result does not depend on its batch. The result differs from the
/// one-row loops' by float rounding only (the per-block products are summed in another order).
/// </summary>
public static unsafe partial class DotQ8_0
{
    /// <summary>Bytes of one block of a NEON-repacked group: eight f32 scales and eight rows' 32 quants.</summary>
    public const int PackedNeonBlockBytes = PackRows * 4 + PackRows * 32;

    /// <summary>Bytes the NEON-repacked copy of the first rows / 8 · 8 rows of <paramref name="n"/> values takes.</summary>
    public static long PackedBytesNeon(long rows, int n) => rows / PackRows * (long)Blocks(n) * PackedNeonBlockBytes;

    /// <summary>
    /// Repacks the whole groups of eight rows of a Q8_0 matrix (<paramref name="rows"/> rows of <paramref name="n"/>
    /// values, <paramref name="rowBytes"/> apart) into <paramref name="dst"/> (<see cref="PackedBytesNeon"/> bytes) in the NEON layout.
    /// </summary>
    public static void RepackNeon(byte* src, long rowBytes, long rows, int n, byte* dst)
    {
        int nb = Blocks(n);
        if (AdvSimd.Arm64.IsSupported)
        {
            RepackNeonVector(src, rowBytes, rows, nb, dst);
            return;
        }
        for (long g = 0; g < rows / PackRows; g++)
        {
            byte* pg = dst + g * nb * (long)PackedNeonBlockBytes;
            for (int b = 0; b < nb; b++)
            {
                byte* pb = pg + b * (long)PackedNeonBlockBytes;
                for (int r = 0; r < PackRows; r++)
                {
                    byte* blk = src + (g * PackRows + r) * rowBytes + b * (long)BlockBytes;
                    ((float*)pb)[r] = Fp16.Read(blk);
                    byte* half = pb + 32 + 128 * (r / 4) + 4 * (r % 4);
                    for (int k = 0; k < 8; k++)
                        Unsafe.WriteUnaligned(half + 16 * k, Unsafe.ReadUnaligned<uint>(blk + 2 + 4 * k));
                }
            }
        }
    }

    /// <summary>
    /// <see cref="RepackNeon"/> in vector registers (a load-time cost the first batch pays, so it is kept small): per block
    /// and row half, the four rows' 16-byte quant halves transposed as 4 × 4 matrices of 32-bit quads (trn1/trn2 on 32-
    /// then 64-bit lanes), the eight fp16 scales converted four rows at a time (<see cref="NeonScales.Half4"/>): the same bytes.
    /// </summary>
    private static void RepackNeonVector(byte* src, long rowBytes, long rows, int nb, byte* dst)
    {
        int stride = checked((int)rowBytes);
        for (long g = 0; g < rows / PackRows; g++)
        {
            byte* row0 = src + g * PackRows * rowBytes;
            byte* pb = dst + g * nb * (long)PackedNeonBlockBytes;
            for (int b = 0; b < nb; b++, row0 += BlockBytes, pb += PackedNeonBlockBytes)
            {
                NeonScales.Half4(row0, stride).Store((float*)pb);
                NeonScales.Half4(row0 + 4 * rowBytes, stride).Store((float*)pb + 4);
                for (int h = 0; h < 2; h++)
                {
                    byte* r = row0 + 4 * h * rowBytes + 2;
                    byte* o = pb + 32 + 128 * h;
                    Transpose4(AdvSimd.LoadVector128(r).AsUInt32(), AdvSimd.LoadVector128(r + rowBytes).AsUInt32(),
                        AdvSimd.LoadVector128(r + 2 * rowBytes).AsUInt32(), AdvSimd.LoadVector128(r + 3 * rowBytes).AsUInt32(), o);
                    Transpose4(AdvSimd.LoadVector128(r + 16).AsUInt32(), AdvSimd.LoadVector128(r + rowBytes + 16).AsUInt32(),
                        AdvSimd.LoadVector128(r + 2 * rowBytes + 16).AsUInt32(), AdvSimd.LoadVector128(r + 3 * rowBytes + 16).AsUInt32(), o + 64);
                }
            }
        }
    }

    /// <summary>Quads k = 0..3 of four rows (<paramref name="a"/>..<paramref name="d"/>) stored as four vectors [a_k, b_k, c_k, d_k] at <paramref name="o"/> + 16k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4(Vector128<uint> a, Vector128<uint> b, Vector128<uint> c, Vector128<uint> d, byte* o)
    {
        Vector128<ulong> ab0 = AdvSimd.Arm64.TransposeEven(a, b).AsUInt64(), ab1 = AdvSimd.Arm64.TransposeOdd(a, b).AsUInt64();
        Vector128<ulong> cd0 = AdvSimd.Arm64.TransposeEven(c, d).AsUInt64(), cd1 = AdvSimd.Arm64.TransposeOdd(c, d).AsUInt64();
        AdvSimd.Arm64.TransposeEven(ab0, cd0).Store((ulong*)o);
        AdvSimd.Arm64.TransposeEven(ab1, cd1).Store((ulong*)(o + 16));
        AdvSimd.Arm64.TransposeOdd(ab0, cd0).Store((ulong*)(o + 32));
        AdvSimd.Arm64.TransposeOdd(ab1, cd1).Store((ulong*)(o + 48));
    }

    /// <summary>
    /// One NEON-repacked group (eight rows) · four tokens' panels (<paramref name="panel"/> + t·<paramref name="panelBytes"/>),
    /// sdot when <paramref name="dp"/>: row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].
    /// </summary>
    public static void PackedDot4Neon(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride, bool dp)
    {
        int nb = Blocks(n);
        NeonDot.Require(nameof(DotQ8_0), dp);
        if (dp) PackedNeon4<DotProdOn>(group, panel, panelBytes, nb, dst, dstStride);
        else PackedNeon4<DotProdOff>(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>One NEON-repacked group (eight rows) · one token's panel: row r to <paramref name="dst"/>[r].</summary>
    public static void PackedDot1Neon(byte* group, byte* panel, int n, float* dst, bool dp)
    {
        int nb = Blocks(n);
        NeonDot.Require(nameof(DotQ8_0), dp);
        if (dp) PackedNeon1<DotProdOn>(group, panel, nb, dst);
        else PackedNeon1<DotProdOff>(group, panel, nb, dst);
    }

    internal static void PackedNeon4<TDp>(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag
    {
        byte* y0 = panel, y1 = panel + panelBytes, y2 = panel + 2 * panelBytes, y3 = panel + 3 * panelBytes;
        float* s0 = Q8_0Panel.Scales(y0, nb), s1 = Q8_0Panel.Scales(y1, nb), s2 = Q8_0Panel.Scales(y2, nb), s3 = Q8_0Panel.Scales(y3, nb);
        Vector128<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
        byte* pb = group;
        for (int b = 0; b < nb; b++, pb += PackedNeonBlockBytes, y0 += 32, y1 += 32, y2 += 32, y3 += 32)
        {
            Vector128<float> dLo = AdvSimd.LoadVector128((float*)pb), dHi = AdvSimd.LoadVector128((float*)pb + 4);
            Load8(pb + 32, out Vector128<sbyte> w0, out Vector128<sbyte> w1, out Vector128<sbyte> w2, out Vector128<sbyte> w3,
                out Vector128<sbyte> w4, out Vector128<sbyte> w5, out Vector128<sbyte> w6, out Vector128<sbyte> w7);
            a0 = Q8HalfToken<TDp>(a0, w0, w1, w2, w3, w4, w5, w6, w7, y0, dLo, s0[b]);
            a1 = Q8HalfToken<TDp>(a1, w0, w1, w2, w3, w4, w5, w6, w7, y1, dLo, s1[b]);
            a2 = Q8HalfToken<TDp>(a2, w0, w1, w2, w3, w4, w5, w6, w7, y2, dLo, s2[b]);
            a3 = Q8HalfToken<TDp>(a3, w0, w1, w2, w3, w4, w5, w6, w7, y3, dLo, s3[b]);
            Load8(pb + 160, out w0, out w1, out w2, out w3, out w4, out w5, out w6, out w7);
            b0 = Q8HalfToken<TDp>(b0, w0, w1, w2, w3, w4, w5, w6, w7, y0, dHi, s0[b]);
            b1 = Q8HalfToken<TDp>(b1, w0, w1, w2, w3, w4, w5, w6, w7, y1, dHi, s1[b]);
            b2 = Q8HalfToken<TDp>(b2, w0, w1, w2, w3, w4, w5, w6, w7, y2, dHi, s2[b]);
            b3 = Q8HalfToken<TDp>(b3, w0, w1, w2, w3, w4, w5, w6, w7, y3, dHi, s3[b]);
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
    /// One token (decode, and the last nTokens mod 4 of a batch): per block the token's two activation vectors loaded once
    /// for both row halves (without the dot product also their eight broadcast quads, made once for both halves), then
    /// each half's steps of <see cref="PackedNeon4{TDp}"/> (the same integer sums and float operations, so a token gets
    /// the same bits alone as in a batch).
    /// </summary>
    internal static void PackedNeon1<TDp>(byte* group, byte* panel, int nb, float* dst) where TDp : struct, IIsaFlag
    {
        float* s = Q8_0Panel.Scales(panel, nb);
        Vector128<float> a = default, c = default;
        byte* pb = group, y = panel;
        for (int b = 0; b < nb; b++, pb += PackedNeonBlockBytes, y += 32)
        {
            Vector128<float> dLo = AdvSimd.LoadVector128((float*)pb), dHi = AdvSimd.LoadVector128((float*)pb + 4);
            float sb = s[b];
            Vector128<sbyte> x0 = AdvSimd.LoadVector128((sbyte*)y), x1 = AdvSimd.LoadVector128((sbyte*)(y + 16));
            Load8(pb + 32, out Vector128<sbyte> w0, out Vector128<sbyte> w1, out Vector128<sbyte> w2, out Vector128<sbyte> w3,
                out Vector128<sbyte> w4, out Vector128<sbyte> w5, out Vector128<sbyte> w6, out Vector128<sbyte> w7);
            if (TDp.Enabled)
            {
                a = AdvSimd.FusedMultiplyAdd(a, AdvSimd.ConvertToSingle(HalfSdot(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1)), dLo * sb);
                Load8(pb + 160, out w0, out w1, out w2, out w3, out w4, out w5, out w6, out w7);
                c = AdvSimd.FusedMultiplyAdd(c, AdvSimd.ConvertToSingle(HalfSdot(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1)), dHi * sb);
            }
            else
            {
                Vector128<sbyte> q0 = AdvSimd.DuplicateSelectedScalarToVector128(x0.AsInt32(), 0).AsSByte();
                Vector128<sbyte> q1 = AdvSimd.DuplicateSelectedScalarToVector128(x0.AsInt32(), 1).AsSByte();
                Vector128<sbyte> q2 = AdvSimd.DuplicateSelectedScalarToVector128(x0.AsInt32(), 2).AsSByte();
                Vector128<sbyte> q3 = AdvSimd.DuplicateSelectedScalarToVector128(x0.AsInt32(), 3).AsSByte();
                Vector128<sbyte> q4 = AdvSimd.DuplicateSelectedScalarToVector128(x1.AsInt32(), 0).AsSByte();
                Vector128<sbyte> q5 = AdvSimd.DuplicateSelectedScalarToVector128(x1.AsInt32(), 1).AsSByte();
                Vector128<sbyte> q6 = AdvSimd.DuplicateSelectedScalarToVector128(x1.AsInt32(), 2).AsSByte();
                Vector128<sbyte> q7 = AdvSimd.DuplicateSelectedScalarToVector128(x1.AsInt32(), 3).AsSByte();
                a = AdvSimd.FusedMultiplyAdd(a, AdvSimd.ConvertToSingle(HalfWiden(w0, w1, w2, w3, w4, w5, w6, w7, q0, q1, q2, q3, q4, q5, q6, q7)), dLo * sb);
                Load8(pb + 160, out w0, out w1, out w2, out w3, out w4, out w5, out w6, out w7);
                c = AdvSimd.FusedMultiplyAdd(c, AdvSimd.ConvertToSingle(HalfWiden(w0, w1, w2, w3, w4, w5, w6, w7, q0, q1, q2, q3, q4, q5, q6, q7)), dHi * sb);
            }
        }
        a.Store(dst);
        c.Store(dst + 4);
    }

    /// <summary>A row half's 128 stored bytes: quads k = 0..7 of its four rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Load8(byte* p, out Vector128<sbyte> w0, out Vector128<sbyte> w1, out Vector128<sbyte> w2, out Vector128<sbyte> w3,
        out Vector128<sbyte> w4, out Vector128<sbyte> w5, out Vector128<sbyte> w6, out Vector128<sbyte> w7)
    {
        w0 = AdvSimd.LoadVector128((sbyte*)p);
        w1 = AdvSimd.LoadVector128((sbyte*)(p + 16));
        w2 = AdvSimd.LoadVector128((sbyte*)(p + 32));
        w3 = AdvSimd.LoadVector128((sbyte*)(p + 48));
        w4 = AdvSimd.LoadVector128((sbyte*)(p + 64));
        w5 = AdvSimd.LoadVector128((sbyte*)(p + 80));
        w6 = AdvSimd.LoadVector128((sbyte*)(p + 96));
        w7 = AdvSimd.LoadVector128((sbyte*)(p + 112));
    }

    /// <summary>
    /// One token's share of a block for one row half: the four rows' Σ w·x over the token's 32 panel quants at
    /// <paramref name="y"/> (exact int32) → float, times the rows' d_w (<paramref name="dw"/>) and the token's d_x
    /// (<paramref name="dx"/>), added to <paramref name="acc"/> (lane r: row r of the half).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Q8HalfToken<TDp>(Vector128<float> acc, Vector128<sbyte> w0, Vector128<sbyte> w1, Vector128<sbyte> w2, Vector128<sbyte> w3,
        Vector128<sbyte> w4, Vector128<sbyte> w5, Vector128<sbyte> w6, Vector128<sbyte> w7, byte* y, Vector128<float> dw, float dx) where TDp : struct, IIsaFlag
    {
        Vector128<sbyte> x0 = AdvSimd.LoadVector128((sbyte*)y), x1 = AdvSimd.LoadVector128((sbyte*)(y + 16));
        Vector128<int> isum = TDp.Enabled
            ? HalfSdot(w0, w1, w2, w3, w4, w5, w6, w7, x0, x1)
            : HalfWiden(w0, w1, w2, w3, w4, w5, w6, w7,
                AdvSimd.DuplicateSelectedScalarToVector128(x0.AsInt32(), 0).AsSByte(), AdvSimd.DuplicateSelectedScalarToVector128(x0.AsInt32(), 1).AsSByte(),
                AdvSimd.DuplicateSelectedScalarToVector128(x0.AsInt32(), 2).AsSByte(), AdvSimd.DuplicateSelectedScalarToVector128(x0.AsInt32(), 3).AsSByte(),
                AdvSimd.DuplicateSelectedScalarToVector128(x1.AsInt32(), 0).AsSByte(), AdvSimd.DuplicateSelectedScalarToVector128(x1.AsInt32(), 1).AsSByte(),
                AdvSimd.DuplicateSelectedScalarToVector128(x1.AsInt32(), 2).AsSByte(), AdvSimd.DuplicateSelectedScalarToVector128(x1.AsInt32(), 3).AsSByte());
        return AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), dw * dx);
    }

    /// <summary>A row half's four row sums Σ w·x over one block with sdot by selected quad (activation quads k of <paramref name="x0"/>, then of <paramref name="x1"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> HalfSdot(Vector128<sbyte> w0, Vector128<sbyte> w1, Vector128<sbyte> w2, Vector128<sbyte> w3,
        Vector128<sbyte> w4, Vector128<sbyte> w5, Vector128<sbyte> w6, Vector128<sbyte> w7, Vector128<sbyte> x0, Vector128<sbyte> x1)
    {
        Vector128<int> isum = Dp.DotProductBySelectedQuadruplet(Vector128<int>.Zero, w0, x0, 0);
        isum = Dp.DotProductBySelectedQuadruplet(isum, w1, x0, 1);
        isum = Dp.DotProductBySelectedQuadruplet(isum, w2, x0, 2);
        isum = Dp.DotProductBySelectedQuadruplet(isum, w3, x0, 3);
        isum = Dp.DotProductBySelectedQuadruplet(isum, w4, x1, 0);
        isum = Dp.DotProductBySelectedQuadruplet(isum, w5, x1, 1);
        isum = Dp.DotProductBySelectedQuadruplet(isum, w6, x1, 2);
        return Dp.DotProductBySelectedQuadruplet(isum, w7, x1, 3);
    }

    /// <summary>
    /// The same four row sums without the dot product, the activation quads given broadcast (<paramref name="q0"/>..<paramref name="q7"/>):
    /// lanes of the int32 sums rows 0-1 (p) and 2-3 (q), two lanes a row, each widening step adding two quads' products.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> HalfWiden(Vector128<sbyte> w0, Vector128<sbyte> w1, Vector128<sbyte> w2, Vector128<sbyte> w3,
        Vector128<sbyte> w4, Vector128<sbyte> w5, Vector128<sbyte> w6, Vector128<sbyte> w7, Vector128<sbyte> q0, Vector128<sbyte> q1,
        Vector128<sbyte> q2, Vector128<sbyte> q3, Vector128<sbyte> q4, Vector128<sbyte> q5, Vector128<sbyte> q6, Vector128<sbyte> q7)
    {
        Vector128<int> p = Vector128<int>.Zero, q = Vector128<int>.Zero;
        QuadPair(ref p, ref q, w0, q0, w1, q1);
        QuadPair(ref p, ref q, w2, q2, w3, q3);
        QuadPair(ref p, ref q, w4, q4, w5, q5);
        QuadPair(ref p, ref q, w6, q6, w7, q7);
        return AdvSimd.Arm64.AddPairwise(p, q);
    }

    /// <summary>
    /// The widening step: two quads' products of four rows against their broadcast activation quads, added in int16
    /// (two products a lane, ≤ 2·128·127) and widened pairwise into <paramref name="p"/> (rows 0-1) and <paramref name="q"/> (rows 2-3).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void QuadPair(ref Vector128<int> p, ref Vector128<int> q, Vector128<sbyte> wa, Vector128<sbyte> xa, Vector128<sbyte> wb, Vector128<sbyte> xb)
    {
        Vector128<short> lo = AdvSimd.MultiplyWideningLowerAndAdd(AdvSimd.MultiplyWideningLower(wa.GetLower(), xa.GetLower()), wb.GetLower(), xb.GetLower());
        Vector128<short> hi = AdvSimd.MultiplyWideningUpperAndAdd(AdvSimd.MultiplyWideningUpper(wa, xa), wb, xb);
        p = AdvSimd.AddPairwiseWideningAndAdd(p, lo);
        q = AdvSimd.AddPairwiseWideningAndAdd(q, hi);
    }
}
