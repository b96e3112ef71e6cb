using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q8_0 weights · Q8_0 activations (ggml's <c>ggml_vec_dot_q8_0_q8_0</c>): per 32-block the integer
/// Σ q_w·q_x, scaled by d_w·d_x, summed in float. <c>w</c> is a row of Q8_0 blocks (34 bytes), <c>xq</c> the
/// activations quantized by <see cref="ActivationQuant.QuantizeQ8_0"/>, <c>n</c> the element count (a multiple of 32).
/// <see cref="Dot"/> uses <see cref="KernelRung.Selected"/>; the Dot{Rung} methods run one rung directly (tests, benchmarks).
/// </summary>
public static unsafe partial class DotQ8_0
{
    public const int BlockSize = Quant.Q8_0.BlockSize;
    public const int BlockBytes = Quant.Q8_0.BlockBytes;

    public static float Dot(byte* w, byte* xq, int n)
    {
        int nb = Blocks(n);
        switch (KernelRung.Selected)
        {
            case Rung.Avx512: return KernelRung.UseAvxVnni ? Avx512Loop<VnniOn, VnniOff>(w, xq, null, nb) : Avx512Loop<VnniOff, VnniOff>(w, xq, null, nb);
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
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ8_0), Rung.Avx2);
        return Avx2Loop<VnniOn>(w, xq, nb);
    }

    public static float DotAvx512(byte* w, byte* xq, int n) => DotAvx512(w, xq, n, KernelRung.UseAvxVnni);

    /// <summary>The AVX-512 one-token loop with AVX-VNNI on or off (off runs on any AVX-512 CPU; on needs AVX-VNNI too).</summary>
    public static float DotAvx512(byte* w, byte* xq, int n, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        if (!vnni) return Avx512Loop<VnniOff, VnniOff>(w, xq, null, nb);
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ8_0), Rung.Avx512);
        return Avx512Loop<VnniOn, VnniOff>(w, xq, null, nb);
    }

    /// <summary>
    /// <see cref="DotAvx512(byte*, byte*, int, bool)"/> with the activation scales already converted by
    /// <see cref="PrepareScalesAvx512"/> into <paramref name="xs"/> (n / 32 floats): the same bits, without converting
    /// the token's scales again for every row (decode's row driver converts them once per call and token).
    /// </summary>
    public static float DotAvx512Prepared(byte* w, byte* xq, float* xs, int n, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        if (!vnni) return Avx512Loop<VnniOff, VnniOn>(w, xq, xs, nb);
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ8_0), Rung.Avx512);
        return Avx512Loop<VnniOn, VnniOn>(w, xq, xs, nb);
    }

    /// <summary>The fp16 scales of the n / 32 activation blocks at <paramref name="xq"/> as floats into <paramref name="xs"/> (exact), for <see cref="DotAvx512Prepared"/>.</summary>
    public static void PrepareScalesAvx512(byte* xq, int n, float* xs)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        PrepareScalesLoop(xq, nb, xs);
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
        if (n < 0 || n % BlockSize != 0) KernelRung.ThrowBadLength(nameof(DotQ8_0), n, BlockSize);
        return n / BlockSize;
    }

    /// <summary>The rung guard of the public entry points; inlined with <see cref="KernelRung.IsSupported"/>, so a constant rung costs no call per row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Require(Rung rung)
    {
        if (!KernelRung.IsSupported(rung)) KernelRung.ThrowUnsupported(nameof(DotQ8_0), rung);
    }
}
