using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Kernels;

// Compiled into both the xunit project and the AOT KernelCheck harness (tests/EdgeLlm.KernelCheck), so the two
// drive the kernel rungs through the same table.

/// <summary>
/// One way to run a kernel: a rung, for AVX2 whether AVX-VNNI is used (and for Q6_K GFNI with it; Avx2Gfni is VNNI off
/// with GFNI on, the Q6_K kernel a CPU with GFNI but without AVX-VNNI runs), for AVX-512 whether its extensions are
/// (VBMI for Q4_0, GFNI for Q6_K, AVX-VNNI where the CPU has it for Q8_0's repacked GEMM; Avx512NoVbmi runs all three without).
/// </summary>
public enum Variant { Scalar, Avx2, Avx2Vnni, Avx2Gfni, Avx512, Avx512NoVbmi, Neon }

/// <summary>Which kernel variants this CPU can run, and a call of each (type, variant) by name.</summary>
internal static unsafe class KernelVariants
{
    /// <summary>The variants this CPU can run (scalar always).</summary>
    public static Variant[] SupportedVariants()
    {
        var list = new List<Variant> { Variant.Scalar };
        if (KernelRung.IsSupported(Rung.Avx2)) list.Add(Variant.Avx2);
        if (KernelRung.IsSupported(Rung.Avx2) && AvxVnni.IsSupported) list.Add(Variant.Avx2Vnni);
        if (KernelRung.IsSupported(Rung.Avx2) && Gfni.V256.IsSupported) list.Add(Variant.Avx2Gfni);
        if (KernelRung.IsSupported(Rung.Avx512) && Avx512Vbmi.IsSupported && Gfni.V512.IsSupported) list.Add(Variant.Avx512);
        if (KernelRung.IsSupported(Rung.Avx512)) list.Add(Variant.Avx512NoVbmi);
        if (KernelRung.IsSupported(Rung.Neon)) list.Add(Variant.Neon);
        return list.ToArray();
    }

    /// <summary>The rung and flags a variant runs (Avx2Vnni takes GFNI where the CPU has its 256-bit form).</summary>
    public static (Rung Rung, KernelFlags Flags) Of(Variant v) => v switch
    {
        Variant.Avx2 => (Rung.Avx2, new KernelFlags(Vnni: false, Vbmi: false, Gfni: false)),
        Variant.Avx2Vnni => (Rung.Avx2, new KernelFlags(Vnni: true, Vbmi: false, Gfni: Gfni.V256.IsSupported)),
        Variant.Avx2Gfni => (Rung.Avx2, new KernelFlags(Vnni: false, Vbmi: false, Gfni: true)),
        Variant.Avx512 => (Rung.Avx512, new KernelFlags(Vnni: AvxVnni.IsSupported, Vbmi: true, Gfni: true)),
        Variant.Avx512NoVbmi => (Rung.Avx512, new KernelFlags(Vnni: false, Vbmi: false, Gfni: false)),
        Variant.Neon => (Rung.Neon, default),
        _ => (Rung.Scalar, default),
    };

    /// <summary>The kernel table's row of <paramref name="t"/> for variant <paramref name="v"/>.</summary>
    public static CpuKernelRow Row(GgmlType t, Variant v)
    {
        var (rung, flags) = Of(v);
        return KernelTable.Resolve(t, rung, flags) ?? throw new ArgumentException($"no kernel for {t}");
    }

    /// <summary>One row · one token's activations (in the type's activation format) on variant <paramref name="v"/>.</summary>
    public static float Run(GgmlType t, Variant v, byte* w, byte* xq, int n) => Row(t, v).Dot(w, xq, n);

    /// <summary>The same through the table of the selected rung and flags (what a matmul uses).</summary>
    public static float RunSelected(GgmlType t, byte* w, byte* xq, int n) =>
        (KernelTable.For(t) ?? throw new ArgumentException($"no kernel for {t}")).Dot(w, xq, n);

    /// <summary>The block-quantized types with CPU kernels, in table order.</summary>
    public static GgmlType[] TableQuantTypes() =>
        EdgeLlm.Quant.TypeTraits.All.Where(r => r.IsQuantized).Select(r => r.Type).ToArray();
}
