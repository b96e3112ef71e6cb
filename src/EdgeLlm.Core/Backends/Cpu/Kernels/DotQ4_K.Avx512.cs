using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_K
{
    /// <summary>
    /// One 64-weight chunk per zmm: its 32 packed bytes and their high nibbles side by side ([sub 2c | sub 2c+1]) match
    /// the 64 contiguous activations; vpmaddubsw, then vpmaddwd with [sc_2c ×16, sc_2c+1 ×16] (vpermw from the eight
    /// int16 scales), int32 sum over the block, one FMA with d·d_x. Mins as in the AVX2 rung (256-bit). The scales and
    /// mins are unpacked in SIMD (<see cref="UnpackScalesMins"/>) and d, dmin converted together in one xmm
    /// (<see cref="DAndDmin"/>): no scalar integer work per block but the addressing. (.NET 10 exposes no 512-bit
    /// vpdpwssd/vpdpbusd: AVX512-VNNI is not in System.Runtime.Intrinsics, only AVX-VNNI at 256 bits and AVX10.2.)
    /// </summary>
    private static float Avx512Loop(byte* w, byte* xq, int nb)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        Vector256<float> accMin = Vector256<float>.Zero;
        Vector512<short> idx0 = ScaleIndex(0), idx1 = ScaleIndex(2), idx2 = ScaleIndex(4), idx3 = ScaleIndex(6);
        Vector512<byte> m4 = Vector512.Create((byte)0x0F);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            Vector128<byte> sm = UnpackScalesMins(wb + ScalesOffset);
            Vector512<short> scales = Sse41.ConvertToVector128Int16(sm).ToVector256Unsafe().ToVector512Unsafe();
            byte* q = wb + QsOffset;
            Token512(ref acc, ref accMin, xq + b * ActivationQuant.Q8_KBlockBytes,
                Nibbles512(q, m4), Nibbles512(q + 32, m4), Nibbles512(q + 64, m4), Nibbles512(q + 96, m4),
                Avx512BW.PermuteVar32x16(scales, idx0), Avx512BW.PermuteVar32x16(scales, idx1),
                Avx512BW.PermuteVar32x16(scales, idx2), Avx512BW.PermuteVar32x16(scales, idx3),
                MinPairs(sm), DAndDmin(wb));
        }
        return Vector512.Sum(acc) - Vector256.Sum(accMin);
    }

    /// <summary>vpermw indices: 16 lanes of sub-block j, then 16 of j+1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> ScaleIndex(int j) =>
        Vector512.Create(Vector256.Create((short)j), Vector256.Create((short)(j + 1)));
}
