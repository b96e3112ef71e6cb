using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_K
{
    /// <summary>
    /// One 64-weight chunk per zmm: its 32 packed bytes and their high nibbles side by side ([sub 2c | sub 2c+1]) match
    /// the 64 contiguous activations; vpmaddubsw, then vpmaddwd with [sc_2c ×16, sc_2c+1 ×16] (vpermw from the eight
    /// int16 scales), int32 sum over the block, one FMA with d·d_x. Mins as in the AVX2 rung (256-bit).
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        Vector256<float> accMin = Vector256<float>.Zero;
        Vector512<short> idx0 = ScaleIndex(0), idx1 = ScaleIndex(2), idx2 = ScaleIndex(4), idx3 = ScaleIndex(6);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            UnpackScales(wb + ScalesOffset, out ulong sc, out ulong mn);
            float dy = Unsafe.ReadUnaligned<float>(yb);

            Vector128<byte> mins = Vector128.CreateScalar(mn).AsByte();
            Vector256<short> minPairs = Avx2.ConvertToVector256Int16(Sse2.UnpackLow(mins, mins));
            Vector256<int> mprod = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(yb + ActivationQuant.Q8_KBsumsOffset)), minPairs);
            accMin = Fma.MultiplyAdd(Avx.ConvertToVector256Single(mprod), Vector256.Create(Fp16.Read(wb + 2) * dy), accMin);

            Vector512<short> scales = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(sc).AsByte()).ToVector256Unsafe().ToVector512Unsafe();
            byte* q = wb + QsOffset;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector512<int> isum = Avx512Chunk(q, y, scales, idx0);
            isum += Avx512Chunk(q + 32, y + 64, scales, idx1);
            isum += Avx512Chunk(q + 64, y + 128, scales, idx2);
            isum += Avx512Chunk(q + 96, y + 192, scales, idx3);
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(Fp16.Read(wb) * dy), acc);
        }
        return Vector512.Sum(acc) - Vector256.Sum(accMin);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Avx512Chunk(byte* q, sbyte* y, Vector512<short> scales, Vector512<short> idx)
    {
        Vector256<byte> packed = Vector256.Load(q);
        Vector512<byte> nib = Avx512Join.Join(packed, (packed.AsUInt16() >>> 4).AsByte()) & Vector512.Create((byte)0x0F);
        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(nib, Vector512.Load(y));
        return Avx512BW.MultiplyAddAdjacent(p, Avx512BW.PermuteVar32x16(scales, idx));
    }

    /// <summary>vpermw indices: 16 lanes of sub-block j, then 16 of j+1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> ScaleIndex(int j) =>
        Vector512.Create(Vector256.Create((short)j), Vector256.Create((short)(j + 1)));
}
