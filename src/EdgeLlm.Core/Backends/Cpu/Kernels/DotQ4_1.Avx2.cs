using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_1
{
    /// <summary>
    /// The block as <see cref="AffineQ8_1{TB}"/> reads it (its AVX-512 and AVX2 loops, one and four tokens):
    /// Q4_1: 16 packed bytes at 4 become 32 unsigned nibbles (low = elements 0..15, high = 16..31).
    /// </summary>
    private readonly struct Block : IAffineQ8_1Block
    {
        public static int BlockBytes => DotQ4_1.BlockBytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Avx2Quants(byte* wb)
        {
            Vector128<byte> packed = Vector128.Load(wb + 4);
            return Vector256.Create(packed, Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
        }
    }
}
