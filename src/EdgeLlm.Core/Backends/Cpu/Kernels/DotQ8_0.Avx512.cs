using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ8_0
{
    /// <summary>
    /// The one-token AVX-512 loop, eight blocks a step. The fp16 scales come out of the blocks without gathers
    /// (<see cref="Halves8"/>: four 64-byte loads and two vpermt2w per eight blocks; the two vpgatherdd a step of the
    /// earlier form cost about a third of the loop on Zen 5). The activation scales are either taken the same way from
    /// <paramref name="xq"/> (<typeparamref name="TPrepared"/> off) or read as floats from <paramref name="xs"/>, which
    /// <see cref="PrepareScalesAvx512"/> filled once per token for all rows (on). Either way d_w·d_x is the same float
    /// (both conversions are exact), so the two forms give the same bits.
    /// Dot: without AVX-VNNI one block per zmm, both blocks sign-extended to int16 (vpmovsxbw) and multiplied with
    /// vpmaddwd, int → float, FMA with d_w·d_x broadcast by vpermps (the bits of the loop before the scales changed);
    /// with AVX-VNNI (<typeparamref name="TVnni"/>) two blocks per zmm, each a 256-bit vpdpbusd of |w| and the
    /// activations negated where w &lt; 0 (|w| ≤ 128, |y| ≤ 127), joined, int → float, one FMA with the pair's scales.
    /// </summary>
    private static float Avx512Loop<TVnni, TPrepared>(byte* w, byte* xq, float* xs, int nb)
        where TVnni : struct, IIsaFlag where TPrepared : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
        Vector512<short> idx = HalvesIndex();
        Vector512<int> p01 = PairLanes(0), p23 = PairLanes(2), p45 = PairLanes(4), p67 = PairLanes(6);
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes, xq += 8 * XB)
        {
            WeightPrefetch.Lines5(w);
            Vector512<float> d;
            if (TPrepared.Enabled)
                d = (Fp16.ToFloat(Halves8(w, idx).GetLower().AsUInt32()) * Vector256.Load(xs + b)).ToVector512Unsafe();
            else
            {
                Vector512<float> f = Fp16.ToFloat(Vector512.ConditionalSelect(UpperEight(), Halves8(xq, idx), Halves8(w, idx)).AsUInt32());
                d = (f.GetLower() * f.GetUpper()).ToVector512Unsafe();
            }
            if (TVnni.Enabled)
            {
                acc0 = VnniPair(acc0, w, xq, Avx512F.PermuteVar16x32(d, p01));
                acc1 = VnniPair(acc1, w + 2 * BlockBytes, xq + 2 * XB, Avx512F.PermuteVar16x32(d, p23));
                acc0 = VnniPair(acc0, w + 4 * BlockBytes, xq + 4 * XB, Avx512F.PermuteVar16x32(d, p45));
                acc1 = VnniPair(acc1, w + 6 * BlockBytes, xq + 6 * XB, Avx512F.PermuteVar16x32(d, p67));
            }
            else
            {
                acc0 = Avx512Block(acc0, w, xq, Avx512F.PermuteVar16x32(d, Vector512.Create(0)));
                acc1 = Avx512Block(acc1, w + BlockBytes, xq + XB, Avx512F.PermuteVar16x32(d, Vector512.Create(1)));
                acc0 = Avx512Block(acc0, w + 2 * BlockBytes, xq + 2 * XB, Avx512F.PermuteVar16x32(d, Vector512.Create(2)));
                acc1 = Avx512Block(acc1, w + 3 * BlockBytes, xq + 3 * XB, Avx512F.PermuteVar16x32(d, Vector512.Create(3)));
                acc0 = Avx512Block(acc0, w + 4 * BlockBytes, xq + 4 * XB, Avx512F.PermuteVar16x32(d, Vector512.Create(4)));
                acc1 = Avx512Block(acc1, w + 5 * BlockBytes, xq + 5 * XB, Avx512F.PermuteVar16x32(d, Vector512.Create(5)));
                acc0 = Avx512Block(acc0, w + 6 * BlockBytes, xq + 6 * XB, Avx512F.PermuteVar16x32(d, Vector512.Create(6)));
                acc1 = Avx512Block(acc1, w + 7 * BlockBytes, xq + 7 * XB, Avx512F.PermuteVar16x32(d, Vector512.Create(7)));
            }
        }
        for (; b < nb; b++, w += BlockBytes, xq += XB)
            acc0 = Avx512Block(acc0, w, xq, Vector512.Create(Fp16.Read(w) * (TPrepared.Enabled ? xs[b] : Fp16.Read(xq))));
        return Vector512.Sum(acc0 + acc1);
    }

    /// <summary>The activation scales of <paramref name="nb"/> Q8_0 blocks at <paramref name="xq"/> as floats into <paramref name="xs"/> (exact), eight at a time as the loop takes them.</summary>
    private static void PrepareScalesLoop(byte* xq, int nb, float* xs)
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector512<short> idx = HalvesIndex();
        int b = 0;
        for (; b + 8 <= nb; b += 8, xq += 8 * XB) Fp16.ToFloat(Halves8(xq, idx).GetLower().AsUInt32()).Store(xs + b);
        for (; b < nb; b++, xq += XB) xs[b] = Fp16.Read(xq);
    }

    /// <summary>
    /// The fp16 scales of the eight 34-byte blocks at <paramref name="p"/> in the low 16 bits of dword lanes 0..7 (and
    /// again in 8..15; the high 16 bits are quant bytes, which <see cref="Fp16.ToFloat(Vector512{uint})"/> ignores):
    /// block k's scale is word 17k of the 256 bytes from <paramref name="p"/> (all eight within them), picked by one
    /// vpermt2w from the first 128 bytes (k &lt; 4) and one from the next 128 (k ≥ 4), then blended. Reads bytes
    /// [p, p + 256): inside the eight blocks' 272.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Halves8(byte* p, Vector512<short> idx)
    {
        Vector512<short> lo = Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)p), idx, Vector512.Load((short*)(p + 64)));
        Vector512<short> hi = Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)(p + 128)), idx, Vector512.Load((short*)(p + 192)));
        return Vector512.ConditionalSelect(Vector512.Create(0, 0, 0, 0, -1, -1, -1, -1, 0, 0, 0, 0, -1, -1, -1, -1), hi.AsInt32(), lo.AsInt32());
    }

    /// <summary>vpermt2w indices of <see cref="Halves8"/>: word 2i and 2i + 1 of lane i (k = i mod 8) take word 17k (k &lt; 4) or 17k − 64 of the second pair of loads.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> HalvesIndex() => Vector512.Create(
        (short)0, 0, 17, 17, 34, 34, 51, 51, 4, 4, 21, 21, 38, 38, 55, 55,
        0, 0, 17, 17, 34, 34, 51, 51, 4, 4, 21, 21, 38, 38, 55, 55);

    /// <summary>Dword lanes 8..15 set (the activation half of the joined scale vector).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> UpperEight() => Vector512.Create(Vector256<int>.Zero, Vector256<int>.AllBitsSet);

    /// <summary>Blocks k and k + 1 with AVX-VNNI: Σ|w|·(±y) per 4 bytes by vpdpbusd in each ymm, joined, int → float, FMA with the pair's scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> VnniPair(Vector512<float> acc, byte* wp, byte* yp, Vector512<float> d)
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector256<sbyte> q0 = Vector256.Load((sbyte*)(wp + 2)), q1 = Vector256.Load((sbyte*)(wp + BlockBytes + 2));
        Vector256<sbyte> y0 = Vector256.Load((sbyte*)(yp + 2)), y1 = Vector256.Load((sbyte*)(yp + XB + 2));
        Vector256<int> i0 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Avx2.Abs(q0), Avx2.Sign(y0, q0));
        Vector256<int> i1 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Avx2.Abs(q1), Avx2.Sign(y1, q1));
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512Join.Join(i0.AsSByte(), i1.AsSByte()).AsInt32()), d, acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Avx512Block(Vector512<float> acc, byte* wb, byte* yb, Vector512<float> d)
    {
        Vector512<short> q = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(wb + 2)));
        Vector512<short> y = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(yb + 2)));
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(q, y);
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), d, acc);
    }
}
