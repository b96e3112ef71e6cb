using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One IQ4_XS row · four tokens' Q8_K activations (prefill's register block). Per block the weight side — the
/// scales, and per sub-block pair (AVX2) or quad (AVX-512) the grid values, on AVX-512 split into positive and negative
/// parts — is unpacked once and applied to every token with the one-token loops' per-token step (<c>Avx2PairToken</c>,
/// <c>QuadToken</c>), so each token's int32 lanes and float FMAs are those of <see cref="Dot"/>: the results are
/// bit-identical to four <see cref="Dot"/> calls.
/// </summary>
public static unsafe partial class DotIQ4_XS
{
    /// <summary>Whether the selected rung has a four-token loop (AVX-512, AVX2); elsewhere <see cref="Dot4"/> calls <see cref="Dot"/> four times.</summary>
    public static bool Dot4Accelerated => KernelRung.Selected is Rung.Avx512 or Rung.Avx2;

    /// <summary>
    /// Row <paramref name="w"/> · tokens t = 0..3 at <paramref name="xq"/> + t·<paramref name="xqStride"/> (Q8_K rows of
    /// <paramref name="n"/> values); result t to <paramref name="dst"/>[t·<paramref name="dstStride"/>].
    /// </summary>
    public static void Dot4(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        switch (KernelRung.Selected)
        {
            case Rung.Avx512: Avx512Loop4(w, xq, xqStride, nb, dst, dstStride); return;
            case Rung.Avx2:
                if (KernelRung.UseAvxVnni) Avx2Loop4<VnniOn>(w, xq, xqStride, nb, dst, dstStride);
                else Avx2Loop4<VnniOff>(w, xq, xqStride, nb, dst, dstStride);
                return;
            default:
                for (int t = 0; t < 4; t++) dst[t * dstStride] = Dot(w, xq + t * xqStride, n);
                return;
        }
    }

    /// <summary>The AVX-512 four-token loop directly (tests, benchmarks).</summary>
    public static void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        Avx512Loop4(w, xq, xqStride, nb, dst, dstStride);
    }

    /// <summary>The AVX2 four-token loop with AVX-VNNI on or off (tests, benchmarks).</summary>
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) { Avx2Loop4<VnniOff>(w, xq, xqStride, nb, dst, dstStride); return; }
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotIQ4_XS), Rung.Avx2);
        Avx2Loop4<VnniOn>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void Avx512Loop4(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero;
        Avx512Tables(out Vector512<sbyte> pos, out Vector512<sbyte> neg);
        Vector256<uint> shiftL = Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28);
        Vector256<uint> shiftH = Vector256.Create(0u, 2, 4, 6, 8, 10, 12, 14);
        Vector512<short> g0 = DotQ3_K.GroupIndex(0), g1 = DotQ3_K.GroupIndex(4);
        Vector512<ulong> yLoIdx = Vector512.Create(0ul, 1, 4, 5, 8, 9, 12, 13), yHiIdx = Vector512.Create(2ul, 3, 6, 7, 10, 11, 14, 15);
        sbyte* y0 = (sbyte*)(xq + ActivationQuant.Q8_KQsOffset);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            long yo = (long)b * ActivationQuant.Q8_KBlockBytes;
            Vector512<short> scales = Avx512Scales(wb, shiftL, shiftH);
            Vector512<int> i0 = Vector512<int>.Zero, i1 = Vector512<int>.Zero, i2 = Vector512<int>.Zero, i3 = Vector512<int>.Zero;
            Quad4(ref i0, ref i1, ref i2, ref i3, wb + QsOffset, y0 + yo, xqStride, pos, neg, Avx512BW.PermuteVar32x16(scales, g0), yLoIdx, yHiIdx);
            Quad4(ref i0, ref i1, ref i2, ref i3, wb + QsOffset + 64, y0 + yo + 128, xqStride, pos, neg, Avx512BW.PermuteVar32x16(scales, g1), yLoIdx, yHiIdx);
            float d = Fp16.Read(wb);
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i0), Vector512.Create(d * Unsafe.ReadUnaligned<float>(xq + yo)), a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i1), Vector512.Create(d * Unsafe.ReadUnaligned<float>(xq + xqStride + yo)), a1);
            a2 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i2), Vector512.Create(d * Unsafe.ReadUnaligned<float>(xq + 2 * xqStride + yo)), a2);
            a3 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i3), Vector512.Create(d * Unsafe.ReadUnaligned<float>(xq + 3 * xqStride + yo)), a3);
        }
        dst[0] = Vector512.Sum(a0);
        dst[dstStride] = Vector512.Sum(a1);
        dst[2 * dstStride] = Vector512.Sum(a2);
        dst[3 * dstStride] = Vector512.Sum(a3);
    }

    /// <summary>Four sub-blocks against four tokens (activations <paramref name="y"/> + t·<paramref name="stride"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quad4(ref Vector512<int> i0, ref Vector512<int> i1, ref Vector512<int> i2, ref Vector512<int> i3,
        byte* q, sbyte* y, long stride, Vector512<sbyte> pos, Vector512<sbyte> neg, Vector512<short> s, Vector512<ulong> yLoIdx, Vector512<ulong> yHiIdx)
    {
        QuadWeights(q, pos, neg, out Vector512<byte> pLo, out Vector512<byte> nLo, out Vector512<byte> pHi, out Vector512<byte> nHi);
        i0 += QuadToken(pLo, nLo, pHi, nHi, y, s, yLoIdx, yHiIdx);
        i1 += QuadToken(pLo, nLo, pHi, nHi, y + stride, s, yLoIdx, yHiIdx);
        i2 += QuadToken(pLo, nLo, pHi, nHi, y + 2 * stride, s, yLoIdx, yHiIdx);
        i3 += QuadToken(pLo, nLo, pHi, nHi, y + 3 * stride, s, yLoIdx, yHiIdx);
    }

    private static void Avx2Loop4<TVnni>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
        Vector256<sbyte> grid;
        fixed (byte* g = Grid) grid = Vector256.Load((sbyte*)g);
        sbyte* y0 = (sbyte*)(xq + ActivationQuant.Q8_KQsOffset);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            long yo = (long)b * ActivationQuant.Q8_KBlockBytes;
            Vector256<byte> lanes = Avx2Lanes(wb);
            Vector256<int> i0 = Vector256<int>.Zero, i1 = Vector256<int>.Zero, i2 = Vector256<int>.Zero, i3 = Vector256<int>.Zero;
            for (int p = 0; p < 4; p++)
            {
                Avx2Grid(wb + QsOffset + 32 * p, grid, out Vector256<sbyte> kLo, out Vector256<sbyte> kHi);
                Vector256<short> s = PairScale(lanes, p);
                sbyte* y = y0 + yo + 64 * p;
                i0 = Avx2PairToken<TVnni>(i0, kLo, kHi, y, s);
                i1 = Avx2PairToken<TVnni>(i1, kLo, kHi, y + xqStride, s);
                i2 = Avx2PairToken<TVnni>(i2, kLo, kHi, y + 2 * xqStride, s);
                i3 = Avx2PairToken<TVnni>(i3, kLo, kHi, y + 3 * xqStride, s);
            }
            float d = Fp16.Read(wb);
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), Vector256.Create(d * Unsafe.ReadUnaligned<float>(xq + yo)), a0);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), Vector256.Create(d * Unsafe.ReadUnaligned<float>(xq + xqStride + yo)), a1);
            a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), Vector256.Create(d * Unsafe.ReadUnaligned<float>(xq + 2 * xqStride + yo)), a2);
            a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), Vector256.Create(d * Unsafe.ReadUnaligned<float>(xq + 3 * xqStride + yo)), a3);
        }
        dst[0] = Vector256.Sum(a0);
        dst[dstStride] = Vector256.Sum(a1);
        dst[2 * dstStride] = Vector256.Sum(a2);
        dst[3 * dstStride] = Vector256.Sum(a3);
    }
}
