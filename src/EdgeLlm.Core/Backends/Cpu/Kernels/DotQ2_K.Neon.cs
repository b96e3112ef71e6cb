using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ2_K
{
    /// <summary>The one-token loop with sdot or the widening pair, as <see cref="KernelRung.UseDotProd"/> says (chosen once per call).</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb) =>
        KernelRung.UseDotProd ? NeonLoop1<DotProdOn>(w, xq, nb) : NeonLoop1<DotProdOff>(w, xq, nb);

    /// <summary>
    /// Per 16-weight group: two bits of qs (shifted right by two per quarter), one 16-byte int8 dot step with its
    /// activations (sdot, or smull + sadalp), times the group scale into an int32 accumulator (mla); the mins term
    /// Σ m·bsums is 16 scalar multiply-adds per block.
    /// </summary>
    private static float NeonLoop1<TDp>(byte* w, byte* xq, int nb) where TDp : struct, IIsaFlag
    {
        Vector128<float> acc = Vector128<float>.Zero;
        float minSum = 0f;
        Vector128<byte> m3 = Vector128.Create((byte)3);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            float dy = Unsafe.ReadUnaligned<float>(yb);
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector128<int> isum = Vector128<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                Vector128<byte> qa = AdvSimd.LoadVector128(wb + QsOffset + 32 * h);
                Vector128<byte> qb = AdvSimd.LoadVector128(wb + QsOffset + 32 * h + 16);
                for (int j = 0; j < 4; j++)
                {
                    int g = 8 * h + 2 * j;
                    Vector128<int> pa = NeonDot.Dot16<TDp>(Vector128<int>.Zero, AdvSimd.And(qa, m3).AsSByte(), AdvSimd.LoadVector128(y + 32 * j));
                    Vector128<int> pb = NeonDot.Dot16<TDp>(Vector128<int>.Zero, AdvSimd.And(qb, m3).AsSByte(), AdvSimd.LoadVector128(y + 32 * j + 16));
                    isum = AdvSimd.MultiplyAdd(isum, pa, Vector128.Create(wb[g] & 0xF));
                    isum = AdvSimd.MultiplyAdd(isum, pb, Vector128.Create(wb[g + 1] & 0xF));
                    qa = AdvSimd.ShiftRightLogical(qa, 2);
                    qb = AdvSimd.ShiftRightLogical(qb, 2);
                }
                y += 128;
            }
            short* bsums = (short*)(yb + ActivationQuant.Q8_KBsumsOffset);
            int msum = 0;
            for (int g = 0; g < 16; g++) msum += bsums[g] * (wb[g] >> 4);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(Fp16.Read(wb + DOffset) * dy));
            minSum += Fp16.Read(wb + DminOffset) * dy * msum;
        }
        return Vector128.Sum(acc) - minSum;
    }
}
