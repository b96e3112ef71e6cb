using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Branch-free IEEE fp16 → fp32 for the hot loops (.NET's <c>(float)Half</c> is a call, and there is no public
/// vcvtph2ps). The 15 magnitude bits shifted left by 13 are a float whose exponent is 112 too small, so one
/// multiply by 2^112 gives the exact value for normals, subnormals and zero; exponent 31 (inf/NaN) is forced to 255
/// first, and the sign bit is or-ed back at the end. Exact for every fp16 value (NaN payloads kept, quieted).
/// </summary>
internal static unsafe class Fp16
{
    private const float TwoPow112 = 5.192296858534828E+33f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(uint h)
    {
        uint em = h & 0x7fff;
        uint bits = em << 13;
        if (em >= 0x7c00) bits |= 0x7f800000;
        float f = BitConverter.UInt32BitsToSingle(bits) * TwoPow112;
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(f) | ((h & 0x8000) << 16));
    }

    /// <summary>Reads the little-endian fp16 at <paramref name="p"/> (no alignment needed).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Read(byte* p) => ToFloat(Unsafe.ReadUnaligned<ushort>(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ToFloat(Vector512<uint> h)
    {
        Vector512<uint> em = h & Vector512.Create(0x7fffu);
        Vector512<uint> bits = (em << 13) | (Vector512.GreaterThanOrEqual(em, Vector512.Create(0x7c00u)) & Vector512.Create(0x7f800000u));
        Vector512<float> f = bits.AsSingle() * Vector512.Create(TwoPow112);
        return (f.AsUInt32() | ((h & Vector512.Create(0x8000u)) << 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ToFloat(Vector256<uint> h)
    {
        Vector256<uint> em = h & Vector256.Create(0x7fffu);
        Vector256<uint> bits = (em << 13) | (Vector256.GreaterThanOrEqual(em, Vector256.Create(0x7c00u)) & Vector256.Create(0x7f800000u));
        Vector256<float> f = bits.AsSingle() * Vector256.Create(TwoPow112);
        return (f.AsUInt32() | ((h & Vector256.Create(0x8000u)) << 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> ToFloat(Vector128<uint> h)
    {
        Vector128<uint> em = h & Vector128.Create(0x7fffu);
        Vector128<uint> bits = (em << 13) | (Vector128.GreaterThanOrEqual(em, Vector128.Create(0x7c00u)) & Vector128.Create(0x7f800000u));
        Vector128<float> f = bits.AsSingle() * Vector128.Create(TwoPow112);
        return (f.AsUInt32() | ((h & Vector128.Create(0x8000u)) << 16)).AsSingle();
    }
}
