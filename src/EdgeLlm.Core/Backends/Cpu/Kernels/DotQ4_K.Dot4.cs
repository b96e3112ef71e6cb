using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One Q4_K row · four tokens' Q8_K activations (prefill's register block). Per block the weight side — the 6-bit
/// scales and mins, the nibbles split into four 64-weight chunks, the scale lanes for vpmaddwd, d and dmin — is
/// unpacked once and applied to all four tokens; each token then costs a vpmaddubsw, a vpmaddwd and an add per
/// chunk plus its mins product. The one-token loops of the same rungs run the same per-token step
/// (<c>Token512</c>, <c>Token256</c>), so the results are bit-identical to four <see cref="Dot"/> calls.
/// </summary>
public static unsafe partial class DotQ4_K
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
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_K), Rung.Avx2);
        Avx2Loop4<VnniOn>(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void Avx512Loop4(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero;
        Vector256<float> m0 = Vector256<float>.Zero, m1 = Vector256<float>.Zero, m2 = Vector256<float>.Zero, m3 = Vector256<float>.Zero;
        Vector512<short> idx0 = ScaleIndex(0), idx1 = ScaleIndex(2), idx2 = ScaleIndex(4), idx3 = ScaleIndex(6);
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            long yo = (long)b * ActivationQuant.Q8_KBlockBytes;
            Vector128<byte> sm = UnpackScalesMins(wb + ScalesOffset);
            Vector128<float> dd = DAndDmin(wb);
            Vector256<short> minPairs = MinPairs(sm);
            Vector512<short> scales = Sse41.ConvertToVector128Int16(sm).ToVector256Unsafe().ToVector512Unsafe();
            Vector512<short> s0 = Avx512BW.PermuteVar32x16(scales, idx0), s1 = Avx512BW.PermuteVar32x16(scales, idx1);
            Vector512<short> s2 = Avx512BW.PermuteVar32x16(scales, idx2), s3 = Avx512BW.PermuteVar32x16(scales, idx3);
            byte* q = wb + QsOffset;
            Vector512<byte> n0 = Nibbles512(q, m4), n1 = Nibbles512(q + 32, m4), n2 = Nibbles512(q + 64, m4), n3 = Nibbles512(q + 96, m4);

            Token512(ref a0, ref m0, x0 + yo, n0, n1, n2, n3, s0, s1, s2, s3, minPairs, dd);
            Token512(ref a1, ref m1, x1 + yo, n0, n1, n2, n3, s0, s1, s2, s3, minPairs, dd);
            Token512(ref a2, ref m2, x2 + yo, n0, n1, n2, n3, s0, s1, s2, s3, minPairs, dd);
            Token512(ref a3, ref m3, x3 + yo, n0, n1, n2, n3, s0, s1, s2, s3, minPairs, dd);
        }
        dst[0] = Vector512.Sum(a0) - Vector256.Sum(m0);
        dst[dstStride] = Vector512.Sum(a1) - Vector256.Sum(m1);
        dst[2 * dstStride] = Vector512.Sum(a2) - Vector256.Sum(m2);
        dst[3 * dstStride] = Vector512.Sum(a3) - Vector256.Sum(m3);
    }

    /// <summary>A 64-weight chunk's nibbles in activation order: low nibbles of the 32 bytes, then their high nibbles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Nibbles512(byte* q, Vector512<byte> m4)
    {
        Vector256<byte> packed = Vector256.Load(q);
        return Avx512Join.Join(packed, (packed.AsUInt16() >>> 4).AsByte()) & m4;
    }

    /// <summary>One token's share of a block: the step of both <see cref="Avx512Loop"/> and <see cref="Avx512Loop4"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Token512(ref Vector512<float> acc, ref Vector256<float> accMin, byte* yb,
        Vector512<byte> n0, Vector512<byte> n1, Vector512<byte> n2, Vector512<byte> n3,
        Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3,
        Vector256<short> minPairs, Vector128<float> dd)
    {
        Vector128<float> ddy = dd * Vector128.Create(Unsafe.ReadUnaligned<float>(yb));
        Token512Scaled(ref acc, ref accMin, yb, n0, n1, n2, n3, s0, s1, s2, s3, minPairs,
            Avx512F.BroadcastScalarToVector512(ddy), Avx2.PermuteVar8x32(ddy.ToVector256Unsafe(), Vector256.Create(1)));
    }

    /// <summary>A token's block step with d·d_x (<paramref name="dScale"/>) and dmin·d_x (<paramref name="mScale"/>) given broadcast.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Token512Scaled(ref Vector512<float> acc, ref Vector256<float> accMin, byte* yb,
        Vector512<byte> n0, Vector512<byte> n1, Vector512<byte> n2, Vector512<byte> n3,
        Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3,
        Vector256<short> minPairs, Vector512<float> dScale, Vector256<float> mScale)
    {
        Vector256<int> mprod = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), minPairs);
        accMin = Fma.MultiplyAdd(Avx.ConvertToVector256Single(mprod), mScale, accMin);
        sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n0, Vector512.Load(y)), s0);
        isum += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n1, Vector512.Load(y + 64)), s1);
        isum += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n2, Vector512.Load(y + 128)), s2);
        isum += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(n3, Vector512.Load(y + 192)), s3);
        acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), dScale, acc);
    }

    /// <summary>
    /// Four tokens per pass over the row: per block the scales, mins and d/dmin once, then chunk by chunk the nibbles
    /// split and the two sub-block scale lanes once for the four tokens (each token a vpmaddubsw pair and a vpmaddwd
    /// pair, or vpdpwssd pair with AVX-VNNI, into its own int32 sums), then per token the mins product and the float
    /// step of <see cref="Finish256"/>. The per-token integer sums are the same lane by lane as the one-token loop's
    /// (exact int32 adds) and the float steps the same, so the results are bit-identical to it.
    /// </summary>
    private static void Avx2Loop4<TVnni>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
        Vector256<float> m0 = Vector256<float>.Zero, m1 = Vector256<float>.Zero, m2 = Vector256<float>.Zero, m3 = Vector256<float>.Zero;
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            long yo = (long)b * ActivationQuant.Q8_KBlockBytes;
            Vector128<byte> sm = UnpackScalesMins(wb + ScalesOffset);
            Vector128<float> dd = DAndDmin(wb);
            Vector256<short> minPairs = MinPairs(sm);
            Vector128<short> sc16 = Sse41.ConvertToVector128Int16(sm);
            Vector256<byte> scales = Vector256.Create(sc16, sc16).AsByte();
            byte* q = wb + QsOffset;
            long qo = yo + ActivationQuant.Q8_KQsOffset;
            sbyte* y0 = (sbyte*)(x0 + qo), y1 = (sbyte*)(x1 + qo), y2 = (sbyte*)(x2 + qo), y3 = (sbyte*)(x3 + qo);
            Vector256<int> i0 = Vector256<int>.Zero, i1 = Vector256<int>.Zero, i2 = Vector256<int>.Zero, i3 = Vector256<int>.Zero;
            Chunk4<TVnni>(ref i0, ref i1, ref i2, ref i3, q, y0, y1, y2, y3, scales, 0);
            Chunk4<TVnni>(ref i0, ref i1, ref i2, ref i3, q + 32, y0 + 64, y1 + 64, y2 + 64, y3 + 64, scales, 2);
            Chunk4<TVnni>(ref i0, ref i1, ref i2, ref i3, q + 64, y0 + 128, y1 + 128, y2 + 128, y3 + 128, scales, 4);
            Chunk4<TVnni>(ref i0, ref i1, ref i2, ref i3, q + 96, y0 + 192, y1 + 192, y2 + 192, y3 + 192, scales, 6);
            Finish256(ref a0, ref m0, x0 + yo, i0, minPairs, dd);
            Finish256(ref a1, ref m1, x1 + yo, i1, minPairs, dd);
            Finish256(ref a2, ref m2, x2 + yo, i2, minPairs, dd);
            Finish256(ref a3, ref m3, x3 + yo, i3, minPairs, dd);
        }
        dst[0] = Vector256.Sum(a0) - Vector256.Sum(m0);
        dst[dstStride] = Vector256.Sum(a1) - Vector256.Sum(m1);
        dst[2 * dstStride] = Vector256.Sum(a2) - Vector256.Sum(m2);
        dst[3 * dstStride] = Vector256.Sum(a3) - Vector256.Sum(m3);
    }

    /// <summary>Sub-blocks j and j+1 (one 64-weight chunk at <paramref name="q"/>) for four tokens: the weight side once, each token's int32 sums as in <see cref="Avx2Chunk{TVnni}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Chunk4<TVnni>(ref Vector256<int> i0, ref Vector256<int> i1, ref Vector256<int> i2, ref Vector256<int> i3, byte* q,
        sbyte* y0, sbyte* y1, sbyte* y2, sbyte* y3, Vector256<byte> scales, int j) where TVnni : struct, IIsaFlag
    {
        Vector256<byte> packed = Vector256.Load(q);
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        Vector256<byte> lo = packed & m4, hi = (packed.AsUInt16() >>> 4).AsByte() & m4;
        Vector256<short> sLo = Avx2.Shuffle(scales, Vector256.Create((ushort)(0x0100 + 0x0202 * j)).AsByte()).AsInt16();
        Vector256<short> sHi = Avx2.Shuffle(scales, Vector256.Create((ushort)(0x0100 + 0x0202 * (j + 1))).AsByte()).AsInt16();
        i0 = ChunkToken<TVnni>(i0, lo, hi, sLo, sHi, y0);
        i1 = ChunkToken<TVnni>(i1, lo, hi, sLo, sHi, y1);
        i2 = ChunkToken<TVnni>(i2, lo, hi, sLo, sHi, y2);
        i3 = ChunkToken<TVnni>(i3, lo, hi, sLo, sHi, y3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ChunkToken<TVnni>(Vector256<int> isum, Vector256<byte> lo, Vector256<byte> hi, Vector256<short> sLo,
        Vector256<short> sHi, sbyte* y) where TVnni : struct, IIsaFlag
    {
        Vector256<short> pLo = Avx2.MultiplyAddAdjacent(lo, Vector256.Load(y));
        Vector256<short> pHi = Avx2.MultiplyAddAdjacent(hi, Vector256.Load(y + 32));
        if (TVnni.Enabled)
            return AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(isum, pLo, sLo), pHi, sHi);
        return isum + Avx2.MultiplyAddAdjacent(pLo, sLo) + Avx2.MultiplyAddAdjacent(pHi, sHi);
    }

    /// <summary>One token's share of a block, the step of the one-token AVX2 loop (the nibble unpack is cheap on ymm; the scales and mins are shared).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Token256<TVnni>(ref Vector256<float> acc, ref Vector256<float> accMin, byte* yb, byte* q,
        Vector256<byte> scales, Vector256<short> minPairs, Vector128<float> dd) where TVnni : struct, IIsaFlag
    {
        sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
        Vector256<int> isum = Avx2Chunk<TVnni>(Vector256<int>.Zero, q, y, scales, 0);
        isum = Avx2Chunk<TVnni>(isum, q + 32, y + 64, scales, 2);
        isum = Avx2Chunk<TVnni>(isum, q + 64, y + 128, scales, 4);
        isum = Avx2Chunk<TVnni>(isum, q + 96, y + 192, scales, 6);
        Finish256(ref acc, ref accMin, yb, isum, minPairs, dd);
    }

    /// <summary>A token's float step for one block: the mins product (bsums · mins pairs) into accMin, isum·d·d_y into acc.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish256(ref Vector256<float> acc, ref Vector256<float> accMin, byte* yb, Vector256<int> isum,
        Vector256<short> minPairs, Vector128<float> dd)
    {
        Vector128<float> ddy = dd * Vector128.Create(Unsafe.ReadUnaligned<float>(yb));
        Vector256<int> mprod = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), minPairs);
        accMin = Fma.MultiplyAdd(Avx.ConvertToVector256Single(mprod), Avx2.PermuteVar8x32(ddy.ToVector256Unsafe(), Vector256.Create(1)), accMin);
        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Avx2.BroadcastScalarToVector256(ddy), acc);
    }
}
