using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ8_0
{
    /// <summary>Per block: two 16-byte int8 dot steps (sdot, or smull + sadalp), int → float, FMA with d_w·d_x.</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb)
    {
        Vector128<float> acc = Vector128<float>.Zero;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_0BlockBytes;
            Vector128<int> isum = NeonDot.Dot16(Vector128<int>.Zero, AdvSimd.LoadVector128((sbyte*)(wb + 2)), AdvSimd.LoadVector128((sbyte*)(yb + 2)));
            isum = NeonDot.Dot16(isum, AdvSimd.LoadVector128((sbyte*)(wb + 18)), AdvSimd.LoadVector128((sbyte*)(yb + 18)));
            float d = Fp16.Read(wb) * Fp16.Read(yb);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d));
        }
        return Vector128.Sum(acc);
    }
}
