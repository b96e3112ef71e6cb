using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// IQ4_XS weights · Q8_K activations (ggml's <c>ggml_vec_dot_iq4_xs_q8_K</c>): per 256-super-block
/// d_w·d_x·Σ_ib (ls_ib − 32)·Σ K[q]·q8 over the eight 32-weight sub-blocks, K the fixed 16-value grid
/// (<see cref="Quant.IQ4_XS.Values"/>, −127..113). <c>w</c> is a row of IQ4_XS blocks (136 bytes: d, scales_h,
/// scales_l[4], qs[128]), <c>xq</c> the activations quantized by <see cref="ActivationQuant.QuantizeQ8_K"/>, <c>n</c>
/// the element count (a multiple of 256). <see cref="Dot"/> uses <see cref="KernelRung.Selected"/>; the Dot{Rung}
/// methods run one rung directly (tests, benchmarks).
/// </summary>
public static unsafe partial class DotIQ4_XS
{
    public const int BlockSize = 256;
    public const int BlockBytes = 136;

    private const int ScalesHOffset = 2;
    private const int ScalesLOffset = 4;
    private const int QsOffset = 8;

    /// <summary>The grid K as bytes (two copies: a vpshufb table per 128-bit lane).</summary>
    private static ReadOnlySpan<byte> Grid => new byte[]
    {
        0x81, 0x98, 0xAD, 0xBF, 0xCF, 0xDD, 0xEA, 0xF6, 0x01, 0x0D, 0x19, 0x26, 0x35, 0x45, 0x59, 0x71,
        0x81, 0x98, 0xAD, 0xBF, 0xCF, 0xDD, 0xEA, 0xF6, 0x01, 0x0D, 0x19, 0x26, 0x35, 0x45, 0x59, 0x71,
    };

    /// <summary>The 6-bit scale of sub-block <paramref name="ib"/> minus 32 (−32..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int SubScale(uint scalesL, uint scalesH, int ib) =>
        (int)(((scalesL >> (4 * ib)) & 0xF) | (((scalesH >> (2 * ib)) & 3) << 4)) - 32;

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
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotIQ4_XS), Rung.Avx2);
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
        if (n < 0 || n % BlockSize != 0) KernelRung.ThrowBadLength(nameof(DotIQ4_XS), n, BlockSize);
        return n / BlockSize;
    }

    private static void Require(Rung rung)
    {
        if (!KernelRung.IsSupported(rung)) KernelRung.ThrowUnsupported(nameof(DotIQ4_XS), rung);
    }
}
