using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ8_0
{
    /// <summary>
    /// One block per step in a ymm. vpmaddubsw needs an unsigned operand, so (as ggml) Σ w·y = Σ |w|·(y·sign w):
    /// vpabsb and vpsignb, then vpmaddubsw + vpmaddwd (pairs ≤ 2·128·127, no saturation) or AVX-VNNI vpdpbusd.
    /// Exact for every weight byte (−128 included) because the activations never hold −128. Eight blocks per step
    /// with gathered scales (<see cref="BlockScales"/>), two accumulators.
    /// </summary>
    private static float Avx2Loop<TVnni>(byte* w, byte* xq, int nb) where TVnni : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes, xq += 8 * XB)
        {
            WeightPrefetch.Lines5(w);
            Vector256<float> d = BlockScales.Products8(w, wOff, xq, xOff);
            acc0 = Avx2Block<TVnni>(acc0, w, xq, BlockScales.Broadcast(d, 0));
            acc1 = Avx2Block<TVnni>(acc1, w + BlockBytes, xq + XB, BlockScales.Broadcast(d, 1));
            acc0 = Avx2Block<TVnni>(acc0, w + 2 * BlockBytes, xq + 2 * XB, BlockScales.Broadcast(d, 2));
            acc1 = Avx2Block<TVnni>(acc1, w + 3 * BlockBytes, xq + 3 * XB, BlockScales.Broadcast(d, 3));
            acc0 = Avx2Block<TVnni>(acc0, w + 4 * BlockBytes, xq + 4 * XB, BlockScales.Broadcast(d, 4));
            acc1 = Avx2Block<TVnni>(acc1, w + 5 * BlockBytes, xq + 5 * XB, BlockScales.Broadcast(d, 5));
            acc0 = Avx2Block<TVnni>(acc0, w + 6 * BlockBytes, xq + 6 * XB, BlockScales.Broadcast(d, 6));
            acc1 = Avx2Block<TVnni>(acc1, w + 7 * BlockBytes, xq + 7 * XB, BlockScales.Broadcast(d, 7));
        }
        for (; b < nb; b++, w += BlockBytes, xq += XB)
            acc0 = Avx2Block<TVnni>(acc0, w, xq, Vector256.Create(Fp16.Read(w) * Fp16.Read(xq)));
        return Vector256.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Avx2Block<TVnni>(Vector256<float> acc, byte* wb, byte* yb, Vector256<float> d)
        where TVnni : struct, IIsaFlag
    {
        Vector256<sbyte> q = Vector256.Load((sbyte*)(wb + 2));
        Vector256<sbyte> y = Vector256.Load((sbyte*)(yb + 2));
        Vector256<byte> aq = Avx2.Abs(q);
        Vector256<sbyte> sy = Avx2.Sign(y, q);
        Vector256<int> isum = TVnni.Enabled
            ? AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, aq, sy)
            : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aq, sy), Vector256.Create((short)1));
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), d, acc);
    }

    /// <summary>The AVX2 four-token loop with AVX-VNNI on or off (tests, benchmarks; the AVX2 rows of the kernel table).</summary>
    public static void Dot4Avx2(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) { Avx2Loop4<VnniOff>(w, xq, xqStride, nb, dst, dstStride); return; }
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ8_0), Rung.Avx2);
        Avx2Loop4<VnniOn>(w, xq, xqStride, nb, dst, dstStride);
    }

    /// <summary>
    /// One row · four tokens on AVX2 (prefill's register block): per eight blocks the weight scales once and each
    /// token's d_w·d_x; per block the weights loaded and |q| taken once for the four tokens, each token then vpsignb of
    /// its activations, vpmaddubsw + vpmaddwd (or vpdpbusd), int → float and one FMA with its broadcast scale. Each
    /// token keeps two accumulators, even and odd blocks, as <see cref="Avx2Loop{TVnni}"/> does, so a token gets the
    /// same bits in a batch of four as alone (a sequence decoding beside others equals itself decoding alone).
    /// </summary>
    private static void Avx2Loop4<TVnni>(byte* w, byte* xq, long xqStride, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
        Vector256<float> b0 = Vector256<float>.Zero, b1 = Vector256<float>.Zero, b2 = Vector256<float>.Zero, b3 = Vector256<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        byte* x0 = xq, x1 = xq + xqStride, x2 = xq + 2 * xqStride, x3 = xq + 3 * xqStride;
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes)
        {
            WeightPrefetch.Lines5(w);
            long xo = (long)b * XB;
            Vector256<float> dw = BlockScales.Half8(w, wOff);
            Vector256<float> d0 = dw * BlockScales.Half8(x0 + xo, xOff), d1 = dw * BlockScales.Half8(x1 + xo, xOff);
            Vector256<float> d2 = dw * BlockScales.Half8(x2 + xo, xOff), d3 = dw * BlockScales.Half8(x3 + xo, xOff);
            for (int k = 0; k < 8; k += 2)
            {
                Vector256<sbyte> q = Vector256.Load((sbyte*)(w + k * BlockBytes + 2));
                Vector256<byte> aq = Avx2.Abs(q);
                Vector256<int> idx = Vector256.Create(k);
                long yo = xo + k * XB + 2;
                a0 = SignedBlock<TVnni>(a0, aq, q, x0 + yo, Avx2.PermuteVar8x32(d0, idx));
                a1 = SignedBlock<TVnni>(a1, aq, q, x1 + yo, Avx2.PermuteVar8x32(d1, idx));
                a2 = SignedBlock<TVnni>(a2, aq, q, x2 + yo, Avx2.PermuteVar8x32(d2, idx));
                a3 = SignedBlock<TVnni>(a3, aq, q, x3 + yo, Avx2.PermuteVar8x32(d3, idx));
                q = Vector256.Load((sbyte*)(w + (k + 1) * BlockBytes + 2));
                aq = Avx2.Abs(q);
                idx = Vector256.Create(k + 1);
                yo += XB;
                b0 = SignedBlock<TVnni>(b0, aq, q, x0 + yo, Avx2.PermuteVar8x32(d0, idx));
                b1 = SignedBlock<TVnni>(b1, aq, q, x1 + yo, Avx2.PermuteVar8x32(d1, idx));
                b2 = SignedBlock<TVnni>(b2, aq, q, x2 + yo, Avx2.PermuteVar8x32(d2, idx));
                b3 = SignedBlock<TVnni>(b3, aq, q, x3 + yo, Avx2.PermuteVar8x32(d3, idx));
            }
        }
        for (; b < nb; b++, w += BlockBytes)
        {
            Vector256<sbyte> q = Vector256.Load((sbyte*)(w + 2));
            Vector256<byte> aq = Avx2.Abs(q);
            float dwb = Fp16.Read(w);
            long xo = (long)b * XB;
            a0 = SignedBlock<TVnni>(a0, aq, q, x0 + xo + 2, Vector256.Create(dwb * Fp16.Read(x0 + xo)));
            a1 = SignedBlock<TVnni>(a1, aq, q, x1 + xo + 2, Vector256.Create(dwb * Fp16.Read(x1 + xo)));
            a2 = SignedBlock<TVnni>(a2, aq, q, x2 + xo + 2, Vector256.Create(dwb * Fp16.Read(x2 + xo)));
            a3 = SignedBlock<TVnni>(a3, aq, q, x3 + xo + 2, Vector256.Create(dwb * Fp16.Read(x3 + xo)));
        }
        dst[0] = Vector256.Sum(a0 + b0);
        dst[dstStride] = Vector256.Sum(a1 + b1);
        dst[2 * dstStride] = Vector256.Sum(a2 + b2);
        dst[3 * dstStride] = Vector256.Sum(a3 + b3);
    }

    /// <summary>acc + float(Σ |q|·(y·sign q) per 4-byte group)·d for one block (the activations' 32 quants at <paramref name="y"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> SignedBlock<TVnni>(Vector256<float> acc, Vector256<byte> aq, Vector256<sbyte> q, byte* y, Vector256<float> d)
        where TVnni : struct, IIsaFlag
    {
        Vector256<sbyte> sy = Avx2.Sign(Vector256.Load((sbyte*)y), q);
        Vector256<int> isum = TVnni.Enabled
            ? AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, aq, sy)
            : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aq, sy), Vector256.Create((short)1));
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), d, acc);
    }
}
