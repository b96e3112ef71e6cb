using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// The eight-row GEMM over the repacked Q4_0 copy (<see cref="Repack"/>, the layout of <c>DotQ4_0.Packed.cs</c>) on
/// AVX2, with AVX-VNNI on or off. A ymm holds half a repacked block row-set: the same eight quant bytes of four rows, so
/// a group of eight rows is two four-row halves (bytes 0..31 and 32..63 of each 64-byte run). With sixteen ymm
/// registers the register block is four rows × four tokens: per block the half's two loads, the nibble split into four
/// vectors and the row scales in lane pairs once for the four tokens, and per token four vpmaddubsw of the unsigned
/// nibbles with a broadcast qword of activations (each ≤ 3810 per int16, the sum of four ≤ 15240: no saturation),
/// three vpaddw and one vpmaddwd (with AVX-VNNI four chained vpdpbusd instead), int → float, and
/// (d_x·isum − c/2)·d_w in two FMAs (c = d_x·8·Σy of the panel: the −8 of Q4_0, half per lane of the row's pair).
/// The group's two halves run one after the other over all blocks (the activations stay in L1).
/// </summary>
public static unsafe partial class DotQ4_0
{
    /// <summary>One repacked group (eight rows) · four tokens on AVX2: row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].</summary>
    public static void PackedDot4Avx2(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) { PackedAvx2x4<VnniOff>(group, panel, panelBytes, nb, dst, dstStride); return; }
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_0), Rung.Avx2);
        PackedAvx2x4<VnniOn>(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>One repacked group (eight rows) · one token on AVX2: row r to <paramref name="dst"/>[r].</summary>
    public static void PackedDot1Avx2(byte* group, byte* panel, int n, float* dst, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) { PackedAvx2x1<VnniOff>(group, panel, nb, dst); return; }
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ4_0), Rung.Avx2);
        PackedAvx2x1<VnniOn>(group, panel, nb, dst);
    }

    internal static void PackedAvx2x4<TVnni>(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        PackedAvx2Half4<TVnni>(group, 0, panel, panelBytes, nb, dst, dstStride);
        PackedAvx2Half4<TVnni>(group, 1, panel, panelBytes, nb, dst + 4, dstStride);
    }

    /// <summary>Rows 4·<paramref name="half"/> .. +3 of a group × four tokens; row r of the half, token t to dst[t·dstStride + r].</summary>
    private static void PackedAvx2Half4<TVnni>(byte* group, int half, byte* panel, long panelBytes, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        byte* y0 = panel, y1 = panel + panelBytes, y2 = panel + 2 * panelBytes, y3 = panel + 3 * panelBytes;
        long sOff = nb * 32L, cOff = nb * 36L;
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
        Vector256<int> pairs = Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3);
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        byte* pb = group;
        int ho = 32 * half;
        for (int b = 0; b < nb; b++, pb += PackedBlockBytes)
        {
            Sse.Prefetch0(pb + 4 * PackedBlockBytes);
            Sse.Prefetch0(pb + 4 * PackedBlockBytes + 64);
            Sse.Prefetch0(pb + 4 * PackedBlockBytes + 128);
            Vector256<float> dw = Avx2.PermuteVar8x32(Vector128.Load((float*)pb + 4 * half).ToVector256Unsafe(), pairs);
            Vector256<byte> lo = Vector256.Load(pb + 32 + ho), hi = Vector256.Load(pb + 96 + ho);
            Vector256<byte> w0 = lo & m4, w2 = (lo.AsUInt16() >>> 4).AsByte() & m4;
            Vector256<byte> w1 = hi & m4, w3 = (hi.AsUInt16() >>> 4).AsByte() & m4;
            long qo = 32L * b, fo = 4L * b;
            a0 = PackedToken256<TVnni>(a0, w0, w1, w2, w3, dw, y0 + qo, *(float*)(y0 + sOff + fo), *(float*)(y0 + cOff + fo));
            a1 = PackedToken256<TVnni>(a1, w0, w1, w2, w3, dw, y1 + qo, *(float*)(y1 + sOff + fo), *(float*)(y1 + cOff + fo));
            a2 = PackedToken256<TVnni>(a2, w0, w1, w2, w3, dw, y2 + qo, *(float*)(y2 + sOff + fo), *(float*)(y2 + cOff + fo));
            a3 = PackedToken256<TVnni>(a3, w0, w1, w2, w3, dw, y3 + qo, *(float*)(y3 + sOff + fo), *(float*)(y3 + cOff + fo));
        }
        FoldPairs256(a0, dst);
        FoldPairs256(a1, dst + dstStride);
        FoldPairs256(a2, dst + 2 * dstStride);
        FoldPairs256(a3, dst + 3 * dstStride);
    }

    /// <summary>One group × one token: both halves in the same block loop (two accumulators).</summary>
    internal static void PackedAvx2x1<TVnni>(byte* group, byte* panel, int nb, float* dst) where TVnni : struct, IIsaFlag
    {
        float* dx = Q8_0Panel.Scales(panel, nb), c = Q8_0Panel.Offsets(panel, nb);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        Vector256<int> pairs = Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3);
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        byte* pb = group;
        for (int b = 0; b < nb; b++, pb += PackedBlockBytes)
        {
            byte* y = panel + 32L * b;
            float dxb = dx[b], cb = c[b];
            Vector256<float> dw0 = Avx2.PermuteVar8x32(Vector128.Load((float*)pb).ToVector256Unsafe(), pairs);
            Vector256<byte> lo = Vector256.Load(pb + 32), hi = Vector256.Load(pb + 96);
            acc0 = PackedToken256<TVnni>(acc0, lo & m4, hi & m4, (lo.AsUInt16() >>> 4).AsByte() & m4, (hi.AsUInt16() >>> 4).AsByte() & m4,
                dw0, y, dxb, cb);
            Vector256<float> dw1 = Avx2.PermuteVar8x32(Vector128.Load((float*)pb + 4).ToVector256Unsafe(), pairs);
            lo = Vector256.Load(pb + 64);
            hi = Vector256.Load(pb + 128);
            acc1 = PackedToken256<TVnni>(acc1, lo & m4, hi & m4, (lo.AsUInt16() >>> 4).AsByte() & m4, (hi.AsUInt16() >>> 4).AsByte() & m4,
                dw1, y, dxb, cb);
        }
        FoldPairs256(acc0, dst);
        FoldPairs256(acc1, dst + 4);
    }

    /// <summary>acc + (d_x·isum − c/2)·d_w per lane, isum the lane's share of Σ q·y over the block (eight weights of one row per qword).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PackedToken256<TVnni>(Vector256<float> acc, Vector256<byte> w0, Vector256<byte> w1, Vector256<byte> w2,
        Vector256<byte> w3, Vector256<float> dw, byte* y, float dx, float c) where TVnni : struct, IIsaFlag
    {
        Vector256<int> isum;
        if (TVnni.Enabled)
        {
            isum = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, w0, Vector256.Create(*(long*)y).AsSByte());
            isum = AvxVnni.MultiplyWideningAndAdd(isum, w1, Vector256.Create(*(long*)(y + 8)).AsSByte());
            isum = AvxVnni.MultiplyWideningAndAdd(isum, w2, Vector256.Create(*(long*)(y + 16)).AsSByte());
            isum = AvxVnni.MultiplyWideningAndAdd(isum, w3, Vector256.Create(*(long*)(y + 24)).AsSByte());
        }
        else
        {
            Vector256<short> p = Avx2.MultiplyAddAdjacent(w0, Vector256.Create(*(long*)y).AsSByte())
                               + Avx2.MultiplyAddAdjacent(w1, Vector256.Create(*(long*)(y + 8)).AsSByte());
            p += Avx2.MultiplyAddAdjacent(w2, Vector256.Create(*(long*)(y + 16)).AsSByte())
               + Avx2.MultiplyAddAdjacent(w3, Vector256.Create(*(long*)(y + 24)).AsSByte());
            isum = Avx2.MultiplyAddAdjacent(p, Vector256.Create((short)1));
        }
        Vector256<float> s = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(dx), Vector256.Create(-0.5f * c));
        return Fma.MultiplyAdd(s, dw, acc);
    }

    /// <summary>dst[r] = lane 2r + lane 2r + 1, r = 0..3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FoldPairs256(Vector256<float> a, float* dst)
    {
        // vhaddps adds adjacent pairs per 128-bit lane: [a0+a1, a2+a3, ·, ·, a4+a5, a6+a7, ·, ·].
        Vector256<float> h = Avx.HorizontalAdd(a, a);
        Vector128<float> r = Sse.MoveLowToHigh(h.GetLower(), h.GetUpper());
        r.Store(dst);
    }
}
