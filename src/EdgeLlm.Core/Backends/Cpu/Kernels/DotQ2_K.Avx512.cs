using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ2_K
{
    /// <summary>
    /// Per 128-weight half, two zmm: [qs &amp; 3 | (qs >> 2) &amp; 3] and [(qs >> 4) &amp; 3 | qs >> 6] are weights 0..63
    /// and 64..127 of the half in activation order; vpmaddubsw, vpmaddwd with [sc_g ×8, sc_g+1 ×8, sc_g+2 ×8,
    /// sc_g+3 ×8] (vpermw from the 16 int16 scales), int32 sum, one FMA with d·d_x per block. Mins as in the AVX2 rung.
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        Vector256<float> accMin = Vector256<float>.Zero;
        Vector512<short> idx0 = DotQ3_K.GroupIndex(0), idx1 = DotQ3_K.GroupIndex(4), idx2 = DotQ3_K.GroupIndex(8), idx3 = DotQ3_K.GroupIndex(12);
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            Vector128<byte> sm = Vector128.Load(wb);
            Vector256<short> mins = Avx2.ConvertToVector256Int16((sm.AsUInt16() >>> 4).AsByte() & m4).AsInt16();
            Vector512<short> scales = Avx2.ConvertToVector256Int16(sm & m4).AsInt16().ToVector512Unsafe();
            Weights512(wb, out Vector512<byte> a0, out Vector512<byte> c0, out Vector512<byte> a1, out Vector512<byte> c1);
            Token512(ref acc, ref accMin, xq + b * ActivationQuant.Q8_KBlockBytes, mins, a0, c0, a1, c1,
                Avx512BW.PermuteVar32x16(scales, idx0), Avx512BW.PermuteVar32x16(scales, idx1),
                Avx512BW.PermuteVar32x16(scales, idx2), Avx512BW.PermuteVar32x16(scales, idx3),
                Fp16.Read(wb + DOffset), Fp16.Read(wb + DminOffset));
        }
        return Vector512.Sum(acc) - Vector256.Sum(accMin);
    }

    /// <summary>The block's 256 two-bit q in activation order, 64 per zmm.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Weights512(byte* wb, out Vector512<byte> a0, out Vector512<byte> c0, out Vector512<byte> a1, out Vector512<byte> c1)
    {
        Vector512<byte> m3 = Vector512.Create((byte)3);
        Vector256<ushort> q = Vector256.Load(wb + QsOffset).AsUInt16();
        a0 = Avx512Join.Join(q.AsByte(), (q >>> 2).AsByte()) & m3;
        c0 = Avx512Join.Join((q >>> 4).AsByte(), (q >>> 6).AsByte()) & m3;
        q = Vector256.Load(wb + QsOffset + 32).AsUInt16();
        a1 = Avx512Join.Join(q.AsByte(), (q >>> 2).AsByte()) & m3;
        c1 = Avx512Join.Join((q >>> 4).AsByte(), (q >>> 6).AsByte()) & m3;
    }

    /// <summary>One token's share of a block: the step of both AVX-512 loops.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Token512(ref Vector512<float> acc, ref Vector256<float> accMin, byte* yb, Vector256<short> mins,
        Vector512<byte> a0, Vector512<byte> c0, Vector512<byte> a1, Vector512<byte> c1,
        Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3, float d, float dmin)
    {
        float dy = Unsafe.ReadUnaligned<float>(yb);
        Vector256<int> mprod = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), mins);
        accMin = Fma.MultiplyAdd(Avx.ConvertToVector256Single(mprod), Vector256.Create(dmin * dy), accMin);
        sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(a0, Vector512.Load(y)), s0)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(c0, Vector512.Load(y + 64)), s1);
        isum += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(a1, Vector512.Load(y + 128)), s2)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(c1, Vector512.Load(y + 192)), s3);
        acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(d * dy), acc);
    }
}
