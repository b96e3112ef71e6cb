using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotIQ4_NL
{
    /// <summary>
    /// One block per step in a ymm: the 16 packed bytes become 32 nibbles (low = elements 0..15, high = 16..31, the
    /// activation order) and vpshufb looks up the grid values v = K[nibble] (−127..113). vpmaddubsw needs an unsigned
    /// operand, so (as ggml) Σ v·y = Σ |v|·(y·sign v): vpabsb, vpsignb, then vpmaddubsw + vpmaddwd (pairs ≤ 2·127·127,
    /// no saturation) or AVX-VNNI vpdpbusd; int → float, FMA with d_w·d_x. Eight blocks per step with their scales
    /// from <see cref="BlockScales"/>, two accumulators; the remainder converts scales one by one.
    /// </summary>
    private static float Avx2Loop<TVnni>(byte* w, byte* xq, int nb) where TVnni : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        Vector256<sbyte> grid = Vector256.Create(Grid(), Grid());
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes, xq += 8 * XB)
        {
            WeightPrefetch.Lines3(w);
            Vector256<float> d = BlockScales.Products8(w, wOff, xq, xOff);
            acc0 = Avx2Block<TVnni>(acc0, w, xq, BlockScales.Broadcast(d, 0), grid);
            acc1 = Avx2Block<TVnni>(acc1, w + BlockBytes, xq + XB, BlockScales.Broadcast(d, 1), grid);
            acc0 = Avx2Block<TVnni>(acc0, w + 2 * BlockBytes, xq + 2 * XB, BlockScales.Broadcast(d, 2), grid);
            acc1 = Avx2Block<TVnni>(acc1, w + 3 * BlockBytes, xq + 3 * XB, BlockScales.Broadcast(d, 3), grid);
            acc0 = Avx2Block<TVnni>(acc0, w + 4 * BlockBytes, xq + 4 * XB, BlockScales.Broadcast(d, 4), grid);
            acc1 = Avx2Block<TVnni>(acc1, w + 5 * BlockBytes, xq + 5 * XB, BlockScales.Broadcast(d, 5), grid);
            acc0 = Avx2Block<TVnni>(acc0, w + 6 * BlockBytes, xq + 6 * XB, BlockScales.Broadcast(d, 6), grid);
            acc1 = Avx2Block<TVnni>(acc1, w + 7 * BlockBytes, xq + 7 * XB, BlockScales.Broadcast(d, 7), grid);
        }
        for (; b < nb; b++, w += BlockBytes, xq += XB)
            acc0 = Avx2Block<TVnni>(acc0, w, xq, Vector256.Create(Fp16.Read(w) * Fp16.Read(xq)), grid);
        return Vector256.Sum(acc0 + acc1);
    }

    /// <summary>The 32 grid values of a block (signed bytes) in activation order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Avx2Quants(byte* wb, Vector256<sbyte> grid)
    {
        Vector128<byte> packed = Vector128.Load(wb + 2);
        Vector256<byte> nib = Vector256.Create(packed, Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
        return Avx2.Shuffle(grid, nib.AsSByte());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Avx2Block<TVnni>(Vector256<float> acc, byte* wb, byte* yb, Vector256<float> d, Vector256<sbyte> grid)
        where TVnni : struct, IIsaFlag => Avx2Token<TVnni>(acc, Avx2Quants(wb, grid), yb, d);

    /// <summary>One token's share of a block (shared with the four-token loop): acc + d·Σ v·y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Avx2Token<TVnni>(Vector256<float> acc, Vector256<sbyte> v, byte* yb, Vector256<float> d)
        where TVnni : struct, IIsaFlag
    {
        Vector256<sbyte> y = Vector256.Load((sbyte*)(yb + 2));
        Vector256<byte> av = Avx2.Abs(v);
        Vector256<sbyte> sy = Avx2.Sign(y, v);
        Vector256<int> isum = TVnni.Enabled
            ? AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, av, sy)
            : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(av, sy), Vector256.Create((short)1));
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), d, acc);
    }
}
