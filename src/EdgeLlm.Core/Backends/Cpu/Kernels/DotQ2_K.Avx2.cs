using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ2_K
{
    /// <summary>
    /// Per 128-weight half, one ymm of qs: quarter j is (qs >> 2j) &amp; 3, the 32 weights matching 32 contiguous
    /// activations; vpmaddubsw (≤ 762), vpmaddwd with [sc_g ×8 | sc_g+1 ×8] (the 4-bit scales widened once per block,
    /// even groups in the low 128-bit lane and odd in the high: an in-lane vpshufb per quarter; vpdpwssd under
    /// AVX-VNNI), int32 sum over the block, one FMA with d·d_x. The mins term is one vpmaddwd of the 16 bsums with the
    /// 16 mins, in its own float accumulator (× dmin·d_x), subtracted at the end.
    /// </summary>
    private static float Avx2Loop<TVnni>(byte* w, byte* xq, int nb) where TVnni : struct, IIsaFlag
    {
        Vector256<float> acc = Vector256<float>.Zero, accMin = Vector256<float>.Zero;
        Vector128<byte> evenOdd = Vector128.Create((byte)0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            Avx2Scales(wb, evenOdd, out Vector256<short> mins, out Vector256<byte> lanes);
            Token256<TVnni>(ref acc, ref accMin, xq + b * ActivationQuant.Q8_KBlockBytes, wb, mins, lanes,
                Fp16.Read(wb + DOffset), Fp16.Read(wb + DminOffset));
        }
        return Vector256.Sum(acc) - Vector256.Sum(accMin);
    }

    /// <summary>The 16 mins as int16 in group order and the 16 scales as lanes (even groups low, odd high).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx2Scales(byte* wb, Vector128<byte> evenOdd, out Vector256<short> mins, out Vector256<byte> lanes)
    {
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector128<byte> sm = Vector128.Load(wb);
        mins = Avx2.ConvertToVector256Int16((sm.AsUInt16() >>> 4).AsByte() & m4).AsInt16();
        lanes = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(sm & m4, evenOdd)).AsByte();
    }

    /// <summary>One token's share of a block, the step of both AVX2 loops.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Token256<TVnni>(ref Vector256<float> acc, ref Vector256<float> accMin, byte* yb, byte* wb,
        Vector256<short> mins, Vector256<byte> lanes, float d, float dmin) where TVnni : struct, IIsaFlag
    {
        float dy = Unsafe.ReadUnaligned<float>(yb);
        Vector256<int> mprod = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), mins);
        accMin = Fma.MultiplyAdd(Avx.ConvertToVector256Single(mprod), Vector256.Create(dmin * dy), accMin);
        sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
        Vector256<int> isum = Avx2Half<TVnni>(Vector256<int>.Zero, wb + QsOffset, y, lanes, 0);
        isum = Avx2Half<TVnni>(isum, wb + QsOffset + 32, y + 128, lanes, 1);
        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(d * dy), acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2Half<TVnni>(Vector256<int> isum, byte* qs, sbyte* y, Vector256<byte> lanes, int h)
        where TVnni : struct, IIsaFlag
    {
        Vector256<ushort> q = Vector256.Load(qs).AsUInt16();
        Vector256<byte> m3 = Vector256.Create((byte)3);
        isum = Avx2Quarter<TVnni>(isum, q.AsByte() & m3, y, lanes, 4 * h);
        isum = Avx2Quarter<TVnni>(isum, (q >>> 2).AsByte() & m3, y + 32, lanes, 4 * h + 1);
        isum = Avx2Quarter<TVnni>(isum, (q >>> 4).AsByte() & m3, y + 64, lanes, 4 * h + 2);
        return Avx2Quarter<TVnni>(isum, (q >>> 6).AsByte() & m3, y + 96, lanes, 4 * h + 3);
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
