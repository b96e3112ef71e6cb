namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_0
{
    /// <summary>
    /// The integer reference: isum = Σ_j (lo_j − 8)·y_j + (hi_j − 8)·y_{j+16} per block, exact in int32;
    /// result = Σ_blocks (d_w·d_x)·isum in float, block order.
    /// </summary>
    private static float ScalarLoop(byte* w, byte* xq, int nb)
    {
        float sum = 0f;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_0BlockBytes;
            byte* qs = wb + 2;
            sbyte* y = (sbyte*)(yb + 2);
            int isum = 0;
            for (int j = 0; j < 16; j++)
                isum += ((qs[j] & 0x0F) - 8) * y[j] + ((qs[j] >> 4) - 8) * y[j + 16];
            sum += Fp16.Read(wb) * Fp16.Read(yb) * isum;
        }
        return sum;
    }
}
