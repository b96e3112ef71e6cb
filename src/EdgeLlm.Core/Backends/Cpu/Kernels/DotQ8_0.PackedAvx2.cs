using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// The eight-row GEMM over the repacked Q8_0 copy (<see cref="Repack"/>, the layout of <c>DotQ8_0.Packed.cs</c>: per
/// block eight ymm, each holding four consecutive weights of the eight rows as q + 128, then the eight fp16 scales) on
/// the AVX2 rung. The layout is already 256-bit wide, so the register block is eight rows × four tokens as on AVX-512.
/// With AVX-VNNI the loops are those of the AVX-512 rung (<see cref="Packed4"/>, <see cref="Packed1"/>: vpdpbusd of the
/// unsigned bytes with a broadcast activation dword, the 128·Σy offset taken off in float). Without it vpmaddubsw
/// cannot take q + 128 (a pair of 255·127 products overflows int16), so per weight ymm the signed q is recovered once
/// (xor 0x80) and |q| taken once for the four tokens, and each token gets vpsignb of its broadcast dword by q,
/// vpmaddubsw (|q| ≤ 128, |y| ≤ 127: a pair ≤ 32512, no saturation), vpmaddwd with ones and vpaddd into its own int32
/// lanes: Σ q·y per row exactly, then d_x·isum·d_w in one multiply and one FMA per block. In both variants the integer
/// block sums are exact, so the four-token and one-token loops give a token the same bits (batch invariance); they
/// differ from the one-row loops over the stored rows by float rounding only.
/// </summary>
public static unsafe partial class DotQ8_0
{
    /// <summary>One repacked group (eight rows) · four tokens' panels on AVX2: row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].</summary>
    public static void PackedDot4Avx2(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) { PackedAvx2x4<VnniOff>(group, panel, panelBytes, nb, dst, dstStride); return; }
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ8_0), Rung.Avx2);
        PackedAvx2x4<VnniOn>(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>One repacked group (eight rows) · one token's panel on AVX2: row r to <paramref name="dst"/>[r].</summary>
    public static void PackedDot1Avx2(byte* group, byte* panel, int n, float* dst, bool vnni)
    {
        int nb = Blocks(n);
        Require(Rung.Avx2);
        if (!vnni) { PackedAvx2x1<VnniOff>(group, panel, nb, dst); return; }
        if (!AvxVnni.IsSupported) KernelRung.ThrowUnsupported(nameof(DotQ8_0), Rung.Avx2);
        PackedAvx2x1<VnniOn>(group, panel, nb, dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PackedAvx2x4<TVnni>(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride)
        where TVnni : struct, IIsaFlag
    {
        if (TVnni.Enabled) Packed4(group, panel, panelBytes, nb, dst, dstStride);
        else SignedPacked4(group, panel, panelBytes, nb, dst, dstStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PackedAvx2x1<TVnni>(byte* group, byte* panel, int nb, float* dst) where TVnni : struct, IIsaFlag
    {
        if (TVnni.Enabled) Packed1(group, panel, nb, dst);
        else SignedPacked1(group, panel, nb, dst);
    }

    /// <summary>Eight rows × four tokens without AVX-VNNI (vpsignb + vpmaddubsw + vpmaddwd per weight ymm and token).</summary>
    private static void SignedPacked4(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride)
    {
        byte* y0 = panel, y1 = panel + panelBytes, y2 = panel + 2 * panelBytes, y3 = panel + 3 * panelBytes;
        float* dx0 = Q8_0Panel.Scales(y0, nb), dx1 = Q8_0Panel.Scales(y1, nb), dx2 = Q8_0Panel.Scales(y2, nb), dx3 = Q8_0Panel.Scales(y3, nb);
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
        Vector256<byte> bias = Vector256.Create((byte)0x80);
        Vector256<short> ones = Vector256.Create((short)1);
        byte* pb = group;
        ushort* dh = (ushort*)(group + nb * 256L);
        for (int b = 0; b < nb; b++, pb += 256, dh += PackRows, y0 += 32, y1 += 32, y2 += 32, y3 += 32)
        {
            byte* ahead = pb + WeightPrefetch.Distance;
            Sse.Prefetch0(ahead);
            Sse.Prefetch0(ahead + 64);
            Sse.Prefetch0(ahead + 128);
            Sse.Prefetch0(ahead + 192);
            Vector256<int> i0 = Vector256<int>.Zero, i1 = Vector256<int>.Zero, i2 = Vector256<int>.Zero, i3 = Vector256<int>.Zero;
            for (int k = 0; k < 8; k++)
            {
                Vector256<sbyte> q = (Vector256.Load(pb + 32 * k) ^ bias).AsSByte();
                Vector256<byte> aq = Avx2.Abs(q);
                i0 = SignedQuad(i0, aq, q, y0 + 4 * k, ones);
                i1 = SignedQuad(i1, aq, q, y1 + 4 * k, ones);
                i2 = SignedQuad(i2, aq, q, y2 + 4 * k, ones);
                i3 = SignedQuad(i3, aq, q, y3 + 4 * k, ones);
            }
            Vector256<float> dw = Scales8(dh);
            a0 = SignedToken(a0, i0, dw, dx0[b]);
            a1 = SignedToken(a1, i1, dw, dx1[b]);
            a2 = SignedToken(a2, i2, dw, dx2[b]);
            a3 = SignedToken(a3, i3, dw, dx3[b]);
        }
        a0.Store(dst);
        a1.Store(dst + dstStride);
        a2.Store(dst + 2 * dstStride);
        a3.Store(dst + 3 * dstStride);
    }

    /// <summary>Eight rows × one token without AVX-VNNI: the block's eight weight ymm into four int32 accumulators.</summary>
    private static void SignedPacked1(byte* group, byte* panel, int nb, float* dst)
    {
        float* dx = Q8_0Panel.Scales(panel, nb);
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<byte> bias = Vector256.Create((byte)0x80);
        Vector256<short> ones = Vector256.Create((short)1);
        byte* pb = group, y = panel;
        ushort* dh = (ushort*)(group + nb * 256L);
        for (int b = 0; b < nb; b++, pb += 256, dh += PackRows, y += 32)
        {
            byte* ahead = pb + WeightPrefetch.Distance;
            Sse.Prefetch0(ahead);
            Sse.Prefetch0(ahead + 64);
            Sse.Prefetch0(ahead + 128);
            Sse.Prefetch0(ahead + 192);
            Vector256<int> i0 = Vector256<int>.Zero, i1 = Vector256<int>.Zero, i2 = Vector256<int>.Zero, i3 = Vector256<int>.Zero;
            for (int k = 0; k < 8; k += 4)
            {
                Vector256<sbyte> q0 = (Vector256.Load(pb + 32 * k) ^ bias).AsSByte();
                Vector256<sbyte> q1 = (Vector256.Load(pb + 32 * k + 32) ^ bias).AsSByte();
                Vector256<sbyte> q2 = (Vector256.Load(pb + 32 * k + 64) ^ bias).AsSByte();
                Vector256<sbyte> q3 = (Vector256.Load(pb + 32 * k + 96) ^ bias).AsSByte();
                i0 = SignedQuad(i0, Avx2.Abs(q0), q0, y + 4 * k, ones);
                i1 = SignedQuad(i1, Avx2.Abs(q1), q1, y + 4 * k + 4, ones);
                i2 = SignedQuad(i2, Avx2.Abs(q2), q2, y + 4 * k + 8, ones);
                i3 = SignedQuad(i3, Avx2.Abs(q3), q3, y + 4 * k + 12, ones);
            }
            acc = SignedToken(acc, (i0 + i1) + (i2 + i3), Scales8(dh), dx[b]);
        }
        acc.Store(dst);
    }

    /// <summary>
    /// isum + Σ over each row's four weights of q·y: vpsignb of the token's broadcast dword <paramref name="y"/> by q,
    /// vpmaddubsw with |q|, vpmaddwd with ones (one int32 lane per row).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SignedQuad(Vector256<int> isum, Vector256<byte> aq, Vector256<sbyte> q, byte* y, Vector256<short> ones)
    {
        Vector256<sbyte> sy = Avx2.Sign(Quad(y), q);
        return isum + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aq, sy), ones);
    }

    /// <summary>acc + (d_x·isum)·d_w per row lane, isum = Σ q·y over the block (signed weights: no offset term).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> SignedToken(Vector256<float> acc, Vector256<int> isum, Vector256<float> dw, float dx) =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum) * Vector256.Create(dx), dw, acc);
}
