using System.Runtime.CompilerServices;

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
        else FromBlocksScalar(xq, panel, nb);
    }

    /// <summary>The panel of <paramref name="nb"/> Q8_0 blocks, one block at a time in scalar code (the reference of <see cref="FromBlocksNeon"/>).</summary>
    private static void FromBlocksScalar(byte* xq, byte* panel, int nb)
    {
        float* dx = Scales(panel, nb);
        float* c = Offsets(panel, nb);
        for (int b = 0; b < nb; b++)
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
