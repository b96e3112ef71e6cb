using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One Q5_1 row · four tokens' Q8_1 activations (prefill's register block). The AVX-512 loop unpacks each eight-block
/// step's 5-bit codes and gathers its d and m once for all four tokens; the AVX2 loop shares the gathered d and m between
/// two tokens at a time (unpacking is cheap on ymm). Each token then runs the per-token steps of the one-token
/// loops, so the results are bit-identical to four <see cref="Dot"/> calls.
/// </summary>
public static unsafe partial class DotQ5_1
{
    /// <summary>Whether the selected rung has a four-token loop (AVX-512, AVX2); elsewhere <see cref="Dot4"/> calls <see cref="Dot"/> four times.</summary>
    public static bool Dot4Accelerated => KernelRung.Selected is Rung.Avx512 or Rung.Avx2;

    /// <summary>
    /// Row <paramref name="w"/> · tokens t = 0..3 at <paramref name="xq"/> + t·<paramref name="xqStride"/> (Q8_1 rows of
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
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ5_1), Rung.Avx2);
        Avx2Loop4<VnniOn>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void Avx512Loop4(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        Vector512<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
        Vector256<float> m0 = default, m1 = default, m2 = default, m3 = default;
        float r0 = 0f, r1 = 0f, r2 = 0f, r3 = 0f, o0 = 0f, o1 = 0f, o2 = 0f, o3 = 0f;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* wb = w + (long)b * BlockBytes;
            long yo = (long)b * XB;
            WeightPrefetch.Lines3(wb);
            Vector512<byte> q01 = Avx512Quants(wb), q23 = Avx512Quants(wb + 2 * BlockBytes);
            Vector512<byte> q45 = Avx512Quants(wb + 4 * BlockBytes), q67 = Avx512Quants(wb + 6 * BlockBytes);
            Vector256<float> dw = BlockScales.Half8(wb, wOff), mw = BlockScales.Half8(wb + 2, wOff);
            Avx512Group(ref a0, ref b0, ref m0, x0 + yo, q01, q23, q45, q67, dw, mw, xOff);
            Avx512Group(ref a1, ref b1, ref m1, x1 + yo, q01, q23, q45, q67, dw, mw, xOff);
            Avx512Group(ref a2, ref b2, ref m2, x2 + yo, q01, q23, q45, q67, dw, mw, xOff);
            Avx512Group(ref a3, ref b3, ref m3, x3 + yo, q01, q23, q45, q67, dw, mw, xOff);
        }
        for (; b + 2 <= nb; b += 2)
        {
            byte* wb = w + (long)b * BlockBytes;
            long yo = (long)b * XB;
            Vector512<byte> q = Avx512Quants(wb);
            Avx512RestPair(ref a0, ref r0, q, wb, x0 + yo);
            Avx512RestPair(ref a1, ref r1, q, wb, x1 + yo);
            Avx512RestPair(ref a2, ref r2, q, wb, x2 + yo);
            Avx512RestPair(ref a3, ref r3, q, wb, x3 + yo);
        }
        if (b < nb)
        {
            byte* wb = w + (long)b * BlockBytes;
            long yo = (long)b * XB;
            Vector256<byte> q = Avx2Quants(wb);
            Avx512Odd(ref o0, ref r0, q, wb, x0 + yo);
            Avx512Odd(ref o1, ref r1, q, wb, x1 + yo);
            Avx512Odd(ref o2, ref r2, q, wb, x2 + yo);
            Avx512Odd(ref o3, ref r3, q, wb, x3 + yo);
        }
        dst[0] = Avx512Finish(a0, b0, m0, r0, o0);
        dst[dstStride] = Avx512Finish(a1, b1, m1, r1, o1);
        dst[2 * dstStride] = Avx512Finish(a2, b2, m2, r2, o2);
        dst[3 * dstStride] = Avx512Finish(a3, b3, m3, r3, o3);
    }

    private static void Avx2Loop4<TVnni>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_1BlockBytes;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        for (int t = 0; t < 4; t += 2)
        {
            // Two tokens at a time: six accumulators and the shared scales stay in the sixteen ymm.
            Vector256<float> a0 = default, b0 = default, m0 = default, a1 = default, b1 = default, m1 = default;
            float r0 = 0f, r1 = 0f;
            byte* x0 = xq + t * xqStride, x1 = xq + (t + 1) * xqStride;
            int b = 0;
            for (; b + 8 <= nb; b += 8)
            {
                byte* wb = w + (long)b * BlockBytes;
                long yo = (long)b * XB;
                WeightPrefetch.Lines3(wb);
                Vector256<float> dw = BlockScales.Half8(wb, wOff), mw = BlockScales.Half8(wb + 2, wOff);
                Avx2Group<TVnni>(ref a0, ref b0, ref m0, wb, x0 + yo, dw, mw, xOff);
                Avx2Group<TVnni>(ref a1, ref b1, ref m1, wb, x1 + yo, dw, mw, xOff);
            }
            for (; b < nb; b++)
            {
                byte* wb = w + (long)b * BlockBytes;
                long yo = (long)b * XB;
                Vector256<byte> q = Avx2Quants(wb);
                Avx2Rest<TVnni>(ref a0, ref r0, q, wb, x0 + yo);
                Avx2Rest<TVnni>(ref a1, ref r1, q, wb, x1 + yo);
            }
            dst[t * dstStride] = Avx2Finish(a0, b0, m0, r0);
            dst[(t + 1) * dstStride] = Avx2Finish(a1, b1, m1, r1);
        }
    }
}
