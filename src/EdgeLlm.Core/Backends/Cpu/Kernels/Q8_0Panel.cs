using System.Runtime.CompilerServices;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q8_0 activations rearranged for the fast Q4_0 kernels (<see cref="DotQ4_0.DotPanel"/>): the quant bytes of all
/// blocks back to back (<c>i8 qs[nb·32]</c>, so a pair of blocks is one 64-byte load), then the offset terms
/// <c>i16 off[nb·16]</c> with off[16b + j] = 8·(qs[32b + 2j] + qs[32b + 2j + 1]) (exactly what vpmaddubsw of the
/// constant 8 with the block gives, so Σ(q−8)·y = Σq·y − Σoff needs one multiply-add per block instead of two and
/// stays exact in integers), then the block scales as float (<c>f32 dx[nb]</c>, the fp16 d widened), then the same
/// offsets negated per four bytes for vpdpbusd's accumulator (<c>i32 noff[nb·8]</c>, noff[8b + i] =
/// −8·Σ qs[32b + 4i .. 4i + 3], AVX-VNNI). Built from the Q8_0 blocks once per token per matmul; <c>nb·100</c> bytes.
/// </summary>
public static unsafe class Q8_0Panel
{
    public const int BytesPerBlock = 100;

    public static long BytesFor(int n) => (long)(n / ActivationQuant.Q8_0BlockSize) * BytesPerBlock;

    /// <summary>The offset terms of a panel of <paramref name="nb"/> blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static short* Offsets(byte* panel, int nb) => (short*)(panel + nb * 32);

    /// <summary>The scale array of a panel of <paramref name="nb"/> blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float* Scales(byte* panel, int nb) => (float*)(panel + nb * 64);

    /// <summary>The negated four-byte offset terms of a panel of <paramref name="nb"/> blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int* NegOffsets4(byte* panel, int nb) => (int*)(panel + nb * 68);

    /// <summary>Writes the panel of the <paramref name="n"/> values quantized as Q8_0 blocks at <paramref name="xq"/>.</summary>
    public static void FromBlocks(byte* xq, byte* panel, int n)
    {
        if (n < 0 || n % ActivationQuant.Q8_0BlockSize != 0) KernelRung.ThrowBadLength(nameof(Q8_0Panel), n, ActivationQuant.Q8_0BlockSize);
        int nb = n / ActivationQuant.Q8_0BlockSize;
        short* off = Offsets(panel, nb);
        float* dx = Scales(panel, nb);
        int* noff = NegOffsets4(panel, nb);
        for (int b = 0; b < nb; b++)
        {
            byte* yb = xq + b * ActivationQuant.Q8_0BlockBytes;
            Unsafe.CopyBlockUnaligned(panel + b * 32, yb + 2, 32);
            sbyte* q = (sbyte*)(yb + 2);
            for (int j = 0; j < 16; j++) off[16 * b + j] = (short)(8 * (q[2 * j] + q[2 * j + 1]));
            for (int i = 0; i < 8; i++) noff[8 * b + i] = -8 * (q[4 * i] + q[4 * i + 1] + q[4 * i + 2] + q[4 * i + 3]);
            dx[b] = Fp16.Read(yb);
        }
    }
}
