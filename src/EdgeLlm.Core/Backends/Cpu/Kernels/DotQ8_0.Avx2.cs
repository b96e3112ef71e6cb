using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ8_0
{
    /// <summary>
    /// One block per step in a ymm. vpmaddubsw needs an unsigned operand, so (as ggml) Σ w·y = Σ |w|·(y·sign w):
    /// vpabsb and vpsignb, then vpmaddubsw + vpmaddwd (pairs ≤ 2·128·127, no saturation) or AVX-VNNI vpdpbusd.
    /// Exact for every weight byte (−128 included) because the activations never hold −128. Eight blocks per step
    /// with gathered scales (<see cref="BlockScales"/>), two accumulators.
    /// </summary>
    private static float Avx2Loop<TVnni>(byte* w, byte* xq, int nb) where TVnni : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes, xq += 8 * XB)
        {
            WeightPrefetch.Lines5(w);
            Vector256<float> d = BlockScales.Products8(w, wOff, xq, xOff);
            acc0 = Avx2Block<TVnni>(acc0, w, xq, BlockScales.Broadcast(d, 0));
            acc1 = Avx2Block<TVnni>(acc1, w + BlockBytes, xq + XB, BlockScales.Broadcast(d, 1));
            acc0 = Avx2Block<TVnni>(acc0, w + 2 * BlockBytes, xq + 2 * XB, BlockScales.Broadcast(d, 2));
            acc1 = Avx2Block<TVnni>(acc1, w + 3 * BlockBytes, xq + 3 * XB, BlockScales.Broadcast(d, 3));
            acc0 = Avx2Block<TVnni>(acc0, w + 4 * BlockBytes, xq + 4 * XB, BlockScales.Broadcast(d, 4));
            acc1 = Avx2Block<TVnni>(acc1, w + 5 * BlockBytes, xq + 5 * XB, BlockScales.Broadcast(d, 5));
            acc0 = Avx2Block<TVnni>(acc0, w + 6 * BlockBytes, xq + 6 * XB, BlockScales.Broadcast(d, 6));
            acc1 = Avx2Block<TVnni>(acc1, w + 7 * BlockBytes, xq + 7 * XB, BlockScales.Broadcast(d, 7));
        }
        for (; b < nb; b++, w += BlockBytes, xq += XB)
            acc0 = Avx2Block<TVnni>(acc0, w, xq, Vector256.Create(Fp16.Read(w) * Fp16.Read(xq)));
        return Vector256.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Avx2Block<TVnni>(Vector256<float> acc, byte* wb, byte* yb, Vector256<float> d)
        where TVnni : struct, IIsaFlag
    {
        Vector256<sbyte> q = Vector256.Load((sbyte*)(wb + 2));
        Vector256<sbyte> y = Vector256.Load((sbyte*)(yb + 2));
        Vector256<byte> aq = Avx2.Abs(q);
        Vector256<sbyte> sy = Avx2.Sign(y, q);
        Vector256<int> isum = TVnni.Enabled
            ? AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, aq, sy)
            : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aq, sy), Vector256.Create((short)1));
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), d, acc);
    }
}
