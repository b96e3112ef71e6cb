using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ3_K
{
    /// <summary>
    /// Per 128-weight half, two zmm: [qs &amp; 3 | (qs >> 2) &amp; 3] and [(qs >> 4) &amp; 3 | qs >> 6] are weights 0..63
    /// and 64..127 of the half in activation order; the hmask bits come from [hmask | hmask >> 1] (one zmm per block)
    /// with bit 4h or 4h + 2 moved to bit 2. vpmaddubsw, vpmaddwd with [sc_g ×8, sc_g+1 ×8, sc_g+2 ×8, sc_g+3 ×8]
    /// (vpermw), int32 sum; the −4 offset via bsums as in the AVX2 rung; one FMA with d·d_x per block.
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        Vector512<short> idx0 = GroupIndex(0), idx1 = GroupIndex(4), idx2 = GroupIndex(8), idx3 = GroupIndex(12);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            Vector256<short> sc16 = Avx2.ConvertToVector256Int16((UnpackScales(wb + ScalesOffset) - Vector128.Create((byte)32)).AsSByte());
            Vector256<int> offset = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), sc16);
            Vector512<short> scales = sc16.ToVector512Unsafe();
            Vector256<byte> h = Vector256.Load(wb);
            Vector512<byte> hh = Avx512Join.Join(h, (h.AsUInt16() >>> 1).AsByte());
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector512<int> isum = Avx512Half(wb + QsOffset, hh, y, scales, idx0, idx1, 0);
            isum += Avx512Half(wb + QsOffset + 32, hh, y + 128, scales, idx2, idx3, 1);
            isum -= (offset << 2).ToVector512();
            float d = Fp16.Read(wb + DOffset) * Unsafe.ReadUnaligned<float>(yb);
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(d), acc);
        }
        return Vector512.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Avx512Half(byte* qs, Vector512<byte> hh, sbyte* y, Vector512<short> scales,
        Vector512<short> idxA, Vector512<short> idxB, int h)
    {
        Vector256<ushort> q = Vector256.Load(qs).AsUInt16();
        Vector512<byte> m3 = Vector512.Create((byte)3);
        Vector512<byte> a = (Avx512Join.Join(q.AsByte(), (q >>> 2).AsByte()) & m3) | HighBit512(hh, 4 * h);
        Vector512<byte> c = (Avx512Join.Join((q >>> 4).AsByte(), (q >>> 6).AsByte()) & m3) | HighBit512(hh, 4 * h + 2);
        Vector512<short> pa = Avx512BW.MultiplyAddAdjacent(a, Vector512.Load(y));
        Vector512<short> pc = Avx512BW.MultiplyAddAdjacent(c, Vector512.Load(y + 64));
        return Avx512BW.MultiplyAddAdjacent(pa, Avx512BW.PermuteVar32x16(scales, idxA))
             + Avx512BW.MultiplyAddAdjacent(pc, Avx512BW.PermuteVar32x16(scales, idxB));
    }

    /// <summary>Bit k (0, 2, 4 or 6) of every byte moved to bit 2, the rest 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> HighBit512(Vector512<byte> h, int k)
    {
        Vector512<ushort> v = h.AsUInt16();
        Vector512<ushort> s = k switch { 0 => v << 2, 2 => v, _ => v >>> (k - 2) };
        return s.AsByte() & Vector512.Create((byte)4);
    }

    /// <summary>vpermw indices: 8 int16 lanes each of groups g, g+1, g+2, g+3 (one group per 128-bit lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<short> GroupIndex(int g) => Vector512.Create(
        Vector256.Create(Vector128.Create((short)g), Vector128.Create((short)(g + 1))),
        Vector256.Create(Vector128.Create((short)(g + 2)), Vector128.Create((short)(g + 3))));
}
