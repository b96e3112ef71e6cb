using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ6_K
{
    /// <summary>
    /// Per 16-weight group: rebuild the 6-bit q from ql/qh, subtract 32 (signed −32..31), one 16-byte int8 dot step
    /// (sdot, or smull + sadalp) with its activations, multiplied by the group scale into an int32 accumulator (mla).
    /// </summary>
    private static float NeonLoop(byte* w, byte* xq, int nb)
    {
        Vector128<float> acc = Vector128<float>.Zero;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector128<byte> m2 = Vector128.Create((byte)0x03);
        Vector128<byte> k32 = Vector128.Create((byte)32);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            sbyte* sc = (sbyte*)(wb + ScalesOffset);
            Vector128<int> isum = Vector128<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                byte* ql = wb + 64 * h;
                byte* qh = wb + QhOffset + 32 * h;
                sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset) + 128 * h;
                for (int half = 0; half < 2; half++)
                {
                    int l0 = 16 * half;
                    int g = 8 * h + half;
                    Vector128<byte> la = AdvSimd.LoadVector128(ql + l0);
                    Vector128<byte> lb = AdvSimd.LoadVector128(ql + 32 + l0);
                    Vector128<byte> hv = AdvSimd.LoadVector128(qh + l0);
                    Vector128<byte> q1 = AdvSimd.Or(AdvSimd.And(la, m4), AdvSimd.ShiftLeftLogical(AdvSimd.And(hv, m2), 4));
                    Vector128<byte> q2 = AdvSimd.Or(AdvSimd.And(lb, m4), AdvSimd.ShiftLeftLogical(AdvSimd.And(AdvSimd.ShiftRightLogical(hv, 2), m2), 4));
                    Vector128<byte> q3 = AdvSimd.Or(AdvSimd.ShiftRightLogical(la, 4), AdvSimd.ShiftLeftLogical(AdvSimd.And(AdvSimd.ShiftRightLogical(hv, 4), m2), 4));
                    Vector128<byte> q4 = AdvSimd.Or(AdvSimd.ShiftRightLogical(lb, 4), AdvSimd.ShiftLeftLogical(AdvSimd.ShiftRightLogical(hv, 6), 4));
                    isum = Group(isum, q1, k32, y + l0, sc[g]);
                    isum = Group(isum, q2, k32, y + 32 + l0, sc[g + 2]);
                    isum = Group(isum, q3, k32, y + 64 + l0, sc[g + 4]);
                    isum = Group(isum, q4, k32, y + 96 + l0, sc[g + 6]);
                }
            }
            float d = Fp16.Read(wb + DOffset) * Unsafe.ReadUnaligned<float>(yb);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d));
        }
        return Vector128.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Group(Vector128<int> isum, Vector128<byte> q, Vector128<byte> k32, sbyte* y, int scale)
    {
        Vector128<int> p = NeonDot.Dot16(Vector128<int>.Zero, AdvSimd.Subtract(q, k32).AsSByte(), AdvSimd.LoadVector128(y));
        return AdvSimd.MultiplyAdd(isum, p, Vector128.Create(scale));
    }
}
