using System.Runtime.Intrinsics;
using EdgeLlm.Backends.Cpu.Kernels;

namespace EdgeLlm.Tests.NeonFp16;

/// <summary>
/// The fp16 → fp32 conversion of the NEON block-scale loops (<see cref="Fp16.ToFloatMul"/>: shift, multiply by 2^112,
/// inf/NaN selected) and the four-block gathers built on it, as plain managed Vector128 code checked on this host
/// against .NET's own (float)Half, which shares no code with them.
/// </summary>
public unsafe class NeonScalesTests
{
    private static uint Want(int h) => BitConverter.SingleToUInt32Bits((float)BitConverter.UInt16BitsToHalf((ushort)h));

    /// <summary>Same bits, except that a NaN only needs to be a NaN with the expected sign and payload (quiet bit aside).</summary>
    private static bool Same(uint want, float got)
    {
        uint g = BitConverter.SingleToUInt32Bits(got);
        return float.IsNaN(BitConverter.UInt32BitsToSingle(want)) ? float.IsNaN(got) && (g | 0x00400000u) == (want | 0x00400000u) : g == want;
    }

    [Fact]
    public void ToFloatMulIsExactForEveryHalfWhateverTheHighBits()
    {
        uint[] high = { 0u, 0xffff0000u, 0x12340000u, 0x80000000u };
        for (int h0 = 0; h0 < 65536; h0 += 4)
            foreach (uint hi in high)
            {
                Vector128<float> got = Fp16.ToFloatMul(Vector128.Create(hi | (uint)h0, hi | (uint)(h0 + 1), hi | (uint)(h0 + 2), hi | (uint)(h0 + 3)));
                for (int i = 0; i < 4; i++)
                    Assert.True(Same(Want(h0 + i), got[i]), $"0x{h0 + i:X4} (high 0x{hi:X8}): 0x{BitConverter.SingleToUInt32Bits(got[i]):X8} vs 0x{Want(h0 + i):X8}");
            }
    }

    [Theory]
    [InlineData(0x0000, 0x00000000u)] // +0
    [InlineData(0x8000, 0x80000000u)] // -0 keeps its sign
    [InlineData(0x0001, 0x33800000u)] // smallest subnormal: 2^-24
    [InlineData(0x83ff, 0xb87fc000u)] // largest subnormal, negative: -1023·2^-24
    [InlineData(0x0400, 0x38800000u)] // smallest normal: 2^-14
    [InlineData(0x3c00, 0x3f800000u)] // 1
    [InlineData(0x7bff, 0x477fe000u)] // max: 65504
    [InlineData(0xfbff, 0xc77fe000u)] // -65504
    [InlineData(0x7c00, 0x7f800000u)] // +inf
    [InlineData(0xfc00, 0xff800000u)] // -inf
    [InlineData(0x7e00, 0x7fc00000u)] // quiet NaN
    [InlineData(0xfd01, 0xffa02000u)] // signalling NaN, negative, payload kept
    public void EdgeCasesGiveTheseBits(int half, uint bits)
    {
        Vector128<float> got = Fp16.ToFloatMul(Vector128.Create((uint)half));
        for (int i = 0; i < 4; i++) Assert.Equal(bits, BitConverter.SingleToUInt32Bits(got[i]));
    }

    [Theory]
    [InlineData(18, 34)] // Q4_0 / IQ4_NL weights against Q8_0 activations
    [InlineData(34, 34)] // Q8_0
    [InlineData(22, 34)] // Q5_0
    [InlineData(20, 36)] // Q4_1 against Q8_1 (d at 0, m/s at 2)
    [InlineData(24, 36)] // Q5_1
    public void FourBlockGathersMatchScalarReads(int wStride, int xStride)
    {
        var rng = new Random(wStride * 100 + xStride);
        var w = new byte[4 * wStride];
        var x = new byte[4 * xStride];
        for (int round = 0; round < 2000; round++)
        {
            rng.NextBytes(w);
            rng.NextBytes(x);
            if (round % 3 == 0)
                for (int k = 0; k < 4; k++) w[k * wStride + 1] &= 0x83; // subnormal or ±0 scales, some of them
            fixed (byte* pw = w) fixed (byte* px = x)
            {
                for (int offset = 0; offset <= 2; offset += 2)
                {
                    Vector128<float> hw = NeonScales.Half4(pw + offset, wStride);
                    Vector128<float> d = NeonScales.Products4(pw + offset, wStride, px + offset, xStride);
                    for (int k = 0; k < 4; k++)
                    {
                        float fw = (float)BitConverter.UInt16BitsToHalf((ushort)(w[k * wStride + offset] | (w[k * wStride + offset + 1] << 8)));
                        float fx = (float)BitConverter.UInt16BitsToHalf((ushort)(x[k * xStride + offset] | (x[k * xStride + offset + 1] << 8)));
                        Assert.True(Same(BitConverter.SingleToUInt32Bits(fw), hw[k]), $"round {round} block {k}: {hw[k]} vs {fw}");
                        float want = fw * fx;
                        Assert.True(float.IsNaN(want) ? float.IsNaN(d[k]) : BitConverter.SingleToUInt32Bits(d[k]) == BitConverter.SingleToUInt32Bits(want),
                            $"round {round} block {k}: {d[k]} vs {want}");
                    }
                }
            }
        }
    }
}
