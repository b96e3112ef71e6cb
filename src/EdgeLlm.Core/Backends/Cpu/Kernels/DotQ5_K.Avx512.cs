using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ5_K
{
    /// <summary>
    /// One 64-weight chunk per zmm, as Q4_K's AVX-512 rung: the 32 qs bytes and their high nibbles side by side
    /// ([sub 2c | sub 2c+1]) match 64 contiguous activations; the fifth bits come from [qh | qh >> 1] (one zmm per
    /// block) with bit 2c moved to bit 4 by a constant shift and a mask. vpmaddubsw, vpmaddwd with
    /// [sc_2c ×16, sc_2c+1 ×16], int32 sum over the block, one FMA with d·d_x. Mins as in the AVX2 rung (256-bit).
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        Vector256<float> accMin = Vector256<float>.Zero;
        Vector512<short> idx0 = ScaleIndex(0), idx1 = ScaleIndex(2), idx2 = ScaleIndex(4), idx3 = ScaleIndex(6);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            Vector128<byte> sm = DotQ4_K.UnpackScalesMins(wb + ScalesOffset);
            Vector256<short> minPairs = DotQ4_K.MinPairs(sm);
            Vector512<short> scales = Sse41.ConvertToVector128Int16(sm).ToVector256Unsafe().ToVector512Unsafe();
            Quants512(wb, out Vector512<byte> n0, out Vector512<byte> n1, out Vector512<byte> n2, out Vector512<byte> n3);
            Token512(ref acc, ref accMin, xq + b * ActivationQuant.Q8_KBlockBytes, n0, n1, n2, n3,
                Avx512BW.PermuteVar32x16(scales, idx0), Avx512BW.PermuteVar32x16(scales, idx1),
                Avx512BW.PermuteVar32x16(scales, idx2), Avx512BW.PermuteVar32x16(scales, idx3),
                minPairs, DotQ4_K.DAndDmin(wb));
        }
        return Vector512.Sum(acc) - Vector256.Sum(accMin);
    }

    /// <summary>The block's 256 five-bit q in activation order, 64 per zmm.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quants512(byte* wb, out Vector512<byte> n0, out Vector512<byte> n1, out Vector512<byte> n2, out Vector512<byte> n3)
    {
        Vector256<byte> h = Vector256.Load(wb + QhOffset);
        Vector512<byte> hh = Avx512Join.Join(h, (h.AsUInt16() >>> 1).AsByte());
        byte* q = wb + QsOffset;
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        n0 = Chunk512(q, hh, m4, 0);
        n1 = Chunk512(q + 32, hh, m4, 1);
        n2 = Chunk512(q + 64, hh, m4, 2);
        n3 = Chunk512(q + 96, hh, m4, 3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Chunk512(byte* q, Vector512<byte> hh, Vector512<byte> m4, int c)
    {
        Vector256<byte> packed = Vector256.Load(q);
        Vector512<byte> nib = Avx512Join.Join(packed, (packed.AsUInt16() >>> 4).AsByte()) & m4;
        Vector512<ushort> v = hh.AsUInt16();
        Vector512<ushort> s = c switch { 0 => v << 4, 1 => v << 2, 2 => v, _ => v >>> 2 };
        return nib | (s.AsByte() & Vector512.Create((byte)0x10));
    }

    /// <summary>One token's share of a block: the step of both <see cref="Avx512Loop"/> and the four-token loop.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Token512(ref Vector512<float> acc, ref Vector256<float> accMin, byte* yb,
        Vector512<byte> n0, Vector512<byte> n1, Vector512<byte> n2, Vector512<byte> n3,
        Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3,
        Vector256<short> minPairs, Vector128<float> dd)
    {
        Vector128<float> ddy = dd * Vector128.Create(Unsafe.ReadUnaligned<float>(yb));
        Vector256<int> mprod = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), minPairs);
        accMin = Fma.MultiplyAdd(Avx.ConvertToVector256Single(mprod), Avx2.PermuteVar8x32(ddy.ToVector256Unsafe(), Vector256.Create(1)), accMin);
        sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n0, Vector512.Load(y)), s0);
        isum += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n1, Vector512.Load(y + 64)), s1);
        isum += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n2, Vector512.Load(y + 128)), s2);
        isum += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n3, Vector512.Load(y + 192)), s3);
        acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Avx512F.BroadcastScalarToVector512(ddy), acc);
    }

    /// <summary>vpermw indices: 16 lanes of sub-block j, then 16 of j+1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> ScaleIndex(int j) =>
        Vector512.Create(Vector256.Create((short)j), Vector256.Create((short)(j + 1)));
}
