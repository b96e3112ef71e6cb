using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_0
{
    /// <summary>One repacked group (eight rows) · two tokens' panels: row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].</summary>
    public static void PackedDot2Avx512(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        Packed2(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>
    /// <see cref="Packed4"/> for two tokens (a decode step of two or three sequences): the weight side once per block
    /// for both, each token's lane sums in the same order as in <see cref="Packed4"/> and <see cref="Packed1"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Packed2(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) =>
        PackedSteps<Tokens2, ScalesFp16>(group, null, panel, panelBytes, nb, dst, dstStride, true);

    /// <summary>One repacked group (eight rows) · three tokens' panels: row r, token t to <paramref name="dst"/>[t·<paramref name="dstStride"/> + r].</summary>
    public static void PackedDot3Avx512(byte* group, byte* panel, long panelBytes, int n, float* dst, long dstStride)
    {
        int nb = Blocks(n);
        Require(Rung.Avx512);
        Packed3(group, panel, panelBytes, nb, dst, dstStride);
    }

    /// <summary>
    /// <see cref="Packed4"/> for three tokens (a decode step of three sequences): the weight side once per block for the
    /// three instead of once for a pair and again for the third, each token's sums in the same order as alone.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Packed3(byte* group, byte* panel, long panelBytes, int nb, float* dst, long dstStride) =>
        PackedSteps<Tokens3, ScalesFp16>(group, null, panel, panelBytes, nb, dst, dstStride, true);
}
