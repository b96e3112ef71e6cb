using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One Q3_K row · four tokens' Q8_K activations (prefill's register block). Per block the weight side — the signed scales (int16 and as vpmaddwd lanes), and on AVX-512 the 3-bit q of all four 64-weight
/// quarters — is
/// unpacked once and applied to every token with the one-token loops' per-token step (<c>Token512</c>,
/// <c>Token256</c>), so the results are bit-identical to four <see cref="Dot"/> calls.
/// </summary>
public static unsafe partial class DotQ3_K
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
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ3_K), Rung.Avx2);
        Avx2Loop4<VnniOn>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void Avx512Loop4(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero;
        Vector512<short> idx0 = GroupIndex(0), idx1 = GroupIndex(4), idx2 = GroupIndex(8), idx3 = GroupIndex(12);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            long yo = (long)b * ActivationQuant.Q8_KBlockBytes;
            Weights512(wb, out Vector256<short> sc16, out Vector512<byte> q0, out Vector512<byte> q1, out Vector512<byte> q2, out Vector512<byte> q3);
            Vector512<short> scales = sc16.ToVector512Unsafe();
            Vector512<short> s0 = Avx512BW.PermuteVar32x16(scales, idx0), s1 = Avx512BW.PermuteVar32x16(scales, idx1);
            Vector512<short> s2 = Avx512BW.PermuteVar32x16(scales, idx2), s3 = Avx512BW.PermuteVar32x16(scales, idx3);
            float d = Fp16.Read(wb + DOffset);
            Token512(ref a0, xq + yo, sc16, q0, q1, q2, q3, s0, s1, s2, s3, d);
            Token512(ref a1, xq + xqStride + yo, sc16, q0, q1, q2, q3, s0, s1, s2, s3, d);
            Token512(ref a2, xq + 2 * xqStride + yo, sc16, q0, q1, q2, q3, s0, s1, s2, s3, d);
            Token512(ref a3, xq + 3 * xqStride + yo, sc16, q0, q1, q2, q3, s0, s1, s2, s3, d);
        }
        dst[0] = Vector512.Sum(a0);
        dst[dstStride] = Vector512.Sum(a1);
        dst[2 * dstStride] = Vector512.Sum(a2);
        dst[3 * dstStride] = Vector512.Sum(a3);
    }

    private static void Avx2Loop4<TVnni>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
        Vector128<sbyte> evenOdd = Vector128.Create((sbyte)0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            long yo = (long)b * ActivationQuant.Q8_KBlockBytes;
            Avx2Scales(wb, evenOdd, out Vector256<short> sc16, out Vector256<byte> lanes);
            float d = Fp16.Read(wb + DOffset);
            Token256<TVnni>(ref a0, xq + yo, wb, sc16, lanes, d);
            Token256<TVnni>(ref a1, xq + xqStride + yo, wb, sc16, lanes, d);
            Token256<TVnni>(ref a2, xq + 2 * xqStride + yo, wb, sc16, lanes, d);
            Token256<TVnni>(ref a3, xq + 3 * xqStride + yo, wb, sc16, lanes, d);
        }
        dst[0] = Vector256.Sum(a0);
        dst[dstStride] = Vector256.Sum(a1);
        dst[2 * dstStride] = Vector256.Sum(a2);
        dst[3 * dstStride] = Vector256.Sum(a3);
    }
}
