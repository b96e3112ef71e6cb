using System.Runtime.CompilerServices;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotIQ4_XS
{
    /// <summary>
    /// The integer reference, per super-block: isum = Σ_ib (ls_ib − 32)·Σ_l K[q]·q8 over the eight 32-weight
    /// sub-blocks (exact int32: |isum| ≤ 8·32·32·127·127); result = Σ_blocks (d·d_x)·isum in float.
    /// </summary>
    private static float ScalarLoop(byte* w, byte* xq, int nb)
    {
        sbyte* grid = stackalloc sbyte[16];
        for (int i = 0; i < 16; i++) grid[i] = (sbyte)Grid[i];
        float sum = 0f;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            uint sl = Unsafe.ReadUnaligned<uint>(wb + ScalesLOffset);
            uint sh = Unsafe.ReadUnaligned<ushort>(wb + ScalesHOffset);
            byte* q = wb + QsOffset;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            int isum = 0;
            for (int ib = 0; ib < 8; ib++)
            {
                int s = 0;
                for (int j = 0; j < 16; j++) s += grid[q[j] & 0xF] * y[j] + grid[q[j] >> 4] * y[j + 16];
                isum += SubScale(sl, sh, ib) * s;
                q += 16;
                y += 32;
            }
            sum += Fp16.Read(wb) * Unsafe.ReadUnaligned<float>(yb) * isum;
        }
        return sum;
    }
}
