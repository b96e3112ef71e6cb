using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ8_0
{
    /// <summary>
    /// One block per step in a ymm. vpmaddubsw needs an unsigned operand, so (as ggml) Σ w·y = Σ |w|·(y·sign w):
    /// vpabsb and vpsignb, then vpmaddubsw + vpmaddwd (pairs ≤ 2·128·127, no saturation) or AVX-VNNI vpdpbusd.
    /// Exact for every weight byte (−128 included) because the activations never hold −128.
    /// </summary>
    private static float Avx2Loop<TVnni>(byte* w, byte* xq, int nb) where TVnni : struct, IVnniFlag
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        int b = 0;
        for (; b + 2 <= nb; b += 2)
        {
            acc0 = Avx2Block<TVnni>(acc0, w + b * BlockBytes, xq + b * ActivationQuant.Q8_0BlockBytes);
            acc1 = Avx2Block<TVnni>(acc1, w + (b + 1) * BlockBytes, xq + (b + 1) * ActivationQuant.Q8_0BlockBytes);
        }
        if (b < nb) acc0 = Avx2Block<TVnni>(acc0, w + b * BlockBytes, xq + b * ActivationQuant.Q8_0BlockBytes);
        return Vector256.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Avx2Block<TVnni>(Vector256<float> acc, byte* wb, byte* yb) where TVnni : struct, IVnniFlag
    {
        Vector256<sbyte> q = Vector256.Load((sbyte*)(wb + 2));
        Vector256<sbyte> y = Vector256.Load((sbyte*)(yb + 2));
        Vector256<byte> aq = Avx2.Abs(q);
        Vector256<sbyte> sy = Avx2.Sign(y, q);
        Vector256<int> isum = TVnni.Enabled
            ? AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, aq, sy)
            : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aq, sy), Vector256.Create((short)1));
        float d = Fp16.Read(wb) * Fp16.Read(yb);
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(d), acc);
    }
}
