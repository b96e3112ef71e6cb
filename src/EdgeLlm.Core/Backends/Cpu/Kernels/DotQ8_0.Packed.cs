using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

/// <summary>
/// Q8_0 weights repacked for the GEMM on the AVX-512 rung with AVX-VNNI (and the AVX2 rung, <c>DotQ8_0.PackedAvx2.cs</c>: these
/// loops with AVX-VNNI, a vpmaddubsw form without): eight rows interleaved per block, so one ymm
/// holds four consecutive weights of each of the eight rows (one dword lane per row) and vpdpbusd adds each row's
/// four products into its own lane: no horizontal sums, no per-block scale shuffles, one broadcast activation dword
/// shared by the eight rows. A group of eight rows (rows 8g .. 8g+7) takes exactly the bytes of its eight stored rows:
/// first the quants, 256 bytes per block — for k = 0..7, 32 bytes holding quants 4k .. 4k+3 of row 0, of row 1, … of
/// row 7, each stored as q + 128 (q xor 0x80: an unsigned byte, which vpdpbusd needs on its first operand) — then the
/// fp16 scales, 16 bytes per block (the eight rows' d). Per block and token: eight vpdpbusd of the stored bytes with
/// the token's activation dwords (Σ (q + 128)·y per row, ≤ 32·255·127 in int32: exact), then
/// (d_x·isum − 128·d_x·Σy)·d_w in two FMAs; 128·d_x·Σy is 16·c of the <see cref="Q8_0Panel"/> (c = d_x·8·Σy, so the
/// product by 16 is exact). The weight side (eight loads, the scales widened with <see cref="Fp16"/>) once per block
/// for four tokens (<see cref="Packed4"/>) or for one (<see cref="Packed1"/>, decode: a fraction of the instructions
/// of eight one-row loops, which each reduce their row horizontally). The result differs from the one-row loops'
/// exact integer Σ q·y per block by float rounding only.
/// </summary>
public static unsafe partial class DotQ8_0
{
    /// <summary>Rows per repacked group.</summary>
    public const int PackRows = 8;

    /// <summary>Bytes of one block of a repacked group: eight rows' 32 quants and their eight fp16 scales.</summary>
    public const int PackedBlockBytes = PackRows * BlockBytes;

    /// <summary>Bytes the repacked copy of the first rows / 8 · 8 rows of <paramref name="n"/> values takes.</summary>
    public static long PackedBytes(long rows, int n) => rows / PackRows * (long)Blocks(n) * PackedBlockBytes;

    /// <summary>
    /// Repacks the whole groups of eight rows of a Q8_0 matrix (<paramref name="rows"/> rows of <paramref name="n"/>
    /// values, <paramref name="rowBytes"/> apart) into <paramref name="dst"/> (<see cref="PackedBytes"/> bytes).
    /// </summary>
    public static void Repack(byte* src, long rowBytes, long rows, int n, byte* dst)
    {
        int nb = Blocks(n);
        for (long g = 0; g < rows / PackRows; g++)
        {
            byte* pg = dst + g * nb * (long)PackedBlockBytes;
            ushort* scales = (ushort*)(pg + nb * 256L);
            for (int b = 0; b < nb; b++)
            {
                byte* pb = pg + b * 256L;
                for (int r = 0; r < PackRows; r++)
                {
                    byte* blk = src + (g * PackRows + r) * rowBytes + b * (long)BlockBytes;
                    scales[b * PackRows + r] = Unsafe.ReadUnaligned<ushort>(blk);
                    for (int k = 0; k < 8; k++)
                        Unsafe.WriteUnaligned(pb + 32 * k + 4 * r, Unsafe.ReadUnaligned<uint>(blk + 2 + 4 * k) ^ 0x80808080u);
                }
            }
        }
    }

    /// <summary>Whether the repacked GEMM can run here (the AVX-512 rung's CPU has AVX-VNNI).</summary>
    public static bool PackedSupported => KernelRung.IsSupported(Rung.Avx512) && AvxVnni.IsSupported;

    /// <summary>
    /// One repacked group (eight rows) · four tokens' panels (<paramref name="panel"/> + t·<paramref name="panelBytes"/>):
    /// row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].
    /// </summary>
    public static void PackedDot4Vnni(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        RequirePacked();
        Packed4(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>One repacked group (eight rows) · one token's panel: row r to <paramref name="dst"/>[r].</summary>
    public static void PackedDot1Vnni(byte* group, byte* panel, int n, float* dst)
    {
        int nb = Blocks(n);
        RequirePacked();
        Packed1(group, panel, nb, dst);
    }

    private static void RequirePacked()
    {
        if (!PackedSupported) KernelRung.ThrowUnsupported(nameof(DotQ8_0), Rung.Avx512);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Packed4(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride)
    {
        byte* y0 = panel, y1 = panel + panelBytes, y2 = panel + 2 * panelBytes, y3 = panel + 3 * panelBytes;
        // The panel's offset terms c follow its nb scales: c[b] = dx[nb + b].
        float* dx0 = Q8_0Panel.Scales(y0, nb), dx1 = Q8_0Panel.Scales(y1, nb), dx2 = Q8_0Panel.Scales(y2, nb), dx3 = Q8_0Panel.Scales(y3, nb);
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
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
            Vector256<int> j0 = Vector256<int>.Zero, j1 = Vector256<int>.Zero, j2 = Vector256<int>.Zero, j3 = Vector256<int>.Zero;
            for (int k = 0; k < 8; k += 2)
            {
                Vector256<byte> w = Vector256.Load(pb + 32 * k);
                i0 = AvxVnni.MultiplyWideningAndAdd(i0, w, Quad(y0 + 4 * k));
                i1 = AvxVnni.MultiplyWideningAndAdd(i1, w, Quad(y1 + 4 * k));
                i2 = AvxVnni.MultiplyWideningAndAdd(i2, w, Quad(y2 + 4 * k));
                i3 = AvxVnni.MultiplyWideningAndAdd(i3, w, Quad(y3 + 4 * k));
                Vector256<byte> v = Vector256.Load(pb + 32 + 32 * k);
                j0 = AvxVnni.MultiplyWideningAndAdd(j0, v, Quad(y0 + 4 * k + 4));
                j1 = AvxVnni.MultiplyWideningAndAdd(j1, v, Quad(y1 + 4 * k + 4));
                j2 = AvxVnni.MultiplyWideningAndAdd(j2, v, Quad(y2 + 4 * k + 4));
                j3 = AvxVnni.MultiplyWideningAndAdd(j3, v, Quad(y3 + 4 * k + 4));
            }
            Vector256<float> dw = Scales8(dh);
            a0 = PackedToken(a0, i0 + j0, dw, dx0[b], dx0[nb + b]);
            a1 = PackedToken(a1, i1 + j1, dw, dx1[b], dx1[nb + b]);
            a2 = PackedToken(a2, i2 + j2, dw, dx2[b], dx2[nb + b]);
            a3 = PackedToken(a3, i3 + j3, dw, dx3[b], dx3[nb + b]);
        }
        a0.Store(dst);
        a1.Store(dst + dstStride);
        a2.Store(dst + 2 * dstStride);
        a3.Store(dst + 3 * dstStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Packed1(byte* group, byte* panel, int nb, float* dst)
    {
        float* dx = Q8_0Panel.Scales(panel, nb), c = Q8_0Panel.Offsets(panel, nb);
        Vector256<float> acc = Vector256<float>.Zero;
        byte* pb = group, y = panel;
        ushort* dh = (ushort*)(group + nb * 256L);
        for (int b = 0; b < nb; b++, pb += 256, dh += PackRows, y += 32)
        {
            byte* ahead = pb + WeightPrefetch.Distance;
            Sse.Prefetch0(ahead);
            Sse.Prefetch0(ahead + 64);
            Sse.Prefetch0(ahead + 128);
            Sse.Prefetch0(ahead + 192);
            Vector256<int> i0 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Vector256.Load(pb), Quad(y));
            Vector256<int> i1 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Vector256.Load(pb + 32), Quad(y + 4));
            Vector256<int> i2 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Vector256.Load(pb + 64), Quad(y + 8));
            Vector256<int> i3 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Vector256.Load(pb + 96), Quad(y + 12));
            i0 = AvxVnni.MultiplyWideningAndAdd(i0, Vector256.Load(pb + 128), Quad(y + 16));
            i1 = AvxVnni.MultiplyWideningAndAdd(i1, Vector256.Load(pb + 160), Quad(y + 20));
            i2 = AvxVnni.MultiplyWideningAndAdd(i2, Vector256.Load(pb + 192), Quad(y + 24));
            i3 = AvxVnni.MultiplyWideningAndAdd(i3, Vector256.Load(pb + 224), Quad(y + 28));
            acc = PackedToken(acc, (i0 + i1) + (i2 + i3), Scales8(dh), dx[b], c[b]);
        }
        acc.Store(dst);
    }

    /// <summary>The eight rows' fp16 block scales at <paramref name="h"/> as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Scales8(ushort* h) => Fp16.ToFloat(Avx2.ConvertToVector256Int32(Vector128.Load(h)).AsUInt32());

    /// <summary>The four activations at <paramref name="y"/> broadcast to every dword lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Quad(byte* y) => Vector256.Create(Unsafe.ReadUnaligned<int>(y)).AsSByte();

    /// <summary>acc + (d_x·isum − 16·c)·d_w per row lane: isum = Σ (q + 128)·y over the block, 16·c = 128·d_x·Σy.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PackedToken(Vector256<float> acc, Vector256<int> isum, Vector256<float> dw, float dx, float c)
    {
        Vector256<float> s = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(dx), Vector256.Create(-16f * c));
        return Fma.MultiplyAdd(s, dw, acc);
    }
}
