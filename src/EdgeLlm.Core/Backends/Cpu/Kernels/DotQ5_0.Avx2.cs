using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ5_0
{
    /// <summary>
    /// One block per step in a ymm: the 16 packed bytes become 32 nibbles (low = elements 0..15, high = 16..31, the
    /// activation order) or-ed with the qh bits as 0x10 (<see cref="QhBits"/>), q = 0..31; Σ (q − 16)·y = Σ q·y − Σ 16·y,
    /// both with vpmaddubsw (|·| ≤ 2·31·127, no saturation) or AVX-VNNI vpdpbusd; int → float, FMA with d_w·d_x. Eight
    /// blocks per step with their scales from <see cref="BlockScales"/>, two accumulators; the remainder converts
    /// scales one by one. The per-token steps (<see cref="Avx2Group"/>, <see cref="Avx2Rest"/>) are those of the
    /// four-token loop, so both give the same bits.
    /// </summary>
    private static float Avx2Loop<TVnni>(byte* w, byte* xq, int nb) where TVnni : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes), xOff = BlockScales.Offsets(XB);
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes, xq += 8 * XB)
        {
            WeightPrefetch.Lines3(w);
            Avx2Group<TVnni>(ref acc0, ref acc1, w, xq, BlockScales.Half8(w, wOff), xOff);
        }
        for (; b < nb; b++, w += BlockBytes, xq += XB)
            Avx2Rest<TVnni>(ref acc0, Avx2Quants(w), w, xq);
        return Vector256.Sum(acc0 + acc1);
    }

    /// <summary>One token's share of eight blocks: dw the blocks' d; the token's d gathered here.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx2Group<TVnni>(ref Vector256<float> acc0, ref Vector256<float> acc1, byte* w, byte* xq,
        Vector256<float> dw, Vector256<int> xOff) where TVnni : struct, IIsaFlag
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        Vector256<float> d = dw * BlockScales.Half8(xq, xOff);
        acc0 = Avx2Token<TVnni>(acc0, Avx2Quants(w), xq, BlockScales.Broadcast(d, 0));
        acc1 = Avx2Token<TVnni>(acc1, Avx2Quants(w + BlockBytes), xq + XB, BlockScales.Broadcast(d, 1));
        acc0 = Avx2Token<TVnni>(acc0, Avx2Quants(w + 2 * BlockBytes), xq + 2 * XB, BlockScales.Broadcast(d, 2));
        acc1 = Avx2Token<TVnni>(acc1, Avx2Quants(w + 3 * BlockBytes), xq + 3 * XB, BlockScales.Broadcast(d, 3));
        acc0 = Avx2Token<TVnni>(acc0, Avx2Quants(w + 4 * BlockBytes), xq + 4 * XB, BlockScales.Broadcast(d, 4));
        acc1 = Avx2Token<TVnni>(acc1, Avx2Quants(w + 5 * BlockBytes), xq + 5 * XB, BlockScales.Broadcast(d, 5));
        acc0 = Avx2Token<TVnni>(acc0, Avx2Quants(w + 6 * BlockBytes), xq + 6 * XB, BlockScales.Broadcast(d, 6));
        acc1 = Avx2Token<TVnni>(acc1, Avx2Quants(w + 7 * BlockBytes), xq + 7 * XB, BlockScales.Broadcast(d, 7));
    }

    /// <summary>One token's share of a remainder block (q its unpacked weights).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx2Rest<TVnni>(ref Vector256<float> acc0, Vector256<byte> q, byte* wb, byte* yb)
        where TVnni : struct, IIsaFlag =>
        acc0 = Avx2Token<TVnni>(acc0, q, yb, Vector256.Create(Fp16.Read(wb) * Fp16.Read(yb)));

    /// <summary>The 32 weights of a block as unsigned bytes 0..31 (before the −16) in activation order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Avx2Quants(byte* wb)
    {
        Vector128<byte> packed = Vector128.Load(wb + 6);
        Vector256<byte> nib = Vector256.Create(packed, Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
        return nib | QhBits.Avx2(Unsafe.ReadUnaligned<uint>(wb + 2));
    }

    /// <summary>One token's share of a block: acc + d·Σ (q − 16)·y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Avx2Token<TVnni>(Vector256<float> acc, Vector256<byte> q, byte* yb, Vector256<float> d)
        where TVnni : struct, IIsaFlag
    {
        Vector256<sbyte> y = Vector256.Load((sbyte*)(yb + 2));
        Vector256<byte> sixteen = Vector256.Create((byte)16);
        Vector256<int> isum;
        if (TVnni.Enabled)
        {
            isum = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, q, y) - AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, sixteen, y);
        }
        else
        {
            Vector256<short> p = Avx2.MultiplyAddAdjacent(q, y) - Avx2.MultiplyAddAdjacent(sixteen, y);
            isum = Avx2.MultiplyAddAdjacent(p, Vector256.Create((short)1));
        }
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), d, acc);
    }
}
