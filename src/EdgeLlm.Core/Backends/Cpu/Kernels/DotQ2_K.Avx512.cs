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
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            float dy = Unsafe.ReadUnaligned<float>(yb);
            Vector128<byte> sm = Vector128.Load(wb);
            Vector256<int> mprod = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)),
                Avx2.ConvertToVector256Int16((sm.AsUInt16() >>> 4).AsByte() & m4).AsInt16());
            accMin = Fma.MultiplyAdd(Avx.ConvertToVector256Single(mprod), Vector256.Create(Fp16.Read(wb + DminOffset) * dy), accMin);
            Vector512<short> scales = Avx2.ConvertToVector256Int16(sm & m4).AsInt16().ToVector512Unsafe();
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector512<int> isum = Avx512Half(wb + QsOffset, y, scales, idx0, idx1);
            isum += Avx512Half(wb + QsOffset + 32, y + 128, scales, idx2, idx3);
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(Fp16.Read(wb + DOffset) * dy), acc);
        }
        return Vector512.Sum(acc) - Vector256.Sum(accMin);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Avx512Half(byte* qs, sbyte* y, Vector512<short> scales, Vector512<short> idxA, Vector512<short> idxB)
    {
        Vector256<ushort> q = Vector256.Load(qs).AsUInt16();
        Vector512<byte> m3 = Vector512.Create((byte)3);
        Vector512<byte> a = Avx512Join.Join(q.AsByte(), (q >>> 2).AsByte()) & m3;
        Vector512<byte> c = Avx512Join.Join((q >>> 4).AsByte(), (q >>> 6).AsByte()) & m3;
        Vector512<short> pa = Avx512BW.MultiplyAddAdjacent(a, Vector512.Load(y));
        Vector512<short> pc = Avx512BW.MultiplyAddAdjacent(c, Vector512.Load(y + 64));
        return Avx512BW.MultiplyAddAdjacent(pa, Avx512BW.PermuteVar32x16(scales, idxA))
             + Avx512BW.MultiplyAddAdjacent(pc, Avx512BW.PermuteVar32x16(scales, idxB));
    }
}
