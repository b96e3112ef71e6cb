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
        float* scaled = stackalloc float[16];
        for (int b0 = 0; b0 < nb; b0 += 8)
        {
            int count = Math.Min(8, nb - b0);
            GroupScales(w + b0 * BlockBytes, xq + b0 * ActivationQuant.Q8_KBlockBytes, count, scaled);
            for (int k = 0; k < count; k++)
            {
                int b = b0 + k;
                byte* wb = w + b * BlockBytes;
                WeightPrefetch.Lines3(wb);
                Vector128<byte> sm = UnpackScalesMins(wb + ScalesOffset);
                Vector512<short> scales = Sse41.ConvertToVector128Int16(sm).ToVector256Unsafe().ToVector512Unsafe();
                byte* q = wb + QsOffset;
                Token512Scaled(ref acc, ref accMin, xq + b * ActivationQuant.Q8_KBlockBytes,
                    Nibbles512(q, m4), Nibbles512(q + 32, m4), Nibbles512(q + 64, m4), Nibbles512(q + 96, m4),
                    Avx512BW.PermuteVar32x16(scales, idx0), Avx512BW.PermuteVar32x16(scales, idx1),
                    Avx512BW.PermuteVar32x16(scales, idx2), Avx512BW.PermuteVar32x16(scales, idx3),
                    MinPairs(sm), Vector512.Create(scaled[k]), Vector256.Create(scaled[8 + k]));
            }
        }
        return Vector512.Sum(acc) - Vector256.Sum(accMin);
    }

    /// <summary>
    /// d·d_x into <paramref name="dst"/>[k] and dmin·d_x into dst[8 + k] for the <paramref name="count"/> (1..8) blocks
    /// from <paramref name="wg"/> and their activation blocks from <paramref name="xg"/>: two masked gathers (each
    /// block's d|dmin pair, each activation block's float scale), the fp16 pairs converted in one ymm each, the products
    /// as the per-block scalar products (same single rounding, bit-identical). The loop then broadcasts them from
    /// memory (a load, no shuffle port); the per-block vector conversion cost more ports than the whole group's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GroupScales(byte* wg, byte* xg, int count, float* dst)
    {
        Vector256<int> lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        Vector256<int> mask = Vector256.LessThan(lane, Vector256.Create(count));
        Vector256<uint> h = Avx2.GatherMaskVector256(Vector256<int>.Zero, (int*)wg, lane * BlockBytes, mask, 1).AsUInt32();
        Vector256<float> dy = Avx2.GatherMaskVector256(Vector256<float>.Zero, (float*)xg, lane * ActivationQuant.Q8_KBlockBytes, mask.AsSingle(), 1);
        (Fp16.ToFloat(h & Vector256.Create(0xffffu)) * dy).Store(dst);
        (Fp16.ToFloat(h >>> 16) * dy).Store(dst + 8);
    }

    /// <summary>vpermw indices: 16 lanes of sub-block j, then 16 of j+1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> ScaleIndex(int j) =>
        Vector512.Create(Vector256.Create((short)j), Vector256.Create((short)(j + 1)));
}
