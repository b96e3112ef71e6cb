using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ5_1
{
    /// <summary>
    /// The block as <see cref="AffineQ8_1{TB}"/> reads it (its AVX-512 and AVX2 loops, one and four tokens):
    /// Q5_1: the 16 packed bytes at 8 become 32 nibbles or-ed with the qh bits (at 4) as 0x10, q = 0..31.
    /// </summary>
    private readonly struct Block : IAffineQ8_1Block
    {
        public static int BlockBytes => DotQ5_1.BlockBytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Avx2Quants(byte* wb)
        {
            Vector128<byte> packed = Vector128.Load(wb + 8);
            Vector256<byte> nib = Vector256.Create(packed, Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
            return nib | QhBits.Avx2(Unsafe.ReadUnaligned<uint>(wb + 4));
        }
    }
}
