using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ6_K
{
    /// <summary>
    /// Per 128-weight half, two zmm: the 64 ql bytes' low nibbles with qh's bit pairs 0 and 1 are weights 0..63 of the
    /// half, their high nibbles with bit pairs 2 and 3 are weights 64..127 — each lines up with 64 contiguous
    /// activations. vpmaddubsw, vpmaddwd with [sc_g ×8, sc_g+1 ×8, sc_g+2 ×8, sc_g+3 ×8] (vpermw), int32 sum; the −32
    /// offset via bsums as in the AVX2 rung. One FMA with d·d_x per block.
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        Vector512<short> idx0 = GroupIndex(0), idx1 = GroupIndex(4), idx2 = GroupIndex(8), idx3 = GroupIndex(12);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            Vector256<short> sc16 = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(wb + ScalesOffset)));
            Vector256<int> offset = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), sc16);
            Vector512<short> scales = sc16.ToVector512Unsafe();
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector512<int> isum = Avx512Half(wb, wb + QhOffset, y, scales, idx0, idx1);
            isum += Avx512Half(wb + 64, wb + QhOffset + 32, y + 128, scales, idx2, idx3);
            isum -= (offset << 5).ToVector512();
            float d = Fp16.Read(wb + DOffset) * Unsafe.ReadUnaligned<float>(yb);
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(d), acc);
        }
        return Vector512.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Avx512Half(byte* ql, byte* qh, sbyte* y, Vector512<short> scales, Vector512<short> idxA, Vector512<short> idxB)
    {
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        Vector512<byte> m2 = Vector512.Create((byte)0x03);
        Vector512<byte> l = Vector512.Load(ql);
        Vector256<byte> h = Vector256.Load(qh);
        Vector512<byte> hh = Avx512Join.Join(h, (h.AsUInt16() >>> 2).AsByte()); // bit pairs 0|1, then 2|3 via >> 4
        Vector512<byte> a = (l & m4) | ((hh & m2).AsUInt16() << 4).AsByte();
        Vector512<byte> bq = ((l.AsUInt16() >>> 4).AsByte() & m4) | (((hh.AsUInt16() >>> 4).AsByte() & m2).AsUInt16() << 4).AsByte();
        Vector512<short> pa = Avx512BW.MultiplyAddAdjacent(a, Vector512.Load(y));
        Vector512<short> pb = Avx512BW.MultiplyAddAdjacent(bq, Vector512.Load(y + 64));
        return Avx512BW.MultiplyAddAdjacent(pa, Avx512BW.PermuteVar32x16(scales, idxA))
             + Avx512BW.MultiplyAddAdjacent(pb, Avx512BW.PermuteVar32x16(scales, idxB));
    }

    /// <summary>vpermw indices: 8 int16 lanes each of groups g, g+1, g+2, g+3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> GroupIndex(int g) => Vector512.Create(
        Vector256.Create(Vector128.Create((short)g), Vector128.Create((short)(g + 1))),
        Vector256.Create(Vector128.Create((short)(g + 2)), Vector128.Create((short)(g + 3))));
}
