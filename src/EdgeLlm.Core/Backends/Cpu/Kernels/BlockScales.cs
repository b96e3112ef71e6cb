using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// The per-block scale products d_w·d_x of eight consecutive 32-blocks in one ymm: two AVX2 gathers pick the fp16
/// fields (each lane reads 4 bytes at a block start: the fp16 d and the first two quant bytes, always in bounds) and
/// <see cref="Fp16"/> converts them in registers. Scalar fp16 conversion costs ~13 instructions, which made it the
/// largest cost per Q4_0/Q8_0 block; this is about 3 per block. Lane k equals Fp16.Read(w_k)·Fp16.Read(x_k) exactly.
/// </summary>
internal static unsafe class BlockScales
{
    /// <summary>Byte offsets of 8 consecutive blocks of <paramref name="blockBytes"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Offsets(int blockBytes) => Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * blockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Products8(byte* w, Vector256<int> wOffsets, byte* x, Vector256<int> xOffsets)
    {
        Vector256<uint> hw = Avx2.GatherVector256((int*)w, wOffsets, 1).AsUInt32();
        Vector256<uint> hx = Avx2.GatherVector256((int*)x, xOffsets, 1).AsUInt32();
        return Fp16.ToFloat(hw) * Fp16.ToFloat(hx);
    }

    /// <summary>
    /// <see cref="Products8"/> for the AVX-512 loops: the two gathers joined into one zmm and converted by one
    /// <see cref="Fp16.ToFloat(Vector512{uint})"/> (13 instructions for the sixteen scales instead of 26), then the
    /// halves multiplied. The same bits as <see cref="Products8"/> (the conversion is exact either way).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Products8Wide(byte* w, Vector256<int> wOffsets, byte* x, Vector256<int> xOffsets)
    {
        Vector256<int> hw = Avx2.GatherVector256((int*)w, wOffsets, 1);
        Vector256<int> hx = Avx2.GatherVector256((int*)x, xOffsets, 1);
        Vector512<float> f = Fp16.ToFloat(Avx512F.InsertVector256(hw.ToVector512Unsafe(), hx, 1).AsUInt32());
        return f.GetLower() * f.GetUpper();
    }

    /// <summary>Lane k of <paramref name="d"/> in every lane (vpermps).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Broadcast(Vector256<float> d, int k) => Avx2.PermuteVar8x32(d, Vector256.Create(k));

    /// <summary>The fp16 scales of eight consecutive blocks as floats (one gather, converted in registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Half8(byte* w, Vector256<int> wOffsets) =>
        Fp16.ToFloat(Avx2.GatherVector256((int*)w, wOffsets, 1).AsUInt32());
}
