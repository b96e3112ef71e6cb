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
            Weights512(wb, out Vector256<short> sc16, out Vector512<byte> a0, out Vector512<byte> c0, out Vector512<byte> a1, out Vector512<byte> c1);
            Vector512<short> scales = sc16.ToVector512Unsafe();
            Token512(ref acc, xq + b * ActivationQuant.Q8_KBlockBytes, sc16, a0, c0, a1, c1,
                Avx512BW.PermuteVar32x16(scales, idx0), Avx512BW.PermuteVar32x16(scales, idx1),
                Avx512BW.PermuteVar32x16(scales, idx2), Avx512BW.PermuteVar32x16(scales, idx3), Fp16.Read(wb + DOffset));
        }
        return Vector512.Sum(acc);
    }

    /// <summary>The block's signed scales (int16) and its 256 unsigned q3 in activation order, 64 per zmm.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Weights512(byte* wb, out Vector256<short> sc16,
        out Vector512<byte> a0, out Vector512<byte> c0, out Vector512<byte> a1, out Vector512<byte> c1)
    {
        sc16 = Avx2.ConvertToVector256Int16((UnpackScales(wb + ScalesOffset) - Vector128.Create((byte)32)).AsSByte());
        Vector256<byte> h = Vector256.Load(wb);
        Vector512<byte> hh = Avx512Join.Join(h, (h.AsUInt16() >>> 1).AsByte());
        Half512(wb + QsOffset, hh, 0, out a0, out c0);
        Half512(wb + QsOffset + 32, hh, 1, out a1, out c1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Half512(byte* qs, Vector512<byte> hh, int h, out Vector512<byte> a, out Vector512<byte> c)
    {
        Vector256<ushort> q = Vector256.Load(qs).AsUInt16();
        Vector512<byte> m3 = Vector512.Create((byte)3);
        a = (Avx512Join.Join(q.AsByte(), (q >>> 2).AsByte()) & m3) | HighBit512(hh, 4 * h);
        c = (Avx512Join.Join((q >>> 4).AsByte(), (q >>> 6).AsByte()) & m3) | HighBit512(hh, 4 * h + 2);
    }

    /// <summary>One token's share of a block: the step of both AVX-512 loops.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Token512(ref Vector512<float> acc, byte* yb, Vector256<short> sc16,
        Vector512<byte> a0, Vector512<byte> c0, Vector512<byte> a1, Vector512<byte> c1,
        Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3, float d)
    {
        Vector256<int> offset = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), sc16);
        sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(a0, Vector512.Load(y)), s0)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(c0, Vector512.Load(y + 64)), s1);
        isum += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(a1, Vector512.Load(y + 128)), s2)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(c1, Vector512.Load(y + 192)), s3);
        isum -= (offset << 2).ToVector512();
        acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(d * Unsafe.ReadUnaligned<float>(yb)), acc);
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
