using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// The Q8_0 activation quantizer at 512 and 256 bits (the batch's input of every Q4_0/Q8_0 product), and straight into a
/// <see cref="Q8_0Panel"/> where the product reads only the panel (x64's Q4_0 kernels), so the panel is not built by a
/// second pass over the blocks. A block's 32 values are two zmm (four ymm); every lane does the float operations of
/// <see cref="QuantizeQ8_0"/> (the same amax, d = amax/127, id = 1/d, the same round half away from zero of x·id), and
/// the fp16 of d is worked out in integers (<see cref="HalfBits"/>, exact round to nearest even as <c>(Half)d</c>), so the
/// bytes are those of the 128-bit loop and of the reference quantizer.
/// </summary>
public static unsafe partial class ActivationQuant
{
    /// <summary>x → Q8_0 blocks, AVX-512 (the bytes of <see cref="QuantizeQ8_0"/>).</summary>
    public static void QuantizeQ8_0Avx512(float* x, byte* dst, int n) => BlocksWide<Wide512>(x, dst, n, nameof(QuantizeQ8_0Avx512));

    /// <summary>x → Q8_0 blocks, AVX2 (the bytes of <see cref="QuantizeQ8_0"/>).</summary>
    public static void QuantizeQ8_0Avx2(float* x, byte* dst, int n) => BlocksWide<Wide256>(x, dst, n, nameof(QuantizeQ8_0Avx2));

    /// <summary>
    /// x → the <see cref="Q8_0Panel"/> of its Q8_0 blocks (<see cref="Q8_0Panel.BytesFor"/> bytes), AVX-512: the bytes of
    /// <see cref="QuantizeQ8_0"/> followed by <see cref="Q8_0Panel.FromBlocks"/>, in one pass.
    /// </summary>
    public static void QuantizeQ8_0PanelAvx512(float* x, byte* panel, int n) => PanelWide<Wide512>(x, panel, n, nameof(QuantizeQ8_0PanelAvx512));

    /// <summary>The same at 256 bits (AVX2).</summary>
    public static void QuantizeQ8_0PanelAvx2(float* x, byte* panel, int n) => PanelWide<Wide256>(x, panel, n, nameof(QuantizeQ8_0PanelAvx2));

    /// <summary>One Q8_0 block at a vector width: <see cref="Block512"/> or <see cref="Block256"/>, and the rung it needs.</summary>
    private interface IQ8Width
    {
        static abstract Rung Rung { get; }
        static abstract ushort Block(float* xb, sbyte* qs, out Vector256<sbyte> q);
    }

    private struct Wide512 : IQ8Width
    {
        public static Rung Rung => Rung.Avx512;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static ushort Block(float* xb, sbyte* qs, out Vector256<sbyte> q) => Block512(xb, qs, out q);
    }

    private struct Wide256 : IQ8Width
    {
        public static Rung Rung => Rung.Avx2;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static ushort Block(float* xb, sbyte* qs, out Vector256<sbyte> q) => Block256(xb, qs, out q);
    }

    private static void CheckWide<TW>(int n, string name) where TW : struct, IQ8Width
    {
        if (n < 0 || n % Q8_0BlockSize != 0) KernelRung.ThrowBadLength("ActivationQuant." + name, n, Q8_0BlockSize);
        if (!KernelRung.IsSupported(TW.Rung)) KernelRung.ThrowUnsupported(name, TW.Rung);
    }

    private static void BlocksWide<TW>(float* x, byte* dst, int n, string name) where TW : struct, IQ8Width
    {
        CheckWide<TW>(n, name);
        for (int b = 0; b < n / Q8_0BlockSize; b++)
        {
            byte* y = dst + b * Q8_0BlockBytes;
            Unsafe.WriteUnaligned(y, TW.Block(x + b * Q8_0BlockSize, (sbyte*)(y + 2), out _));
        }
    }

    private static void PanelWide<TW>(float* x, byte* panel, int n, string name) where TW : struct, IQ8Width
    {
        CheckWide<TW>(n, name);
        int nb = n / Q8_0BlockSize;
        float* dx = Q8_0Panel.Scales(panel, nb), c = Q8_0Panel.Offsets(panel, nb);
        for (int b = 0; b < nb; b++)
        {
            ushort h = TW.Block(x + b * Q8_0BlockSize, (sbyte*)(panel + b * 32), out var q);
            float d = Fp16.ToFloat(h);
            dx[b] = d;
            c[b] = d * (8 * Q8_0Panel.QuantSum(q));
        }
    }

    /// <summary>
    /// The panel quantizer for a kernel row of <paramref name="rung"/> (x64 rows whose kernels read only the panel), or null
    /// where the rung has none (the blocks are then quantized and <see cref="Q8_0Panel.FromBlocks"/> builds the panel).
    /// </summary>
    internal static delegate*<float*, byte*, int, void> PanelQuantizer(Rung rung) =>
        rung == Rung.Avx512 && KernelRung.IsSupported(Rung.Avx512) ? &QuantizeQ8_0PanelAvx512
        : rung == Rung.Avx2 && KernelRung.IsSupported(Rung.Avx2) ? &QuantizeQ8_0PanelAvx2 : null;

    /// <summary>
    /// One block of 32 values at <paramref name="xb"/>: its 32 quants to <paramref name="qs"/> (and <paramref name="q"/>),
    /// and the fp16 bits of d = amax/127 (returned).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ushort Block512(float* xb, sbyte* qs, out Vector256<sbyte> q)
    {
        Vector512<float> a = Vector512.Load(xb), b = Vector512.Load(xb + 16);
        Vector512<float> m16 = Vector512.Max(Vector512.Abs(a), Vector512.Abs(b));
        Vector256<float> m8 = Vector256.Max(m16.GetLower(), m16.GetUpper());
        Vector128<float> m = Vector128.Max(m8.GetLower(), m8.GetUpper());
        float amax = MathF.Max(MathF.Max(m[0], m[1]), MathF.Max(m[2], m[3]));
        float d = amax / 127f;
        float id = d != 0f ? 1f / d : 0f;
        Vector512<float> vid = Vector512.Create(id);
        Vector512<int> q0 = RoundAway512(a * vid), q1 = RoundAway512(b * vid);
        q = Vector256.Create(Avx512F.ConvertToVector128SByte(q0), Avx512F.ConvertToVector128SByte(q1));
        q.Store(qs);
        return HalfBits(d);
    }

    /// <summary>The same at 256 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ushort Block256(float* xb, sbyte* qs, out Vector256<sbyte> q)
    {
        Vector256<float> a = Vector256.Load(xb), b = Vector256.Load(xb + 8), e = Vector256.Load(xb + 16), f = Vector256.Load(xb + 24);
        Vector256<float> m8 = Vector256.Max(Vector256.Max(Vector256.Abs(a), Vector256.Abs(b)), Vector256.Max(Vector256.Abs(e), Vector256.Abs(f)));
        Vector128<float> m = Vector128.Max(m8.GetLower(), m8.GetUpper());
        float amax = MathF.Max(MathF.Max(m[0], m[1]), MathF.Max(m[2], m[3]));
        float d = amax / 127f;
        float id = d != 0f ? 1f / d : 0f;
        Vector256<float> vid = Vector256.Create(id);
        Vector256<int> q0 = RoundAway256(a * vid), q1 = RoundAway256(b * vid), q2 = RoundAway256(e * vid), q3 = RoundAway256(f * vid);
        q = Vector256.Narrow(Vector256.Narrow(q0, q1), Vector256.Narrow(q2, q3));
        q.Store(qs);
        return HalfBits(d);
    }

    /// <summary>
    /// The fp16 bits of a non-negative float as <c>(Half)d</c> gives them (round to nearest even): below 2^-14 the
    /// subnormal half is the float sum d + 0.5 (whose unit in the last place is 2^-24, the subnormal half's step) less
    /// 0.5's bits; below 65520 the normal half is the rebiased exponent and mantissa rounded at bit 13 (a carry moves into
    /// the exponent as it should); larger values, infinities, NaN and negative values take the runtime's conversion.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ushort HalfBits(float d)
    {
        uint u = BitConverter.SingleToUInt32Bits(d);
        if (u < 0x38800000u) return (ushort)(BitConverter.SingleToUInt32Bits(d + 0.5f) - 0x3F000000u);
        if (u < 0x477FF000u) return (ushort)((u - 0x38000000u + 0x0FFFu + ((u >> 13) & 1)) >> 13);
        return BitConverter.HalfToUInt16Bits((Half)d);
    }

    /// <summary><see cref="RoundAway"/> at 512 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> RoundAway512(Vector512<float> v)
    {
        Vector512<float> t = Vector512.Truncate(v);
        Vector512<float> up = Vector512.GreaterThanOrEqual(Vector512.Abs(v - t), Vector512.Create(0.5f));
        Vector512<float> step = Vector512.CopySign(Vector512.Create(1f), v) & up;
        return Vector512.ConvertToInt32(t + step);
    }

    /// <summary><see cref="RoundAway"/> at 256 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> RoundAway256(Vector256<float> v)
    {
        Vector256<float> t = Vector256.Truncate(v);
        Vector256<float> up = Vector256.GreaterThanOrEqual(Vector256.Abs(v - t), Vector256.Create(0.5f));
        Vector256<float> step = Vector256.CopySign(Vector256.Create(1f), v) & up;
        return Vector256.ConvertToInt32(t + step);
    }
}
