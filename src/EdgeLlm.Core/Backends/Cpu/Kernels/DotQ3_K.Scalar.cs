using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ3_K
{
    /// <summary>
    /// The integer reference, per super-block: isum = Σ_g sc_g·Σ (q3 − 4)·q8 over the sixteen 16-weight groups
    /// (exact int32); result = Σ_blocks (d·d_x)·isum in float. Weight 32j + l of half h: bits 2j..2j+1 of
    /// qs[32h + l], high bit at bit 4h + j of hmask[l] (set: +0, clear: −4).
    /// </summary>
    private static float ScalarLoop(byte* w, byte* xq, int nb)
    {
        byte* sc = stackalloc byte[16];
        float sum = 0f;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            UnpackScales(wb + ScalesOffset).Store(sc);
            byte* hm = wb;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            int isum = 0;
            for (int h = 0; h < 2; h++)
            {
                byte* q = wb + QsOffset + 32 * h;
                for (int j = 0; j < 4; j++)
                {
                    int bit = 4 * h + j;
                    for (int half = 0; half < 2; half++)
                    {
                        int s = 0;
                        for (int l = 16 * half; l < 16 * half + 16; l++)
                            s += (((q[l] >> (2 * j)) & 3) - (((hm[l] >> bit) & 1) != 0 ? 0 : 4)) * y[l];
                        isum += (sc[8 * h + 2 * j + half] - 32) * s;
                    }
                    y += 32;
                }
            }
            sum += Fp16.Read(wb + DOffset) * Unsafe.ReadUnaligned<float>(yb) * isum;
        }
        return sum;
    }
}
