using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// The float scale panel of the AVX-512 Q4_0 GEMM (<see cref="RepackAvx512"/>'s fp16-scale layout): a batch of more than
/// four tokens passes over every group of a row tile once per four tokens, and converting the group's fp16 scales on
/// each pass (a load, two widenings, two exact conversions per four blocks and a permute per block) cost prefill about
/// 6% against the float-scale layout. <see cref="RowDrivers.Q4_0PackedTiles{TK}"/> converts a tile's scales once into a
/// small panel (<see cref="ScalePanelAvx512"/>: 8 floats per block, row r's scale at 8·b + r, so a pair of blocks
/// loads as the lanes the kernel's accumulators use) and the passes load them from there (<see cref="Packed4Scaled"/>). The panel holds the
/// floats the kernel converts itself (the same exact conversion), so every result keeps its bits: a token in a batch
/// still gets what it gets alone in decode. With the scales out of the loop the weight side of a block (two loads, the
/// nibble split) is most of what is left besides the per-token work, so the driver runs eight tokens a pass
/// (<see cref="Packed8Scaled"/>) while eight are left. One core, 2048 × 2048, 64 tokens, weights in cache (min of 9,
/// loaded 2-vCPU VM): 3.12 ms before, 2.85 with the panel, 2.68-2.78 with eight tokens a pass.
/// </summary>
public static unsafe partial class DotQ4_0
{
    /// <summary>Bytes of one block of the float scale panel: the eight rows' scales.</summary>
    public const int ScalePanelBlockBytes = PackRows * sizeof(float);

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
    /// The 32 fp16 scales of the step at <paramref name="ps"/> (four blocks' eight rows) as floats: blocks 0 and 1 in
    /// <paramref name="s01"/>, 2 and 3 in <paramref name="s23"/>, row r of block j at lane 8·(j mod 2) + r. A short last step
    /// reads the first quant bytes as scales too: those lanes are never selected. When all 32 are normal halves (what a
    /// model's scales are, one compare of the 32 tells), each 16 take four instructions (<see cref="NormalToFloat"/>)
    /// instead of the ~13 of the exact conversion of every class (<see cref="Fp16.ToFloat(Vector512{uint})"/>), which a
    /// step with a zero, subnormal, inf or NaN scale (or a short last step) still takes: the same bits either way.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StepScales(byte* ps, out Vector512<float> s01, out Vector512<float> s23)
    {
        Vector512<ushort> h = Vector512.Load((ushort*)ps);
        // Normal: exponent field 1..30, i.e. (h & 0x7fff) - 0x400 below 0x7800 without wrapping.
        if (Vector512.LessThanAll((h & Vector512.Create((ushort)0x7fff)) - Vector512.Create((ushort)0x0400), Vector512.Create((ushort)0x7800)))
        {
            s01 = NormalToFloat(Avx512F.ConvertToVector512Int32(h.AsInt16().GetLower()));
            s23 = NormalToFloat(Avx512F.ConvertToVector512Int32(h.AsInt16().GetUpper()));
            return;
        }
        s01 = Fp16.ToFloat(Avx512F.ConvertToVector512UInt32(h.GetLower()));
        s23 = Fp16.ToFloat(Avx512F.ConvertToVector512UInt32(h.GetUpper()));
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
    /// per block into <paramref name="dst"/>, block b's row r scale (fp16 → float, exact) at dst[8·b + r], so a pair of
    /// blocks is one 64-byte load with the lanes of <see cref="StepScales"/>.
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
        for (int b0 = 0; b0 < nb; b0 += ScaleRunBlocks)
        {
            int k = nb - b0 >= ScaleRunBlocks ? ScaleRunBlocks : nb - b0;
            StepScales(ps, out Vector512<float> s01, out Vector512<float> s23);
            float* d = dst + 8 * b0;
            if (k == ScaleRunBlocks)
            {
                s01.Store(d);
                s23.Store(d + 16);
            }
            else
            {
                s01.GetLower().Store(d);
                if (k >= 2) s01.GetUpper().Store(d + 8);
                if (k >= 3) s23.GetLower().Store(d + 16);
            }
            ps += k * (long)PackedBlockBytesAvx512;
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
