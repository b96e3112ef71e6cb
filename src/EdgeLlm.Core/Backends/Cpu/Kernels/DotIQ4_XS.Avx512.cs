using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotIQ4_XS
{
    /// <summary>
    /// One pair of sub-blocks per zmm: the 32 qs bytes and their high nibbles side by side are [A lo | B lo | A hi |
    /// B hi]; one vshufi64x2 puts them in activation order [A lo | A hi | B lo | B hi], vpshufb maps them to the grid.
    /// AVX-512 has no vpsignb, so the activations are negated under the mask K &lt; 0 before vpmaddubsw of |K| (pair
    /// sums ≤ 32258); vpmaddwd with [s_A ×16 | s_B ×16] (vpermw from the eight int16 scales), int32 sum over the
    /// block, one FMA with d·d_x.
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        Vector512<sbyte> grid;
        fixed (byte* g = Grid) grid = Vector512.Create(Vector256.Load((sbyte*)g), Vector256.Load((sbyte*)g));
        Vector256<uint> shiftL = Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28);
        Vector256<uint> shiftH = Vector256.Create(0u, 2, 4, 6, 8, 10, 12, 14);
        Vector512<short> idx0 = PairIndex(0), idx1 = PairIndex(2), idx2 = PairIndex(4), idx3 = PairIndex(6);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            Vector256<uint> ls = (Avx2.ShiftRightLogicalVariable(Vector256.Create(Unsafe.ReadUnaligned<uint>(wb + ScalesLOffset)), shiftL) & Vector256.Create(0xFu))
                | ((Avx2.ShiftRightLogicalVariable(Vector256.Create((uint)Unsafe.ReadUnaligned<ushort>(wb + ScalesHOffset)), shiftH) & Vector256.Create(3u)) << 4);
            Vector256<int> s32 = ls.AsInt32() - Vector256.Create(32);
            Vector512<short> scales = Sse2.PackSignedSaturate(s32.GetLower(), s32.GetUpper()).ToVector256Unsafe().ToVector512Unsafe();
            byte* q = wb + QsOffset;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector512<int> isum = Avx512Pair(q, y, grid, Avx512BW.PermuteVar32x16(scales, idx0));
            isum += Avx512Pair(q + 32, y + 64, grid, Avx512BW.PermuteVar32x16(scales, idx1));
            isum += Avx512Pair(q + 64, y + 128, grid, Avx512BW.PermuteVar32x16(scales, idx2));
            isum += Avx512Pair(q + 96, y + 192, grid, Avx512BW.PermuteVar32x16(scales, idx3));
            float d = Fp16.Read(wb) * Unsafe.ReadUnaligned<float>(yb);
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(d), acc);
        }
        return Vector512.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Avx512Pair(byte* q, sbyte* y, Vector512<sbyte> grid, Vector512<short> s)
    {
        Vector256<byte> packed = Vector256.Load(q);
        Vector512<byte> nib = Avx512Join.Join(packed, (packed.AsUInt16() >>> 4).AsByte()) & Vector512.Create((byte)0x0F);
        nib = Avx512F.Shuffle4x128(nib.AsUInt64(), nib.AsUInt64(), 0xD8).AsByte();
        Vector512<sbyte> k = Avx512BW.Shuffle(grid, nib.AsSByte());
        Vector512<sbyte> yv = Vector512.Load(y);
        Vector512<sbyte> ys = Vector512.ConditionalSelect(Vector512.LessThan(k, Vector512<sbyte>.Zero), Vector512<sbyte>.Zero - yv, yv);
        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(Avx512BW.Abs(k).AsByte(), ys);
        return Avx512BW.MultiplyAddAdjacent(p, s);
    }

    /// <summary>vpermw indices: 16 lanes of sub-block j, then 16 of j+1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> PairIndex(int j) =>
        Vector512.Create(Vector256.Create((short)j), Vector256.Create((short)(j + 1)));
}
