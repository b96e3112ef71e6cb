using System.Runtime.CompilerServices;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ2_K
{
    /// <summary>
    /// The integer reference, per super-block: isum = Σ_g sc_g·Σ q2·q8 over the sixteen 16-weight groups and
    /// msum = Σ_g m_g·bsums_g (both exact int32); result = Σ_blocks (d·d_x)·isum − (dmin·d_x)·msum in float.
    /// Weight 32j + l of half h is bits 2j..2j+1 of qs[32h + l].
    /// </summary>
    private static float ScalarLoop(byte* w, byte* xq, int nb)
    {
        float sum = 0f;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            int isum = 0;
            for (int h = 0; h < 2; h++)
            {
                byte* q = wb + QsOffset + 32 * h;
                for (int j = 0; j < 4; j++)
                {
                    for (int half = 0; half < 2; half++)
                    {
                        int s = 0;
                        for (int l = 16 * half; l < 16 * half + 16; l++) s += ((q[l] >> (2 * j)) & 3) * y[l];
                        isum += (wb[8 * h + 2 * j + half] & 0xF) * s;
                    }
                    y += 32;
                }
            }
            short* bsums = (short*)(yb + ActivationQuant.Q8_KBsumsOffset);
            int msum = 0;
            for (int g = 0; g < 16; g++) msum += bsums[g] * (wb[g] >> 4);
            float dy = Unsafe.ReadUnaligned<float>(yb);
            sum += Fp16.Read(wb + DOffset) * dy * isum - Fp16.Read(wb + DminOffset) * dy * msum;
        }
        return sum;
    }
}
