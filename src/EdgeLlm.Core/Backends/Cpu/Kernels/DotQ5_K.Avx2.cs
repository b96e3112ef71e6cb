using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ5_K
{
    /// <summary>
    /// As Q4_K's AVX2 rung, with the fifth bit or-ed in: per 64-weight chunk c the 32 qs bytes give the low nibbles
    /// (sub-block 2c) and high nibbles (2c+1); qh (loaded once per block, and a copy shifted right by one) has bit 2c
    /// of each byte moved to bit 4 by a constant 16-bit shift and a mask. vpmaddubsw (q5 ≤ 31: ≤ 7874, no
    /// saturation), vpmaddwd with the sub-block scale (vpdpwssd under AVX-VNNI), int32 sum over the block; the mins
    /// term is one vpmaddwd of the bsums with [m0, m0, m1, m1, …] in its own float accumulator.
    /// </summary>
    private static float Avx2Loop<TVnni>(byte* w, byte* xq, int nb) where TVnni : struct, IIsaFlag
    {
        Vector256<float> acc = Vector256<float>.Zero, accMin = Vector256<float>.Zero;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            Vector128<byte> sm = DotQ4_K.UnpackScalesMins(wb + ScalesOffset);
            Vector256<short> minPairs = DotQ4_K.MinPairs(sm);
            Vector128<short> sc16 = Sse41.ConvertToVector128Int16(sm);
            Token256<TVnni>(ref acc, ref accMin, xq + b * ActivationQuant.Q8_KBlockBytes, wb,
                Vector256.Create(sc16, sc16).AsByte(), minPairs, DotQ4_K.DAndDmin(wb));
        }
        return Vector256.Sum(acc) - Vector256.Sum(accMin);
    }

    /// <summary>One token's share of a block, the step of the one-token AVX2 loop.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Token256<TVnni>(ref Vector256<float> acc, ref Vector256<float> accMin, byte* yb, byte* wb,
        Vector256<byte> scales, Vector256<short> minPairs, Vector128<float> dd) where TVnni : struct, IIsaFlag
    {
        sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
        byte* q = wb + QsOffset;
        Vector256<byte> qh = Vector256.Load(wb + QhOffset);
        Vector256<byte> qh1 = (qh.AsUInt16() >>> 1).AsByte();
        Vector256<int> isum = Avx2Chunk<TVnni>(Vector256<int>.Zero, q, qh, qh1, y, scales, 0);
        isum = Avx2Chunk<TVnni>(isum, q + 32, qh, qh1, y + 64, scales, 1);
        isum = Avx2Chunk<TVnni>(isum, q + 64, qh, qh1, y + 128, scales, 2);
        isum = Avx2Chunk<TVnni>(isum, q + 96, qh, qh1, y + 192, scales, 3);
        Finish256(ref acc, ref accMin, yb, isum, minPairs, dd);
    }

    /// <summary>Chunk c (sub-blocks 2c, 2c+1); scales holds sc_0..7 as int16 in both 128-bit halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2Chunk<TVnni>(Vector256<int> isum, byte* q, Vector256<byte> qh, Vector256<byte> qh1,
        sbyte* y, Vector256<byte> scales, int c) where TVnni : struct, IIsaFlag
    {
        Vector256<byte> packed = Vector256.Load(q);
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        Vector256<byte> lo = (packed & m4) | HighBit256(qh, c);
        Vector256<byte> hi = ((packed.AsUInt16() >>> 4).AsByte() & m4) | HighBit256(qh1, c);
        Vector256<short> pLo = Avx2.MultiplyAddAdjacent(lo, Vector256.Load(y));
        Vector256<short> pHi = Avx2.MultiplyAddAdjacent(hi, Vector256.Load(y + 32));
        Vector256<short> sLo = Avx2.Shuffle(scales, Vector256.Create((ushort)(0x0100 + 0x0202 * (2 * c))).AsByte()).AsInt16();
        Vector256<short> sHi = Avx2.Shuffle(scales, Vector256.Create((ushort)(0x0100 + 0x0202 * (2 * c + 1))).AsByte()).AsInt16();
        if (TVnni.Enabled)
            return AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(isum, pLo, sLo), pHi, sHi);
        return isum + Avx2.MultiplyAddAdjacent(pLo, sLo) + Avx2.MultiplyAddAdjacent(pHi, sHi);
    }

    /// <summary>Bit 2c of every byte moved to bit 4 (16 for or-ing onto a nibble), the rest 0: a constant 16-bit shift that never crosses bytes for the bits kept.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> HighBit256(Vector256<byte> h, int c)
    {
        Vector256<ushort> v = h.AsUInt16();
        Vector256<ushort> s = c switch { 0 => v << 4, 1 => v << 2, 2 => v, _ => v >>> 2 };
        return s.AsByte() & Vector256.Create((byte)0x10);
    }
}
