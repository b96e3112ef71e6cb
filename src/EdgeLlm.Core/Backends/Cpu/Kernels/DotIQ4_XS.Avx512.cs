using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotIQ4_XS
{
    /// <summary>
    /// Four sub-blocks (128 weights, 64 qs bytes) per step: their low nibbles [A lo | B lo | C lo | D lo] and high
    /// nibbles [A hi | … | D hi] need no byte shuffle; the activations are brought to that order instead, one vpermt2q
    /// per zmm, so each 128-bit lane is one sub-block. AVX-512 has no vpsignb, so K = P − N is split into its positive
    /// part P = max(K, 0) ≤ 113 and negative part N = max(−K, 0) ≤ 127 (two vpshufb tables):
    /// vpmaddubsw(P, q8) − vpmaddubsw(N, q8) is the exact pair sum K·q8 (each operand ≤ 32258 in magnitude and so is
    /// the difference, so the int16 subtraction is exact). vpmaddwd with [s_A ×8 | s_B ×8 | s_C ×8 | s_D ×8] (one vpermw
    /// per step), int32 sum over the block, one FMA with d·d_x. (The four-token loop runs the same per-token step.)
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        Avx512Tables(out Vector512<sbyte> pos, out Vector512<sbyte> neg);
        Vector256<uint> shiftL = Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28);
        Vector256<uint> shiftH = Vector256.Create(0u, 2, 4, 6, 8, 10, 12, 14);
        Vector512<short> g0 = DotQ3_K.GroupIndex(0), g1 = DotQ3_K.GroupIndex(4);
        Vector512<ulong> yLoIdx = Vector512.Create(0ul, 1, 4, 5, 8, 9, 12, 13), yHiIdx = Vector512.Create(2ul, 3, 6, 7, 10, 11, 14, 15);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            Vector512<short> scales = Avx512Scales(wb, shiftL, shiftH);
            byte* q = wb + QsOffset;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector512<int> isum = Avx512Quad(q, y, pos, neg, Avx512BW.PermuteVar32x16(scales, g0), yLoIdx, yHiIdx);
            isum += Avx512Quad(q + 64, y + 128, pos, neg, Avx512BW.PermuteVar32x16(scales, g1), yLoIdx, yHiIdx);
            float d = Fp16.Read(wb) * Unsafe.ReadUnaligned<float>(yb);
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(d), acc);
        }
        return Vector512.Sum(acc);
    }

    /// <summary>Sub-blocks 4h..4h+3: q their 64 qs bytes, y their 128 activations, s the four scales (one per 128-bit lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Avx512Quad(byte* q, sbyte* y, Vector512<sbyte> pos, Vector512<sbyte> neg, Vector512<short> s,
        Vector512<ulong> yLoIdx, Vector512<ulong> yHiIdx)
    {
        QuadWeights(q, pos, neg, out Vector512<byte> pLo, out Vector512<byte> nLo, out Vector512<byte> pHi, out Vector512<byte> nHi);
        return QuadToken(pLo, nLo, pHi, nHi, y, s, yLoIdx, yHiIdx);
    }

    /// <summary>P and N of four sub-blocks' low nibbles [A lo | B lo | C lo | D lo] and high nibbles [A hi | … | D hi].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void QuadWeights(byte* q, Vector512<sbyte> pos, Vector512<sbyte> neg,
        out Vector512<byte> pLo, out Vector512<byte> nLo, out Vector512<byte> pHi, out Vector512<byte> nHi)
    {
        Vector512<byte> raw = Vector512.Load(q);
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        Vector512<sbyte> lo = (raw & m4).AsSByte(), hi = ((raw.AsUInt16() >>> 4).AsByte() & m4).AsSByte();
        pLo = Avx512BW.Shuffle(pos, lo).AsByte();
        nLo = Avx512BW.Shuffle(neg, lo).AsByte();
        pHi = Avx512BW.Shuffle(pos, hi).AsByte();
        nHi = Avx512BW.Shuffle(neg, hi).AsByte();
    }

    /// <summary>One token's share of four sub-blocks (the step of both AVX-512 loops): activations permuted to the nibble order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> QuadToken(Vector512<byte> pLo, Vector512<byte> nLo, Vector512<byte> pHi, Vector512<byte> nHi,
        sbyte* y, Vector512<short> s, Vector512<ulong> yLoIdx, Vector512<ulong> yHiIdx)
    {
        Vector512<ulong> y0 = Vector512.Load((ulong*)y), y1 = Vector512.Load((ulong*)(y + 64));
        Vector512<sbyte> yLo = Avx512F.PermuteVar8x64x2(y0, yLoIdx, y1).AsSByte();
        Vector512<sbyte> yHi = Avx512F.PermuteVar8x64x2(y0, yHiIdx, y1).AsSByte();
        Vector512<short> kLo = Avx512BW.MultiplyAddAdjacent(pLo, yLo) - Avx512BW.MultiplyAddAdjacent(nLo, yLo);
        Vector512<short> kHi = Avx512BW.MultiplyAddAdjacent(pHi, yHi) - Avx512BW.MultiplyAddAdjacent(nHi, yHi);
        return Avx512BW.MultiplyAddAdjacent(kLo, s) + Avx512BW.MultiplyAddAdjacent(kHi, s);
    }

    /// <summary>vpshufb tables (per 128-bit lane) of P = max(K, 0) and N = max(−K, 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx512Tables(out Vector512<sbyte> pos, out Vector512<sbyte> neg)
    {
        Vector128<sbyte> k;
        fixed (byte* g = Grid) k = Vector128.Load((sbyte*)g);
        Vector128<sbyte> p = Vector128.Max(k, Vector128<sbyte>.Zero);
        Vector128<sbyte> n = Vector128.Max(Vector128<sbyte>.Zero - k, Vector128<sbyte>.Zero);
        pos = Vector512.Create(Vector256.Create(p, p), Vector256.Create(p, p));
        neg = Vector512.Create(Vector256.Create(n, n), Vector256.Create(n, n));
    }

    /// <summary>The block's eight scales ls − 32 as int16 in words 0..7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Avx512Scales(byte* wb, Vector256<uint> shiftL, Vector256<uint> shiftH)
    {
        Vector256<uint> ls = (Avx2.ShiftRightLogicalVariable(Vector256.Create(Unsafe.ReadUnaligned<uint>(wb + ScalesLOffset)), shiftL) & Vector256.Create(0xFu))
            | ((Avx2.ShiftRightLogicalVariable(Vector256.Create((uint)Unsafe.ReadUnaligned<ushort>(wb + ScalesHOffset)), shiftH) & Vector256.Create(3u)) << 4);
        Vector256<int> s32 = ls.AsInt32() - Vector256.Create(32);
        return Sse2.PackSignedSaturate(s32.GetLower(), s32.GetUpper()).ToVector256Unsafe().ToVector512Unsafe();
    }
}
