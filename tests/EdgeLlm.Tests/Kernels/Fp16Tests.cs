using System.Runtime.Intrinsics;
using EdgeLlm.Backends.Cpu.Kernels;

namespace EdgeLlm.Tests.Kernels;

/// <summary>Fp16.ToFloat, scalar and every vector width, against .NET's (float)Half on all 65,536 bit patterns.</summary>
public class Fp16Tests
{
    private static uint Want(int h) => BitConverter.SingleToUInt32Bits((float)BitConverter.UInt16BitsToHalf((ushort)h));

    private static bool Same(uint want, float got)
    {
        float w = BitConverter.UInt32BitsToSingle(want);
        return float.IsNaN(w) ? float.IsNaN(got) && (BitConverter.SingleToUInt32Bits(got) & 0x80000000) == (want & 0x80000000)
            : BitConverter.SingleToUInt32Bits(got) == want;
    }

    [Fact]
    public void ScalarIsExactForEveryHalf()
    {
        for (int h = 0; h < 65536; h++)
            Assert.True(Same(Want(h), Fp16.ToFloat((uint)h)), $"0x{h:X4}: {Fp16.ToFloat((uint)h)} vs {BitConverter.UInt32BitsToSingle(Want(h))}");
    }

    [Fact]
    public void VectorsAreExactForEveryHalf()
    {
        var lanes = new uint[16];
        for (int h0 = 0; h0 < 65536; h0 += 16)
        {
            for (int i = 0; i < 16; i++) lanes[i] = (uint)(h0 + i);
            var v512 = Fp16.ToFloat(Vector512.Create(lanes));
            var v256 = Fp16.ToFloat(Vector256.Create(lanes.AsSpan(0, 8)));
            var v128 = Fp16.ToFloat(Vector128.Create(lanes.AsSpan(8, 4)));
            for (int i = 0; i < 16; i++) Assert.True(Same(Want(h0 + i), v512[i]), $"512 lane 0x{h0 + i:X4}");
            for (int i = 0; i < 8; i++) Assert.True(Same(Want(h0 + i), v256[i]), $"256 lane 0x{h0 + i:X4}");
            for (int i = 0; i < 4; i++) Assert.True(Same(Want(h0 + 8 + i), v128[i]), $"128 lane 0x{h0 + 8 + i:X4}");
        }
    }

    [Fact]
    public void SubnormalHalvesNeverMakeADenormalFloat()
    {
        // The smallest subnormal half is 2^-24, a normal float: the conversion's result is exact and normal.
        Assert.Equal(MathF.Pow(2, -24), Fp16.ToFloat(1u));
        Assert.Equal(1023 * MathF.Pow(2, -24), Fp16.ToFloat(0x3ffu));
        Assert.Equal(-MathF.Pow(2, -14), Fp16.ToFloat(0x8400u));
    }
}
