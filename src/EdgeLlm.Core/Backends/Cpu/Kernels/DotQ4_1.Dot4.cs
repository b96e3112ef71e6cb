using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One Q4_1 row · four tokens' Q8_1 activations (prefill's register block). The AVX-512 loop unpacks each eight-block
/// step's nibbles and gathers its d and m once for all four tokens; the AVX2 loop shares the gathered d and m between
/// two tokens at a time (unpacking nibbles is cheap on ymm). Each token then runs the per-token steps of the one-token
/// loops, so the results are bit-identical to four <see cref="Dot"/> calls.
/// </summary>
public static unsafe partial class DotQ4_1
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
            case Rung.Avx512: AffineQ8_1<Block>.Avx512Loop4(w, xq, xqStride, nb, dst, dstStride); return;
            case Rung.Avx2:
                if (KernelRung.UseAvxVnni) AffineQ8_1<Block>.Avx2Loop4<VnniOn>(w, xq, xqStride, nb, dst, dstStride);
                else AffineQ8_1<Block>.Avx2Loop4<VnniOff>(w, xq, xqStride, nb, dst, dstStride);
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
        AffineQ8_1<Block>.Avx512Loop4(w, xq, xqStride, nb, dst, dstStride);
    }

    /// <summary>The AVX2 four-token loop with AVX-VNNI on or off (tests, benchmarks).</summary>
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) { AffineQ8_1<Block>.Avx2Loop4<VnniOff>(w, xq, xqStride, nb, dst, dstStride); return; }
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_1), Rung.Avx2);
        AffineQ8_1<Block>.Avx2Loop4<VnniOn>(w, xq, xqStride, nb, dst, dstStride);
    }
}
