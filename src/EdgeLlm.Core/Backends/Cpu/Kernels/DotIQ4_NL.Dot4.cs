using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One IQ4_NL row · four tokens' Q8_0 activations (prefill's register block). The AVX-512 loop unpacks each eight-block
/// step's grid values and gathers its scales once for all four tokens; the AVX2 loop shares the gathered scales between
/// two tokens at a time (the lookup is cheap on ymm). Each token then runs the per-token steps of the one-token loops, so
/// the results are bit-identical to four <see cref="Dot"/> calls.
/// </summary>
public static unsafe partial class DotIQ4_NL
{
    /// <summary>Whether the selected rung has a four-token loop (AVX-512, AVX2); elsewhere <see cref="Dot4"/> calls <see cref="Dot"/> four times.</summary>
    public static bool Dot4Accelerated => KernelRung.Selected is Rung.Avx512 or Rung.Avx2;

    /// <summary>
    /// Row <paramref name="w"/> · tokens t = 0..3 at <paramref name="xq"/> + t·<paramref name="xqStride"/> (Q8_0 rows of
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
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotIQ4_NL), Rung.Avx2);
        Avx2Loop4<VnniOn>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void Avx512Loop4(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector512<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
        float o0 = 0f, o1 = 0f, o2 = 0f, o3 = 0f;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        Vector256<sbyte> grid256 = Vector256.Create(Grid(), Grid());
        Vector512<sbyte> grid = Vector512.Create(grid256, grid256);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* wb = w + (long)b * BlockBytes;
            long yo = (long)b * XB;
            WeightPrefetch.Lines3(wb);
            Vector512<sbyte> q01 = Avx512Quants(wb, grid), q23 = Avx512Quants(wb + 2 * BlockBytes, grid);
            Vector512<sbyte> q45 = Avx512Quants(wb + 4 * BlockBytes, grid), q67 = Avx512Quants(wb + 6 * BlockBytes, grid);
            Vector256<float> dw = BlockScales.Half8(wb, wOff);
            Avx512Group(ref a0, ref b0, x0 + yo, q01, q23, q45, q67, dw, xOff);
            Avx512Group(ref a1, ref b1, x1 + yo, q01, q23, q45, q67, dw, xOff);
            Avx512Group(ref a2, ref b2, x2 + yo, q01, q23, q45, q67, dw, xOff);
            Avx512Group(ref a3, ref b3, x3 + yo, q01, q23, q45, q67, dw, xOff);
        }
        for (; b + 2 <= nb; b += 2)
        {
            byte* wb = w + (long)b * BlockBytes;
            long yo = (long)b * XB;
            Vector512<sbyte> q = Avx512Quants(wb, grid);
            Avx512RestPair(ref a0, q, wb, x0 + yo);
            Avx512RestPair(ref a1, q, wb, x1 + yo);
            Avx512RestPair(ref a2, q, wb, x2 + yo);
            Avx512RestPair(ref a3, q, wb, x3 + yo);
        }
        if (b < nb)
        {
            byte* wb = w + (long)b * BlockBytes;
            long yo = (long)b * XB;
            Vector256<sbyte> q = Avx2Quants(wb, grid256);
            Avx512Odd(ref o0, q, wb, x0 + yo);
            Avx512Odd(ref o1, q, wb, x1 + yo);
            Avx512Odd(ref o2, q, wb, x2 + yo);
            Avx512Odd(ref o3, q, wb, x3 + yo);
        }
        dst[0] = Vector512.Sum(a0 + b0) + o0;
        dst[dstStride] = Vector512.Sum(a1 + b1) + o1;
        dst[2 * dstStride] = Vector512.Sum(a2 + b2) + o2;
        dst[3 * dstStride] = Vector512.Sum(a3 + b3) + o3;
    }

    private static void Avx2Loop4<TVnni>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        Vector256<sbyte> grid = Vector256.Create(Grid(), Grid());
        for (int t = 0; t < 4; t += 2)
        {
            // Two tokens at a time: four accumulators and the shared scales stay in the sixteen ymm.
            Vector256<float> a0 = default, b0 = default, a1 = default, b1 = default;
            byte* x0 = xq + t * xqStride, x1 = xq + (t + 1) * xqStride;
            int b = 0;
            for (; b + 8 <= nb; b += 8)
            {
                byte* wb = w + (long)b * BlockBytes;
                long yo = (long)b * XB;
                WeightPrefetch.Lines3(wb);
                Vector256<float> dw = BlockScales.Half8(wb, wOff);
                Avx2Group<TVnni>(ref a0, ref b0, wb, x0 + yo, dw, xOff, grid);
                Avx2Group<TVnni>(ref a1, ref b1, wb, x1 + yo, dw, xOff, grid);
            }
            for (; b < nb; b++)
            {
                byte* wb = w + (long)b * BlockBytes;
                long yo = (long)b * XB;
                Vector256<sbyte> q = Avx2Quants(wb, grid);
                Avx2Rest<TVnni>(ref a0, q, wb, x0 + yo);
                Avx2Rest<TVnni>(ref a1, q, wb, x1 + yo);
            }
            dst[t * dstStride] = Vector256.Sum(a0 + b0);
            dst[(t + 1) * dstStride] = Vector256.Sum(a1 + b1);
        }
    }
}
