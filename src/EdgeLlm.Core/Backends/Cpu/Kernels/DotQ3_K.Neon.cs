using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ3_K
{
    /// <summary>The one-token loop with sdot or the widening pair, as <see cref="KernelRung.UseDotProd"/> says (chosen once per call).</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb) =>
        KernelRung.UseDotProd ? NeonLoop1<DotProdOn>(w, xq, nb) : NeonLoop1<DotProdOff>(w, xq, nb);

    /// <summary>
    /// Per 16-weight group: two bits of qs (shifted right by two per quarter) or-ed with the hmask bit (shifted right by
    /// one per quarter, moved to bit 2), minus 4 (signed −4..3), one 16-byte int8 dot step with its activations (sdot,
    /// or smull + sadalp), times the group scale into an int32 accumulator (mla); one FMA with d·d_x per block.
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        Vector128<float> acc = Vector128<float>.Zero;
        Vector128<byte> m3 = Vector128.Create((byte)3);
        Vector128<byte> one = Vector128.Create((byte)1);
        Vector128<byte> four = Vector128.Create((byte)4);
        byte* sc = stackalloc byte[16];
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            UnpackScales(wb + ScalesOffset).Store(sc);
            Vector128<byte> ha = AdvSimd.LoadVector128(wb);
            Vector128<byte> hb = AdvSimd.LoadVector128(wb + 16);
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector128<int> isum = Vector128<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                Vector128<byte> qa = AdvSimd.LoadVector128(wb + QsOffset + 32 * h);
                Vector128<byte> qb = AdvSimd.LoadVector128(wb + QsOffset + 32 * h + 16);
                for (int j = 0; j < 4; j++)
                {
                    int g = 8 * h + 2 * j;
                    Vector128<byte> va = AdvSimd.Subtract(AdvSimd.Or(AdvSimd.And(qa, m3), AdvSimd.ShiftLeftLogical(AdvSimd.And(ha, one), 2)), four);
                    Vector128<byte> vb = AdvSimd.Subtract(AdvSimd.Or(AdvSimd.And(qb, m3), AdvSimd.ShiftLeftLogical(AdvSimd.And(hb, one), 2)), four);
                    Vector128<int> pa = NeonDot.Dot16<TDp>(Vector128<int>.Zero, va.AsSByte(), AdvSimd.LoadVector128(y + 32 * j));
                    Vector128<int> pb = NeonDot.Dot16<TDp>(Vector128<int>.Zero, vb.AsSByte(), AdvSimd.LoadVector128(y + 32 * j + 16));
                    isum = AdvSimd.MultiplyAdd(isum, pa, Vector128.Create(sc[g] - 32));
                    isum = AdvSimd.MultiplyAdd(isum, pb, Vector128.Create(sc[g + 1] - 32));
                    qa = AdvSimd.ShiftRightLogical(qa, 2);
                    qb = AdvSimd.ShiftRightLogical(qb, 2);
                    ha = AdvSimd.ShiftRightLogical(ha, 1);
                    hb = AdvSimd.ShiftRightLogical(hb, 1);
                }
                y += 128;
            }
            float d = Fp16.Read(wb + DOffset) * Unsafe.ReadUnaligned<float>(yb);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(d));
        }
        return Vector128.Sum(acc);
    }
}
