using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ8_0
{
    /// <summary>
    /// One block per step in a zmm: both 32-byte blocks sign-extended to int16 (vpmovsxbw) and multiplied with
    /// vpmaddwd (exact, no sign trick needed), int → float, FMA with d_w·d_x. Two blocks per step, two accumulators.
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
        int b = 0;
        for (; b + 2 <= nb; b += 2)
        {
            acc0 = Avx512Block(acc0, w + b * BlockBytes, xq + b * ActivationQuant.Q8_0BlockBytes);
            acc1 = Avx512Block(acc1, w + (b + 1) * BlockBytes, xq + (b + 1) * ActivationQuant.Q8_0BlockBytes);
        }
        if (b < nb) acc0 = Avx512Block(acc0, w + b * BlockBytes, xq + b * ActivationQuant.Q8_0BlockBytes);
        return Vector512.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Avx512Block(Vector512<float> acc, byte* wb, byte* yb)
    {
        Vector512<short> q = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(wb + 2)));
        Vector512<short> y = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(yb + 2)));
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(q, y);
        float d = Fp16.Read(wb) * Fp16.Read(yb);
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(d), acc);
    }
}
