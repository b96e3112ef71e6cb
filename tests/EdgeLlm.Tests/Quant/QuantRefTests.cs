using EdgeLlm.Gguf;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Quant;

public unsafe class QuantRefTests
{
    public static TheoryData<GgmlType> BlockTypes => new() { GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL, GgmlType.Q4_K, GgmlType.Q6_K };

    [Theory]
    [MemberData(nameof(BlockTypes))]
    public void DispatchesToTheBlockFormat(GgmlType type)
    {
        const int n = 512;
        float[] src = QuantTestData.Gaussian(n, seed: 900 + (int)type);
        float[] x = QuantTestData.Gaussian(n, seed: 1000 + (int)type);
        var viaRef = new byte[GgmlTypes.RowBytes(type, n)];
        var direct = new byte[viaRef.Length];
        var yRef = new float[n];
        var yDirect = new float[n];
        float dotRef, dotDirect;
        fixed (float* s = src) fixed (float* px = x) fixed (byte* a = viaRef) fixed (byte* b = direct)
        fixed (float* ya = yRef) fixed (float* yb = yDirect)
        {
            QuantRef.QuantizeRow(type, s, a, n);
            QuantRef.DequantizeRow(type, a, ya, n);
            dotRef = QuantRef.Dot(type, a, px, n);
            switch (type)
            {
                case GgmlType.Q8_0: Q8_0.Quantize(s, b, n); Q8_0.Dequantize(b, yb, n); dotDirect = Q8_0.Dot(b, px, n); break;
                case GgmlType.Q4_0: Q4_0.Quantize(s, b, n); Q4_0.Dequantize(b, yb, n); dotDirect = Q4_0.Dot(b, px, n); break;
                case GgmlType.Q4_1: Q4_1.Quantize(s, b, n); Q4_1.Dequantize(b, yb, n); dotDirect = Q4_1.Dot(b, px, n); break;
                case GgmlType.Q5_0: Q5_0.Quantize(s, b, n); Q5_0.Dequantize(b, yb, n); dotDirect = Q5_0.Dot(b, px, n); break;
                case GgmlType.Q5_1: Q5_1.Quantize(s, b, n); Q5_1.Dequantize(b, yb, n); dotDirect = Q5_1.Dot(b, px, n); break;
                case GgmlType.IQ4_NL: IQ4_NL.Quantize(s, b, n); IQ4_NL.Dequantize(b, yb, n); dotDirect = IQ4_NL.Dot(b, px, n); break;
                case GgmlType.Q4_K: Q4_K.Quantize(s, b, n); Q4_K.Dequantize(b, yb, n); dotDirect = Q4_K.Dot(b, px, n); break;
                default: Q6_K.Quantize(s, b, n); Q6_K.Dequantize(b, yb, n); dotDirect = Q6_K.Dot(b, px, n); break;
            }
        }
        Assert.Equal(direct, viaRef);
        Assert.Equal(yDirect, yRef);
        Assert.Equal(dotDirect, dotRef);
    }

    [Theory]
    [MemberData(nameof(BlockTypes))]
    public void SpanOverloadsAgreeWithPointerOverloads(GgmlType type)
    {
        const int n = 256;
        float[] src = QuantTestData.Gaussian(n, seed: 1100 + (int)type);
        float[] x = QuantTestData.Gaussian(n, seed: 1200 + (int)type);

        byte[] q = QuantRef.QuantizeRow(type, src);
        var y = new float[n];
        QuantRef.DequantizeRow(type, q, y);
        float dot = QuantRef.Dot(type, q, x);

        Assert.Equal(GgmlTypes.RowBytes(type, n), q.Length);
        var expectedQ = new byte[q.Length];
        var expectedY = new float[n];
        fixed (float* s = src) fixed (byte* b = expectedQ) fixed (float* py = expectedY)
        {
            QuantRef.QuantizeRow(type, s, b, n);
            QuantRef.DequantizeRow(type, b, py, n);
        }
        Assert.Equal(expectedQ, q);
        Assert.Equal(expectedY, y);
        Assert.Equal(QuantTestData.DotReference(expectedY, x), dot);
    }

    [Fact]
    public void SpanOverloadsRejectShortBuffers()
    {
        var e = Assert.Throws<ArgumentException>(() => QuantRef.DequantizeRow(GgmlType.Q4_K, new byte[143], new float[256]));
        Assert.Contains("Q4_K", e.Message);
        Assert.Contains("143", e.Message);
        Assert.Throws<ArgumentException>(() => QuantRef.Dot(GgmlType.Q8_0, new byte[34], new float[64]));
    }

    [Theory]
    [InlineData(GgmlType.Q8_0, 48)]
    [InlineData(GgmlType.Q4_0, 16)]
    [InlineData(GgmlType.Q4_1, 40)]
    [InlineData(GgmlType.Q5_0, 33)]
    [InlineData(GgmlType.Q5_1, 64 + 16)]
    [InlineData(GgmlType.IQ4_NL, 8)]
    [InlineData(GgmlType.Q4_K, 512 + 32)]
    [InlineData(GgmlType.Q6_K, 100)]
    public void RejectsRowsThatAreNotWholeBlocks(GgmlType type, int n)
    {
        var buf = new byte[4096];
        var f = new float[1024];
        Exception? dq = null, dot = null, q = null;
        fixed (byte* b = buf) fixed (float* p = f)
        {
            try { QuantRef.DequantizeRow(type, b, p, n); } catch (Exception ex) { dq = ex; }
            try { QuantRef.Dot(type, b, p, n); } catch (Exception ex) { dot = ex; }
            try { QuantRef.QuantizeRow(type, p, b, n); } catch (Exception ex) { q = ex; }
        }
        foreach (var ex in new[] { dq, dot, q })
        {
            var ae = Assert.IsType<ArgumentException>(ex);
            Assert.Contains(GgmlTypes.Name(type), ae.Message);
            Assert.Contains(n.ToString(), ae.Message);
        }
    }

    [Fact]
    public void OtherQuantTypesAreNotSupported()
    {
        Assert.Throws<NotSupportedException>(() => QuantRef.QuantizeRow(GgmlType.IQ2_XXS, new float[256]));
        Assert.Throws<NotSupportedException>(() => QuantRef.DequantizeRow(GgmlType.IQ3_S, new byte[110], new float[256]));
    }
}
