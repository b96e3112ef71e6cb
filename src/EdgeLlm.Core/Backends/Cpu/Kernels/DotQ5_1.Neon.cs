using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ5_1
{
    /// <summary>The one-token loop with sdot or the widening pair, as <see cref="KernelRung.UseDotProd"/> says (chosen once per call).</summary>
    private static float NeonLoop(byte* w, byte* xq, int nb) =>
        KernelRung.UseDotProd ? NeonQ8_1Loops.Loop1<DotProdOn, NeonBlock>(w, xq, nb) : NeonQ8_1Loops.Loop1<DotProdOff, NeonBlock>(w, xq, nb);

    /// <summary>This type for <see cref="NeonQ8_1Loops"/>: its block size and how its codes unpack.</summary>
    private readonly struct NeonBlock : INeonQ8_1Block
    {
        public static int BlockBytes => DotQ5_1.BlockBytes;

        /// <summary>A block's 32 codes as bytes: <paramref name="lo"/> weights 0..15, <paramref name="hi"/> 16..31.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Unpack(byte* wb, Vector128<byte> m4, out Vector128<sbyte> lo, out Vector128<sbyte> hi)
        {
            QhBits.Neon(Unsafe.ReadUnaligned<uint>(wb + 4), out Vector128<byte> hLo, out Vector128<byte> hHi);
            Vector128<byte> packed = AdvSimd.LoadVector128(wb + 8);
            lo = (AdvSimd.And(packed, m4) | hLo).AsSByte();
            hi = (AdvSimd.ShiftRightLogical(packed, 4) | hHi).AsSByte();
        }
    }

    /// <summary>
    /// Row <paramref name="w"/> · tokens t = 0..3 at <paramref name="xq"/> + t·<paramref name="xqStride"/> (Q8_1 blocks) on
    /// NEON, sdot when <paramref name="dp"/>; result t to <paramref name="dst"/>[t·<paramref name="dstStride"/>]. Each
    /// block's 5-bit codes (nibbles or-ed with the qh bits) are built once for the four tokens; per token the steps of
    /// <see cref="NeonLoop"/> in its order (<see cref="NeonDot.Q8_1Token"/>), so each result is bit-identical to the one-token loop's.
    /// </summary>
    public static void Dot4Neon(byte* w, byte* xq, long xqStride, int n, float* dst, long dstStride, bool dp)
    {
        int nb = Blocks(n);
        NeonDot.Require(nameof(DotQ5_1), dp);
        if (dp) NeonQ8_1Loops.Loop4<DotProdOn, NeonBlock>(w, xq, xqStride, nb, dst, dstStride);
        else NeonQ8_1Loops.Loop4<DotProdOff, NeonBlock>(w, xq, xqStride, nb, dst, dstStride);
    }
}
