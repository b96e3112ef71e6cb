using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_1
{
    /// <summary>The one-token loop with sdot or the widening pair, as <see cref="KernelRung.UseDotProd"/> says (chosen once per call).</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb) =>
        KernelRung.UseDotProd ? NeonLoop1<DotProdOn>(w, xq, nb) : NeonLoop1<DotProdOff>(w, xq, nb);

    /// <summary>
    /// Per block: the 16 packed bytes give low and high nibbles (0..15, valid as signed bytes); two 16-byte int8 dot
    /// steps against the activation halves (sdot, or smull + sadalp), int → float, FMA with d_w·d_x; m_w·s_x summed
    /// in a float beside.
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        Vector128<float> acc = Vector128<float>.Zero;
        float mSum = 0f;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_1BlockBytes;
            Vector128<byte> packed = AdvSimd.LoadVector128(wb + 4);
            Vector128<sbyte> lo = AdvSimd.And(packed, m4).AsSByte();
            Vector128<sbyte> hi = AdvSimd.ShiftRightLogical(packed, 4).AsSByte();
            Vector128<int> isum = NeonDot.Dot16<TDp>(Vector128<int>.Zero, lo, AdvSimd.LoadVector128((sbyte*)(yb + 4)));
            isum = NeonDot.Dot16<TDp>(isum, hi, AdvSimd.LoadVector128((sbyte*)(yb + 20)));
            float d = Fp16.Read(wb) * Fp16.Read(yb);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d));
            mSum += Fp16.Read(wb + 2) * Fp16.Read(yb + 2);
        }
        return Vector128.Sum(acc) + mSum;
    }
}
