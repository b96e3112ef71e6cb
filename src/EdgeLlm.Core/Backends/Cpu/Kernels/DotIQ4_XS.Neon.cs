using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotIQ4_XS
{
    /// <summary>The one-token loop with sdot or the widening pair, as <see cref="KernelRung.UseDotProd"/> says (chosen once per call).</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb) =>
        KernelRung.UseDotProd ? NeonLoop1<DotProdOn>(w, xq, nb) : NeonLoop1<DotProdOff>(w, xq, nb);

    /// <summary>
    /// Per 32-weight sub-block: 16 qs bytes → low and high nibbles → the signed grid values by one table lookup (tbl)
    /// each, two 16-byte int8 dot steps with the activations (sdot, or smull + sadalp; both operands signed), times
    /// the sub-block scale ls − 32 into an int32 accumulator (mla); one FMA with d·d_x per block.
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        Vector128<float> acc = Vector128<float>.Zero;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector128<byte> grid;
        fixed (byte* g = Grid) grid = AdvSimd.LoadVector128(g);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            uint sl = Unsafe.ReadUnaligned<uint>(wb + ScalesLOffset);
            uint sh = Unsafe.ReadUnaligned<ushort>(wb + ScalesHOffset);
            byte* q = wb + QsOffset;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector128<int> isum = Vector128<int>.Zero;
            for (int ib = 0; ib < 8; ib++)
            {
                Vector128<byte> packed = AdvSimd.LoadVector128(q + 16 * ib);
                Vector128<sbyte> lo = AdvSimd.Arm64.VectorTableLookup(grid, AdvSimd.And(packed, m4)).AsSByte();
                Vector128<sbyte> hi = AdvSimd.Arm64.VectorTableLookup(grid, AdvSimd.ShiftRightLogical(packed, 4)).AsSByte();
                Vector128<int> p = NeonDot.Dot16<TDp>(Vector128<int>.Zero, lo, AdvSimd.LoadVector128(y + 32 * ib));
                p = NeonDot.Dot16<TDp>(p, hi, AdvSimd.LoadVector128(y + 32 * ib + 16));
                isum = AdvSimd.MultiplyAdd(isum, p, Vector128.Create(SubScale(sl, sh, ib)));
            }
            float d = Fp16.Read(wb) * Unsafe.ReadUnaligned<float>(yb);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d));
        }
        return Vector128.Sum(acc);
    }

    /// <summary>
    /// Row <paramref name="w"/> · tokens t = 0..3 at <paramref name="xq"/> + t·<paramref name="xqStride"/> (Q8_K blocks) on
    /// NEON, sdot when <paramref name="dp"/>; result t to <paramref name="dst"/>[t·<paramref name="dstStride"/>]. Each
    /// 32-weight sub-block's grid values (tbl) and scale broadcast are made once for the four tokens; per token the
    /// integer steps and float operations of <see cref="NeonLoop"/> in its order, so each result is bit-identical to the one-token loop's.
    /// </summary>
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp)
    {
        int nb = Blocks(n);
        NeonDot.Require(nameof(DotIQ4_XS), dp);
        if (dp) NeonLoop4<DotProdOn>(w, xq, xqStride, nb, dst, dstStride);
        else NeonLoop4<DotProdOff>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void NeonLoop4<TDp>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride) where TDp : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_KBlockBytes;
        Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector128<byte> grid;
        fixed (byte* g = Grid) grid = AdvSimd.LoadVector128(g);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++, w += BlockBytes)
        {
            long xo = (long)b * XB;
            uint sl = Unsafe.ReadUnaligned<uint>(w + ScalesLOffset);
            uint sh = Unsafe.ReadUnaligned<ushort>(w + ScalesHOffset);
            byte* q = w + QsOffset;
            Vector128<int> i0 = Vector128<int>.Zero, i1 = Vector128<int>.Zero, i2 = Vector128<int>.Zero, i3 = Vector128<int>.Zero;
            for (int ib = 0; ib < 8; ib++)
            {
                Vector128<byte> packed = AdvSimd.LoadVector128(q + 16 * ib);
                Vector128<sbyte> lo = AdvSimd.Arm64.VectorTableLookup(grid, AdvSimd.And(packed, m4)).AsSByte();
                Vector128<sbyte> hi = AdvSimd.Arm64.VectorTableLookup(grid, AdvSimd.ShiftRightLogical(packed, 4)).AsSByte();
                Vector128<int> s = Vector128.Create(SubScale(sl, sh, ib));
                long yo = xo + ActivationQuant.Q8_KQsOffset + 32 * ib;
                i0 = NeonSubBlock<TDp>(i0, lo, hi, s, (sbyte*)(x0 + yo));
                i1 = NeonSubBlock<TDp>(i1, lo, hi, s, (sbyte*)(x1 + yo));
                i2 = NeonSubBlock<TDp>(i2, lo, hi, s, (sbyte*)(x2 + yo));
                i3 = NeonSubBlock<TDp>(i3, lo, hi, s, (sbyte*)(x3 + yo));
            }
            float dw = Fp16.Read(w);
            a0 = AdvSimd.FusedMultiplyAdd(a0, AdvSimd.ConvertToSingle(i0), Vector128.Create(dw * Unsafe.ReadUnaligned<float>(x0 + xo)));
            a1 = AdvSimd.FusedMultiplyAdd(a1, AdvSimd.ConvertToSingle(i1), Vector128.Create(dw * Unsafe.ReadUnaligned<float>(x1 + xo)));
            a2 = AdvSimd.FusedMultiplyAdd(a2, AdvSimd.ConvertToSingle(i2), Vector128.Create(dw * Unsafe.ReadUnaligned<float>(x2 + xo)));
            a3 = AdvSimd.FusedMultiplyAdd(a3, AdvSimd.ConvertToSingle(i3), Vector128.Create(dw * Unsafe.ReadUnaligned<float>(x3 + xo)));
        }
        dst[0] = Vector128.Sum(a0);
        dst[dstStride] = Vector128.Sum(a1);
        dst[2 * dstStride] = Vector128.Sum(a2);
        dst[3 * dstStride] = Vector128.Sum(a3);
    }

    /// <summary>One token's 32-weight sub-block (grid values <paramref name="lo"/>, <paramref name="hi"/>) times its scale into its int32 accumulator, as <see cref="NeonLoop"/> does it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> NeonSubBlock<TDp>(Vector128<int> isum, Vector128<sbyte> lo, Vector128<sbyte> hi, Vector128<int> s, sbyte* y) where TDp : struct, IIsaFlag
    {
        Vector128<int> p = NeonDot.Dot16<TDp>(Vector128<int>.Zero, lo, AdvSimd.LoadVector128(y));
        p = NeonDot.Dot16<TDp>(p, hi, AdvSimd.LoadVector128(y + 16));
        return AdvSimd.MultiplyAdd(isum, p, s);
    }
}
