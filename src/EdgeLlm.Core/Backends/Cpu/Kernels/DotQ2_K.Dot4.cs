using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One Q2_K row · four tokens' Q8_K activations (prefill's register block). Per block the weight side — the 4-bit scales (as vpmaddwd lanes) and mins, d and dmin, and on AVX-512 the 2-bit q of all four
/// 64-weight quarters — is
/// unpacked once and applied to every token with the one-token loops' per-token step (<c>Token512</c>,
/// <c>Token256</c>), so the results are bit-identical to four <see cref="Dot"/> calls.
/// </summary>
public static unsafe partial class DotQ2_K
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
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ2_K), Rung.Avx2);
        Avx2Loop4<VnniOn>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void Avx512Loop4(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero;
        Vector256<float> m0 = Vector256<float>.Zero, m1 = Vector256<float>.Zero, m2 = Vector256<float>.Zero, m3 = Vector256<float>.Zero;
        Vector512<short> idx0 = DotQ3_K.GroupIndex(0), idx1 = DotQ3_K.GroupIndex(4), idx2 = DotQ3_K.GroupIndex(8), idx3 = DotQ3_K.GroupIndex(12);
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            long yo = (long)b * ActivationQuant.Q8_KBlockBytes;
            Vector128<byte> sm = Vector128.Load(wb);
            Vector256<short> mins = Avx2.ConvertToVector256Int16((sm.AsUInt16() >>> 4).AsByte() & m4).AsInt16();
            Vector512<short> scales = Avx2.ConvertToVector256Int16(sm & m4).AsInt16().ToVector512Unsafe();
            Weights512(wb, out Vector512<byte> q0, out Vector512<byte> q1, out Vector512<byte> q2, out Vector512<byte> q3);
            Vector512<short> s0 = Avx512BW.PermuteVar32x16(scales, idx0), s1 = Avx512BW.PermuteVar32x16(scales, idx1);
            Vector512<short> s2 = Avx512BW.PermuteVar32x16(scales, idx2), s3 = Avx512BW.PermuteVar32x16(scales, idx3);
            float d = Fp16.Read(wb + DOffset), dmin = Fp16.Read(wb + DminOffset);
            Token512(ref a0, ref m0, xq + yo, mins, q0, q1, q2, q3, s0, s1, s2, s3, d, dmin);
            Token512(ref a1, ref m1, xq + xqStride + yo, mins, q0, q1, q2, q3, s0, s1, s2, s3, d, dmin);
            Token512(ref a2, ref m2, xq + 2 * xqStride + yo, mins, q0, q1, q2, q3, s0, s1, s2, s3, d, dmin);
            Token512(ref a3, ref m3, xq + 3 * xqStride + yo, mins, q0, q1, q2, q3, s0, s1, s2, s3, d, dmin);
        }
        dst[0] = Vector512.Sum(a0) - Vector256.Sum(m0);
        dst[dstStride] = Vector512.Sum(a1) - Vector256.Sum(m1);
        dst[2 * dstStride] = Vector512.Sum(a2) - Vector256.Sum(m2);
        dst[3 * dstStride] = Vector512.Sum(a3) - Vector256.Sum(m3);
    }

    private static void Avx2Loop4<TVnni>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
        Vector256<float> m0 = Vector256<float>.Zero, m1 = Vector256<float>.Zero, m2 = Vector256<float>.Zero, m3 = Vector256<float>.Zero;
        Vector128<byte> evenOdd = Vector128.Create((byte)0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            long yo = (long)b * ActivationQuant.Q8_KBlockBytes;
            Avx2Scales(wb, evenOdd, out Vector256<short> mins, out Vector256<byte> lanes);
            float d = Fp16.Read(wb + DOffset), dmin = Fp16.Read(wb + DminOffset);
            Token256<TVnni>(ref a0, ref m0, xq + yo, wb, mins, lanes, d, dmin);
            Token256<TVnni>(ref a1, ref m1, xq + xqStride + yo, wb, mins, lanes, d, dmin);
            Token256<TVnni>(ref a2, ref m2, xq + 2 * xqStride + yo, wb, mins, lanes, d, dmin);
            Token256<TVnni>(ref a3, ref m3, xq + 3 * xqStride + yo, wb, mins, lanes, d, dmin);
        }
        dst[0] = Vector256.Sum(a0) - Vector256.Sum(m0);
        dst[dstStride] = Vector256.Sum(a1) - Vector256.Sum(m1);
        dst[2 * dstStride] = Vector256.Sum(a2) - Vector256.Sum(m2);
        dst[3 * dstStride] = Vector256.Sum(a3) - Vector256.Sum(m3);
    }
}
