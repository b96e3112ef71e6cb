using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ5_K
{
    /// <summary>
    /// Per 32-weight sub-block: the nibbles or-ed with the fifth bit (qh shifted right by two per chunk, bits 0 and 1
    /// moved to bit 4), two 16-byte int8 dot steps with the activations (sdot, or smull + sadalp), multiplied by the
    /// sub-block scale into an int32 accumulator (mla); the mins term Σ m·bsums is 16 scalar multiply-adds per block.
    /// </summary>
    private static float NeonLoop(byte* w, byte* xq, int nb)
    {
        Vector128<float> acc = Vector128<float>.Zero;
        float minSum = 0f;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector128<byte> m16 = Vector128.Create((byte)0x10);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            DotQ4_K.UnpackScales(wb + ScalesOffset, out ulong sc, out ulong mn);
            float dy = Unsafe.ReadUnaligned<float>(yb);
            byte* q = wb + QsOffset;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector128<byte> ha = AdvSimd.LoadVector128(wb + QhOffset);
            Vector128<byte> hb = AdvSimd.LoadVector128(wb + QhOffset + 16);
            Vector128<int> isum = Vector128<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                Vector128<byte> qa = AdvSimd.LoadVector128(q + 32 * c);
                Vector128<byte> qb = AdvSimd.LoadVector128(q + 32 * c + 16);
                Vector128<byte> la = AdvSimd.Or(AdvSimd.And(qa, m4), AdvSimd.And(AdvSimd.ShiftLeftLogical(ha, 4), m16));
                Vector128<byte> lb = AdvSimd.Or(AdvSimd.And(qb, m4), AdvSimd.And(AdvSimd.ShiftLeftLogical(hb, 4), m16));
                Vector128<byte> ua = AdvSimd.Or(AdvSimd.ShiftRightLogical(qa, 4), AdvSimd.And(AdvSimd.ShiftLeftLogical(ha, 3), m16));
                Vector128<byte> ub = AdvSimd.Or(AdvSimd.ShiftRightLogical(qb, 4), AdvSimd.And(AdvSimd.ShiftLeftLogical(hb, 3), m16));
                Vector128<int> lo = NeonDot.Dot16(Vector128<int>.Zero, la.AsSByte(), AdvSimd.LoadVector128(y + 64 * c));
                lo = NeonDot.Dot16(lo, lb.AsSByte(), AdvSimd.LoadVector128(y + 64 * c + 16));
                Vector128<int> hi = NeonDot.Dot16(Vector128<int>.Zero, ua.AsSByte(), AdvSimd.LoadVector128(y + 64 * c + 32));
                hi = NeonDot.Dot16(hi, ub.AsSByte(), AdvSimd.LoadVector128(y + 64 * c + 48));
                isum = AdvSimd.MultiplyAdd(isum, lo, Vector128.Create((int)((sc >> (16 * c)) & 0xFF)));
                isum = AdvSimd.MultiplyAdd(isum, hi, Vector128.Create((int)((sc >> (16 * c + 8)) & 0xFF)));
                ha = AdvSimd.ShiftRightLogical(ha, 2);
                hb = AdvSimd.ShiftRightLogical(hb, 2);
            }
            short* bsums = (short*)(yb + ActivationQuant.Q8_KBsumsOffset);
            int msum = 0;
            for (int g = 0; g < 16; g++) msum += bsums[g] * (int)((mn >> (8 * (g / 2))) & 0xFF);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(isum), Vector128.Create(Fp16.Read(wb) * dy));
            minSum += Fp16.Read(wb + 2) * dy * msum;
        }
        return Vector128.Sum(acc) - minSum;
    }
}
