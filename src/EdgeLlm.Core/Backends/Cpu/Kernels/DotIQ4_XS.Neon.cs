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
}
