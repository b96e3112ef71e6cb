namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_1
{
    /// <summary>
    /// The integer reference: isum = Σ_j lo_j·y_j + hi_j·y_{j+16} per block, exact in int32;
    /// result = Σ_blocks (d_w·d_x)·isum + m_w·s_x in float, block order (ggml's generic loop).
    /// </summary>
    private static float ScalarLoop(byte* w, byte* xq, int nb)
    {
        float sum = 0f;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_1BlockBytes;
            byte* qs = wb + 4;
            sbyte* y = (sbyte*)(yb + 4);
            int isum = 0;
            for (int j = 0; j < 16; j++)
                isum += (qs[j] & 0x0F) * y[j] + (qs[j] >> 4) * y[j + 16];
            sum += Fp16.Read(wb) * Fp16.Read(yb) * isum + Fp16.Read(wb + 2) * Fp16.Read(yb + 2);
        }
        return sum;
    }
}
