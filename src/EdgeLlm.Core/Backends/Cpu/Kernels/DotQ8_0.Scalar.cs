namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ8_0
{
    /// <summary>The integer reference: isum = Σ_j q_w[j]·q_x[j] per block (exact int32); Σ_blocks (d_w·d_x)·isum.</summary>
    private static float ScalarLoop(byte* w, byte* xq, int nb)
    {
        float sum = 0f;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_0BlockBytes;
            sbyte* q = (sbyte*)(wb + 2);
            sbyte* y = (sbyte*)(yb + 2);
            int isum = 0;
            for (int j = 0; j < BlockSize; j++) isum += q[j] * y[j];
            sum += Fp16.Read(wb) * Fp16.Read(yb) * isum;
        }
        return sum;
    }
}
