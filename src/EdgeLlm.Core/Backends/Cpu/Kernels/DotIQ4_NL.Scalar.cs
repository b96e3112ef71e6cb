using EdgeLlm.Quant;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotIQ4_NL
{
    /// <summary>
    /// The integer reference: isum = Σ_j K[lo_j]·y_j + K[hi_j]·y_{j+16} per block (K the grid), exact in int32;
    /// result = Σ_blocks (d_w·d_x)·isum in float, block order (ggml's generic loop).
    /// </summary>
    private static float ScalarLoop(byte* w, byte* xq, int nb)
    {
        ReadOnlySpan<sbyte> k = IQ4_NL.Values;
        float sum = 0f;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_0BlockBytes;
            byte* qs = wb + 2;
            sbyte* y = (sbyte*)(yb + 2);
            int isum = 0;
            for (int j = 0; j < 16; j++)
                isum += k[qs[j] & 0x0F] * y[j] + k[qs[j] >> 4] * y[j + 16];
            sum += Fp16.Read(wb) * Fp16.Read(yb) * isum;
        }
        return sum;
    }
}
