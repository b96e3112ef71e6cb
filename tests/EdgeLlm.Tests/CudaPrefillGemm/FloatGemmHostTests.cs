using System.Runtime.InteropServices;
using System.Text;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Cuda;
using static EdgeLlm.Tests.Cuda.CudaBlockMathHostTests;

namespace EdgeLlm.Tests.CudaPrefillGemm;

/// <summary>
/// The float prefill GEMMs of kernels/gemm.cu (gemm_f32, gemm_f16, gemm_bf16), run by the host emulation over the
/// grid CudaBackend launches, against a float64 reference of the same decoded weights and activations. Each
/// output is one chain of K fused multiply-adds, so the error is at most K float half-ulps of the running sum:
/// the bound used is K * 2^-24 * sum of |products| (plus 1e-30). Shapes: whole tiles, ragged rows and tokens,
/// K not a multiple of the 32-wide K step and K below it.
/// </summary>
public class FloatGemmHostTests
{
    public static TheoryData<GgmlType, int, int, int> Cases()
    {
        var data = new TheoryData<GgmlType, int, int, int>();
        foreach (var t in CudaKernels.GemmFloatTypes)
        {
            data.Add(t, 64, 64, 64);
            data.Add(t, 70, 5, 256);
            data.Add(t, 130, 67, 100); // ragged rows, tokens and K (three full K steps and 4)
            data.Add(t, 9, 2, 7);      // K below one step
        }
        return data;
    }

    [HostCompilerTheory]
    [MemberData(nameof(Cases))]
    public void FloatGemmMatchesTheDoubleReference(GgmlType type, int rows, int tokens, int k)
    {
        var rng = new Random(rows * 3 + tokens * 11 + k + (int)type);
        int elem = type == GgmlType.F32 ? 4 : 2;
        var w = new byte[rows * k * elem];
        var deq = new double[rows * k];
        for (int i = 0; i < rows * k; i++)
        {
            float v = (float)(rng.NextDouble() * 2 - 1) * (i % 29 == 0 ? 5f : 1f);
            if (type == GgmlType.F32) { BitConverter.TryWriteBytes(w.AsSpan(4 * i), v); deq[i] = v; }
            else if (type == GgmlType.F16)
            {
                var h = (Half)v;
                BitConverter.TryWriteBytes(w.AsSpan(2 * i), BitConverter.HalfToUInt16Bits(h));
                deq[i] = (double)h;
            }
            else
            {
                ushort b = (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16);
                BitConverter.TryWriteBytes(w.AsSpan(2 * i), b);
                deq[i] = BitConverter.UInt32BitsToSingle((uint)b << 16);
            }
        }
        var x = new float[tokens * k];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);

        var input = new MemoryStream();
        input.Write("gemm_float\0"u8);
        input.Write(Encoding.ASCII.GetBytes(CudaKernels.Suffix(type)!));
        input.WriteByte(0);
        foreach (int v in new[] { k, rows, tokens }) input.Write(BitConverter.GetBytes(v));
        input.Write(BitConverter.GetBytes((long)k * elem));
        input.Write(w);
        input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
        var bytes = Harness.Exec(input, $"gemm_float {type} {rows}x{tokens}x{k}");
        Assert.Equal(tokens * rows * 4, bytes.Length);
        var got = MemoryMarshal.Cast<byte, float>(bytes).ToArray();

        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                double want = 0, mag = 0;
                for (int e = 0; e < k; e++)
                {
                    double p = deq[r * k + e] * x[t * k + e];
                    want += p;
                    mag += Math.Abs(p);
                }
                float g = got[t * rows + r];
                Assert.True(float.IsFinite(g), $"{type} token {t} row {r}: never written");
                Assert.True(Math.Abs(g - want) <= k * Math.Pow(2, -24) * mag + 1e-30,
                    $"{type} {rows}x{tokens}x{k}: token {t} row {r}: gemm {g}, reference {want} (sum of |products| {mag})");
            }
    }
}
