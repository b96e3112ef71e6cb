using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One IQ4_XS row · four tokens' Q8_K activations (prefill's register block). Per block the weight side — the
/// scales, and per sub-block pair the grid values (and on AVX-512 their magnitudes and signs) — is unpacked once and
/// applied to every token with the one-token loops' per-token step (<c>Avx2PairToken</c>, <c>Avx512PairToken</c>);
/// each token's block sum is exact int32 and goes through the same float FMA as in <see cref="Dot"/>, so the results are
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
        Vector512<sbyte> grid;
        fixed (byte* g = Grid) grid = Vector512.Create(Vector256.Load((sbyte*)g), Vector256.Load((sbyte*)g));
        Vector512<short> idx0 = PairIndex(0), idx1 = PairIndex(2), idx2 = PairIndex(4), idx3 = PairIndex(6);
        sbyte* y0 = (sbyte*)(xq + ActivationQuant.Q8_KQsOffset);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            long yo = (long)b * ActivationQuant.Q8_KBlockBytes;
            Vector512<short> scales = Avx512Scales(wb);
            Vector512<int> i0 = Vector512<int>.Zero, i1 = Vector512<int>.Zero, i2 = Vector512<int>.Zero, i3 = Vector512<int>.Zero;
            Pair4(ref i0, ref i1, ref i2, ref i3, wb + QsOffset, y0 + yo, xqStride, grid, Avx512BW.PermuteVar32x16(scales, idx0));
            Pair4(ref i0, ref i1, ref i2, ref i3, wb + QsOffset + 32, y0 + yo + 64, xqStride, grid, Avx512BW.PermuteVar32x16(scales, idx1));
            Pair4(ref i0, ref i1, ref i2, ref i3, wb + QsOffset + 64, y0 + yo + 128, xqStride, grid, Avx512BW.PermuteVar32x16(scales, idx2));
            Pair4(ref i0, ref i1, ref i2, ref i3, wb + QsOffset + 96, y0 + yo + 192, xqStride, grid, Avx512BW.PermuteVar32x16(scales, idx3));
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

    /// <summary>One sub-block pair against four tokens (activations <paramref name="y"/> + t·<paramref name="stride"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pair4(ref Vector512<int> i0, ref Vector512<int> i1, ref Vector512<int> i2, ref Vector512<int> i3,
        byte* q, sbyte* y, long stride, Vector512<sbyte> grid, Vector512<short> s)
    {
        Vector512<sbyte> k = Avx512Grid(q, grid);
        Vector512<byte> absK = Avx512BW.Abs(k).AsByte();
        Vector512<sbyte> negative = Vector512.LessThan(k, Vector512<sbyte>.Zero);
        i0 += Avx512PairToken(absK, negative, y, s);
        i1 += Avx512PairToken(absK, negative, y + stride, s);
        i2 += Avx512PairToken(absK, negative, y + 2 * stride, s);
        i3 += Avx512PairToken(absK, negative, y + 3 * stride, s);
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
