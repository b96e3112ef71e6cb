using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q3_K weights · Q8_K activations (ggml's <c>ggml_vec_dot_q3_K_q8_K</c>): per 256-super-block
/// d_w·d_x·Σ_g sc_g·Σ (q3 − 4)·q8 over the sixteen 16-weight groups g, sc_g the signed 6-bit scale (−32..31) and
/// q3 = two bits of qs plus 4·(the hmask bit). The SIMD rungs multiply the unsigned q3 and take the −4 offset as
/// −4·Σ_g sc_g·bsums_g from the activations' 16-sums. <c>w</c> is a row of Q3_K blocks (110 bytes: hmask[32],
/// qs[64], scales[12], d), <c>xq</c> the activations quantized by <see cref="ActivationQuant.QuantizeQ8_K"/>, <c>n</c>
/// the element count (a multiple of 256). <see cref="Dot"/> uses <see cref="KernelRung.Selected"/>; the Dot{Rung}
/// methods run one rung directly (tests, benchmarks).
/// </summary>
public static unsafe partial class DotQ3_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 110;

    private const int QsOffset = 32;
    private const int ScalesOffset = 96;
    private const int DOffset = 108;

    /// <summary>
    /// The sixteen 6-bit scales (0..63, stored sc + 32) in group order from the 12 packed bytes: low nibbles from
    /// bytes 0..7 (groups 0..7) and their high nibbles (groups 8..15), top two bits from bytes 8..11 (bit pair
    /// g / 4 of byte 8 + g % 4).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<byte> UnpackScales(byte* s)
    {
        uint a0 = Unsafe.ReadUnaligned<uint>(s), a1 = Unsafe.ReadUnaligned<uint>(s + 4), a2 = Unsafe.ReadUnaligned<uint>(s + 8);
        const uint low = 0x0f0f0f0f, two = 0x03030303;
        return Vector128.Create(
            (a0 & low) | (((a2 >> 0) & two) << 4),
            (a1 & low) | (((a2 >> 2) & two) << 4),
            ((a0 >> 4) & low) | (((a2 >> 4) & two) << 4),
            ((a1 >> 4) & low) | (((a2 >> 6) & two) << 4)).AsByte();
    }

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
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ3_K), Rung.Avx2);
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
        if (n < 0 || n % BlockSize != 0) KernelRung.ThrowBadLength(nameof(DotQ3_K), n, BlockSize);
        return n / BlockSize;
    }

    private static void Require(Rung rung)
    {
        if (!KernelRung.IsSupported(rung)) KernelRung.ThrowUnsupported(nameof(DotQ3_K), rung);
    }
}
