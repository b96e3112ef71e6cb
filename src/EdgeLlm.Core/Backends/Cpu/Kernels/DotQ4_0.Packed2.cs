using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_0
{
    /// <summary>One repacked group (eight rows) · two tokens' panels: row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].</summary>
    public static void PackedDot2Avx512(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        Packed2(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>
    /// <see cref="Packed4"/> for two tokens (a decode step of two or three sequences): the weight side once per block
    /// for both, each token's lane sums in the same order as in <see cref="Packed4"/> and <see cref="Packed1"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Packed2(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride)
    {
        byte* y0 = panel, y1 = panel + panelBytes;
        long sOff = nb * 32L, cOff = nb * 36L;
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero;
        Vector512<int> pairs = PackedScalePairs();
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        byte* pb = group;
        for (int b = 0; b < nb; b++, pb += PackedBlockBytes)
        {
            WeightPrefetch.Lines3(pb);
            Vector512<float> dw = Avx512F.PermuteVar16x32(Vector256.Load((float*)pb).ToVector512Unsafe(), pairs);
            Vector512<byte> lo = Vector512.Load(pb + 32), hi = Vector512.Load(pb + 96);
            Vector512<byte> w0 = lo & m4, w2 = (lo.AsUInt16() >>> 4).AsByte() & m4;
            Vector512<byte> w1 = hi & m4, w3 = (hi.AsUInt16() >>> 4).AsByte() & m4;
            long qo = 32L * b, fo = 4L * b;
            a0 = PackedToken(a0, w0, w1, w2, w3, dw, y0 + qo, *(float*)(y0 + sOff + fo), *(float*)(y0 + cOff + fo));
            a1 = PackedToken(a1, w0, w1, w2, w3, dw, y1 + qo, *(float*)(y1 + sOff + fo), *(float*)(y1 + cOff + fo));
        }
        FoldPairs(a0, dst);
        FoldPairs(a1, dst + dstStride);
    }
}
