using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// The float scale panel of the AVX-512 Q4_0 GEMM (<see cref="RepackAvx512"/>'s fp16-scale layout): a batch of more than
/// four tokens passes over every group of a row tile once per four tokens, and converting the group's fp16 scales on
/// each pass (a load, two widenings and two conversions per step of blocks) cost prefill about 6% against a float-scale
/// layout (measured on the eight-row layout this replaced). <see cref="RowDrivers.Q4_0PackedTiles{TK}"/> converts a tile's scales once into a
/// small panel (<see cref="ScalePanelAvx512"/>: 16 floats per block, row r's scale at 16·b + r, the lanes the kernel's
/// accumulators use) and the passes load them from there (<see cref="Packed4Scaled"/>). The panel holds the
/// floats the kernel converts itself (the same exact conversion), so every result keeps its bits: a token in a batch
/// still gets what it gets alone in decode. With the scales out of the loop the weight side of a block (four loads, the
/// nibble split) is most of what is left besides the per-token work, so the driver runs eight tokens a pass
/// (<see cref="Packed8Scaled"/>) while eight are left. One core, 2048 × 2048, 64 tokens, weights in cache (min of 9,
/// loaded 2-vCPU VM): 3.12 ms before, 2.85 with the panel, 2.68-2.78 with eight tokens a pass.
/// </summary>
public static unsafe partial class DotQ4_0
{
    /// <summary>Bytes of one block of the float scale panel: the 16 rows' scales.</summary>
    public const int ScalePanelBlockBytes = PackRowsAvx512 * sizeof(float);

    /// <summary>Where <see cref="PackedSteps{TN, TS}"/> takes the row scales from: the group's fp16 scales, or a float panel.</summary>
    internal interface IScaleSource
    {
        static abstract bool Panel { get; }
    }

    internal struct ScalesFp16 : IScaleSource
    {
        public static bool Panel => false;
    }

    internal struct ScalesPanel : IScaleSource
    {
        public static bool Panel => true;
    }

    /// <summary>
    /// The fp16 scales of the step at <paramref name="ps"/> as floats: block 0's 16 rows in <paramref name="s0"/>, block
    /// 1's in <paramref name="s1"/> (when <paramref name="two"/>; else zero), row r at lane r. When all are normal halves
    /// (what a model's scales are, one compare tells), each 16 take four instructions (<see cref="NormalToFloat"/>)
    /// instead of the ~13 of the exact conversion of every class (<see cref="Fp16.ToFloat(Vector512{uint})"/>), which a
    /// step with a zero, subnormal, inf or NaN scale still takes: the same bits either way.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StepScales(byte* ps, bool two, out Vector512<float> s0, out Vector512<float> s1)
    {
        if (two)
        {
            Vector512<ushort> h = Vector512.Load((ushort*)ps);
            // Normal: exponent field 1..30, i.e. (h & 0x7fff) - 0x400 below 0x7800 without wrapping.
            if (Vector512.LessThanAll((h & Vector512.Create((ushort)0x7fff)) - Vector512.Create((ushort)0x0400), Vector512.Create((ushort)0x7800)))
            {
                s0 = NormalToFloat(Avx512F.ConvertToVector512Int32(h.AsInt16().GetLower()));
                s1 = NormalToFloat(Avx512F.ConvertToVector512Int32(h.AsInt16().GetUpper()));
                return;
            }
            s0 = Fp16.ToFloat(Avx512F.ConvertToVector512UInt32(h.GetLower()));
            s1 = Fp16.ToFloat(Avx512F.ConvertToVector512UInt32(h.GetUpper()));
            return;
        }
        Vector256<ushort> l = Vector256.Load((ushort*)ps);
        s1 = Vector512<float>.Zero;
        s0 = Vector256.LessThanAll((l & Vector256.Create((ushort)0x7fff)) - Vector256.Create((ushort)0x0400), Vector256.Create((ushort)0x7800))
            ? NormalToFloat(Avx512F.ConvertToVector512Int32(l.AsInt16()))
            : Fp16.ToFloat(Avx512F.ConvertToVector512UInt32(l));
    }

    /// <summary>
    /// Normal halves, sign-extended to 32 bits, to float: shifted left by 13 the sign lands in bit 31 (the extension fills
    /// 28..31) and the 15 magnitude bits in 13..27; masked, and 112 added to the exponent field (15 → 127 bias, at most
    /// 30 + 112 there: no carry into the sign). The bits <see cref="Fp16.ToFloat(Vector512{uint})"/> gives a normal half.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> NormalToFloat(Vector512<int> sx) =>
        (((sx << 13) & Vector512.Create(unchecked((int)0x8FFFE000))) + Vector512.Create((127 - 15) << 23)).AsSingle();

    /// <summary>
    /// The scale panel of one group of the AVX-512 layout (<paramref name="nb"/> blocks): <see cref="ScalePanelBlockBytes"/>
    /// per block into <paramref name="dst"/>, block b's row r scale (fp16 → float, exact) at dst[16·b + r], so a block's
    /// scales are one 64-byte load with the lanes of <see cref="StepScales"/>.
    /// </summary>
    public static void ScalePanelAvx512(byte* group, int nb, float* dst)
    {
        Require(Rung.Avx512);
        ScalePanel(group, nb, dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ScalePanel(byte* group, int nb, float* dst)
    {
        byte* ps = group;
        for (int b = 0; b < nb; b += StepBlocksAvx512)
        {
            bool two = b + 1 < nb;
            StepScales(ps, two, out Vector512<float> s0, out Vector512<float> s1);
            s0.Store(dst + 16 * b);
            if (two) s1.Store(dst + 16 * (b + 1));
            ps += (two ? 2 : 1) * (long)PackedBlockBytesAvx512;
        }
    }

    /// <summary>
    /// <see cref="PackedDot4Avx512"/> with the group's scales from its panel (<paramref name="scales"/>, made by
    /// <see cref="ScalePanelAvx512"/>); the weight lines prefetched ahead when <paramref name="prefetch"/>.
    /// </summary>
    public static void PackedDot4ScaledAvx512(byte* group, float* scales, byte* panel, long panelBytes, int n, float* dst, long dstStride, bool prefetch)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        Packed4Scaled(group, scales, panel, panelBytes, nb, dst, dstStride, prefetch);
    }

    /// <summary>
    /// Eight tokens (panels <paramref name="panelBytes"/> apart) · one group with its scales from its panel: the weight
    /// side (loads, nibble split, scales) once per block for eight tokens instead of four; each token's sums formed as in
    /// <see cref="Packed4Scaled"/> and <see cref="Packed1"/> (same bits).
    /// </summary>
    public static void PackedDot8ScaledAvx512(byte* group, float* scales, byte* panel, long panelBytes, int n, float* dst, long dstStride, bool prefetch)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        Packed8Scaled(group, scales, panel, panelBytes, nb, dst, dstStride, prefetch);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Packed8Scaled(byte* group, float* scales, byte* panel, long panelBytes, int nb, float* dst, long dstStride, bool prefetch) =>
        PackedSteps<Tokens8, ScalesPanel>(group, scales, panel, panelBytes, nb, dst, dstStride, prefetch);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Packed4Scaled(byte* group, float* scales, byte* panel, long panelBytes, int nb, float* dst, long dstStride, bool prefetch) =>
        PackedSteps<Tokens4, ScalesPanel>(group, scales, panel, panelBytes, nb, dst, dstStride, prefetch);
}
