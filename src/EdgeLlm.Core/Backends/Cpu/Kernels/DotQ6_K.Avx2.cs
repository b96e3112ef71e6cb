using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ6_K
{
    /// <summary>
    /// Per 128-weight half: ql (2 × 32 bytes) and qh (32 bytes) give four ymm of unsigned 6-bit q (0..63), each the
    /// 32 weights matching 32 contiguous activations; vpmaddubsw (≤ 16002, no saturation), then vpmaddwd with the two
    /// group scales [sc_g ×8 | sc_g+1 ×8] — vpdpwssd under AVX-VNNI. The scales are widened once per block to int16 with
    /// the even groups in the low 128-bit lane and the odd ones in the high lane, so each quarter's pair is one in-lane
    /// vpshufb. With GFNI (<typeparamref name="TGfni"/>) one vgf2p8affineqb per quarter moves qh's bit pair to bits
    /// 4..5 (instead of shift, mask, shift). The −32 offset is −32·Σ_g sc_g·bsums_g, one vpmaddwd per block. All
    /// int32-exact; one FMA with d·d_x per block. The weights are prefetched as on AVX-512 (<see cref="PrefetchWeights"/>:
    /// one core streaming from DRAM, 7.2 → 12.2 GB/s with AVX-VNNI and GFNI).
    /// </summary>
    private static float Avx2Loop<TVnni, TGfni>(byte* w, byte* xq, int nb)
        where TVnni : struct, IIsaFlag where TGfni : struct, IIsaFlag
    {
        Vector256<float> acc = Vector256<float>.Zero;
        Vector128<byte> evenOdd = Vector128.Create((byte)0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            PrefetchWeights(wb);
            Vector128<sbyte> sc = Vector128.Load((sbyte*)(wb + ScalesOffset));
            Vector256<int> offset = Avx2.MultiplyAddAdjacent(
                Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), Avx2.ConvertToVector256Int16(sc));
            Vector256<byte> lanes = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(sc, evenOdd.AsSByte())).AsByte();
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector256<int> isum = Avx2Half<TVnni, TGfni>(Vector256<int>.Zero, wb, wb + QhOffset, y, lanes, 0);
            isum = Avx2Half<TVnni, TGfni>(isum, wb + 64, wb + QhOffset + 32, y + 128, lanes, 4);
            isum -= offset << 5;
            float d = Fp16.Read(wb + DOffset) * Unsafe.ReadUnaligned<float>(yb);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(d), acc);
        }
        return Vector256.Sum(acc);
    }

    /// <summary>One 128-weight half; j0 is the word of its first group pair in <c>lanes</c> (0 or 4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2Half<TVnni, TGfni>(Vector256<int> isum, byte* ql, byte* qh, sbyte* y, Vector256<byte> lanes, int j0)
        where TVnni : struct, IIsaFlag where TGfni : struct, IIsaFlag
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        Vector256<byte> l0 = Vector256.Load(ql);
        Vector256<byte> l1 = Vector256.Load(ql + 32);
        Vector256<byte> h = Vector256.Load(qh);
        Vector256<byte> lo0 = l0 & m4, lo1 = l1 & m4;
        Vector256<byte> hi0 = (l0.AsUInt16() >>> 4).AsByte() & m4, hi1 = (l1.AsUInt16() >>> 4).AsByte() & m4;
        Vector256<byte> q1, q2, q3, q4;
        if (TGfni.Enabled)
        {
            q1 = lo0 | Gfni.V256.GaloisFieldAffineTransform(h, Vector256.Create(PairToBits45(0)).AsByte(), 0);
            q2 = lo1 | Gfni.V256.GaloisFieldAffineTransform(h, Vector256.Create(PairToBits45(1)).AsByte(), 0);
            q3 = hi0 | Gfni.V256.GaloisFieldAffineTransform(h, Vector256.Create(PairToBits45(2)).AsByte(), 0);
            q4 = hi1 | Gfni.V256.GaloisFieldAffineTransform(h, Vector256.Create(PairToBits45(3)).AsByte(), 0);
        }
        else
        {
            Vector256<byte> m2 = Vector256.Create((byte)0x03);
            Vector256<ushort> h16 = h.AsUInt16();
            q1 = lo0 | ((h & m2).AsUInt16() << 4).AsByte();
            q2 = lo1 | (((h16 >>> 2).AsByte() & m2).AsUInt16() << 4).AsByte();
            q3 = hi0 | (((h16 >>> 4).AsByte() & m2).AsUInt16() << 4).AsByte();
            q4 = hi1 | (((h16 >>> 6).AsByte() & m2).AsUInt16() << 4).AsByte();
        }
        isum = Avx2Quarter<TVnni>(isum, q1, y, lanes, j0);
        isum = Avx2Quarter<TVnni>(isum, q2, y + 32, lanes, j0 + 1);
        isum = Avx2Quarter<TVnni>(isum, q3, y + 64, lanes, j0 + 2);
        return Avx2Quarter<TVnni>(isum, q4, y + 96, lanes, j0 + 3);
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
