using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotIQ4_XS
{
    /// <summary>
    /// Per pair of sub-blocks (A = 2p, B = 2p+1, 32 qs bytes): the low nibbles are [A 0..15 | B 0..15] and the high
    /// ones [A 16..31 | B 16..31], matched by activations loaded as [y 0..15 | y 32..47] and [y 16..31 | y 48..63];
    /// vpshufb maps them to the signed grid values, and vpmaddubsw takes |K| with the activations' signs flipped
    /// where K &lt; 0 (vpsign; |K|·|q8| ≤ 127·127, pair sums ≤ 32258: no saturation). vpmaddwd with [s_A ×8 | s_B ×8]
    /// (vpdpwssd under AVX-VNNI) sums into int32; one FMA with d·d_x per block. The eight scales ls − 32 are built
    /// per block with two vpsrlvd (even sub-blocks in the low 128-bit lane, odd in the high) and one vpackssdw, so
    /// each pair's scale vector is an in-lane vpshufb.
    /// </summary>
    private static float Avx2Loop<TVnni>(byte* w, byte* xq, int nb) where TVnni : struct, IIsaFlag
    {
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<sbyte> grid;
        fixed (byte* g = Grid) grid = Vector256.Load((sbyte*)g);
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            byte* yb = xq + b * ActivationQuant.Q8_KBlockBytes;
            Vector256<byte> lanes = Avx2Lanes(wb);
            byte* q = wb + QsOffset;
            sbyte* y = (sbyte*)(yb + ActivationQuant.Q8_KQsOffset);
            Vector256<int> isum = Avx2Pair<TVnni>(Vector256<int>.Zero, q, y, grid, lanes, 0);
            isum = Avx2Pair<TVnni>(isum, q + 32, y + 64, grid, lanes, 1);
            isum = Avx2Pair<TVnni>(isum, q + 64, y + 128, grid, lanes, 2);
            isum = Avx2Pair<TVnni>(isum, q + 96, y + 192, grid, lanes, 3);
            float d = Fp16.Read(wb) * Unsafe.ReadUnaligned<float>(yb);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(d), acc);
        }
        return Vector256.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2Pair<TVnni>(Vector256<int> isum, byte* q, sbyte* y, Vector256<sbyte> grid, Vector256<byte> lanes, int p)
        where TVnni : struct, IIsaFlag
    {
        Avx2Grid(q, grid, out Vector256<sbyte> kLo, out Vector256<sbyte> kHi);
        return Avx2PairToken<TVnni>(isum, kLo, kHi, y, PairScale(lanes, p));
    }

    /// <summary>A pair's 64 grid values: [A 0..15 | B 0..15] and [A 16..31 | B 16..31].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Avx2Grid(byte* q, Vector256<sbyte> grid, out Vector256<sbyte> kLo, out Vector256<sbyte> kHi)
    {
        Vector256<byte> packed = Vector256.Load(q);
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        kLo = Avx2.Shuffle(grid, (packed & m4).AsSByte());
        kHi = Avx2.Shuffle(grid, ((packed.AsUInt16() >>> 4).AsByte() & m4).AsSByte());
    }

    /// <summary>[s_A ×8 | s_B ×8] for pair p (word p of each lane of <c>lanes</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> PairScale(Vector256<byte> lanes, int p) =>
        Avx2.Shuffle(lanes, Vector256.Create((ushort)(2 * p | (2 * p + 1) << 8)).AsByte()).AsInt16();

    /// <summary>One token's share of a pair (the step of both AVX2 loops).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2PairToken<TVnni>(Vector256<int> isum, Vector256<sbyte> kLo, Vector256<sbyte> kHi, sbyte* y, Vector256<short> s)
        where TVnni : struct, IIsaFlag
    {
        Vector256<sbyte> yLo = Vector256.Create(Vector128.Load(y), Vector128.Load(y + 32));
        Vector256<sbyte> yHi = Vector256.Create(Vector128.Load(y + 16), Vector128.Load(y + 48));
        Vector256<short> pLo = Avx2.MultiplyAddAdjacent(Avx2.Abs(kLo), Avx2.Sign(yLo, kLo));
        Vector256<short> pHi = Avx2.MultiplyAddAdjacent(Avx2.Abs(kHi), Avx2.Sign(yHi, kHi));
        if (TVnni.Enabled) return AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(isum, pLo, s), pHi, s);
        return isum + Avx2.MultiplyAddAdjacent(pLo, s) + Avx2.MultiplyAddAdjacent(pHi, s);
    }

    /// <summary>The block's eight scales ls − 32 as int16: even sub-blocks in words 0..3 of the low lane, odd in the high lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Avx2Lanes(byte* wb)
    {
        Vector256<uint> shiftL = Vector256.Create(0u, 8, 16, 24, 4, 12, 20, 28);
        Vector256<uint> shiftH = Vector256.Create(0u, 4, 8, 12, 2, 6, 10, 14);
        Vector256<uint> ls = (Avx2.ShiftRightLogicalVariable(Vector256.Create(Unsafe.ReadUnaligned<uint>(wb + ScalesLOffset)), shiftL) & Vector256.Create(0xFu))
            | ((Avx2.ShiftRightLogicalVariable(Vector256.Create((uint)Unsafe.ReadUnaligned<ushort>(wb + ScalesHOffset)), shiftH) & Vector256.Create(3u)) << 4);
        Vector256<int> s32 = ls.AsInt32() - Vector256.Create(32);
        return Avx2.PackSignedSaturate(s32, s32).AsByte();
    }
}
