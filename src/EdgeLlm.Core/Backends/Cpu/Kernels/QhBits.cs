using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// The fifth bits of a Q5_0 / Q5_1 block as bytes: bit i of the 32-bit little-endian qh becomes 0x10 in byte i (element
/// i, in activation order), else 0, ready to be or-ed onto the nibbles. Each byte picks the qh byte i/8 (a byte
/// shuffle), keeps bit i%8 and compares.
/// </summary>
internal static class QhBits
{
    /// <summary>All 32 elements in a ymm (vpshufb within the two 128-bit lanes, both holding qh).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Avx2(uint qh)
    {
        Vector256<byte> spread = System.Runtime.Intrinsics.X86.Avx2.Shuffle(Vector256.Create(qh).AsByte(),
            Vector256.Create(0x0101010101010101UL * 0, 0x0101010101010101UL * 1, 0x0101010101010101UL * 2, 0x0101010101010101UL * 3).AsByte());
        Vector256<byte> bit = Vector256.Create(0x8040201008040201UL).AsByte();
        return Vector256.Equals(spread & bit, bit) & Vector256.Create((byte)0x10);
    }

    /// <summary>Elements 0..15 (<paramref name="lo"/>) and 16..31 (<paramref name="hi"/>), NEON tbl.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Neon(uint qh, out Vector128<byte> lo, out Vector128<byte> hi)
    {
        Vector128<byte> v = Vector128.CreateScalar(qh).AsByte();
        Vector128<byte> bit = Vector128.Create(0x8040201008040201UL).AsByte();
        Vector128<byte> sixteen = Vector128.Create((byte)0x10);
        Vector128<byte> l = AdvSimd.Arm64.VectorTableLookup(v, Vector128.Create(0UL, 0x0101010101010101UL).AsByte());
        Vector128<byte> h = AdvSimd.Arm64.VectorTableLookup(v, Vector128.Create(0x0202020202020202UL, 0x0303030303030303UL).AsByte());
        lo = Vector128.Equals(l & bit, bit) & sixteen;
        hi = Vector128.Equals(h & bit, bit) & sixteen;
    }
}
