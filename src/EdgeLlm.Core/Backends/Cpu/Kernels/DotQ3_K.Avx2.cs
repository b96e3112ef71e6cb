using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ3_K
{
    /// <summary>
    /// Per 128-weight half, one ymm of qs: quarter j is (qs >> 2j) &amp; 3 or-ed with the hmask bit 4h + j moved to bit 2
    /// (a constant 16-bit shift and a mask on the block's hmask ymm) — the unsigned q3 (0..7) of 32 weights matching
    /// 32 contiguous activations. vpmaddubsw (≤ 1778), vpmaddwd with [sc_g ×8 | sc_g+1 ×8] (the signed scales widened
    /// once per block, even groups in the low 128-bit lane and odd in the high, so each pair is an in-lane vpshufb;
    /// vpdpwssd under AVX-VNNI). The −4 offset is −4·Σ_g sc_g·bsums_g, one vpmaddwd per block; one FMA with d·d_x.
    /// </summary>
    private static float Avx2Loop<TVnni>(byte* w, byte* xq, int nb) where TVnni : struct, IIsaFlag
    {
        Vector256<float> acc = Vector256<float>.Zero;
        Vector128<sbyte> evenOdd = Vector128.Create((sbyte)0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            Avx2Scales(wb, evenOdd, out Vector256<short> sc16, out Vector256<byte> lanes);
            Token256<TVnni>(ref acc, xq + b * ActivationQuant.Q8_KBlockBytes, wb, sc16, lanes, Fp16.Read(wb + DOffset));
        }
        return Vector256.Sum(acc);
    }

    /// <summary>The signed scales as int16 in group order (for the offset) and as lanes (even groups low, odd high).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx2Scales(byte* wb, Vector128<sbyte> evenOdd, out Vector256<short> sc16, out Vector256<byte> lanes)
    {
        Vector128<sbyte> sc = (UnpackScales(wb + ScalesOffset) - Vector128.Create((byte)32)).AsSByte();
        sc16 = Avx2.ConvertToVector256Int16(sc);
        lanes = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(sc, evenOdd)).AsByte();
    }

    /// <summary>One token's share of a block, the step of both AVX2 loops (the 3-bit unpack is cheap on ymm and redone per token).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Token256<TVnni>(ref Vector256<float> acc, byte* yb, byte* wb, Vector256<short> sc16, Vector256<byte> lanes, float d)
        where TVnni : struct, IIsaFlag
    {
        Vector256<int> offset = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), sc16);
        Vector256<byte> hm = Vector256.Load(wb);
        sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
        Vector256<int> isum = Avx2Half<TVnni>(Vector256<int>.Zero, wb + QsOffset, hm, y, lanes, 0);
        isum = Avx2Half<TVnni>(isum, wb + QsOffset + 32, hm, y + 128, lanes, 1);
        isum -= offset << 2;
        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(d * Unsafe.ReadUnaligned<float>(yb)), acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2Half<TVnni>(Vector256<int> isum, byte* qs, Vector256<byte> hm, sbyte* y, Vector256<byte> lanes, int h)
        where TVnni : struct, IIsaFlag
    {
        Vector256<ushort> q = Vector256.Load(qs).AsUInt16();
        Vector256<byte> m3 = Vector256.Create((byte)3);
        isum = Avx2Quarter<TVnni>(isum, (q.AsByte() & m3) | HighBit256(hm, 4 * h), y, lanes, 4 * h);
        isum = Avx2Quarter<TVnni>(isum, ((q >>> 2).AsByte() & m3) | HighBit256(hm, 4 * h + 1), y + 32, lanes, 4 * h + 1);
        isum = Avx2Quarter<TVnni>(isum, ((q >>> 4).AsByte() & m3) | HighBit256(hm, 4 * h + 2), y + 64, lanes, 4 * h + 2);
        return Avx2Quarter<TVnni>(isum, ((q >>> 6).AsByte() & m3) | HighBit256(hm, 4 * h + 3), y + 96, lanes, 4 * h + 3);
    }

    /// <summary>Bit k of every byte moved to bit 2 (the value 4), the rest 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> HighBit256(Vector256<byte> h, int k)
    {
        Vector256<ushort> v = h.AsUInt16();
        Vector256<ushort> s = k switch { 0 => v << 2, 1 => v << 1, 2 => v, _ => v >>> (k - 2) };
        return s.AsByte() & Vector256.Create((byte)4);
    }

    /// <summary>32 weights of groups 2j and 2j+1 against their activations, scaled per group (word j of each lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2Quarter<TVnni>(Vector256<int> isum, Vector256<byte> q, sbyte* y, Vector256<byte> lanes, int j)
        where TVnni : struct, IIsaFlag
    {
        Vector256<short> p = Avx2.MultiplyAddAdjacent(q, Vector256.Load(y));
        Vector256<short> s = Avx2.Shuffle(lanes, Vector256.Create((ushort)(2 * j | (2 * j + 1) << 8)).AsByte()).AsInt16();
        if (TVnni.Enabled) return AvxVnni.MultiplyWideningAndAdd(isum, p, s);
        return isum + Avx2.MultiplyAddAdjacent(p, s);
    }
}
