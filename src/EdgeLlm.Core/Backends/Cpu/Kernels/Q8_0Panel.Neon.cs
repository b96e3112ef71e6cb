using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace EdgeLlm.Backends.Cpu.Kernels;

public static unsafe partial class Q8_0Panel
{
    /// <summary>
    /// <see cref="FromBlocks"/> on arm64, four blocks at a time: each block's two 16-byte quant halves loaded and stored
    /// to the panel, their sum widened pairwise (saddlp into int16, add, saddlp into int32) and the four blocks' partial
    /// sums pair-added (addp twice) into one vector of the four block sums (exact integers); the four fp16 scales converted
    /// in one vector (<see cref="NeonScales.Half4"/>, equal to <see cref="Fp16.Read"/>) and c = d·(8·Σq) as one vector
    /// product of the same two floats the scalar code multiplies. The last nb mod 4 blocks one by one in the same way.
    /// The bytes equal <see cref="FromBlocksScalar"/>'s (kernelcheck asserts it). The panel is made once per token and
    /// matmul for the NEON GEMMs (Q4_0, Q8_0; decode too), where the scalar sum of 32 bytes per block was ~130 instructions.
    /// </summary>
    internal static void FromBlocksNeon(byte* xq, byte* panel, int nb) => FromBlocksNeon(xq, panel, nb, 0, nb);

    /// <summary>Blocks [b0, b1) of <see cref="FromBlocksNeon(byte*, byte*, int)"/>'s panel, four at a time from b0.</summary>
    internal static void FromBlocksNeon(byte* xq, byte* panel, int nb, int b0, int b1)
    {
        const int XB = ActivationQuant.Q8_0BlockBytes;
        float* dx = Scales(panel, nb);
        float* c = Offsets(panel, nb);
        int b = b0;
        for (; b + 4 <= b1; b += 4)
        {
            byte* y = xq + b * XB;
            byte* q = panel + b * 32;
            Vector128<int> s01 = AdvSimd.Arm64.AddPairwise(BlockSum(y, q), BlockSum(y + XB, q + 32));
            Vector128<int> s23 = AdvSimd.Arm64.AddPairwise(BlockSum(y + 2 * XB, q + 64), BlockSum(y + 3 * XB, q + 96));
            Vector128<int> s = AdvSimd.Arm64.AddPairwise(s01, s23);
            Vector128<float> d = NeonScales.Half4(y, XB);
            d.Store(dx + b);
            (d * AdvSimd.ConvertToSingle(Vector128.ShiftLeft(s, 3))).Store(c + b);
        }
        for (; b < b1; b++)
        {
            byte* y = xq + b * XB;
            int s = AdvSimd.Arm64.AddAcross(BlockSum(y, panel + b * 32)).ToScalar();
            float d = NeonScales.Half1(y);
            dx[b] = d;
            c[b] = d * (8 * s);
        }
    }

    /// <summary>Copies the 32 quants of the Q8_0 block at <paramref name="y"/> to <paramref name="q"/>; their sum spread over four int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> BlockSum(byte* y, byte* q)
    {
        Vector128<sbyte> lo = AdvSimd.LoadVector128((sbyte*)(y + 2)), hi = AdvSimd.LoadVector128((sbyte*)(y + 18));
        lo.Store((sbyte*)q);
        hi.Store((sbyte*)(q + 16));
        return AdvSimd.AddPairwiseWidening(AdvSimd.AddPairwiseWidening(lo) + AdvSimd.AddPairwiseWidening(hi));
    }
}
