using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
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

    /// <summary>
    /// The same eight scales and mins in SIMD registers, for the x64 loops: byte j of the result is sc_j and byte 8+j is
    /// m_j. Reads the 16 bytes at <paramref name="s"/> (the 12 packed bytes and the block's first four quant bytes, which
    /// no lane keeps). One vpshufb gathers the low parts (s[0..3], s[8..11] for the scales, s[4..7], s[8..11] for the
    /// mins), one vpsrlvd moves the mins' high nibbles down, one mask keeps 6 or 4 bits; a second vpshufb puts s[0..3]
    /// and s[4..7] beside the j ≥ 4 lanes, whose top two bits a 16-bit shift and a mask move to bits 4..5. Eight
    /// instructions against the 45 scalar ones of <see cref="UnpackScales"/>; exact, so the sums do not change.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<byte> UnpackScalesMins(byte* s)
    {
        Vector128<byte> v = Vector128.Load(s);
        Vector128<byte> low = Ssse3.Shuffle(v, Vector128.Create((byte)0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
        low = Avx2.ShiftRightLogicalVariable(low.AsUInt32(), Vector128.Create(0u, 0u, 0u, 4u)).AsByte()
            & Vector128.Create(0x3f3f3f3fu, 0x0f0f0f0fu, 0x3f3f3f3fu, 0x0f0f0f0fu).AsByte();
        Vector128<byte> top = Ssse3.Shuffle(v, Vector128.Create(0x80808080u, 0x03020100u, 0x80808080u, 0x07060504u).AsByte());
        return low | ((top.AsUInt16() >>> 2).AsByte() & Vector128.Create((byte)0x30));
    }

    /// <summary>
    /// d and dmin of the block at <paramref name="wb"/> as floats in lanes 0 and 1 (lanes 2 and 3 hold the first scale
    /// bytes' conversion, unused): one vpmovzxwd and the branch-free vector conversion, exact like <see cref="Fp16.Read"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> DAndDmin(byte* wb) => Fp16.ToFloat(Sse41.ConvertToVector128Int32((ushort*)wb).AsUInt32());

    /// <summary>Words [m0, m0, m1, m1, …, m7, m7] for vpmaddwd with the 16 bsums, from <see cref="UnpackScalesMins"/>'s bytes 8..15.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> MinPairs(Vector128<byte> scalesMins) =>
        Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scalesMins, Vector128.Create((byte)8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15)));

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
