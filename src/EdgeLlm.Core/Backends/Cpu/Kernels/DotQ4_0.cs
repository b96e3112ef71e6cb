using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q4_0 weights · Q8_0 activations (ggml's <c>ggml_vec_dot_q4_0_q8_0</c>): per 32-block the integer
/// Σ (q4 − 8)·q8, scaled by d_w·d_x, summed in float. <c>w</c> is a row of Q4_0 blocks (18 bytes), <c>xq</c> the
/// activations quantized by <see cref="ActivationQuant.QuantizeQ8_0"/>, <c>n</c> the element count (a multiple of 32).
/// <see cref="Dot"/> uses <see cref="KernelRung.Selected"/>; the Dot{Rung} methods run one rung directly (tests, benchmarks).
/// </summary>
public static unsafe partial class DotQ4_0
{
    public const int BlockSize = Quant.Q4_0.BlockSize;
    public const int BlockBytes = Quant.Q4_0.BlockBytes;

    public static float Dot(byte* w, byte* xq, int n)
    {
        int nb = Blocks(n);
        switch (KernelRung.Selected)
        {
            case Rung.Avx512: return KernelRung.UseAvx512Vbmi ? Avx512Loop<VbmiOn>(w, xq, nb) : Avx512Loop<VbmiOff>(w, xq, nb);
            case Rung.Avx2: return KernelRung.UseAvxVnni ? Avx2Loop<VnniOn>(w, xq, nb) : Avx2Loop<VnniOff>(w, xq, nb);
            case Rung.Neon: return NeonLoop(w, xq, nb);
            default: return ScalarLoop(w, xq, nb);
        }
    }

    public static float DotScalar(byte* w, byte* xq, int n) => ScalarLoop(w, xq, Blocks(n));

    public static float DotAvx2(byte* w, byte* xq, int n) => DotAvx2(w, xq, n, KernelRung.UseAvxVnni);

    /// <summary>The AVX2 rung with AVX-VNNI on or off (off runs on any AVX2 CPU).</summary>
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) return Avx2Loop<VnniOff>(w, xq, nb);
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_0), Rung.Avx2);
        return Avx2Loop<VnniOn>(w, xq, nb);
    }

    public static float DotAvx512(byte* w, byte* xq, int n) => DotAvx512(w, xq, n, KernelRung.UseAvx512Vbmi);

    /// <summary>The AVX-512 rung with AVX512-VBMI (vpermb nibble expansion) on or off.</summary>
    public static float DotAvx512(byte* w, byte* xq, int n, bool vbmi)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        if (!vbmi) return Avx512Loop<VbmiOff>(w, xq, nb);
        if (!Avx512Vbmi.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_0), Rung.Avx512);
        return Avx512Loop<VbmiOn>(w, xq, nb);
    }

    public static float DotNeon(byte* w, byte* xq, int n)
    {
        int nb = Blocks(n);
        Require(Rung.Neon);
        return NeonLoop(w, xq, nb);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Blocks(int n)
    {
        if (n < 0 || n % BlockSize != 0) KernelRung.ThrowBadLength(nameof(DotQ4_0), n, BlockSize);
        return n / BlockSize;
    }

    /// <summary>The rung guard of the public entry points; inlined with <see cref="KernelRung.IsSupported"/>, so a constant rung costs no call per row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Require(Rung rung)
    {
        if (!KernelRung.IsSupported(rung)) KernelRung.ThrowUnsupported(nameof(DotQ4_0), rung);
    }
}
