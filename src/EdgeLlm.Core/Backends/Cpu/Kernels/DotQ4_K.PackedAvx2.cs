using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_K
{
    /// <summary>
    /// One token · one repacked group (<see cref="Repack"/>), AVX2 (<typeparamref name="TVnni"/>: vpdpwssd instead of
    /// vpmaddwd + vpaddd). As <see cref="PackedLoop512"/> with 32-byte halves of each line: half h of line k holds
    /// sub-block 4k + h in its low nibbles and 4k + 2 + h in its high nibbles, so each of the eight vpmaddubsw of a row
    /// has one scale, widened from the row's broadcast scale bytes by a vpshufb; the activations are memory operands
    /// (sixteen ymm registers would not hold them beside the constants). Same vphaddd tree and block step.
    /// </summary>
    private static void PackedLoop256<TVnni>(byte* g, byte* xq, int nb, float* dst) where TVnni : struct, IIsaFlag
    {
        // Row r's sums at rs[r]: the rows' partial sums go through memory rather than eight live ymm (with sixteen
        // registers the JIT spilled the whole-block expression, several hundred stack references a block).
        Vector256<int>* rs = stackalloc Vector256<int>[PackRows];
        Vector256<float> acc = Vector256<float>.Zero, accMin = Vector256<float>.Zero;
        byte* meta = g;
        byte* qs = g + (PackedGroupBytes(nb * BlockSize) - (long)nb * PackedQsBytes);
        for (int b = 0; b < nb; b++, meta += MetaBytes, qs += PackedQsBytes)
        {
            byte* yb = xq + (long)b * ActivationQuant.Q8_KBlockBytes;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            byte* sc = meta + MetaScales;
            byte* pf = PrefetchBlock(g, b);
            for (int r = 0; r < PackRows; r++) rs[r] = Row256<TVnni>(qs + 128 * r, sc + 8 * r, pf + 128 * r, y);
            GroupBlock(ref acc, ref accMin, TableRowSums(rs), meta, yb);
        }
        (acc - accMin).Store(dst);
    }

    /// <summary>One row's 256 weights of a block: eight int32 partial sums whose total is Σ_j sc_j·Σ q4·q8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Row256<TVnni>(byte* q, byte* sc, byte* pf, sbyte* y) where TVnni : struct, IIsaFlag
    {
        Sse.Prefetch0(pf);
        Sse.Prefetch0(pf + 64);
        Vector256<byte> s = Vector256.Create(Unsafe.ReadUnaligned<ulong>(sc)).AsByte();
        Vector256<int> sum = Half256<TVnni>(Vector256<int>.Zero, Vector256.Load(q), y, s, 0);
        sum = Half256<TVnni>(sum, Vector256.Load(q + 32), y + 32, s, 1);
        sum = Half256<TVnni>(sum, Vector256.Load(q + 64), y + 128, s, 4);
        return Half256<TVnni>(sum, Vector256.Load(q + 96), y + 160, s, 5);
    }

    /// <summary>32 quant bytes: low nibbles (sub-block <paramref name="j"/>, activations at y) and high nibbles (sub-block j + 2, at y + 64).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Half256<TVnni>(Vector256<int> sum, Vector256<byte> v, sbyte* y, Vector256<byte> s, int j)
        where TVnni : struct, IIsaFlag
    {
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        Vector256<short> pLo = Avx2.MultiplyAddAdjacent(v & m4, Vector256.Load(y));
        Vector256<short> pHi = Avx2.MultiplyAddAdjacent((v.AsUInt16() >>> 4).AsByte() & m4, Vector256.Load(y + 64));
        Vector256<short> sLo = Avx2.Shuffle(s, Vector256.Create((ushort)(0x8000 | j)).AsByte()).AsInt16();
        Vector256<short> sHi = Avx2.Shuffle(s, Vector256.Create((ushort)(0x8000 | (j + 2))).AsByte()).AsInt16();
        if (TVnni.Enabled) return AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(sum, pLo, sLo), pHi, sHi);
        return sum + Avx2.MultiplyAddAdjacent(pLo, sLo) + Avx2.MultiplyAddAdjacent(pHi, sHi);
    }
}
