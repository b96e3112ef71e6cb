using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q6_K weights · Q8_K activations (ggml's <c>ggml_vec_dot_q6_K_q8_K</c>): per 256-super-block
/// d_w·d_x·Σ_g sc_g·Σ (q6 − 32)·q8 over the sixteen 16-weight groups g. The SIMD rungs take the −32 offset as
/// −32·Σ_g sc_g·bsums_g from the activations' 16-sums. <c>w</c> is a row of Q6_K blocks (210 bytes), <c>xq</c> the
/// activations quantized by <see cref="ActivationQuant.QuantizeQ8_K"/>, <c>n</c> the element count (a multiple of 256).
/// <see cref="Dot"/> uses <see cref="KernelRung.Selected"/>; the Dot{Rung} methods run one rung directly (tests, benchmarks).
/// </summary>
public static unsafe partial class DotQ6_K
{
    public const int BlockSize = Quant.Q6_K.BlockSize;
    public const int BlockBytes = Quant.Q6_K.BlockBytes;

    private const int QhOffset = 128;
    private const int ScalesOffset = 192;
    private const int DOffset = 208;

    public static float Dot(byte* w, byte* xq, int n)
    {
        int nb = Blocks(n);
        switch (KernelRung.Selected)
        {
            case Rung.Avx512: return KernelRung.UseGfni && Gfni.V512.IsSupported ? Avx512Loop<GfniOn>(w, xq, nb) : Avx512Loop<GfniOff>(w, xq, nb);
            case Rung.Avx2: return Avx2Dispatch(w, xq, nb, KernelRung.UseAvxVnni, KernelRung.UseGfni && Gfni.V256.IsSupported);
            case Rung.Neon: return NeonLoop(w, xq, nb);
            default: return ScalarLoop(w, xq, nb);
        }
    }

    public static float DotScalar(byte* w, byte* xq, int n) => ScalarLoop(w, xq, Blocks(n));

    public static float DotAvx2(byte* w, byte* xq, int n) => DotAvx2(w, xq, n, KernelRung.UseAvxVnni);

    /// <summary>The AVX2 rung with AVX-VNNI on or off (off runs on any AVX2 CPU), GFNI as <see cref="KernelRung.UseGfni"/>.</summary>
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni) => DotAvx2(w, xq, n, vnni, KernelRung.UseGfni && Gfni.V256.IsSupported);

    /// <summary>The AVX2 rung with AVX-VNNI and GFNI each on or off (both off runs on any AVX2 CPU).</summary>
    public static float DotAvx2(byte* w, byte* xq, int n, bool vnni, bool gfni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if ((vnni && !AvxVnni.IsSupported) || (gfni && !Gfni.V256.IsSupported)) KernelRung.ThrowUnsupported(nameof(DotQ6_K), Rung.Avx2);
        return Avx2Dispatch(w, xq, nb, vnni, gfni);
    }

    private static float Avx2Dispatch(byte* w, byte* xq, int nb, bool vnni, bool gfni)
    {
        if (vnni) return gfni ? Avx2Loop<VnniOn, GfniOn>(w, xq, nb) : Avx2Loop<VnniOn, GfniOff>(w, xq, nb);
        return gfni ? Avx2Loop<VnniOff, GfniOn>(w, xq, nb) : Avx2Loop<VnniOff, GfniOff>(w, xq, nb);
    }

    public static float DotAvx512(byte* w, byte* xq, int n) => DotAvx512(w, xq, n, KernelRung.UseGfni);

    /// <summary>The AVX-512 rung with GFNI (vgf2p8affineqb bit unpacking) on or off (off runs on any AVX-512 BW CPU).</summary>
    public static float DotAvx512(byte* w, byte* xq, int n, bool gfni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        if (!gfni) return Avx512Loop<GfniOff>(w, xq, nb);
        if (!Gfni.V512.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ6_K), Rung.Avx512);
        return Avx512Loop<GfniOn>(w, xq, nb);
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
        if (n < 0 || n % BlockSize != 0) KernelRung.ThrowBadLength(nameof(DotQ6_K), n, BlockSize);
        return n / BlockSize;
    }

    private static void Require(Rung rung)
    {
        if (!KernelRung.IsSupported(rung)) KernelRung.ThrowUnsupported(nameof(DotQ6_K), rung);
    }
}
