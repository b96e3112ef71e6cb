using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q5_1 weights · Q8_1 activations (ggml's <c>ggml_vec_dot_q5_1_q8_1</c>): per 32-block (d_w·d_x)·Σ q5·q8 + m_w·s_x,
/// where q5 = 0..31 (nibble and qh bit) and s_x = fp16(d_x·Σ q8) carries the offset term. <c>w</c> is a row of Q5_1 blocks (24 bytes),
/// <c>xq</c> the activations quantized by <see cref="ActivationQuant.QuantizeQ8_1"/> (36-byte blocks), <c>n</c> the
/// element count (a multiple of 32). <see cref="Dot"/> uses <see cref="KernelRung.Selected"/>; the Dot{Rung} methods
/// run one rung directly (tests, benchmarks).
/// </summary>
public static unsafe partial class DotQ5_1
{
    public const int BlockSize = 32;
    public const int BlockBytes = 24;

    public static float Dot(byte* w, byte* xq, int n)
    {
        int nb = Blocks(n);
        switch (KernelRung.Selected)
        {
            case Rung.Avx512: return AffineQ8_1<Block>.Avx512Loop(w, xq, nb);
            case Rung.Avx2: return KernelRung.UseAvxVnni ? AffineQ8_1<Block>.Avx2Loop<VnniOn>(w, xq, nb) : AffineQ8_1<Block>.Avx2Loop<VnniOff>(w, xq, nb);
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
        if (!vnni) return AffineQ8_1<Block>.Avx2Loop<VnniOff>(w, xq, nb);
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ5_1), Rung.Avx2);
        return AffineQ8_1<Block>.Avx2Loop<VnniOn>(w, xq, nb);
    }

    public static float DotAvx512(byte* w, byte* xq, int n)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        return AffineQ8_1<Block>.Avx512Loop(w, xq, nb);
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
        if (n < 0 || n % BlockSize != 0) KernelRung.ThrowBadLength(nameof(DotQ5_1), n, BlockSize);
        return n / BlockSize;
    }

    private static void Require(Rung rung)
    {
        if (!KernelRung.IsSupported(rung)) KernelRung.ThrowUnsupported(nameof(DotQ5_1), rung);
    }
}
