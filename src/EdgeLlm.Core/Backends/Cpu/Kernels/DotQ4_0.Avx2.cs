using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_0
{
    /// <summary>
    /// One block per step in a ymm: the 16 packed bytes become 32 unsigned nibbles q (low nibbles = elements 0..15,
    /// high = 16..31, matching the activation order); Σ (q − 8)·y = Σ q·y − Σ 8·y, both with vpmaddubsw (|·| ≤ 3810,
    /// no saturation) or AVX-VNNI vpdpbusd; then int → float and one FMA with d_w·d_x. Two accumulators.
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
        Vector128<byte> packed = Vector128.Load(wb + 2);
        Vector256<byte> q = Vector256.Create(packed, Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
        Vector256<sbyte> y = Vector256.Load((sbyte*)(yb + 2));
        Vector256<byte> eight = Vector256.Create((byte)8);
        Vector256<int> isum;
        if (TVnni.Enabled)
        {
            isum = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, q, y) - AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, eight, y);
        }
        else
        {
            Vector256<short> p = Avx2.MultiplyAddAdjacent(q, y) - Avx2.MultiplyAddAdjacent(eight, y);
            isum = Avx2.MultiplyAddAdjacent(p, Vector256.Create((short)1));
        }
        float d = Fp16.Read(wb) * Fp16.Read(yb);
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(d), acc);
    }
}
