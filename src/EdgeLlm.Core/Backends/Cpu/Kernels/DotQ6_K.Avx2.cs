using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ6_K
{
    /// <summary>
    /// Per 128-weight half: ql (2 × 32 bytes) and qh (32 bytes) give four ymm of unsigned 6-bit q (0..63), each the
    /// 32 weights matching 32 contiguous activations; vpmaddubsw (≤ 16002, no saturation), then vpmaddwd with the two
    /// group scales (int8 → int16, pshufb'd to [sc_g ×8 | sc_g+1 ×8]) — vpdpwssd under AVX-VNNI. The −32 offset is
    /// −32·Σ_g sc_g·bsums_g, one vpmaddwd per block. All int32-exact; one FMA with d·d_x per block.
    /// </summary>
    private static float Avx2Loop<TVnni>(byte* w, byte* xq, int nb) where TVnni : struct, IIsaFlag
    {
        Vector256<float> acc = Vector256<float>.Zero;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            Vector128<sbyte> sc = Vector128.Load((sbyte*)(wb + ScalesOffset));
            Vector256<int> offset = Avx2.MultiplyAddAdjacent(
                Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), Avx2.ConvertToVector256Int16(sc));
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector256<int> isum = Avx2Half<TVnni>(Vector256<int>.Zero, wb, wb + QhOffset, y, sc, 0);
            isum = Avx2Half<TVnni>(isum, wb + 64, wb + QhOffset + 32, y + 128, sc, 8);
            isum -= offset << 5;
            float d = Fp16.Read(wb + DOffset) * Unsafe.ReadUnaligned<float>(yb);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(d), acc);
        }
        return Vector256.Sum(acc);
    }

    /// <summary>One 128-weight half; g0 is the index of its first group (0 or 8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2Half<TVnni>(Vector256<int> isum, byte* ql, byte* qh, sbyte* y, Vector128<sbyte> sc, int g0)
        where TVnni : struct, IIsaFlag
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        Vector256<byte> m2 = Vector256.Create((byte)0x03);
        Vector256<byte> l0 = Vector256.Load(ql);
        Vector256<byte> l1 = Vector256.Load(ql + 32);
        Vector256<ushort> h = Vector256.Load(qh).AsUInt16();
        Vector256<byte> q1 = (l0 & m4) | ((h.AsByte() & m2).AsUInt16() << 4).AsByte();
        Vector256<byte> q2 = (l1 & m4) | (((h >>> 2).AsByte() & m2).AsUInt16() << 4).AsByte();
        Vector256<byte> q3 = ((l0.AsUInt16() >>> 4).AsByte() & m4) | (((h >>> 4).AsByte() & m2).AsUInt16() << 4).AsByte();
        Vector256<byte> q4 = ((l1.AsUInt16() >>> 4).AsByte() & m4) | (((h >>> 6).AsByte() & m2).AsUInt16() << 4).AsByte();
        isum = Avx2Quarter<TVnni>(isum, q1, y, sc, g0);
        isum = Avx2Quarter<TVnni>(isum, q2, y + 32, sc, g0 + 2);
        isum = Avx2Quarter<TVnni>(isum, q3, y + 64, sc, g0 + 4);
        return Avx2Quarter<TVnni>(isum, q4, y + 96, sc, g0 + 6);
    }

    /// <summary>32 weights of groups g and g+1 against their activations, scaled per group.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2Quarter<TVnni>(Vector256<int> isum, Vector256<byte> q, sbyte* y, Vector128<sbyte> sc, int g)
        where TVnni : struct, IIsaFlag
    {
        Vector256<short> p = Avx2.MultiplyAddAdjacent(q, Vector256.Load(y));
        Vector128<sbyte> pick = Vector128.Create((ulong)g * 0x0101010101010101UL, (ulong)(g + 1) * 0x0101010101010101UL).AsSByte();
        Vector256<short> s = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(sc, pick));
        if (TVnni.Enabled) return AvxVnni.MultiplyWideningAndAdd(isum, p, s);
        return isum + Avx2.MultiplyAddAdjacent(p, s);
    }
}
