using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_0
{
    /// <summary>
    /// AVX2 panel loop, the same skeleton as <see cref="Avx512Panel{TVbmi, TGfni}"/> one block per ymm: nibbles unpacked as in
    /// <see cref="Avx2Block{TVnni}"/>, vpmaddubsw with the activations (memory operand) and vpmaddwd (with AVX-VNNI one
    /// vpdpbusd from zero), int → float, FMA with the broadcast d_w·d_x; the −8 offset comes off per eight blocks as
    /// one FMA of the weight scales with the panel's c into a correction accumulator. Eight blocks per step, two
    /// accumulators.
    /// </summary>
    private static float Avx2Panel<TVnni>(byte* w, byte* panel, int nb) where TVnni : struct, IIsaFlag
    {
        float* dx = Q8_0Panel.Scales(panel, nb);
        float* c = Q8_0Panel.Offsets(panel, nb);
        byte* y = panel;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero, corr = Vector256<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes);
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes, y += 256)
        {
            WeightPrefetch.Lines3(w);
            Vector256<float> dw = BlockScales.Half8(w, wOff);
            Vector256<float> d = dw * Vector256.Load(dx + b);
            corr = Fma.MultiplyAdd(dw, Vector256.Load(c + b), corr);
            acc0 = PanelBlock256<TVnni>(acc0, UnpackBlock256(w), y, BlockScales.Broadcast(d, 0));
            acc1 = PanelBlock256<TVnni>(acc1, UnpackBlock256(w + BlockBytes), y + 32, BlockScales.Broadcast(d, 1));
            acc0 = PanelBlock256<TVnni>(acc0, UnpackBlock256(w + 2 * BlockBytes), y + 64, BlockScales.Broadcast(d, 2));
            acc1 = PanelBlock256<TVnni>(acc1, UnpackBlock256(w + 3 * BlockBytes), y + 96, BlockScales.Broadcast(d, 3));
            acc0 = PanelBlock256<TVnni>(acc0, UnpackBlock256(w + 4 * BlockBytes), y + 128, BlockScales.Broadcast(d, 4));
            acc1 = PanelBlock256<TVnni>(acc1, UnpackBlock256(w + 5 * BlockBytes), y + 160, BlockScales.Broadcast(d, 5));
            acc0 = PanelBlock256<TVnni>(acc0, UnpackBlock256(w + 6 * BlockBytes), y + 192, BlockScales.Broadcast(d, 6));
            acc1 = PanelBlock256<TVnni>(acc1, UnpackBlock256(w + 7 * BlockBytes), y + 224, BlockScales.Broadcast(d, 7));
        }
        float sum = Vector256.Sum(acc0 + acc1) - Vector256.Sum(corr);
        if (b < nb) sum += ScalarPanelTail(w, y, dx + b, c + b, nb - b);
        return sum;
    }

    /// <summary>
    /// One row × four tokens on AVX2: each block unpacked once, four accumulators. With sixteen ymm registers the
    /// offset correction goes into each token's accumulator (one vfnmadd per eight blocks) instead of a separate one.
    /// </summary>
    private static void Avx2Panel4<TVnni>(byte* w, byte* panel, long panelBytes, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        byte* y0 = panel, y1 = panel + panelBytes, y2 = panel + 2 * panelBytes, y3 = panel + 3 * panelBytes;
        long sOff = nb * 32L, cOff = nb * 36L;
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
        Vector256<int> wOff = BlockScales.Offsets(BlockBytes);
        int b = 0;
        for (; b + 8 <= nb; b += 8, w += 8 * BlockBytes)
        {
            WeightPrefetch.Lines3(w);
            Vector256<float> dw = BlockScales.Half8(w, wOff);
            long fo = 4L * b, qo = 32L * b;
            Vector256<float> d0 = dw * Vector256.Load((float*)(y0 + sOff + fo));
            Vector256<float> d1 = dw * Vector256.Load((float*)(y1 + sOff + fo));
            Vector256<float> d2 = dw * Vector256.Load((float*)(y2 + sOff + fo));
            Vector256<float> d3 = dw * Vector256.Load((float*)(y3 + sOff + fo));
            a0 = Fma.MultiplyAddNegated(dw, Vector256.Load((float*)(y0 + cOff + fo)), a0);
            a1 = Fma.MultiplyAddNegated(dw, Vector256.Load((float*)(y1 + cOff + fo)), a1);
            a2 = Fma.MultiplyAddNegated(dw, Vector256.Load((float*)(y2 + cOff + fo)), a2);
            a3 = Fma.MultiplyAddNegated(dw, Vector256.Load((float*)(y3 + cOff + fo)), a3);
            byte* ya = y0 + qo, yb = y1 + qo, yc = y2 + qo, yd = y3 + qo;
            for (int k = 0; k < 8; k++)
            {
                Vector256<byte> q = UnpackBlock256(w + k * BlockBytes);
                Vector256<int> idx = Vector256.Create(k);
                int o = 32 * k;
                a0 = PanelBlock256<TVnni>(a0, q, ya + o, Avx2.PermuteVar8x32(d0, idx));
                a1 = PanelBlock256<TVnni>(a1, q, yb + o, Avx2.PermuteVar8x32(d1, idx));
                a2 = PanelBlock256<TVnni>(a2, q, yc + o, Avx2.PermuteVar8x32(d2, idx));
                a3 = PanelBlock256<TVnni>(a3, q, yd + o, Avx2.PermuteVar8x32(d3, idx));
            }
        }
        float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1), s2 = Vector256.Sum(a2), s3 = Vector256.Sum(a3);
        if (b < nb) PanelTail4(w, y0, y1, y2, y3, b, nb, ref s0, ref s1, ref s2, ref s3);
        dst[0] = s0;
        dst[dstStride] = s1;
        dst[2 * dstStride] = s2;
        dst[3 * dstStride] = s3;
    }

    /// <summary>The 32 nibbles of one block, low nibbles (elements 0..15) then high (16..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> UnpackBlock256(byte* wb)
    {
        Vector128<byte> packed = Vector128.Load(wb + 2);
        return Vector256.Create(packed, Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
    }

    /// <summary>acc + float(Σ q·y per 4-byte group)·d for one block of unsigned nibbles q.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PanelBlock256<TVnni>(Vector256<float> acc, Vector256<byte> q, byte* y, Vector256<float> d)
        where TVnni : struct, IIsaFlag
    {
        Vector256<int> isum;
        if (TVnni.Enabled)
        {
            isum = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, q, Vector256.Load((sbyte*)y));
        }
        else
        {
            Vector256<short> p = Avx2.MultiplyAddAdjacent(q, Vector256.Load((sbyte*)y));
            isum = Avx2.MultiplyAddAdjacent(p, Vector256.Create((short)1));
        }
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), d, acc);
    }
}
