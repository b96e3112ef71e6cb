using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One Q5_K row · four tokens' Q8_K activations (prefill's register block). Per block the weight side — scales and
/// mins, the five-bit q (AVX-512: all four chunks in zmm), the scale lanes, d and dmin — is unpacked once and applied
/// to every token; the one-token loops run the same per-token step (<c>Token512</c>, <c>Token256</c>), so the results
/// are bit-identical to four <see cref="Dot"/> calls.
/// </summary>
public static unsafe partial class DotQ5_K
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
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ5_K), Rung.Avx2);
        Avx2Loop4<VnniOn>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void Avx512Loop4(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero;
        Vector256<float> m0 = Vector256<float>.Zero, m1 = Vector256<float>.Zero, m2 = Vector256<float>.Zero, m3 = Vector256<float>.Zero;
        Vector512<short> idx0 = ScaleIndex(0), idx1 = ScaleIndex(2), idx2 = ScaleIndex(4), idx3 = ScaleIndex(6);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            long yo = (long)b * ActivationQuant.Q8_KBlockBytes;
            DotQ4_K.UnpackScales(wb + ScalesOffset, out ulong sc, out ulong mn);
            float d = Fp16.Read(wb), dmin = Fp16.Read(wb + 2);
            Vector128<byte> mins = Vector128.CreateScalar(mn).AsByte();
            Vector256<short> minPairs = Avx2.ConvertToVector256Int16(Sse2.UnpackLow(mins, mins));
            Vector512<short> scales = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(sc).AsByte()).ToVector256Unsafe().ToVector512Unsafe();
            Vector512<short> s0 = Avx512BW.PermuteVar32x16(scales, idx0), s1 = Avx512BW.PermuteVar32x16(scales, idx1);
            Vector512<short> s2 = Avx512BW.PermuteVar32x16(scales, idx2), s3 = Avx512BW.PermuteVar32x16(scales, idx3);
            Quants512(wb, out Vector512<byte> n0, out Vector512<byte> n1, out Vector512<byte> n2, out Vector512<byte> n3);

            Token512(ref a0, ref m0, x0 + yo, n0, n1, n2, n3, s0, s1, s2, s3, minPairs, d, dmin);
            Token512(ref a1, ref m1, x1 + yo, n0, n1, n2, n3, s0, s1, s2, s3, minPairs, d, dmin);
            Token512(ref a2, ref m2, x2 + yo, n0, n1, n2, n3, s0, s1, s2, s3, minPairs, d, dmin);
            Token512(ref a3, ref m3, x3 + yo, n0, n1, n2, n3, s0, s1, s2, s3, minPairs, d, dmin);
        }
        dst[0] = Vector512.Sum(a0) - Vector256.Sum(m0);
        dst[dstStride] = Vector512.Sum(a1) - Vector256.Sum(m1);
        dst[2 * dstStride] = Vector512.Sum(a2) - Vector256.Sum(m2);
        dst[3 * dstStride] = Vector512.Sum(a3) - Vector256.Sum(m3);
    }

    private static void Avx2Loop4<TVnni>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        for (int t = 0; t < 4; t += 2)
        {
            // Two tokens at a time, as Q4_K's AVX2 four-token loop: the bit unpack is cheap on ymm, scales and mins are shared.
            Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, m0 = Vector256<float>.Zero, m1 = Vector256<float>.Zero;
            byte* x0 = xq + t * xqStride, x1 = xq + (t + 1) * xqStride;
            for (int b = 0; b < nb; b++)
            {
                byte* wb = w + b * BlockBytes;
                WeightPrefetch.Lines3(wb);
                long yo = (long)b * ActivationQuant.Q8_KBlockBytes;
                DotQ4_K.UnpackScales(wb + ScalesOffset, out ulong sc, out ulong mn);
                float d = Fp16.Read(wb), dmin = Fp16.Read(wb + 2);
                Vector128<byte> mins = Vector128.CreateScalar(mn).AsByte();
                Vector256<short> minPairs = Avx2.ConvertToVector256Int16(Sse2.UnpackLow(mins, mins));
                Vector128<short> sc16 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(sc).AsByte());
                Vector256<byte> scales = Vector256.Create(sc16, sc16).AsByte();
                Token256<TVnni>(ref a0, ref m0, x0 + yo, wb, scales, minPairs, d, dmin);
                Token256<TVnni>(ref a1, ref m1, x1 + yo, wb, scales, minPairs, d, dmin);
            }
            dst[t * dstStride] = Vector256.Sum(a0) - Vector256.Sum(m0);
            dst[(t + 1) * dstStride] = Vector256.Sum(a1) - Vector256.Sum(m1);
        }
    }
}
