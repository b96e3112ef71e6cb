using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotIQ4_NL
{
    /// <summary>
    /// Per block: the low and high nibbles index the grid with tbl (signed bytes −127..113); two 16-byte int8 dot
    /// steps against the activation halves (sdot, or smull + sadalp), int → float, FMA with d_w·d_x.
    /// </summary>
    private static float NeonLoop(byte* w, byte* xq, int nb)
    {
        Vector128<float> acc = Vector128<float>.Zero;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector128<byte> grid = Grid().AsByte();
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_0BlockBytes;
            Vector128<byte> packed = AdvSimd.LoadVector128(wb + 2);
            Vector128<sbyte> lo = AdvSimd.Arm64.VectorTableLookup(grid, AdvSimd.And(packed, m4)).AsSByte();
            Vector128<sbyte> hi = AdvSimd.Arm64.VectorTableLookup(grid, AdvSimd.ShiftRightLogical(packed, 4)).AsSByte();
            Vector128<int> isum = NeonDot.Dot16(Vector128<int>.Zero, lo, AdvSimd.LoadVector128((sbyte*)(yb + 2)));
            isum = NeonDot.Dot16(isum, hi, AdvSimd.LoadVector128((sbyte*)(yb + 18)));
            float d = Fp16.Read(wb) * Fp16.Read(yb);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d));
        }
        return Vector128.Sum(acc);
    }
}
