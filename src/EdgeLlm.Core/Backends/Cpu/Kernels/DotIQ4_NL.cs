using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// IQ4_NL weights · Q8_0 activations (ggml's <c>ggml_vec_dot_iq4_nl_q8_0</c>): per 32-block (d_w·d_x)·Σ K[q4]·q8,
/// where K is the 16-entry int8 grid (<see cref="Quant.IQ4_NL.Values"/>, looked up with a byte shuffle). <c>w</c> is a row of IQ4_NL blocks (18 bytes),
/// <c>xq</c> the activations quantized by <see cref="ActivationQuant.QuantizeQ8_0"/> (34-byte blocks), <c>n</c> the
/// element count (a multiple of 32). <see cref="Dot"/> uses <see cref="KernelRung.Selected"/>; the Dot{Rung} methods
/// run one rung directly (tests, benchmarks).
/// </summary>
public static unsafe partial class DotIQ4_NL
{
    public const int BlockSize = 32;
    public const int BlockBytes = 18;

    public static float Dot(byte* w, byte* xq, int n)
    {
        int nb = Blocks(n);
        switch (KernelRung.Selected)
        {
            case Rung.Avx512: return Avx512Loop(w, xq, nb);
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
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotIQ4_NL), Rung.Avx2);
        return Avx2Loop<VnniOn>(w, xq, nb);
    }

    public static float DotAvx512(byte* w, byte* xq, int n)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        return Avx512Loop(w, xq, nb);
    }

    public static float DotNeon(byte* w, byte* xq, int n)
    {
        int nb = Blocks(n);
        Require(Rung.Neon);
        return NeonLoop(w, xq, nb);
    }

    /// <summary>The grid K (<see cref="Quant.IQ4_NL.Values"/>) as a byte-shuffle table.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Grid() => Vector128.Create(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, (sbyte)113);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Blocks(int n)
    {
        if (n < 0 || n % BlockSize != 0) KernelRung.ThrowBadLength(nameof(DotIQ4_NL), n, BlockSize);
        return n / BlockSize;
    }

    private static void Require(Rung rung)
    {
        if (!KernelRung.IsSupported(rung)) KernelRung.ThrowUnsupported(nameof(DotIQ4_NL), rung);
    }
}
