using System.Runtime.CompilerServices;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ5_K
{
    /// <summary>
    /// The integer reference, per super-block: isum = Σ_j sc_j·Σ_l q5·q8 over the eight 32-weight sub-blocks and
    /// msum = Σ_g m_{g/2}·bsums_g (both exact int32); result = Σ_blocks (d·d_x)·isum − (dmin·d_x)·msum in float.
    /// </summary>
    private static float ScalarLoop(byte* w, byte* xq, int nb)
    {
        float sum = 0f;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            DotQ4_K.UnpackScales(wb + ScalesOffset, out ulong sc, out ulong mn);
            byte* qh = wb + QhOffset;
            byte* q = wb + QsOffset;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            int isum = 0;
            for (int c = 0; c < 4; c++)
            {
                int lo = 0, hi = 0;
                for (int l = 0; l < 32; l++)
                {
                    lo += ((q[l] & 0x0F) | (((qh[l] >> (2 * c)) & 1) << 4)) * y[l];
                    hi += ((q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4)) * y[l + 32];
                }
                isum += (int)((sc >> (16 * c)) & 0xFF) * lo + (int)((sc >> (16 * c + 8)) & 0xFF) * hi;
                q += 32;
                y += 64;
            }
            short* bsums = (short*)(yb + ActivationQuant.Q8_KBsumsOffset);
            int msum = 0;
            for (int g = 0; g < 16; g++) msum += bsums[g] * (int)((mn >> (8 * (g / 2))) & 0xFF);
            float dy = Unsafe.ReadUnaligned<float>(yb);
            sum += Fp16.Read(wb) * dy * isum - Fp16.Read(wb + 2) * dy * msum;
        }
        return sum;
    }
}
