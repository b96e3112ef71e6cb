using System.Runtime.CompilerServices;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ5_0
{
    /// <summary>
    /// The integer reference: q_j = nibble_j | (bit j of qh) &lt;&lt; 4, isum = Σ_j (q_j − 16)·y_j per block, exact in
    /// int32; result = Σ_blocks (d_w·d_x)·isum in float, block order (ggml's generic loop).
    /// </summary>
    private static float ScalarLoop(byte* w, byte* xq, int nb)
    {
        float sum = 0f;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_0BlockBytes;
            uint qh = Unsafe.ReadUnaligned<uint>(wb + 2);
            byte* qs = wb + 6;
            sbyte* y = (sbyte*)(yb + 2);
            int isum = 0;
            for (int j = 0; j < 16; j++)
            {
                int q0 = (qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
                int q1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
                isum += (q0 - 16) * y[j] + (q1 - 16) * y[j + 16];
            }
            sum += Fp16.Read(wb) * Fp16.Read(yb) * isum;
        }
        return sum;
    }
}
