using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Branch-free IEEE fp16 → fp32 for the hot loops (.NET's <c>(float)Half</c> is a call, and there is no public
/// vcvtph2ps). Normal halves are rebiased in the integer domain (the 15 magnitude bits shifted left by 13, plus 112 on
/// the exponent); exponent 31 (inf/NaN) becomes 255; subnormal halves (and zero) are their 10-bit mantissa converted to
/// float and scaled by 2^-24. No float operation ever sees a denormal operand: the earlier form multiplied the shifted
/// bits by 2^112, which for a subnormal half is a denormal float, and x64 cores then take a microcode assist of
/// ~100 cycles per conversion. K-quant super-block scales are often fp16 subnormals (a Q6_K d of amax/4064 is below
/// 2^-14 for typical weights), so that assist cost a block per conversion. The sign bit is or-ed back at the end.
/// Exact for every fp16 value (NaN payloads kept).
/// </summary>
internal static unsafe class Fp16
{
    private const uint ExponentRebias = (127 - 15) << 23;
    private const float TwoPowMinus24 = 5.9604645E-08f;
    private const uint TwoPow112Bits = (127 + 112) << 23;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(uint h)
    {
        uint em = h & 0x7fff;
        uint normal = em >= 0x7c00 ? (em << 13) | 0x7f800000 : (em << 13) + ExponentRebias;
        float sub = (int)em * TwoPowMinus24;
        uint bits = em < 0x0400 ? BitConverter.SingleToUInt32Bits(sub) : normal;
        return BitConverter.UInt32BitsToSingle(bits | ((h & 0x8000) << 16));
    }

    /// <summary>Reads the little-endian fp16 at <paramref name="p"/> (no alignment needed).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Read(byte* p) => ToFloat(Unsafe.ReadUnaligned<ushort>(p));

    /// <summary>
    /// The low 16 bits of each lane (higher bits ignored) as fp16 → fp32 with one multiply, for the NEON block-scale
    /// loops (<see cref="NeonScales"/>): sign, exponent and mantissa moved into float position (the exponent still biased
    /// by 15) and multiplied by 2^112, which rebiases it; exact for every finite half, subnormals and ±0 included (a
    /// subnormal half gives a denormal float operand and a normal, exact product: arm64 cores take no assist for that,
    /// x64 cores do, so the x64 loops keep <see cref="ToFloat(Vector128{uint})"/>). Exponent 31 (inf, NaN) is selected
    /// from the bits with exponent 255 instead (NaN payload kept). Nine NEON instructions per four halves against 13.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> ToFloatMul(Vector128<uint> h)
    {
        Vector128<uint> em = h & Vector128.Create(0x7fffu);
        Vector128<uint> bits = (em << 13) | ((h << 16) & Vector128.Create(0x80000000u));
        Vector128<float> scaled = bits.AsSingle() * Vector128.Create(TwoPow112Bits).AsSingle();
        return Vector128.ConditionalSelect(Vector128.GreaterThanOrEqual(em, Vector128.Create(0x7c00u)).AsSingle(),
            (bits | Vector128.Create(0x7f800000u)).AsSingle(), scaled);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ToFloat(Vector512<uint> h)
    {
        Vector512<uint> em = h & Vector512.Create(0x7fffu);
        Vector512<uint> shifted = em << 13;
        Vector512<uint> normal = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(em, Vector512.Create(0x7c00u)),
            shifted | Vector512.Create(0x7f800000u), shifted + Vector512.Create(ExponentRebias));
        Vector512<uint> sub = (Vector512.ConvertToSingle(em.AsInt32()) * Vector512.Create(TwoPowMinus24)).AsUInt32();
        Vector512<uint> bits = Vector512.ConditionalSelect(Vector512.LessThan(em, Vector512.Create(0x0400u)), sub, normal);
        return (bits | ((h & Vector512.Create(0x8000u)) << 16)).AsSingle();
    }

    /// <summary>
    /// As <see cref="ToFloat(Vector512{uint})"/> for eight lanes. The magnitude is below 2^15, so the range tests are
    /// signed compares: one vpcmpgtd each on AVX2, which has no unsigned compare (the uint forms cost four instructions).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ToFloat(Vector256<uint> h)
    {
        Vector256<uint> em = h & Vector256.Create(0x7fffu);
        Vector256<uint> shifted = em << 13;
        Vector256<uint> normal = Vector256.ConditionalSelect(Vector256.GreaterThan(em.AsInt32(), Vector256.Create(0x7bff)).AsUInt32(),
            shifted | Vector256.Create(0x7f800000u), shifted + Vector256.Create(ExponentRebias));
        Vector256<uint> sub = (Vector256.ConvertToSingle(em.AsInt32()) * Vector256.Create(TwoPowMinus24)).AsUInt32();
        Vector256<uint> bits = Vector256.ConditionalSelect(Vector256.GreaterThan(Vector256.Create(0x0400), em.AsInt32()).AsUInt32(), sub, normal);
        return (bits | ((h ^ em) << 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> ToFloat(Vector128<uint> h)
    {
        Vector128<uint> em = h & Vector128.Create(0x7fffu);
        Vector128<uint> shifted = em << 13;
        Vector128<uint> normal = Vector128.ConditionalSelect(Vector128.GreaterThanOrEqual(em, Vector128.Create(0x7c00u)),
            shifted | Vector128.Create(0x7f800000u), shifted + Vector128.Create(ExponentRebias));
        Vector128<uint> sub = (Vector128.ConvertToSingle(em.AsInt32()) * Vector128.Create(TwoPowMinus24)).AsUInt32();
        Vector128<uint> bits = Vector128.ConditionalSelect(Vector128.LessThan(em, Vector128.Create(0x0400u)), sub, normal);
        return (bits | ((h & Vector128.Create(0x8000u)) << 16)).AsSingle();
    }
}
