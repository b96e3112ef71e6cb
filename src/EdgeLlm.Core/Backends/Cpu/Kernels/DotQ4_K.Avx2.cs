using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class DotQ4_K
{
    /// <summary>
    /// Per 64-weight chunk: 32 packed bytes → low nibbles (sub-block 2c) and high nibbles (2c+1), vpmaddubsw with the
    /// matching 32 activations (int16, ≤ 3810), then vpmaddwd with the sub-block scale broadcast as int16 (pshufb) —
    /// fused into AVX-VNNI vpdpwssd when available — summed in int32 over the block. The mins term is one vpmaddwd of
    /// the 16 bsums with [m0, m0, m1, m1, …], kept in its own float accumulator and subtracted at the end. Scales, mins,
    /// d and dmin are unpacked and converted in SIMD registers (<see cref="UnpackScalesMins"/>, <see cref="DAndDmin"/>).
    /// </summary>
    private static float Avx2Loop<TVnni>(byte* w, byte* xq, int nb) where TVnni : struct, IIsaFlag
    {
        Vector256<float> acc = Vector256<float>.Zero, accMin = Vector256<float>.Zero;
        for (int b = 0; b < nb; b++)
        {
            byte* wb = w + b * BlockBytes;
            WeightPrefetch.Lines3(wb);
            Vector128<byte> sm = UnpackScalesMins(wb + ScalesOffset);
            Vector128<short> sc16 = Sse41.ConvertToVector128Int16(sm);
            Token256<TVnni>(ref acc, ref accMin, xq + b * ActivationQuant.Q8_KBlockBytes, wb + QsOffset,
                Vector256.Create(sc16, sc16).AsByte(), MinPairs(sm), DAndDmin(wb));
        }
        return Vector256.Sum(acc) - Vector256.Sum(accMin);
    }

    /// <summary>Sub-blocks j and j+1 (one 64-weight chunk); scales holds sc_0..7 as int16 in both 128-bit halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2Chunk<TVnni>(Vector256<int> isum, byte* q, sbyte* y, Vector256<byte> scales, int j)
        where TVnni : struct, IIsaFlag
    {
        Vector256<byte> packed = Vector256.Load(q);
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        Vector256<short> pLo = Avx2.MultiplyAddAdjacent(packed & m4, Vector256.Load(y));
        Vector256<short> pHi = Avx2.MultiplyAddAdjacent((packed.AsUInt16() >>> 4).AsByte() & m4, Vector256.Load(y + 32));
        Vector256<short> sLo = Avx2.Shuffle(scales, Vector256.Create((ushort)(0x0100 + 0x0202 * j)).AsByte()).AsInt16();
        Vector256<short> sHi = Avx2.Shuffle(scales, Vector256.Create((ushort)(0x0100 + 0x0202 * (j + 1))).AsByte()).AsInt16();
        if (TVnni.Enabled)
            return AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(isum, pLo, sLo), pHi, sHi);
        return isum + Avx2.MultiplyAddAdjacent(pLo, sLo) + Avx2.MultiplyAddAdjacent(pHi, sHi);
    }
}
