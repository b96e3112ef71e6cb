using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// [lo | hi] as one zmm with a single vinserti64x4. The JIT compiles Vector512.Create(lo, hi) to two inserts into a
/// register carried over from the previous iteration (a false dependency and an extra shuffle per use).
/// </summary>
internal static class Avx512Join
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Join(Vector256<byte> lo, Vector256<byte> hi) => Avx512F.InsertVector256(lo.ToVector512Unsafe(), hi, 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<sbyte> Join(Vector256<sbyte> lo, Vector256<sbyte> hi) => Avx512F.InsertVector256(lo.ToVector512Unsafe(), hi, 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Join(Vector256<float> lo, Vector256<float> hi) => Avx512F.InsertVector256(lo.ToVector512Unsafe(), hi, 1);
}
