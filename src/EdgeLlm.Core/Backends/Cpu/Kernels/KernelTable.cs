using System.Runtime.Intrinsics.X86;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>The optional x64 extensions a rung's kernels may use (each kernel reads the ones it has a path for).</summary>
public readonly record struct KernelFlags(bool Vnni, bool Vbmi, bool Gfni)
{
    /// <summary>What this process uses (<see cref="KernelRung.UseAvxVnni"/>, <see cref="KernelRung.UseAvx512Vbmi"/>, <see cref="KernelRung.UseGfni"/>).</summary>
    public static KernelFlags Selected => new(KernelRung.UseAvxVnni, KernelRung.UseAvx512Vbmi, KernelRung.UseGfni);
}

/// <summary>
/// One weight type's CPU kernels for one rung and set of flags: the row of <see cref="KernelTable"/>. <see cref="Rows"/>
/// points at an instantiation of <see cref="RowDrivers.Rows{TK}"/> or <see cref="RowDrivers.Tiles{TK}"/> for the type's
/// kernel struct, so a matmul calls it once per range of rows and the kernel is a direct call inside.
/// </summary>
internal sealed unsafe class CpuKernelRow
{
    public readonly TypeTraits Traits;
    public readonly Rung Rung;
    public readonly KernelFlags Flags;
    /// <summary>One row · one token's activations in the <see cref="TypeTraits.Activation"/> format (floats for the float types).</summary>
    public readonly delegate*<byte*, byte*, int, float> Dot;
    /// <summary>The range driver of a matmul: rows [r0, r1) of a <see cref="RowJob"/>, with the thread's scratch row.</summary>
    public readonly delegate*<in RowJob, long, long, float*, void> Rows;
    /// <summary>True when <see cref="Rows"/> takes the Q8_0 activations repacked as a <see cref="Q8_0Panel"/>.</summary>
    public readonly bool Panel;
    /// <summary>True when <see cref="Rows"/> uses a repacked Q4_0 copy (<see cref="RowJob.Packed"/>) where the matmul has one.</summary>
    public readonly bool PacksQ4_0;
    /// <summary>
    /// The repack <see cref="Rows"/> takes a copy of (<see cref="RowJob.Packed"/>) where the matmul has one, or null:
    /// <c>PackedBytes(rows, n)</c> and <c>Repack(src, rowBytes, rows, n, dst)</c> (Q4_0: on AVX2 <see cref="DotQ4_0.RepackAvx2"/>, on AVX-512 <see cref="DotQ4_0.RepackAvx512"/>, on NEON
    /// <see cref="DotQ4_0.RepackNeon"/>; Q8_0: <see cref="DotQ8_0.Repack"/>, on NEON <see cref="DotQ8_0.RepackNeon"/>).
    /// </summary>
    public readonly delegate*<long, int, long> PackedBytes;
    public readonly delegate*<byte*, long, long, int, byte*, void> Repack;
    /// <summary>Rows per group of the repacked copy (16 for Q4_0 on AVX-512, <see cref="DotQ4_0.PackRowsAvx512"/>; 8 for the others): the copy holds the first rows / PackRows · PackRows rows, and a thread's share of a product starts on a group.</summary>
    public readonly int PackRows;
    /// <summary>True when the GEMM over the repacked copy takes <see cref="Q8_0Panel"/> activations (<see cref="RowJob.PackedX"/>) while the other kernels take <see cref="TypeTraits.Activation"/> blocks.</summary>
    public readonly bool PackedPanel;
    /// <summary>Whether <see cref="Rows"/> uses a repacked copy where the matmul has one.</summary>
    public bool Packs => Repack != null;
    /// <summary>
    /// True when the GEMM over the repacked copy is also the faster kernel for a lone token (Q4_0 and Q8_0 on NEON and AVX2, Q4_0 on AVX-512), so one-token
    /// (decode) matmuls take the copy without <c>BackendOptions.BatchInvariant</c> too, and batches and decode run the same kernel.
    /// </summary>
    public readonly bool PackedOneToken;
    /// <summary>
    /// True when the copy may serve small batches only (the <see cref="DotQ4_K.Repack"/> copy of Q4_K on AVX-512 and
    /// AVX2, the <see cref="DotQ5_K.Repack"/> and <see cref="DotQ6_K.Repack"/> copies of Q5_K and Q6_K on AVX-512 with GFNI): up to <see cref="PackedDecodeTokens"/>
    /// tokens read it, larger batches and every product under <c>BackendOptions.BatchInvariant</c> the stored rows;
    /// <see cref="int.MaxValue"/> (all four today) is every batch, batch-invariant products included.
    /// </summary>
    public readonly bool PackedDecodeOnly;
    /// <summary>With <see cref="PackedDecodeOnly"/>, the most tokens of a product that read the copy (<see cref="IPackedDecodeKernel.MaxTokens"/>).</summary>
    public readonly int PackedDecodeTokens;
    /// <summary>Row of the type → <c>n</c> floats (embedding lookups): the vectorized converters for F16/BF16, else the type's reference dequantizer.</summary>
    public readonly delegate*<byte*, float*, long, void> ToFloat;
    /// <summary>Quantizes one token's floats into <see cref="TypeTraits.Activation"/> blocks (null for the float types).</summary>
    public readonly delegate*<float*, byte*, int, void> QuantizeActivations;
    /// <summary>
    /// With <see cref="Panel"/> on x64: quantizes one token's floats straight into its <see cref="Q8_0Panel"/> (the bytes of
    /// <see cref="QuantizeActivations"/> then <see cref="Q8_0Panel.FromBlocks"/>), for products that read only the panel; else null.
    /// </summary>
    public readonly delegate*<float*, byte*, int, void> QuantizePanel;

    public CpuKernelRow(TypeTraits traits, Rung rung, KernelFlags flags, delegate*<byte*, byte*, int, float> dot,
        delegate*<in RowJob, long, long, float*, void> rows, bool panel = false, bool packsQ4_0Avx2 = false, bool packsQ8_0 = false,
        bool packsQ4_0Neon = false, bool packsQ8_0Neon = false, bool packsQ4_0Avx512 = false, bool packsQ4_K = false,
        int packedDecodeTokens = 3, bool packsQ6_K = false, bool packsQ5_K = false)
    {
        PacksQ4_0 = packsQ4_0Avx2 || packsQ4_0Neon || packsQ4_0Avx512;
        PackRows = packsQ4_0Avx512 ? DotQ4_0.PackRowsAvx512 : 8;
        // Q8_0 on AVX-512 (with AVX-VNNI) keeps decode on the stored rows; on AVX2 the copy's one-token loop is the faster one.
        PackedOneToken = packsQ4_0Neon || packsQ8_0Neon || packsQ4_0Avx512 || packsQ4_0Avx2 || (packsQ8_0 && rung == Rung.Avx2) || packsQ4_K || packsQ6_K || packsQ5_K;
        if (packsQ4_K)
        {
            PackedBytes = &DotQ4_K.PackedBytes;
            Repack = &DotQ4_K.Repack;
            PackedDecodeOnly = true;
            PackedDecodeTokens = packedDecodeTokens;
        }
        if (packsQ5_K)
        {
            PackedBytes = &DotQ5_K.PackedBytes;
            Repack = &DotQ5_K.Repack;
            PackedDecodeOnly = true;
            PackedDecodeTokens = packedDecodeTokens;
        }
        if (packsQ6_K)
        {
            PackedBytes = &DotQ6_K.PackedBytes;
            Repack = &DotQ6_K.Repack;
            PackedDecodeOnly = true;
            PackedDecodeTokens = packedDecodeTokens;
        }
        if (packsQ4_0Avx512)
        {
            PackedBytes = &DotQ4_0.PackedBytesAvx512;
            Repack = &DotQ4_0.RepackAvx512;
        }
        if (packsQ4_0Avx2)
        {
            PackedBytes = &DotQ4_0.PackedBytesAvx2;
            Repack = &DotQ4_0.RepackAvx2;
        }
        if (packsQ4_0Neon)
        {
            PackedBytes = &DotQ4_0.PackedBytes;
            Repack = &DotQ4_0.RepackNeon;
            PackedPanel = true;
        }
        if (packsQ8_0)
        {
            PackedBytes = &DotQ8_0.PackedBytes;
            Repack = &DotQ8_0.Repack;
            PackedPanel = true;
        }
        if (packsQ8_0Neon)
        {
            PackedBytes = &DotQ8_0.PackedBytesNeon;
            Repack = &DotQ8_0.RepackNeon;
            PackedPanel = true;
        }
        Traits = traits;
        Rung = rung;
        Flags = flags;
        Dot = dot;
        Rows = rows;
        Panel = panel;
        QuantizeActivations = traits.IsQuantized ? ActivationQuant.Quantizer(traits.Activation, rung) : null;
        QuantizePanel = panel && traits.Activation == GgmlType.Q8_0 ? ActivationQuant.PanelQuantizer(rung) : null;
        ToFloat = traits.Type switch
        {
            GgmlType.F32 => &CopyF32,
            GgmlType.F16 => &WidenF16,
            GgmlType.BF16 => &WidenBF16,
            _ => traits.Dequantize,
        };
    }

    public GgmlType Type => Traits.Type;

    private static void CopyF32(byte* src, float* dst, long n) => Buffer.MemoryCopy(src, dst, n * sizeof(float), n * sizeof(float));

    private static void WidenF16(byte* src, float* dst, long n) => HalfConvert.F16ToF32((ushort*)src, dst, checked((int)n));

    private static void WidenBF16(byte* src, float* dst, long n) => HalfConvert.BF16ToF32((ushort*)src, dst, checked((int)n));

    /// <summary>Bytes one token's quantized activations of <paramref name="n"/> values take (0 for the float types).</summary>
    public long ActivationBytes(int n) => Traits.IsQuantized ? ActivationQuant.FormatBytes(Traits.Activation, n) : 0;
}

/// <summary>
/// The CPU kernels of every type EdgeLlm computes with, per (rung, ISA flags) — ggml-cpu's <c>type_traits_cpu</c>
/// in C#. <see cref="For"/> is the table of the selected rung and flags, built once per process; a matmul looks its
/// weight type up once per call. <see cref="Resolve"/> builds the row of any rung (tests, the AOT kernel harness).
/// Adding a type: its <see cref="TypeTraits"/> row, its reference, its kernels, and its case in <see cref="Resolve"/>.
/// </summary>
internal static unsafe class KernelTable
{
    private static readonly CpuKernelRow?[] SelectedRows = Build(KernelRung.Selected, KernelFlags.Selected);

    /// <summary>The table of the selected rung and flags (what <see cref="For(GgmlType)"/> reads).</summary>
    public static CpuKernelRow?[] Selected => SelectedRows;

    /// <summary>The rows of every type for <paramref name="rung"/> and <paramref name="flags"/>, indexed by type (a backend built for one kernel variant: tests).</summary>
    public static CpuKernelRow?[] Build(Rung rung, KernelFlags flags)
    {
        var rows = new CpuKernelRow?[64];
        foreach (var t in TypeTraits.All) rows[(int)t.Type] = Resolve(t.Type, rung, flags);
        return rows;
    }

    /// <summary>The row of <paramref name="type"/> for the selected rung and flags, or null when EdgeLlm does not compute with it.</summary>
    public static CpuKernelRow? For(GgmlType type) => For(SelectedRows, type);

    /// <summary>The row of <paramref name="type"/> in a table of <see cref="Build"/>, or null.</summary>
    public static CpuKernelRow? For(CpuKernelRow?[] table, GgmlType type) => (uint)type < (uint)table.Length ? table[(int)type] : null;

    /// <summary>The row of <paramref name="type"/> on <paramref name="rung"/> with <paramref name="flags"/>, or null for a type without kernels.</summary>
    public static CpuKernelRow? Resolve(GgmlType type, Rung rung, KernelFlags flags)
    {
        if (TypeTraits.Of(type) is not { } traits) return null;
        if (rung == Rung.Neon && NeonDot4Row(traits, flags) is { } neon) return neon;
        return type switch
        {
            GgmlType.F32 => Plain<F32Rows>(traits, rung, flags),
            GgmlType.F16 => Plain<F16Rows>(traits, rung, flags),
            GgmlType.BF16 => Plain<BF16Rows>(traits, rung, flags),
            GgmlType.Q8_0 => Q8_0Row(traits, rung, flags),
            GgmlType.Q4_0 => Q4_0Row(traits, rung, flags),
            GgmlType.Q4_K => Q4_KRow(traits, rung, flags),
            GgmlType.Q4_1 => StandardDot4<Q4_1Kernels>(traits, rung, flags),
            GgmlType.Q5_0 => StandardDot4<Q5_0Kernels>(traits, rung, flags),
            GgmlType.Q5_1 => StandardDot4<Q5_1Kernels>(traits, rung, flags),
            GgmlType.IQ4_NL => StandardDot4<IQ4_NLKernels>(traits, rung, flags),
            GgmlType.Q5_K => Q5_KRow(traits, rung, flags),
            GgmlType.Q3_K => StandardDot4<Q3_KKernels>(traits, rung, flags),
            GgmlType.Q2_K => StandardDot4<Q2_KKernels>(traits, rung, flags),
            GgmlType.IQ4_XS => StandardDot4<IQ4_XSKernels>(traits, rung, flags),
            GgmlType.Q6_K => Q6_KRow(traits, rung, flags),
            _ => null,
        };
    }

    /// <summary>
    /// The NEON rows with four-token loops: the batch goes through <see cref="RowDrivers.Tiles{TK}"/>, sdot in the loop when
    /// <see cref="KernelRung.UseDotProd"/> (the choice the one-token loops make), null for the types without one. Q4_0 also
    /// runs the eight-row GEMM over the NEON-repacked copy where the matmul has one (<see cref="RowDrivers.Q4_0PackedTiles{TK}"/>),
    /// Q8_0 its own with <see cref="Q8_0Panel"/> activations (<see cref="PackedDrivers.Tiles{TK}"/>).
    /// </summary>
    private static CpuKernelRow? NeonDot4Row(TypeTraits t, KernelFlags f) => t.Type switch
    {
        GgmlType.Q4_0 => KernelRung.UseDotProd
            ? new(t, Rung.Neon, f, &RowDrivers.Dot<Q4_0NeonPacked<DotProdOn>>, &RowDrivers.Q4_0PackedTiles<Q4_0NeonPacked<DotProdOn>>, packsQ4_0Neon: true)
            : new(t, Rung.Neon, f, &RowDrivers.Dot<Q4_0NeonPacked<DotProdOff>>, &RowDrivers.Q4_0PackedTiles<Q4_0NeonPacked<DotProdOff>>, packsQ4_0Neon: true),
        GgmlType.Q8_0 => KernelRung.UseDotProd
            ? new(t, Rung.Neon, f, &RowDrivers.Dot<Q8_0NeonPacked<DotProdOn>>, &PackedDrivers.Tiles<Q8_0NeonPacked<DotProdOn>>, packsQ8_0Neon: true)
            : new(t, Rung.Neon, f, &RowDrivers.Dot<Q8_0NeonPacked<DotProdOff>>, &PackedDrivers.Tiles<Q8_0NeonPacked<DotProdOff>>, packsQ8_0Neon: true),
        GgmlType.Q4_K => NeonTiled<Q4_KNeonKernels>(t, f),
        GgmlType.Q5_K => NeonTiled<Q5_KNeonKernels>(t, f),
        GgmlType.Q6_K => NeonTiled<Q6_KNeonKernels>(t, f),
        GgmlType.Q5_0 => NeonTiled<Q5_0NeonKernels>(t, f),
        GgmlType.IQ4_NL => NeonTiled<IQ4_NLNeonKernels>(t, f),
        GgmlType.Q4_1 => NeonTiled<Q4_1NeonKernels>(t, f),
        GgmlType.Q5_1 => NeonTiled<Q5_1NeonKernels>(t, f),
        GgmlType.Q3_K => NeonTiled<Q3_KNeonKernels>(t, f),
        GgmlType.Q2_K => NeonTiled<Q2_KNeonKernels>(t, f),
        GgmlType.IQ4_XS => NeonTiled<IQ4_XSNeonKernels>(t, f),
        _ => null,
    };

    private static CpuKernelRow NeonTiled<T>(TypeTraits t, KernelFlags f) where T : struct, INeonDot4Kernels =>
        KernelRung.UseDotProd ? Tiled<NeonDot4Rung<T, DotProdOn>>(t, Rung.Neon, f) : Tiled<NeonDot4Rung<T, DotProdOff>>(t, Rung.Neon, f);

    /// <summary>A row whose one kernel runs through <see cref="RowDrivers.Rows{TK}"/>.</summary>
    private static CpuKernelRow Plain<TK>(TypeTraits t, Rung rung, KernelFlags f) where TK : struct, IRowKernel =>
        new(t, rung, f, &RowDrivers.Dot<TK>, &RowDrivers.Rows<TK>);

    /// <summary>A row whose one- and four-token kernels run through <see cref="RowDrivers.Tiles{TK}"/>.</summary>
    private static CpuKernelRow Tiled<TK>(TypeTraits t, Rung rung, KernelFlags f, bool panel = false) where TK : struct, IFourTokenKernel =>
        new(t, rung, f, &RowDrivers.Dot<TK>, &RowDrivers.Tiles<TK>, panel);

    /// <summary>A type with the standard facade: one kernel per rung, AVX2 with VNNI on or off.</summary>
    private static CpuKernelRow Standard<T>(TypeTraits t, Rung rung, KernelFlags f) where T : struct, IDotKernels => rung switch
    {
        Rung.Avx512 => Plain<Avx512Rung<T>>(t, rung, f),
        Rung.Avx2 => f.Vnni ? Plain<Avx2Rung<T, VnniOn>>(t, rung, f) : Plain<Avx2Rung<T, VnniOff>>(t, rung, f),
        Rung.Neon => Plain<NeonRung<T>>(t, rung, f),
        _ => Plain<ScalarRung<T>>(t, rung, f),
    };

    /// <summary>
    /// A standard facade with four-token loops: on the x64 rungs the batch goes through
    /// <see cref="RowDrivers.Tiles{TK}"/>; NEON and scalar are <see cref="Standard{T}"/>.
    /// </summary>
    private static CpuKernelRow StandardDot4<T>(TypeTraits t, Rung rung, KernelFlags f) where T : struct, IDot4Kernels => rung switch
    {
        Rung.Avx512 => Tiled<Avx512Dot4Rung<T>>(t, rung, f),
        Rung.Avx2 => f.Vnni ? Tiled<Avx2Dot4Rung<T, VnniOn>>(t, rung, f) : Tiled<Avx2Dot4Rung<T, VnniOff>>(t, rung, f),
        _ => Standard<T>(t, rung, f),
    };

    /// <summary>
    /// Q4_0: on x64 the batch takes <see cref="Q8_0Panel"/> activations (one- and four-token panel loops); on AVX-512 and
    /// AVX2 a matmul of any batch size runs the eight-row GEMM over the repacked copy where the matmul has one (the fp16-scale
    /// layouts of <see cref="DotQ4_0.RepackAvx512"/> and <see cref="DotQ4_0.RepackAvx2"/>, decode included without batch
    /// invariance asked for, as on NEON); <see cref="CpuKernelRow.Dot"/> stays on Q8_0 blocks.
    /// </summary>
    private static CpuKernelRow Q4_0Row(TypeTraits t, Rung rung, KernelFlags f)
    {
        switch (rung)
        {
            case Rung.Avx512:
                if (!f.Vbmi) return new(t, rung, f, &RowDrivers.Dot<Q4_0Avx512<VbmiOff>>, &RowDrivers.Q4_0PackedTiles<Q4_0PanelAvx512<VbmiOff, GfniOff>>, panel: true, packsQ4_0Avx512: true);
                return f.Gfni && Gfni.V512.IsSupported
                    ? new(t, rung, f, &RowDrivers.Dot<Q4_0Avx512<VbmiOn>>, &RowDrivers.Q4_0PackedTiles<Q4_0PanelAvx512<VbmiOn, GfniOn>>, panel: true, packsQ4_0Avx512: true)
                    : new(t, rung, f, &RowDrivers.Dot<Q4_0Avx512<VbmiOn>>, &RowDrivers.Q4_0PackedTiles<Q4_0PanelAvx512<VbmiOn, GfniOff>>, panel: true, packsQ4_0Avx512: true);
            case Rung.Avx2:
                return f.Vnni
                    ? new(t, rung, f, &RowDrivers.Dot<Q4_0Avx2<VnniOn>>, &RowDrivers.Q4_0PackedTiles<Q4_0PanelAvx2<VnniOn>>, panel: true, packsQ4_0Avx2: true)
                    : new(t, rung, f, &RowDrivers.Dot<Q4_0Avx2<VnniOff>>, &RowDrivers.Q4_0PackedTiles<Q4_0PanelAvx2<VnniOff>>, panel: true, packsQ4_0Avx2: true);
            case Rung.Neon: return Plain<Q4_0Neon>(t, rung, f);
            default: return Plain<Q4_0Scalar>(t, rung, f);
        }
    }

    /// <summary>
    /// Q8_0: on AVX-512 the four-token loop, and with AVX-VNNI (<see cref="KernelFlags.Vnni"/>) the eight-row GEMM over
    /// the repacked copy where the matmul has one; on AVX2 (VNNI on or off) the eight-row GEMM over the same repacked copy
    /// (<see cref="Q8_0PackedAvx2{TVnni}"/>, decode included: its one-token loop reads the copy faster than the one-row loops
    /// read the stored rows), the four-token loop on the stored rows without one; the other rungs the one-token loops.
    /// </summary>
    private static CpuKernelRow Q8_0Row(TypeTraits t, Rung rung, KernelFlags f)
    {
        if (rung == Rung.Avx2)
            return f.Vnni
                ? new(t, rung, f, &RowDrivers.Dot<Q8_0PackedAvx2<VnniOn>>, &PackedDrivers.Tiles<Q8_0PackedAvx2<VnniOn>>, packsQ8_0: true)
                : new(t, rung, f, &RowDrivers.Dot<Q8_0PackedAvx2<VnniOff>>, &PackedDrivers.Tiles<Q8_0PackedAvx2<VnniOff>>, packsQ8_0: true);
        if (rung != Rung.Avx512) return Standard<Q8_0Kernels>(t, rung, f);
        if (f.Vnni && AvxVnni.IsSupported)
            return new(t, rung, f, &RowDrivers.Dot<Q8_0PackedAvx512>, &PackedDrivers.Tiles<Q8_0PackedAvx512>, packsQ8_0: true);
        return Tiled<Q8_0Avx512Dot4>(t, rung, f);
    }

    /// <summary>
    /// Q4_K: the four-token loops on x64 (<see cref="StandardDot4{T}"/>), and over the copy of <see cref="DotQ4_K.Repack"/>
    /// where the matmul has one (<see cref="PackedDecodeDrivers.Tiles{TK, TP}"/>): every batch (one-, two- and four-token
    /// loops) on AVX-512 and on AVX2, VNNI on or off.
    /// </summary>
    private static CpuKernelRow Q4_KRow(TypeTraits t, Rung rung, KernelFlags f) => rung switch
    {
        Rung.Avx512 => new(t, rung, f, &RowDrivers.Dot<Avx512Dot4Rung<Q4_KKernels>>,
            &PackedDecodeDrivers.Tiles<Avx512Dot4Rung<Q4_KKernels>, Q4_KPackedAvx512>, packsQ4_K: true,
            packedDecodeTokens: Q4_KPackedAvx512.MaxTokens),
        Rung.Avx2 => f.Vnni
            ? new(t, rung, f, &RowDrivers.Dot<Avx2Dot4Rung<Q4_KKernels, VnniOn>>,
                &PackedDecodeDrivers.Tiles<Avx2Dot4Rung<Q4_KKernels, VnniOn>, Q4_KPackedAvx2<VnniOn>>, packsQ4_K: true,
                packedDecodeTokens: Q4_KPackedAvx2<VnniOn>.MaxTokens)
            : new(t, rung, f, &RowDrivers.Dot<Avx2Dot4Rung<Q4_KKernels, VnniOff>>,
                &PackedDecodeDrivers.Tiles<Avx2Dot4Rung<Q4_KKernels, VnniOff>, Q4_KPackedAvx2<VnniOff>>, packsQ4_K: true,
                packedDecodeTokens: Q4_KPackedAvx2<VnniOff>.MaxTokens),
        _ => StandardDot4<Q4_KKernels>(t, rung, f),
    };

    /// <summary>
    /// Q5_K: the four-token loops on x64 (<see cref="StandardDot4{T}"/>); on AVX-512 with GFNI every batch over the copy
    /// of <see cref="DotQ5_K.Repack"/> where the matmul has one (one-, two- and four-token loops,
    /// <see cref="PackedDecodeDrivers.Tiles{TK, TP}"/>), the stored rows' loops without one.
    /// </summary>
    private static CpuKernelRow Q5_KRow(TypeTraits t, Rung rung, KernelFlags f) =>
        rung == Rung.Avx512 && f.Gfni && DotQ5_K.PackedSupported
            ? new(t, rung, f, &RowDrivers.Dot<Avx512Dot4Rung<Q5_KKernels>>,
                &PackedDecodeDrivers.Tiles<Avx512Dot4Rung<Q5_KKernels>, Q5_KPackedAvx512>, packsQ5_K: true,
                packedDecodeTokens: Q5_KPackedAvx512.MaxTokens)
            : StandardDot4<Q5_KKernels>(t, rung, f);

    /// <summary>
    /// Q6_K: GFNI at the rung's width where the CPU has it, as <see cref="KernelFlags.Gfni"/> asks; four-token loops on x64.
    /// On AVX-512 with GFNI, every batch over the copy of <see cref="DotQ6_K.Repack"/> where the matmul has one (one-, two-
    /// and four-token loops, <see cref="PackedDecodeDrivers.Tiles{TK, TP}"/>), the stored rows' loops without one.
    /// </summary>
    private static CpuKernelRow Q6_KRow(TypeTraits t, Rung rung, KernelFlags f)
    {
        switch (rung)
        {
            case Rung.Avx512:
                if (f.Gfni && DotQ6_K.PackedSupported)
                    return new(t, rung, f, &RowDrivers.Dot<Q6_KAvx512<GfniOn>>,
                        &PackedDecodeDrivers.Tiles<Q6_KAvx512<GfniOn>, Q6_KPackedAvx512>, packsQ6_K: true,
                        packedDecodeTokens: Q6_KPackedAvx512.MaxTokens);
                return Tiled<Q6_KAvx512<GfniOff>>(t, rung, f);
            case Rung.Avx2:
                bool gfni = f.Gfni && Gfni.V256.IsSupported;
                if (f.Vnni) return gfni ? Tiled<Q6_KAvx2<VnniOn, GfniOn>>(t, rung, f) : Tiled<Q6_KAvx2<VnniOn, GfniOff>>(t, rung, f);
                return gfni ? Tiled<Q6_KAvx2<VnniOff, GfniOn>>(t, rung, f) : Tiled<Q6_KAvx2<VnniOff, GfniOff>>(t, rung, f);
            case Rung.Neon: return Plain<Q6_KNeon>(t, rung, f);
            default: return Plain<Q6_KScalar>(t, rung, f);
        }
    }
}
