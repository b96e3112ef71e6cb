using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One Q6_K row · four tokens' Q8_K activations (prefill's register block). AVX-512: per block the weight side — the
/// 256 6-bit values rebuilt from ql and qh (four zmm, GFNI or shifts as in the one-token loop) and the four vpmaddwd
/// scale vectors — is unpacked once and applied to all four tokens; each token then costs four vpmaddubsw, four
/// vpmaddwd, its bsums·scales offset and one FMA. AVX2: four tokens per pass over the row, each quarter of a 128-weight half
/// unpacked once for the four. The −32 offset of the 6-bit values is Σ_g bsums_g·(−32·sc_g): the scales times −32 are
/// formed once per block for the four tokens (int16: |−32·sc| ≤ 4096; the int32 pair sums ≤ 2·2048·4096), so each token
/// pays one vpmaddwd and one add for it instead of a vpmaddwd, a shift and a subtract. The integer block sums are exact
/// (the same int32 value however they are grouped) and the float steps (d·d_x, the FMA per block, the final sum) are
/// those of the one-token loops, so the results are bit-identical to four <see cref="Dot"/> calls.
/// </summary>
public static unsafe partial class DotQ6_K
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
        bool gfni512 = KernelRung.UseGfni && Gfni.V512.IsSupported, gfni256 = KernelRung.UseGfni && Gfni.V256.IsSupported;
        switch (KernelRung.Selected)
        {
            case Rung.Avx512:
                if (gfni512) Avx512Loop4<GfniOn>(w, xq, xqStride, nb, dst, dstStride);
                else Avx512Loop4<GfniOff>(w, xq, xqStride, nb, dst, dstStride);
                return;
            case Rung.Avx2:
                Avx2Dispatch4(w, xq, xqStride, nb, dst, dstStride, KernelRung.UseAvxVnni, gfni256);
                return;
            default:
                for (int t = 0; t < 4; t++) dst[t * dstStride] = Dot(w, xq + t * xqStride, n);
                return;
        }
    }

    /// <summary>The AVX-512 four-token loop with GFNI on or off (tests, benchmarks).</summary>
    public static void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool gfni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        if (!gfni) { Avx512Loop4<GfniOff>(w, xq, xqStride, nb, dst, dstStride); return; }
        if (!Gfni.V512.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ6_K), Rung.Avx512);
        Avx512Loop4<GfniOn>(w, xq, xqStride, nb, dst, dstStride);
    }

    /// <summary>The AVX2 four-token loop with AVX-VNNI and GFNI each on or off (tests, benchmarks).</summary>
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni, bool gfni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if ((vnni && !AvxVnni.IsSupported) || (gfni && !Gfni.V256.IsSupported)) KernelRung.ThrowUnsupported(nameof(DotQ6_K), Rung.Avx2);
        Avx2Dispatch4(w, xq, xqStride, nb, dst, dstStride, vnni, gfni);
    }

    private static void Avx2Dispatch4(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride, bool vnni, bool gfni)
    {
        if (vnni)
        {
            if (gfni) Avx2Loop4<VnniOn, GfniOn>(w, xq, xqStride, nb, dst, dstStride);
            else Avx2Loop4<VnniOn, GfniOff>(w, xq, xqStride, nb, dst, dstStride);
        }
        else if (gfni) Avx2Loop4<VnniOff, GfniOn>(w, xq, xqStride, nb, dst, dstStride);
        else Avx2Loop4<VnniOff, GfniOff>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void Avx512Loop4<TGfni>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TGfni : struct, IIsaFlag
    {
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero;
        Vector512<short> idx0 = GroupIndex(0), idx1 = GroupIndex(4), idx2 = GroupIndex(8), idx3 = GroupIndex(12);
        Vector512<byte> pairs01 = PairMatrix(0, 1), pairs23 = PairMatrix(2, 3);
        Vector512<byte> m4 = Vector512.Create((byte)0x0F), m2 = Vector512.Create((byte)0x03);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            PrefetchWeights(wb);
            long yo = (long)b * ActivationQuant.Q8_KBlockBytes;
            Vector256<short> sc16 = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(wb + ScalesOffset)));
            Vector256<short> scM32 = Vector256<short>.Zero - (sc16 << 5); // −32·sc_g, once for the four tokens
            Vector512<short> scales = sc16.ToVector512Unsafe();
            Vector512<short> s0 = Avx512BW.PermuteVar32x16(scales, idx0), s1 = Avx512BW.PermuteVar32x16(scales, idx1);
            Vector512<short> s2 = Avx512BW.PermuteVar32x16(scales, idx2), s3 = Avx512BW.PermuteVar32x16(scales, idx3);
            Vector512<byte> l0 = Vector512.Load(wb), l1 = Vector512.Load(wb + 64);
            Vector512<byte> q0, q1, q2, q3; // weights 0..63, 64..127 of the first half, then of the second
            if (TGfni.Enabled)
            {
                Vector512<ulong> qh = Vector512.Load((ulong*)(wb + QhOffset));
                Vector512<byte> h0 = Avx512F.Shuffle4x128(qh, qh, 0x44).AsByte(), h1 = Avx512F.Shuffle4x128(qh, qh, 0xEE).AsByte();
                q0 = (l0 & m4) | Gfni.V512.GaloisFieldAffineTransform(h0, pairs01, 0);
                q1 = ((l0.AsUInt16() >>> 4).AsByte() & m4) | Gfni.V512.GaloisFieldAffineTransform(h0, pairs23, 0);
                q2 = (l1 & m4) | Gfni.V512.GaloisFieldAffineTransform(h1, pairs01, 0);
                q3 = ((l1.AsUInt16() >>> 4).AsByte() & m4) | Gfni.V512.GaloisFieldAffineTransform(h1, pairs23, 0);
            }
            else
            {
                Vector256<byte> hA = Vector256.Load(wb + QhOffset), hB = Vector256.Load(wb + QhOffset + 32);
                Vector512<byte> hh0 = Avx512Join.Join(hA, (hA.AsUInt16() >>> 2).AsByte());
                Vector512<byte> hh1 = Avx512Join.Join(hB, (hB.AsUInt16() >>> 2).AsByte());
                q0 = (l0 & m4) | ((hh0 & m2).AsUInt16() << 4).AsByte();
                q1 = ((l0.AsUInt16() >>> 4).AsByte() & m4) | (((hh0.AsUInt16() >>> 4).AsByte() & m2).AsUInt16() << 4).AsByte();
                q2 = (l1 & m4) | ((hh1 & m2).AsUInt16() << 4).AsByte();
                q3 = ((l1.AsUInt16() >>> 4).AsByte() & m4) | (((hh1.AsUInt16() >>> 4).AsByte() & m2).AsUInt16() << 4).AsByte();
            }
            float dw = Fp16.Read(wb + DOffset);
            a0 = Token512(a0, x0 + yo, q0, q1, q2, q3, s0, s1, s2, s3, scM32, dw);
            a1 = Token512(a1, x1 + yo, q0, q1, q2, q3, s0, s1, s2, s3, scM32, dw);
            a2 = Token512(a2, x2 + yo, q0, q1, q2, q3, s0, s1, s2, s3, scM32, dw);
            a3 = Token512(a3, x3 + yo, q0, q1, q2, q3, s0, s1, s2, s3, scM32, dw);
        }
        dst[0] = Sum(a0);
        dst[dstStride] = Sum(a1);
        dst[2 * dstStride] = Sum(a2);
        dst[3 * dstStride] = Sum(a3);
    }

    /// <summary>One token's share of a block: Σ sc_g·Σ q·y + Σ (−32·sc_g)·bsums_g (<paramref name="scM32"/>), then acc + float(isum)·(d·d_x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Token512(Vector512<float> acc, byte* yb,
        Vector512<byte> q0, Vector512<byte> q1, Vector512<byte> q2, Vector512<byte> q3,
        Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3, Vector256<short> scM32, float dw)
    {
        Vector256<int> offset = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), scM32);
        sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q0, Vector512.Load(y)), s0)
                            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q1, Vector512.Load(y + 64)), s1);
        isum += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q2, Vector512.Load(y + 128)), s2)
              + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q3, Vector512.Load(y + 192)), s3);
        isum += offset.ToVector512();
        float d = dw * Unsafe.ReadUnaligned<float>(yb);
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(d), acc);
    }

    /// <summary>
    /// Four tokens per pass over the row: per block the scale lanes once; per 128-weight half ql and qh loaded once,
    /// each of the four quarters rebuilt (GFNI or shifts, as <see cref="Avx2Half{TVnni, TGfni}"/>) and its scale pair
    /// shuffled once, then dotted with the four tokens into their own int32 sums; per token the −32 offset and the FMA
    /// of the one-token loop.
    /// </summary>
    private static void Avx2Loop4<TVnni, TGfni>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag where TGfni : struct, IIsaFlag
    {
        Vector128<byte> evenOdd = Vector128.Create((byte)0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            long yo = (long)b * ActivationQuant.Q8_KBlockBytes, qo = yo + ActivationQuant.Q8_KQsOffset;
            Vector128<sbyte> sc = Vector128.Load((sbyte*)(wb + ScalesOffset));
            Vector256<byte> lanes = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(sc, evenOdd.AsSByte())).AsByte();
            sbyte* y0 = (sbyte*)(x0 + qo), y1 = (sbyte*)(x1 + qo), y2 = (sbyte*)(x2 + qo), y3 = (sbyte*)(x3 + qo);
            Vector256<int> i0 = Vector256<int>.Zero, i1 = Vector256<int>.Zero, i2 = Vector256<int>.Zero, i3 = Vector256<int>.Zero;
            Avx2Half4<TVnni, TGfni>(ref i0, ref i1, ref i2, ref i3, wb, wb + QhOffset, y0, y1, y2, y3, lanes, 0);
            Avx2Half4<TVnni, TGfni>(ref i0, ref i1, ref i2, ref i3, wb + 64, wb + QhOffset + 32, y0 + 128, y1 + 128, y2 + 128, y3 + 128, lanes, 4);
            float dw = Fp16.Read(wb + DOffset);
            Vector256<short> scM32 = Vector256<short>.Zero - (Avx2.ConvertToVector256Int16(sc) << 5); // −32·sc_g, once for the four tokens
            a0 = Finish256(a0, x0 + yo, i0, scM32, dw);
            a1 = Finish256(a1, x1 + yo, i1, scM32, dw);
            a2 = Finish256(a2, x2 + yo, i2, scM32, dw);
            a3 = Finish256(a3, x3 + yo, i3, scM32, dw);
        }
        dst[0] = Vector256.Sum(a0);
        dst[dstStride] = Vector256.Sum(a1);
        dst[2 * dstStride] = Vector256.Sum(a2);
        dst[3 * dstStride] = Vector256.Sum(a3);
    }

    /// <summary>A token's block step: its int32 sums plus Σ_g (−32·sc_g)·bsums_g (<paramref name="scM32"/>), then one FMA with d·d_x (the float step of the one-token loop).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Finish256(Vector256<float> acc, byte* yb, Vector256<int> isum, Vector256<short> scM32, float dw)
    {
        isum += Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), scM32);
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(dw * Unsafe.ReadUnaligned<float>(yb)), acc);
    }

    /// <summary>One 128-weight half for four tokens: each quarter of q rebuilt once (as in <see cref="Avx2Half{TVnni, TGfni}"/>) with its scale pair, dotted with the four tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx2Half4<TVnni, TGfni>(ref Vector256<int> i0, ref Vector256<int> i1, ref Vector256<int> i2, ref Vector256<int> i3,
        byte* ql, byte* qh, sbyte* y0, sbyte* y1, sbyte* y2, sbyte* y3, Vector256<byte> lanes, int j0)
        where TVnni : struct, IIsaFlag where TGfni : struct, IIsaFlag
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        Vector256<byte> l0 = Vector256.Load(ql);
        Vector256<byte> l1 = Vector256.Load(ql + 32);
        Vector256<byte> h = Vector256.Load(qh);
        // Quarter k: the low (k = 0, 1) or high (k = 2, 3) nibbles of ql's 32-byte half k & 1, qh bit pair k on bits 4..5.
        Quarter4<TVnni, TGfni>(ref i0, ref i1, ref i2, ref i3, l0 & m4, h, y0, y1, y2, y3, lanes, j0, 0);
        Quarter4<TVnni, TGfni>(ref i0, ref i1, ref i2, ref i3, l1 & m4, h, y0, y1, y2, y3, lanes, j0, 1);
        Quarter4<TVnni, TGfni>(ref i0, ref i1, ref i2, ref i3, (l0.AsUInt16() >>> 4).AsByte() & m4, h, y0, y1, y2, y3, lanes, j0, 2);
        Quarter4<TVnni, TGfni>(ref i0, ref i1, ref i2, ref i3, (l1.AsUInt16() >>> 4).AsByte() & m4, h, y0, y1, y2, y3, lanes, j0, 3);
    }

    /// <summary>Quarter <paramref name="k"/> of a half (its nibbles given) with qh's bit pair k, and its scale pair, dotted with the four tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quarter4<TVnni, TGfni>(ref Vector256<int> i0, ref Vector256<int> i1, ref Vector256<int> i2, ref Vector256<int> i3,
        Vector256<byte> nib, Vector256<byte> h, sbyte* y0, sbyte* y1, sbyte* y2, sbyte* y3, Vector256<byte> lanes, int j0, int k)
        where TVnni : struct, IIsaFlag where TGfni : struct, IIsaFlag
    {
        Vector256<byte> q;
        if (TGfni.Enabled)
            q = nib | Gfni.V256.GaloisFieldAffineTransform(h, Vector256.Create(PairToBits45(k)).AsByte(), 0);
        else
            q = nib | ((((h.AsUInt16() >>> (2 * k)).AsByte() & Vector256.Create((byte)0x03)).AsUInt16() << 4).AsByte());
        int j = j0 + k, o = 32 * k;
        Vector256<short> s = Avx2.Shuffle(lanes, Vector256.Create((ushort)(2 * j | (2 * j + 1) << 8)).AsByte()).AsInt16();
        i0 = QuarterToken<TVnni>(i0, q, y0 + o, s);
        i1 = QuarterToken<TVnni>(i1, q, y1 + o, s);
        i2 = QuarterToken<TVnni>(i2, q, y2 + o, s);
        i3 = QuarterToken<TVnni>(i3, q, y3 + o, s);
    }

    /// <summary>One token's 32 weights of a quarter: vpmaddubsw, then vpmaddwd with the group scales (vpdpwssd under AVX-VNNI).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> QuarterToken<TVnni>(Vector256<int> isum, Vector256<byte> q, sbyte* y, Vector256<short> s)
        where TVnni : struct, IIsaFlag
    {
        Vector256<short> p = Avx2.MultiplyAddAdjacent(q, Vector256.Load(y));
        if (TVnni.Enabled) return AvxVnni.MultiplyWideningAndAdd(isum, p, s);
        return isum + Avx2.MultiplyAddAdjacent(p, s);
    }
}
