using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// One Q8_0 row · four tokens' Q8_0 activations on AVX-512 (prefill's register block). Two blocks per zmm: the weight
/// side — |q| as unsigned bytes, the sign mask q &lt; 0, the eight block scales — is prepared once per eight blocks for
/// the four tokens; each token then negates its activations where the weight is negative (so |q|·(±y) = q·y, and
/// |q| ≤ 128, |y| ≤ 127: a vpmaddubsw pair stays ≤ 32512, no saturation), vpmaddubsw, vpmaddwd with ones, int → float
/// and one FMA with the pair's d_w·d_x (one vpermps). The one-token loop dots a block per zmm in int16 with other
/// partial sums, so the two agree to float rounding, not bit for bit. AVX2 has its own four-token loop
/// (<c>DotQ8_0.Avx2.cs</c>); the other rungs keep the one-token loop (<see cref="Dot4"/> calls <see cref="Dot"/> there).
/// </summary>
public static unsafe partial class DotQ8_0
{
    /// <summary>Row <paramref name="w"/> · tokens t = 0..3 at <paramref name="xq"/> + t·<paramref name="xqStride"/>; result t to <paramref name="dst"/>[t·<paramref name="dstStride"/>].</summary>
    public static void Dot4(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        if (KernelRung.Selected == Rung.Avx512)
        {
            Avx512Loop4(w, xq, xqStride, nb, dst, dstStride);
            return;
        }
        if (KernelRung.Selected == Rung.Avx2)
        {
            if (KernelRung.UseAvxVnni) Avx2Loop4<VnniOn>(w, xq, xqStride, nb, dst, dstStride);
            else Avx2Loop4<VnniOff>(w, xq, xqStride, nb, dst, dstStride);
            return;
        }
        for (int t = 0; t < 4; t++) dst[t * dstStride] = Dot(w, xq + t * xqStride, n);
    }

    /// <summary>The AVX-512 four-token loop directly (tests, benchmarks).</summary>
    public static void Dot4Avx512(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        Avx512Loop4(w, xq, xqStride, nb, dst, dstStride);
    }

    private static void Avx512Loop4(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        Vector512<int> p01 = PairLanes(0), p23 = PairLanes(2), p45 = PairLanes(4), p67 = PairLanes(6);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes)
        {
            WeightPrefetch.Lines5(w);
            Vector256<float> dw = BlockScales.Half8(w, wOff);
            Vector512<sbyte> q0 = PairLoad(w), q1 = PairLoad(w + 2 * BlockBytes), q2 = PairLoad(w + 4 * BlockBytes), q3 = PairLoad(w + 6 * BlockBytes);
            Vector512<sbyte> s0 = Vector512.LessThan(q0, Vector512<sbyte>.Zero), s1 = Vector512.LessThan(q1, Vector512<sbyte>.Zero);
            Vector512<sbyte> s2 = Vector512.LessThan(q2, Vector512<sbyte>.Zero), s3 = Vector512.LessThan(q3, Vector512<sbyte>.Zero);
            Vector512<byte> u0 = Vector512.Abs(q0).AsByte(), u1 = Vector512.Abs(q1).AsByte(), u2 = Vector512.Abs(q2).AsByte(), u3 = Vector512.Abs(q3).AsByte();
            long xo = (long)b * XB;
            a0 = Token4(a0, x0 + xo, xOff, dw, u0, u1, u2, u3, s0, s1, s2, s3, p01, p23, p45, p67);
            a1 = Token4(a1, x1 + xo, xOff, dw, u0, u1, u2, u3, s0, s1, s2, s3, p01, p23, p45, p67);
            a2 = Token4(a2, x2 + xo, xOff, dw, u0, u1, u2, u3, s0, s1, s2, s3, p01, p23, p45, p67);
            a3 = Token4(a3, x3 + xo, xOff, dw, u0, u1, u2, u3, s0, s1, s2, s3, p01, p23, p45, p67);
        }
        for (; b < nb; b++, w += BlockBytes)
        {
            long xo = (long)b * XB;
            float dwb = Fp16.Read(w);
            a0 = Avx512Block(a0, w, x0 + xo, Vector512.Create(dwb * Fp16.Read(x0 + xo)));
            a1 = Avx512Block(a1, w, x1 + xo, Vector512.Create(dwb * Fp16.Read(x1 + xo)));
            a2 = Avx512Block(a2, w, x2 + xo, Vector512.Create(dwb * Fp16.Read(x2 + xo)));
            a3 = Avx512Block(a3, w, x3 + xo, Vector512.Create(dwb * Fp16.Read(x3 + xo)));
        }
        dst[0] = Vector512.Sum(a0);
        dst[dstStride] = Vector512.Sum(a1);
        dst[2 * dstStride] = Vector512.Sum(a2);
        dst[3 * dstStride] = Vector512.Sum(a3);
    }

    /// <summary>One token's eight blocks: four pairs of (sign-applied activations) · |q|, each scaled by its blocks' d_w·d_x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Token4(Vector512<float> acc, byte* x, Vector256<int> xOff, Vector256<float> dw,
        Vector512<byte> u0, Vector512<byte> u1, Vector512<byte> u2, Vector512<byte> u3,
        Vector512<sbyte> s0, Vector512<sbyte> s1, Vector512<sbyte> s2, Vector512<sbyte> s3,
        Vector512<int> p01, Vector512<int> p23, Vector512<int> p45, Vector512<int> p67)
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector512<float> d = (dw * BlockScales.Half8(x, xOff)).ToVector512Unsafe();
        acc = SignedPair(acc, u0, s0, PairLoad(x, XB), Avx512F.PermuteVar16x32(d, p01));
        acc = SignedPair(acc, u1, s1, PairLoad(x + 2 * XB, XB), Avx512F.PermuteVar16x32(d, p23));
        acc = SignedPair(acc, u2, s2, PairLoad(x + 4 * XB, XB), Avx512F.PermuteVar16x32(d, p45));
        return SignedPair(acc, u3, s3, PairLoad(x + 6 * XB, XB), Avx512F.PermuteVar16x32(d, p67));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> SignedPair(Vector512<float> acc, Vector512<byte> u, Vector512<sbyte> neg, Vector512<sbyte> y, Vector512<float> d)
    {
        Vector512<sbyte> ys = Vector512.ConditionalSelect(neg, Vector512<sbyte>.Zero - y, y);
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u, ys), Vector512.Create((short)1));
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), d, acc);
    }

    /// <summary>The 32 quants of the block at <paramref name="p"/> and of the next (<paramref name="stride"/> bytes on) in one zmm.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> PairLoad(byte* p, int stride = BlockBytes) =>
        Avx512Join.Join(Vector256.Load((sbyte*)(p + 2)), Vector256.Load((sbyte*)(p + stride + 2)));

    /// <summary>vpermps indices: lanes 0..7 take scale k, lanes 8..15 scale k + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PairLanes(int k) => Vector512.Create(Vector256.Create(k), Vector256.Create(k + 1));
}
