using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q4_K weights · Q8_K activations (ggml's <c>ggml_vec_dot_q4_K_q8_K</c>): per 256-super-block
/// d_w·d_x·Σ_j sc_j·Σ q4·q8 − dmin_w·d_x·Σ_g m_{g/2}·bsums_g (the mins term from the activations' 16-sums).
/// <c>w</c> is a row of Q4_K blocks (144 bytes), <c>xq</c> the activations quantized by
/// <see cref="ActivationQuant.QuantizeQ8_K"/>, <c>n</c> the element count (a multiple of 256).
/// <see cref="Dot"/> uses <see cref="KernelRung.Selected"/>; the Dot{Rung} methods run one rung directly (tests, benchmarks).
/// </summary>
public static unsafe partial class DotQ4_K
{
    public const int BlockSize = Quant.Q4_K.BlockSize;
    public const int BlockBytes = Quant.Q4_K.BlockBytes;

    private const int ScalesOffset = 4;
    private const int QsOffset = 16;

    /// <summary>
    /// The eight 6-bit scales and mins of a block from its 12 packed bytes s (ggml's <c>get_scale_min_k4</c> for all j
    /// at once): byte j of <paramref name="scales"/> is sc_j and byte j of <paramref name="mins"/> is m_j. For j &lt; 4
    /// they are the low 6 bits of s[j] and s[j+4]; for j ≥ 4 the low nibble / high nibble of s[j+4] plus the top two
    /// bits of s[j−4] / s[j].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void UnpackScales(byte* s, out ulong scales, out ulong mins)
    {
        uint u0 = Unsafe.ReadUnaligned<uint>(s);
        uint u1 = Unsafe.ReadUnaligned<uint>(s + 4);
        uint u2 = Unsafe.ReadUnaligned<uint>(s + 8);
        uint scLow = u0 & 0x3f3f3f3f;
        uint mnLow = u1 & 0x3f3f3f3f;
        uint scHigh = (u2 & 0x0f0f0f0f) | (((u0 >> 6) & 0x03030303) << 4);
        uint mnHigh = ((u2 >> 4) & 0x0f0f0f0f) | (((u1 >> 6) & 0x03030303) << 4);
        scales = scLow | ((ulong)scHigh << 32);
        mins = mnLow | ((ulong)mnHigh << 32);
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
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_K), Rung.Avx2);
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
        if (n < 0 || n % BlockSize != 0) KernelRung.ThrowBadLength(nameof(DotQ4_K), n, BlockSize);
        return n / BlockSize;
    }

    private static void Require(Rung rung)
    {
        if (!KernelRung.IsSupported(rung)) KernelRung.ThrowUnsupported(nameof(DotQ4_K), rung);
    }
}
