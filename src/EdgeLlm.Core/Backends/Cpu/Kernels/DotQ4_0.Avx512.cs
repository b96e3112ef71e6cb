using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_0
{
    /// <summary>
    /// Two blocks per zmm: the 2 × 16 packed bytes are expanded to 64 nibbles and their 128-bit lanes reordered to
    /// [b0 low, b0 high, b1 low, b1 high], which is exactly the order of the two activation blocks' 64 bytes.
    /// vpmaddubsw(q, y) − vpmaddubsw(8, y), vpmaddwd with 1, so int32 lanes 0..7 belong to block 0 and 8..15 to
    /// block 1; int → float and an FMA with [d0 ×8, d1 ×8]. Four blocks per step, two accumulators; an odd last
    /// block goes through the 256-bit path.
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
        int b = 0;
        for (; b + 4 <= nb; b += 4)
        {
            acc0 = Avx512Pair(acc0, w + b * BlockBytes, xq + b * ActivationQuant.Q8_0BlockBytes);
            acc1 = Avx512Pair(acc1, w + (b + 2) * BlockBytes, xq + (b + 2) * ActivationQuant.Q8_0BlockBytes);
        }
        if (b + 2 <= nb)
        {
            acc0 = Avx512Pair(acc0, w + b * BlockBytes, xq + b * ActivationQuant.Q8_0BlockBytes);
            b += 2;
        }
        float sum = Vector512.Sum(acc0 + acc1);
        if (b < nb)
            sum += Vector256.Sum(Avx2Block<VnniOff>(Vector256<float>.Zero, w + b * BlockBytes, xq + b * ActivationQuant.Q8_0BlockBytes));
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Avx512Pair(Vector512<float> acc, byte* wb, byte* yb)
    {
        Vector256<byte> packed = Vector256.Create(Vector128.Load(wb + 2), Vector128.Load(wb + BlockBytes + 2));
        Vector512<byte> nib = Vector512.Create(packed, Avx2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()); // [lo0, lo1, hi0, hi1]
        Vector512<byte> q = Avx512F.Shuffle4x128(nib.AsUInt32(), nib.AsUInt32(), 0b11_01_10_00).AsByte() & Vector512.Create((byte)0x0F);
        Vector512<sbyte> y = Vector512.Create(
            Vector256.Load((sbyte*)(yb + 2)),
            Vector256.Load((sbyte*)(yb + ActivationQuant.Q8_0BlockBytes + 2)));
        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(q, y) - Avx512BW.MultiplyAddAdjacent(Vector512.Create((byte)8), y);
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(p, Vector512.Create((short)1));
        float d0 = Fp16.Read(wb) * Fp16.Read(yb);
        float d1 = Fp16.Read(wb + BlockBytes) * Fp16.Read(yb + ActivationQuant.Q8_0BlockBytes);
        Vector512<float> d = Vector512.Create(Vector256.Create(d0), Vector256.Create(d1));
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), d, acc);
    }
}
