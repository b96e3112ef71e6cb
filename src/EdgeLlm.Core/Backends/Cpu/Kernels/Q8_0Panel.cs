using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q8_0 activations rearranged for the fast Q4_0 kernels (<see cref="DotQ4_0.DotPanel"/>): the quant bytes of all
/// blocks back to back (<c>i8 qs[nb·32]</c>, so a pair of blocks is one 64-byte load), then the block scales as float
/// (<c>f32 dx[nb]</c>, the fp16 d widened), then the offset terms as float (<c>f32 c[nb]</c>,
/// c[b] = dx[b]·(8·Σ qs[32b .. 32b + 31]), the integer sum exact, one rounding in the product). The kernels dot the
/// unsigned nibbles q ∈ 0..15 with y and take the −8 of Q4_0 off in float once per block:
/// Σ (q−8)·y·d_w·d_x = d_w·d_x·Σ q·y − d_w·c. Built from the Q8_0 blocks once per token per matmul; <c>nb·40</c> bytes.
/// </summary>
public static unsafe partial class Q8_0Panel
{
    public const int BytesPerBlock = 40;

    public static long BytesFor(int n) => (long)(n / ActivationQuant.Q8_0BlockSize) * BytesPerBlock;

    /// <summary>The scale array of a panel of <paramref name="nb"/> blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float* Scales(byte* panel, int nb) => (float*)(panel + nb * 32);

    /// <summary>The float offset terms c[b] = dx[b]·8·Σy of a panel of <paramref name="nb"/> blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float* Offsets(byte* panel, int nb) => (float*)(panel + nb * 36);

    /// <summary>
    /// Writes the panel of the <paramref name="n"/> values quantized as Q8_0 blocks at <paramref name="xq"/> (on arm64 in
    /// vector registers, <see cref="FromBlocksNeon"/>: the same bytes).
    /// </summary>
    public static void FromBlocks(byte* xq, byte* panel, int n)
    {
        if (n < 0 || n % ActivationQuant.Q8_0BlockSize != 0) KernelRung.ThrowBadLength(nameof(Q8_0Panel), n, ActivationQuant.Q8_0BlockSize);
        int nb = n / ActivationQuant.Q8_0BlockSize;
        if (System.Runtime.Intrinsics.Arm.AdvSimd.Arm64.IsSupported) FromBlocksNeon(xq, panel, nb);
        else if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) FromBlocksAvx2(xq, panel, nb, 0, nb);
        else FromBlocksScalar(xq, panel, nb);
    }

    /// <summary>
    /// Blocks [b0, b1) on x64 with AVX2: each block's 32 quants copied in one 32-byte load and store, their sum as
    /// Σ(q + 128) − 4096 (the bytes flipped to unsigned, summed exactly by vpsadbw against zero into four 64-bit lanes),
    /// d and c = d·(8·Σq) as <see cref="FromBlocksScalar(byte*, byte*, int)"/> computes them: the same bytes (the decode
    /// quantize of a lone token built the panel with a scalar 32-byte sum per block before).
    /// </summary>
    internal static void FromBlocksAvx2(byte* xq, byte* panel, int nb, int b0, int b1)
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        float* dx = Scales(panel, nb);
        float* c = Offsets(panel, nb);
        for (int b = b0; b < b1; b++)
        {
            byte* y = xq + b * XB;
            var q = System.Runtime.Intrinsics.Vector256.Load((sbyte*)(y + 2));
            q.Store((sbyte*)(panel + b * 32));
            int s = QuantSum(q);
            float d = Fp16.Read(y);
            dx[b] = d;
            c[b] = d * (8 * s);
        }
    }

    /// <summary>
    /// Σ of a block's 32 quants, exactly: the bytes flipped to unsigned (q + 128), summed by vpsadbw against zero into four
    /// 64-bit lanes, less 32·128 (AVX2; also the panel quantizers of <c>ActivationQuant.Q8_0Wide.cs</c>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int QuantSum(System.Runtime.Intrinsics.Vector256<sbyte> q)
    {
        var sad = System.Runtime.Intrinsics.X86.Avx2.SumAbsoluteDifferences(q.AsByte() ^ System.Runtime.Intrinsics.Vector256.Create((byte)0x80),
            System.Runtime.Intrinsics.Vector256<byte>.Zero).AsInt64();
        return (int)(sad[0] + sad[1] + sad[2] + sad[3]) - 32 * 128;
    }

    /// <summary>The panel of <paramref name="nb"/> Q8_0 blocks, one block at a time in scalar code (the reference of <see cref="FromBlocksNeon"/>).</summary>
    internal static void FromBlocksScalar(byte* xq, byte* panel, int nb) => FromBlocksScalar(xq, panel, nb, 0, nb);

    private static void FromBlocksScalar(byte* xq, byte* panel, int nb, int b0, int b1)
    {
        float* dx = Scales(panel, nb);
        float* c = Offsets(panel, nb);
        for (int b = b0; b < b1; b++)
        {
            byte* yb = xq + b * ActivationQuant.Q8_0BlockBytes;
            Unsafe.CopyBlockUnaligned(panel + b * 32, yb + 2, 32);
            sbyte* q = (sbyte*)(yb + 2);
            int s = 0;
            for (int j = 0; j < 32; j++) s += q[j];
            float d = Fp16.Read(yb);
            dx[b] = d;
            c[b] = d * (8 * s);
        }
    }
}
