using System.Runtime.Intrinsics.X86;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Kernels;

// Compiled into both the xunit project and the AOT KernelCheck harness (tests/EdgeLlm.KernelCheck), so the two
// drive the kernel rungs through the same table.

/// <summary>
/// One way to run a kernel: a rung, for AVX2 whether AVX-VNNI is used (and for Q6_K GFNI with it), for AVX-512 whether
/// its extensions are (VBMI for Q4_0, GFNI for Q6_K; Avx512NoVbmi runs both without).
/// </summary>
public enum Variant { Scalar, Avx2, Avx2Vnni, Avx512, Avx512NoVbmi, Neon }

/// <summary>Which kernel variants this CPU can run, and a call of each (type, variant) by name.</summary>
internal static unsafe class KernelVariants
{
    /// <summary>The variants this CPU can run (scalar always).</summary>
    public static Variant[] SupportedVariants()
    {
        var list = new List<Variant> { Variant.Scalar };
        if (KernelRung.IsSupported(Rung.Avx2)) list.Add(Variant.Avx2);
        if (KernelRung.IsSupported(Rung.Avx2) && AvxVnni.IsSupported) list.Add(Variant.Avx2Vnni);
        if (KernelRung.IsSupported(Rung.Avx512) && Avx512Vbmi.IsSupported && Gfni.V512.IsSupported) list.Add(Variant.Avx512);
        if (KernelRung.IsSupported(Rung.Avx512)) list.Add(Variant.Avx512NoVbmi);
        if (KernelRung.IsSupported(Rung.Neon)) list.Add(Variant.Neon);
        return list.ToArray();
    }

    public static float Run(GgmlType t, Variant v, byte* w, byte* xq, int n) => t switch
    {
        GgmlType.Q4_0 => v switch
        {
            Variant.Scalar => DotQ4_0.DotScalar(w, xq, n),
            Variant.Avx2 => DotQ4_0.DotAvx2(w, xq, n, vnni: false),
            Variant.Avx2Vnni => DotQ4_0.DotAvx2(w, xq, n, vnni: true),
            Variant.Avx512 => DotQ4_0.DotAvx512(w, xq, n, vbmi: true),
            Variant.Avx512NoVbmi => DotQ4_0.DotAvx512(w, xq, n, vbmi: false),
            _ => DotQ4_0.DotNeon(w, xq, n),
        },
        GgmlType.Q8_0 => v switch
        {
            Variant.Scalar => DotQ8_0.DotScalar(w, xq, n),
            Variant.Avx2 => DotQ8_0.DotAvx2(w, xq, n, vnni: false),
            Variant.Avx2Vnni => DotQ8_0.DotAvx2(w, xq, n, vnni: true),
            Variant.Avx512 or Variant.Avx512NoVbmi => DotQ8_0.DotAvx512(w, xq, n),
            _ => DotQ8_0.DotNeon(w, xq, n),
        },
        GgmlType.Q4_K => v switch
        {
            Variant.Scalar => DotQ4_K.DotScalar(w, xq, n),
            Variant.Avx2 => DotQ4_K.DotAvx2(w, xq, n, vnni: false),
            Variant.Avx2Vnni => DotQ4_K.DotAvx2(w, xq, n, vnni: true),
            Variant.Avx512 or Variant.Avx512NoVbmi => DotQ4_K.DotAvx512(w, xq, n),
            _ => DotQ4_K.DotNeon(w, xq, n),
        },
        GgmlType.Q6_K => v switch
        {
            Variant.Scalar => DotQ6_K.DotScalar(w, xq, n),
            Variant.Avx2 => DotQ6_K.DotAvx2(w, xq, n, vnni: false, gfni: false),
            Variant.Avx2Vnni => DotQ6_K.DotAvx2(w, xq, n, vnni: true, gfni: Gfni.V256.IsSupported),
            Variant.Avx512 => DotQ6_K.DotAvx512(w, xq, n, gfni: true),
            Variant.Avx512NoVbmi => DotQ6_K.DotAvx512(w, xq, n, gfni: false),
            _ => DotQ6_K.DotNeon(w, xq, n),
        },
        GgmlType.Q5_K => v switch
        {
            Variant.Scalar => DotQ5_K.DotScalar(w, xq, n),
            Variant.Avx2 => DotQ5_K.DotAvx2(w, xq, n, vnni: false),
            Variant.Avx2Vnni => DotQ5_K.DotAvx2(w, xq, n, vnni: true),
            Variant.Avx512 or Variant.Avx512NoVbmi => DotQ5_K.DotAvx512(w, xq, n),
            _ => DotQ5_K.DotNeon(w, xq, n),
        },
        GgmlType.IQ4_XS => v switch
        {
            Variant.Scalar => DotIQ4_XS.DotScalar(w, xq, n),
            Variant.Avx2 => DotIQ4_XS.DotAvx2(w, xq, n, vnni: false),
            Variant.Avx2Vnni => DotIQ4_XS.DotAvx2(w, xq, n, vnni: true),
            Variant.Avx512 or Variant.Avx512NoVbmi => DotIQ4_XS.DotAvx512(w, xq, n),
            _ => DotIQ4_XS.DotNeon(w, xq, n),
        },
        GgmlType.Q4_1 => v switch
        {
            Variant.Scalar => DotQ4_1.DotScalar(w, xq, n),
            Variant.Avx2 => DotQ4_1.DotAvx2(w, xq, n, vnni: false),
            Variant.Avx2Vnni => DotQ4_1.DotAvx2(w, xq, n, vnni: true),
            Variant.Avx512 or Variant.Avx512NoVbmi => DotQ4_1.DotAvx512(w, xq, n),
            _ => DotQ4_1.DotNeon(w, xq, n),
        },
        GgmlType.Q5_0 => v switch
        {
            Variant.Scalar => DotQ5_0.DotScalar(w, xq, n),
            Variant.Avx2 => DotQ5_0.DotAvx2(w, xq, n, vnni: false),
            Variant.Avx2Vnni => DotQ5_0.DotAvx2(w, xq, n, vnni: true),
            Variant.Avx512 or Variant.Avx512NoVbmi => DotQ5_0.DotAvx512(w, xq, n),
            _ => DotQ5_0.DotNeon(w, xq, n),
        },
        GgmlType.Q5_1 => v switch
        {
            Variant.Scalar => DotQ5_1.DotScalar(w, xq, n),
            Variant.Avx2 => DotQ5_1.DotAvx2(w, xq, n, vnni: false),
            Variant.Avx2Vnni => DotQ5_1.DotAvx2(w, xq, n, vnni: true),
            Variant.Avx512 or Variant.Avx512NoVbmi => DotQ5_1.DotAvx512(w, xq, n),
            _ => DotQ5_1.DotNeon(w, xq, n),
        },
        GgmlType.IQ4_NL => v switch
        {
            Variant.Scalar => DotIQ4_NL.DotScalar(w, xq, n),
            Variant.Avx2 => DotIQ4_NL.DotAvx2(w, xq, n, vnni: false),
            Variant.Avx2Vnni => DotIQ4_NL.DotAvx2(w, xq, n, vnni: true),
            Variant.Avx512 or Variant.Avx512NoVbmi => DotIQ4_NL.DotAvx512(w, xq, n),
            _ => DotIQ4_NL.DotNeon(w, xq, n),
        },
        GgmlType.Q3_K => v switch
        {
            Variant.Scalar => DotQ3_K.DotScalar(w, xq, n),
            Variant.Avx2 => DotQ3_K.DotAvx2(w, xq, n, vnni: false),
            Variant.Avx2Vnni => DotQ3_K.DotAvx2(w, xq, n, vnni: true),
            Variant.Avx512 or Variant.Avx512NoVbmi => DotQ3_K.DotAvx512(w, xq, n),
            _ => DotQ3_K.DotNeon(w, xq, n),
        },
        GgmlType.Q2_K => v switch
        {
            Variant.Scalar => DotQ2_K.DotScalar(w, xq, n),
            Variant.Avx2 => DotQ2_K.DotAvx2(w, xq, n, vnni: false),
            Variant.Avx2Vnni => DotQ2_K.DotAvx2(w, xq, n, vnni: true),
            Variant.Avx512 or Variant.Avx512NoVbmi => DotQ2_K.DotAvx512(w, xq, n),
            _ => DotQ2_K.DotNeon(w, xq, n),
        },
        _ => throw new ArgumentException($"no kernel for {t}"),
    };

    public static float RunSelected(GgmlType t, byte* w, byte* xq, int n) => t switch
    {
        GgmlType.Q4_0 => DotQ4_0.Dot(w, xq, n),
        GgmlType.Q8_0 => DotQ8_0.Dot(w, xq, n),
        GgmlType.Q4_K => DotQ4_K.Dot(w, xq, n),
        GgmlType.Q6_K => DotQ6_K.Dot(w, xq, n),
        GgmlType.Q5_K => DotQ5_K.Dot(w, xq, n),
        GgmlType.IQ4_XS => DotIQ4_XS.Dot(w, xq, n),
        GgmlType.Q4_1 => DotQ4_1.Dot(w, xq, n),
        GgmlType.Q5_0 => DotQ5_0.Dot(w, xq, n),
        GgmlType.Q5_1 => DotQ5_1.Dot(w, xq, n),
        GgmlType.IQ4_NL => DotIQ4_NL.Dot(w, xq, n),
        GgmlType.Q3_K => DotQ3_K.Dot(w, xq, n),
        GgmlType.Q2_K => DotQ2_K.Dot(w, xq, n),
        _ => throw new ArgumentException($"no kernel for {t}"),
    };
}
