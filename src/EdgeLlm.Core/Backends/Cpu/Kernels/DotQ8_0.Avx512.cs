using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ8_0
{
    /// <summary>
    /// One block per step in a zmm: both 32-byte blocks sign-extended to int16 (vpmovsxbw) and multiplied with
    /// vpmaddwd (exact, no sign trick needed), int → float, FMA with d_w·d_x broadcast from eight gathered scale
    /// products (<see cref="BlockScales.Products8Wide"/>: the eight weight and eight activation scales converted in one
    /// zmm). Eight blocks per step, two accumulators.
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes, xq += 8 * XB)
        {
            WeightPrefetch.Lines5(w);
            Vector512<float> d = BlockScales.Products8Wide(w, wOff, xq, xOff).ToVector512Unsafe();
            acc0 = Avx512Block(acc0, w, xq, Avx512F.PermuteVar16x32(d, Vector512.Create(0)));
            acc1 = Avx512Block(acc1, w + BlockBytes, xq + XB, Avx512F.PermuteVar16x32(d, Vector512.Create(1)));
            acc0 = Avx512Block(acc0, w + 2 * BlockBytes, xq + 2 * XB, Avx512F.PermuteVar16x32(d, Vector512.Create(2)));
            acc1 = Avx512Block(acc1, w + 3 * BlockBytes, xq + 3 * XB, Avx512F.PermuteVar16x32(d, Vector512.Create(3)));
            acc0 = Avx512Block(acc0, w + 4 * BlockBytes, xq + 4 * XB, Avx512F.PermuteVar16x32(d, Vector512.Create(4)));
            acc1 = Avx512Block(acc1, w + 5 * BlockBytes, xq + 5 * XB, Avx512F.PermuteVar16x32(d, Vector512.Create(5)));
            acc0 = Avx512Block(acc0, w + 6 * BlockBytes, xq + 6 * XB, Avx512F.PermuteVar16x32(d, Vector512.Create(6)));
            acc1 = Avx512Block(acc1, w + 7 * BlockBytes, xq + 7 * XB, Avx512F.PermuteVar16x32(d, Vector512.Create(7)));
        }
        for (; b < nb; b++, w += BlockBytes, xq += XB)
            acc0 = Avx512Block(acc0, w, xq, Vector512.Create(Fp16.Read(w) * Fp16.Read(xq)));
        return Vector512.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Avx512Block(Vector512<float> acc, byte* wb, byte* yb, Vector512<float> d)
    {
        Vector512<short> q = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(wb + 2)));
        Vector512<short> y = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(yb + 2)));
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(q, y);
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), d, acc);
    }
}
