using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q4_0 weights · activations in the <see cref="Q8_0Panel"/> layout, the matmul's fast path. Per pair of blocks:
/// vpmaddubsw of the unsigned nibbles q ∈ 0..15 with the activations (one 64-byte memory operand), vpmaddwd,
/// int → float, FMA with d_w·d_x: Σ q·y·d_w·d_x. The −8 of Q4_0 comes off in float, once per eight blocks: one 8-wide
/// FMA of the eight weight scales with the panel's c = d_x·8·Σy into a correction accumulator subtracted at the end
/// (so no per-pair offset vpsubw, and no int16 offset array to stream). The result differs from <see cref="Dot"/>'s
/// exact integer Σ(q−8)·y per block by float rounding only. <see cref="DotPanel4"/> dots one weight row with four tokens, unpacking each weight
/// pair once for all four (prefill's register block). The AVX2 rung (<c>DotQ4_0.PanelAvx2.cs</c>) runs the same skeleton a block per ymm. Rungs without a panel loop (<see cref="PanelAccelerated"/>
/// false) run <see cref="ScalarPanel"/>; the matmul uses <see cref="Dot"/> there instead.
/// </summary>
public static unsafe partial class DotQ4_0
{
    /// <summary>Whether the selected rung has a vectorized panel loop (AVX-512 and AVX2; NEON keeps <see cref="Dot"/>).</summary>
    public static bool PanelAccelerated => KernelRung.Selected is Rung.Avx512 or Rung.Avx2;

    /// <summary>Row <paramref name="w"/> · the panel of one token, <paramref name="n"/> values.</summary>
    public static float DotPanel(byte* w, byte* panel, int n)
    {
        int nb = Blocks(n);
        if (KernelRung.Selected == Rung.Avx512)
        {
            if (!KernelRung.UseAvx512Vbmi) return Avx512Panel<VbmiOff, GfniOff>(w, panel, nb);
            return KernelRung.UseGfni && Gfni.V512.IsSupported ? Avx512Panel<VbmiOn, GfniOn>(w, panel, nb) : Avx512Panel<VbmiOn, GfniOff>(w, panel, nb);
        }
        if (KernelRung.Selected == Rung.Avx2) return KernelRung.UseAvxVnni ? Avx2Panel<VnniOn>(w, panel, nb) : Avx2Panel<VnniOff>(w, panel, nb);
        return ScalarPanel(w, panel, nb);
    }

    /// <summary>
    /// Row <paramref name="w"/> · four tokens' panels (<paramref name="panel"/> + t·<paramref name="panelBytes"/>),
    /// result t to <paramref name="dst"/>[t·<paramref name="dstStride"/>].
    /// </summary>
    public static void DotPanel4(byte* w, byte* panel, long panelBytes, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        if (KernelRung.Selected == Rung.Avx512)
        {
            if (KernelRung.UseAvx512Vbmi) Avx512Panel4<VbmiOn>(w, panel, panelBytes, nb, dst, dstStride);
            else Avx512Panel4<VbmiOff>(w, panel, panelBytes, nb, dst, dstStride);
            return;
        }
        if (KernelRung.Selected == Rung.Avx2)
        {
            if (KernelRung.UseAvxVnni) Avx2Panel4<VnniOn>(w, panel, panelBytes, nb, dst, dstStride);
            else Avx2Panel4<VnniOff>(w, panel, panelBytes, nb, dst, dstStride);
            return;
        }
        for (int t = 0; t < 4; t++) dst[t * dstStride] = ScalarPanel(w, panel + t * panelBytes, nb);
    }

    /// <summary>The panel loops of one rung directly (tests, benchmarks); <paramref name="vbmi"/> as in <see cref="DotAvx512(byte*, byte*, int, bool)"/>, GFNI off.</summary>
    public static float DotPanelAvx512(byte* w, byte* panel, int n, bool vbmi) => DotPanelAvx512(w, panel, n, vbmi, gfni: false);

    /// <summary>
    /// The AVX-512 one-token panel loop with VBMI and GFNI on or off. GFNI (vgf2p8affineqb) takes the nibbles out of
    /// the vpermb-spread bytes in one instruction instead of vpsrlvw + vpand; it is used only with VBMI (without VBMI
    /// the loop ignores it).
    /// </summary>
    public static float DotPanelAvx512(byte* w, byte* panel, int n, bool vbmi, bool gfni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        if (!vbmi) return Avx512Panel<VbmiOff, GfniOff>(w, panel, nb);
        if (!Avx512Vbmi.IsSupported || (gfni && !Gfni.V512.IsSupported)) KernelRung.ThrowUnsupported(nameof(DotQ4_0), Rung.Avx512);
        return gfni ? Avx512Panel<VbmiOn, GfniOn>(w, panel, nb) : Avx512Panel<VbmiOn, GfniOff>(w, panel, nb);
    }

    public static void DotPanel4Avx512(byte* w, byte* panel, long panelBytes, int n, float* dst, long dstStride, bool vbmi)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        if (!vbmi) { Avx512Panel4<VbmiOff>(w, panel, panelBytes, nb, dst, dstStride); return; }
        if (!Avx512Vbmi.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_0), Rung.Avx512);
        Avx512Panel4<VbmiOn>(w, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>The AVX2 panel loops with AVX-VNNI on or off.</summary>
    public static float DotPanelAvx2(byte* w, byte* panel, int n, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) return Avx2Panel<VnniOff>(w, panel, nb);
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_0), Rung.Avx2);
        return Avx2Panel<VnniOn>(w, panel, nb);
    }

    public static void DotPanel4Avx2(byte* w, byte* panel, long panelBytes, int n, float* dst, long dstStride, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) { Avx2Panel4<VnniOff>(w, panel, panelBytes, nb, dst, dstStride); return; }
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_0), Rung.Avx2);
        Avx2Panel4<VnniOn>(w, panel, panelBytes, nb, dst, dstStride);
    }

    public static float DotPanelScalar(byte* w, byte* panel, int n) => ScalarPanel(w, panel, Blocks(n));

    /// <summary>Scalar panel loop, the float order of <see cref="ScalarPanelTail"/>.</summary>
    private static float ScalarPanel(byte* w, byte* panel, int nb) =>
        ScalarPanelTail(w, panel, Q8_0Panel.Scales(panel, nb), Q8_0Panel.Offsets(panel, nb), nb);

    /// <summary>
    /// The one-token AVX-512 panel loop (decode): sixteen blocks a step, so the sixteen fp16 weight scales are
    /// converted in one zmm (<see cref="Fp16.ToFloat(Vector512{uint})"/>: 13 instructions per 16 scales instead of per
    /// 8) and the d_w·d_x products and the offset correction are one 16-wide multiply and FMA. With VBMI the scales come
    /// from the pairs' own 64-byte loads (two vpermt2w and a blend, <see cref="Scales16Vbmi"/>), without it from two
    /// gathers. A remaining group of eight blocks goes as in the sixteen-block step with eight scales, the last nb mod 8
    /// blocks through <see cref="ScalarPanelTail"/>. The index tables are built before the loop (no constant reload per
    /// step where the compiler keeps them in registers; 32 zmm registers hold them and the loop's values).
    /// </summary>
    private static float Avx512Panel<TVbmi, TGfni>(byte* w, byte* panel, int nb)
        where TVbmi : struct, IIsaFlag where TGfni : struct, IIsaFlag
    {
        float* dx = Q8_0Panel.Scales(panel, nb);
        float* c = Q8_0Panel.Offsets(panel, nb);
        byte* y = panel;
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero, corr = Vector512<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes);
        Vector512<int> i01 = PairIndex(0), i23 = PairIndex(2), i45 = PairIndex(4), i67 = PairIndex(6);
        Vector512<int> i89 = PairIndex(8), iAB = PairIndex(10), iCD = PairIndex(12), iEF = PairIndex(14);
        Vector512<byte> fromStart = VbmiPairIndex(0), fromEnd = VbmiPairIndex(64 - 2 * BlockBytes);
        Vector512<byte> nibbleSel = NibbleSelect<TGfni>();
        Vector512<ushort> scaleLo = ScaleIndex16(0), scaleHi = ScaleIndex16(16);
        int b = 0;
        for (; b + 16 <= nb; b += 16, w += 16 * BlockBytes, y += 512)
        {
            WeightPrefetch.Lines5(w);
            Vector512<byte> q0, q1, q2, q3, q4, q5, q6, q7;
            Vector512<float> dw;
            if (TVbmi.Enabled)
            {
                // 64-byte loads inside each 144-byte group: pairs 0..2 from their start, pair 3 ending at the group end.
                Vector512<byte> r0 = Vector512.Load(w), r2 = Vector512.Load(w + 4 * BlockBytes);
                Vector512<byte> r4 = Vector512.Load(w + 8 * BlockBytes), r6 = Vector512.Load(w + 12 * BlockBytes);
                dw = Scales16Vbmi(r0, r2, r4, r6, scaleLo, scaleHi);
                q0 = SpreadVbmi<TGfni>(r0, fromStart, nibbleSel);
                q1 = SpreadVbmi<TGfni>(Vector512.Load(w + 2 * BlockBytes), fromStart, nibbleSel);
                q2 = SpreadVbmi<TGfni>(r2, fromStart, nibbleSel);
                q3 = SpreadVbmi<TGfni>(Vector512.Load(w + 8 * BlockBytes - 64), fromEnd, nibbleSel);
                q4 = SpreadVbmi<TGfni>(r4, fromStart, nibbleSel);
                q5 = SpreadVbmi<TGfni>(Vector512.Load(w + 10 * BlockBytes), fromStart, nibbleSel);
                q6 = SpreadVbmi<TGfni>(r6, fromStart, nibbleSel);
                q7 = SpreadVbmi<TGfni>(Vector512.Load(w + 16 * BlockBytes - 64), fromEnd, nibbleSel);
            }
            else
            {
                Vector256<int> h0 = Avx2.GatherVector256((int*)w, wOff, 1), h1 = Avx2.GatherVector256((int*)(w + 8 * BlockBytes), wOff, 1);
                dw = Fp16.ToFloat(Avx512F.InsertVector256(h0.ToVector512Unsafe(), h1, 1).AsUInt32());
                q0 = UnpackPair<VbmiOff>(w, 0, fromStart, nibbleSel.AsUInt16());
                q1 = UnpackPair<VbmiOff>(w, 1, fromStart, nibbleSel.AsUInt16());
                q2 = UnpackPair<VbmiOff>(w, 2, fromStart, nibbleSel.AsUInt16());
                q3 = UnpackPair<VbmiOff>(w, 3, fromStart, nibbleSel.AsUInt16());
                q4 = UnpackPair<VbmiOff>(w + 8 * BlockBytes, 0, fromStart, nibbleSel.AsUInt16());
                q5 = UnpackPair<VbmiOff>(w + 8 * BlockBytes, 1, fromStart, nibbleSel.AsUInt16());
                q6 = UnpackPair<VbmiOff>(w + 8 * BlockBytes, 2, fromStart, nibbleSel.AsUInt16());
                q7 = UnpackPair<VbmiOff>(w + 8 * BlockBytes, 3, fromStart, nibbleSel.AsUInt16());
            }
            Vector512<float> d = dw * Vector512.Load(dx + b);
            corr = Avx512F.FusedMultiplyAdd(dw, Vector512.Load(c + b), corr);
            acc0 = PanelPair(acc0, q0, y, Avx512F.PermuteVar16x32(d, i01));
            acc1 = PanelPair(acc1, q1, y + 64, Avx512F.PermuteVar16x32(d, i23));
            acc0 = PanelPair(acc0, q2, y + 128, Avx512F.PermuteVar16x32(d, i45));
            acc1 = PanelPair(acc1, q3, y + 192, Avx512F.PermuteVar16x32(d, i67));
            acc0 = PanelPair(acc0, q4, y + 256, Avx512F.PermuteVar16x32(d, i89));
            acc1 = PanelPair(acc1, q5, y + 320, Avx512F.PermuteVar16x32(d, iAB));
            acc0 = PanelPair(acc0, q6, y + 384, Avx512F.PermuteVar16x32(d, iCD));
            acc1 = PanelPair(acc1, q7, y + 448, Avx512F.PermuteVar16x32(d, iEF));
        }
        Vector256<float> corr8 = Vector256<float>.Zero;
        if (b + 8 <= nb)
        {
            Vector512<byte> q0, q1, q2, q3;
            Vector256<float> dw;
            if (TVbmi.Enabled)
            {
                Vector512<byte> r0 = Vector512.Load(w), r2 = Vector512.Load(w + 4 * BlockBytes);
                dw = Fp16.ToFloat(Avx512BW.PermuteVar32x16x2(r0.AsUInt16(), scaleLo, r2.AsUInt16()).AsUInt32().GetLower());
                q0 = SpreadVbmi<TGfni>(r0, fromStart, nibbleSel);
                q1 = SpreadVbmi<TGfni>(Vector512.Load(w + 2 * BlockBytes), fromStart, nibbleSel);
                q2 = SpreadVbmi<TGfni>(r2, fromStart, nibbleSel);
                q3 = SpreadVbmi<TGfni>(Vector512.Load(w + 8 * BlockBytes - 64), fromEnd, nibbleSel);
            }
            else
            {
                dw = BlockScales.Half8(w, wOff);
                q0 = UnpackPair<VbmiOff>(w, 0, fromStart, nibbleSel.AsUInt16());
                q1 = UnpackPair<VbmiOff>(w, 1, fromStart, nibbleSel.AsUInt16());
                q2 = UnpackPair<VbmiOff>(w, 2, fromStart, nibbleSel.AsUInt16());
                q3 = UnpackPair<VbmiOff>(w, 3, fromStart, nibbleSel.AsUInt16());
            }
            Vector512<float> d = (dw * Vector256.Load(dx + b)).ToVector512Unsafe();
            corr8 = dw * Vector256.Load(c + b);
            acc0 = PanelPair(acc0, q0, y, Avx512F.PermuteVar16x32(d, i01));
            acc1 = PanelPair(acc1, q1, y + 64, Avx512F.PermuteVar16x32(d, i23));
            acc0 = PanelPair(acc0, q2, y + 128, Avx512F.PermuteVar16x32(d, i45));
            acc1 = PanelPair(acc1, q3, y + 192, Avx512F.PermuteVar16x32(d, i67));
            b += 8;
            w += 8 * BlockBytes;
            y += 256;
        }
        float sum = Vector512.Sum(acc0 + acc1) - (Vector512.Sum(corr) + Vector256.Sum(corr8));
        if (b < nb) sum += ScalarPanelTail(w, y, dx + b, c + b, nb - b);
        return sum;
    }

    private static void Avx512Panel4<TVbmi>(byte* w, byte* panel, long panelBytes, int nb, float* dst, long dstStride)
        where TVbmi : struct, IIsaFlag
    {
        byte* y0 = panel, y1 = panel + panelBytes, y2 = panel + 2 * panelBytes, y3 = panel + 3 * panelBytes;
        long sOff = nb * 32L, cOff = nb * 36L; // byte offsets of dx and of the offset terms inside a panel
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero, a2 = Vector512<float>.Zero, a3 = Vector512<float>.Zero;
        Vector256<float> k0 = Vector256<float>.Zero, k1 = Vector256<float>.Zero, k2 = Vector256<float>.Zero, k3 = Vector256<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes);
        Vector512<int> i01 = PairIndex(0), i23 = PairIndex(2), i45 = PairIndex(4), i67 = PairIndex(6);
        Vector512<byte> fromStart = VbmiPairIndex(0), fromEnd = VbmiPairIndex(64 - 2 * BlockBytes);
        Vector512<ushort> shifts = VbmiShifts();
        Vector512<ushort> scaleIndex = ScaleIndexVbmi();
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes)
        {
            WeightPrefetch.Lines3(w);
            Vector512<byte> q0, q1, q2, q3;
            Vector256<float> dw;
            if (TVbmi.Enabled)
            {
                Vector512<byte> r0 = Vector512.Load(w), r2 = Vector512.Load(w + 4 * BlockBytes);
                dw = ScalesVbmi(r0, r2, scaleIndex);
                q0 = SpreadVbmi(r0, fromStart, shifts);
                q1 = SpreadVbmi(Vector512.Load(w + 2 * BlockBytes), fromStart, shifts);
                q2 = SpreadVbmi(r2, fromStart, shifts);
                q3 = SpreadVbmi(Vector512.Load(w + 8 * BlockBytes - 64), fromEnd, shifts);
            }
            else
            {
                dw = BlockScales.Half8(w, wOff);
                q0 = UnpackPair<VbmiOff>(w, 0, fromStart, shifts);
                q1 = UnpackPair<VbmiOff>(w, 1, fromStart, shifts);
                q2 = UnpackPair<VbmiOff>(w, 2, fromStart, shifts);
                q3 = UnpackPair<VbmiOff>(w, 3, fromStart, shifts);
            }
            long fo = 4L * b, qo = 32L * b;
            Vector512<float> d0 = (dw * Vector256.Load((float*)(y0 + sOff + fo))).ToVector512Unsafe();
            Vector512<float> d1 = (dw * Vector256.Load((float*)(y1 + sOff + fo))).ToVector512Unsafe();
            Vector512<float> d2 = (dw * Vector256.Load((float*)(y2 + sOff + fo))).ToVector512Unsafe();
            Vector512<float> d3 = (dw * Vector256.Load((float*)(y3 + sOff + fo))).ToVector512Unsafe();
            k0 = Fma.MultiplyAdd(dw, Vector256.Load((float*)(y0 + cOff + fo)), k0);
            k1 = Fma.MultiplyAdd(dw, Vector256.Load((float*)(y1 + cOff + fo)), k1);
            k2 = Fma.MultiplyAdd(dw, Vector256.Load((float*)(y2 + cOff + fo)), k2);
            k3 = Fma.MultiplyAdd(dw, Vector256.Load((float*)(y3 + cOff + fo)), k3);
            byte* ya = y0 + qo, yb = y1 + qo, yc = y2 + qo, yd = y3 + qo;
            a0 = PanelPair(a0, q0, ya, Avx512F.PermuteVar16x32(d0, i01));
            a1 = PanelPair(a1, q0, yb, Avx512F.PermuteVar16x32(d1, i01));
            a2 = PanelPair(a2, q0, yc, Avx512F.PermuteVar16x32(d2, i01));
            a3 = PanelPair(a3, q0, yd, Avx512F.PermuteVar16x32(d3, i01));
            a0 = PanelPair(a0, q1, ya + 64, Avx512F.PermuteVar16x32(d0, i23));
            a1 = PanelPair(a1, q1, yb + 64, Avx512F.PermuteVar16x32(d1, i23));
            a2 = PanelPair(a2, q1, yc + 64, Avx512F.PermuteVar16x32(d2, i23));
            a3 = PanelPair(a3, q1, yd + 64, Avx512F.PermuteVar16x32(d3, i23));
            a0 = PanelPair(a0, q2, ya + 128, Avx512F.PermuteVar16x32(d0, i45));
            a1 = PanelPair(a1, q2, yb + 128, Avx512F.PermuteVar16x32(d1, i45));
            a2 = PanelPair(a2, q2, yc + 128, Avx512F.PermuteVar16x32(d2, i45));
            a3 = PanelPair(a3, q2, yd + 128, Avx512F.PermuteVar16x32(d3, i45));
            a0 = PanelPair(a0, q3, ya + 192, Avx512F.PermuteVar16x32(d0, i67));
            a1 = PanelPair(a1, q3, yb + 192, Avx512F.PermuteVar16x32(d1, i67));
            a2 = PanelPair(a2, q3, yc + 192, Avx512F.PermuteVar16x32(d2, i67));
            a3 = PanelPair(a3, q3, yd + 192, Avx512F.PermuteVar16x32(d3, i67));
        }
        float s0 = Vector512.Sum(a0) - Vector256.Sum(k0), s1 = Vector512.Sum(a1) - Vector256.Sum(k1);
        float s2 = Vector512.Sum(a2) - Vector256.Sum(k2), s3 = Vector512.Sum(a3) - Vector256.Sum(k3);
        if (b < nb) PanelTail4(w, y0, y1, y2, y3, b, nb, ref s0, ref s1, ref s2, ref s3);
        dst[0] = s0;
        dst[dstStride] = s1;
        dst[2 * dstStride] = s2;
        dst[3 * dstStride] = s3;
    }

    /// <summary>
    /// The eight fp16 scales of a group as floats without a gather: they sit at words 0, 9, 18, 27 of the loads at
    /// the group start and at block 4, so one vpermt2w collects them, vpmovzxwd widens, <see cref="Fp16"/> converts.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ScalesVbmi(Vector512<byte> r0, Vector512<byte> r4, Vector512<ushort> index)
    {
        Vector512<ushort> h = Avx512BW.PermuteVar32x16x2(r0.AsUInt16(), index, r4.AsUInt16());
        return Fp16.ToFloat(Avx2.ConvertToVector256Int32(h.GetLower().GetLower()).AsUInt32());
    }

    /// <summary>vpermt2w indices for <see cref="ScalesVbmi"/>: words 0, 9, 18, 27 of the first source, then of the second (32 + ·).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ushort> ScaleIndexVbmi() =>
        Vector512.Create(Vector256.Create(Vector128.Create((ushort)0, 9, 18, 27, 32, 41, 50, 59), Vector128<ushort>.Zero), Vector256<ushort>.Zero);

    /// <summary>
    /// The sixteen fp16 scales of two eight-block groups as floats: vpermt2w puts the scales of the first group (words 0,
    /// 9, 18, 27 of the loads at its block 0 and block 4) into words 0, 2, .., 14, the second vpermt2w those of the
    /// second group into words 16, .., 30, a blend keeps dwords 0..7 of the first and 8..15 of the second, and
    /// <see cref="Fp16.ToFloat(Vector512{uint})"/> (which reads the low 16 bits of each dword) converts all sixteen.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scales16Vbmi(Vector512<byte> r0, Vector512<byte> r4, Vector512<byte> r8, Vector512<byte> r12,
        Vector512<ushort> indexLo, Vector512<ushort> indexHi)
    {
        Vector512<uint> lo = Avx512BW.PermuteVar32x16x2(r0.AsUInt16(), indexLo, r4.AsUInt16()).AsUInt32();
        Vector512<uint> hi = Avx512BW.PermuteVar32x16x2(r8.AsUInt16(), indexHi, r12.AsUInt16()).AsUInt32();
        Vector512<uint> upper = Vector512.GreaterThanOrEqual(Vector512<uint>.Indices, Vector512.Create(8u));
        return Fp16.ToFloat(Vector512.ConditionalSelect(upper, hi, lo));
    }

    /// <summary>
    /// vpermt2w indices for <see cref="Scales16Vbmi"/>: word <paramref name="at"/> + 2k takes word 9k of the first source
    /// (k = 0..3) or word 9(k − 4) of the second (32 + ·, k = 4..7); the other words pick word 0 (ignored).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ushort> ScaleIndex16(int at)
    {
        Vector512<ushort> j = Vector512<ushort>.Indices - Vector512.Create((ushort)at);
        Vector512<ushort> k = j >>> 1;
        // 9k for k < 4; 32 + 9(k − 4) = 9k − 4 for k ≥ 4
        Vector512<ushort> word = k * Vector512.Create((ushort)9) - Vector512.ConditionalSelect(
            Vector512.GreaterThanOrEqual(k, Vector512.Create((ushort)4)), Vector512.Create((ushort)4), Vector512<ushort>.Zero);
        Vector512<ushort> used = Vector512.LessThan(j, Vector512.Create((ushort)16)) & Vector512.Equals(j & Vector512.Create((ushort)1), Vector512<ushort>.Zero);
        return word & used;
    }

    /// <summary>
    /// The nibble selector of <see cref="SpreadVbmi{TGfni}"/> for a pair spread as [qs0, qs0, qs1, qs1]: with GFNI the
    /// affine matrices, per 64-bit lane, that keep the low nibble (1st and 3rd 128-bit lane) or move the high nibble
    /// down (2nd and 4th), output bit i taken from input bit i or i + 4 (matrix byte 7 − i); without GFNI the vpsrlvw
    /// counts (<see cref="VbmiShifts"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> NibbleSelect<TGfni>() where TGfni : struct, IIsaFlag
    {
        if (!TGfni.Enabled) return VbmiShifts().AsByte();
        Vector512<ulong> high = Vector512.Equals((Vector512<ulong>.Indices >>> 1) & Vector512.Create(1ul), Vector512.Create(1ul));
        return Vector512.ConditionalSelect(high, Vector512.Create(0x1020408000000000ul), Vector512.Create(0x0102040800000000ul)).AsByte();
    }

    /// <summary>VBMI nibble expansion of a pair from its raw 64-byte load: vpermb, then vgf2p8affineqb (GFNI) or vpsrlvw + vpand.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> SpreadVbmi<TGfni>(Vector512<byte> raw, Vector512<byte> index, Vector512<byte> select) where TGfni : struct, IIsaFlag
    {
        Vector512<byte> spread = Avx512Vbmi.PermuteVar64x8(raw, index);
        if (TGfni.Enabled) return Gfni.V512.GaloisFieldAffineTransform(spread, select, 0);
        return Avx512BW.ShiftRightLogicalVariable(spread.AsUInt16(), select.AsUInt16()).AsByte() & Vector512.Create((byte)0x0F);
    }

    /// <summary>VBMI nibble expansion of a pair from its raw 64-byte load (see <see cref="Avx512PairVbmi"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> SpreadVbmi(Vector512<byte> raw, Vector512<byte> index, Vector512<ushort> shifts)
    {
        Vector512<byte> spread = Avx512Vbmi.PermuteVar64x8(raw, index);
        return Avx512BW.ShiftRightLogicalVariable(spread.AsUInt16(), shifts).AsByte() & Vector512.Create((byte)0x0F);
    }

    /// <summary>The nibbles of blocks 2k and 2k+1 of an eight-block group at <paramref name="w"/>, ordered [lo0, hi0, lo1, hi1].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> UnpackPair<TVbmi>(byte* w, int k, Vector512<byte> index, Vector512<ushort> shifts)
        where TVbmi : struct, IIsaFlag
    {
        if (TVbmi.Enabled)
        {
            // 64-byte loads inside the 144-byte group: pairs 0..2 from their start, pair 3 ending at the group end.
            Vector512<byte> raw = Vector512.Load(w + (k == 3 ? 8 * BlockBytes - 64 : 2 * k * BlockBytes));
            Vector512<byte> spread = Avx512Vbmi.PermuteVar64x8(raw, index);
            return Avx512BW.ShiftRightLogicalVariable(spread.AsUInt16(), shifts).AsByte() & Vector512.Create((byte)0x0F);
        }
        byte* wb = w + 2 * k * BlockBytes;
        Vector256<byte> packed = Vector256.Create(Vector128.Load(wb + 2), Vector128.Load(wb + BlockBytes + 2));
        Vector512<byte> nib = Avx512Join.Join(packed, Avx2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()); // [lo0, lo1, hi0, hi1]
        return Avx512F.Shuffle4x128(nib.AsUInt32(), nib.AsUInt32(), 0b11_01_10_00).AsByte() & Vector512.Create((byte)0x0F);
    }

    /// <summary>acc + float(Σ q·y per 4-lane group)·d for one pair: vpmaddubsw of the unsigned nibbles with the activations, vpmaddwd.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PanelPair(Vector512<float> acc, Vector512<byte> q, byte* y, Vector512<float> d)
    {
        Vector512<short> p = Avx512BW.MultiplyAddAdjacent(q, Vector512.Load((sbyte*)y));
        Vector512<int> isum = Avx512BW.MultiplyAddAdjacent(p, Vector512.Create((short)1));
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), d, acc);
    }

    /// <summary>
    /// Blocks one by one, scalar: the panel reference and the last nb mod 8 blocks of the vector loops. Float order:
    /// s = Σ_b (d_w·d_x)·float(Σ q·y) and k = Σ_b d_w·c[b], each summed in block order, result s − k (q the unsigned
    /// nibbles, the integer sums exact).
    /// </summary>
    private static float ScalarPanelTail(byte* w, byte* y, float* dx, float* c, int count)
    {
        float sum = 0f, corr = 0f;
        for (int b = 0; b < count; b++)
        {
            byte* wb = w + b * BlockBytes;
            sbyte* yb = (sbyte*)(y + b * 32);
            int isum = 0;
            for (int j = 0; j < 16; j++) isum += (wb[2 + j] & 0x0F) * yb[j] + (wb[2 + j] >> 4) * yb[j + 16];
            float dw = Fp16.Read(wb);
            sum += dw * dx[b] * isum;
            corr += dw * c[b];
        }
        return sum - corr;
    }

    /// <summary>The tail blocks b..nb of the four-token loops: <see cref="ScalarPanelTail"/> per token, added to s0..s3 (panels of nb blocks at y0..y3).</summary>
    private static void PanelTail4(byte* w, byte* y0, byte* y1, byte* y2, byte* y3, int b, int nb,
        ref float s0, ref float s1, ref float s2, ref float s3)
    {
        int rest = nb - b;
        long qo = 32L * b, sOff = nb * 32L + 4L * b, cOff = nb * 36L + 4L * b;
        s0 += ScalarPanelTail(w, y0 + qo, (float*)(y0 + sOff), (float*)(y0 + cOff), rest);
        s1 += ScalarPanelTail(w, y1 + qo, (float*)(y1 + sOff), (float*)(y1 + cOff), rest);
        s2 += ScalarPanelTail(w, y2 + qo, (float*)(y2 + sOff), (float*)(y2 + cOff), rest);
        s3 += ScalarPanelTail(w, y3 + qo, (float*)(y3 + sOff), (float*)(y3 + cOff), rest);
    }
}
