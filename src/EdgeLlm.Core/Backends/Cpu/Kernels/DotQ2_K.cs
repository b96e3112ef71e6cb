using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q2_K weights · Q8_K activations (ggml's <c>ggml_vec_dot_q2_K_q8_K</c>): per 256-super-block
/// d_w·d_x·Σ_g sc_g·Σ q2·q8 − dmin_w·d_x·Σ_g m_g·bsums_g over the sixteen 16-weight groups g (sc_g, m_g the low and
/// high nibbles of scales[g]; the mins term from the activations' 16-sums). <c>w</c> is a row of Q2_K blocks
/// (84 bytes: scales[16], qs[64], d, dmin), <c>xq</c> the activations quantized by
/// <see cref="ActivationQuant.QuantizeQ8_K"/>, <c>n</c> the element count (a multiple of 256). <see cref="Dot"/> uses
/// <see cref="KernelRung.Selected"/>; the Dot{Rung} methods run one rung directly (tests, benchmarks).
/// </summary>
public static unsafe partial class DotQ2_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 84;

    private const int QsOffset = 16;
    private const int DOffset = 80;
    private const int DminOffset = 82;

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
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ2_K), Rung.Avx2);
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Blocks(int n)
    {
        if (n < 0 || n % BlockSize != 0) KernelRung.ThrowBadLength(nameof(DotQ2_K), n, BlockSize);
        return n / BlockSize;
    }

    private static void Require(Rung rung)
    {
        if (!KernelRung.IsSupported(rung)) KernelRung.ThrowUnsupported(nameof(DotQ2_K), rung);
    }
}
