using System.Runtime.CompilerServices;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ6_K
{
    /// <summary>
    /// The integer reference, per super-block: isum = Σ_g sc_g·Σ (q6 − 32)·q8 over the sixteen 16-weight groups
    /// (exact int32); result = Σ_blocks (d·d_x)·isum in float. Position l of each 128-weight half holds the weights
    /// l, l+32, l+64, l+96 (low nibbles of ql[l], ql[l+32], high nibbles of the same, 2 bits each of qh[l]).
    /// </summary>
    private static float ScalarLoop(byte* w, byte* xq, int nb)
    {
        float sum = 0f;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            byte* ql = wb;
            byte* qh = wb + QhOffset;
            sbyte* sc = (sbyte*)(wb + ScalesOffset);
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            int isum = 0;
            for (int h = 0; h < 2; h++)
            {
                for (int l = 0; l < 32; l++)
                {
                    int g = 8 * h + l / 16;
                    int q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) << 4)) - 32;
                    isum += sc[g] * q1 * y[l] + sc[g + 2] * q2 * y[l + 32] + sc[g + 4] * q3 * y[l + 64] + sc[g + 6] * q4 * y[l + 96];
                }
                ql += 64;
                qh += 32;
                y += 128;
            }
            sum += Fp16.Read(wb + DOffset) * Unsafe.ReadUnaligned<float>(yb) * isum;
        }
        return sum;
    }
}
