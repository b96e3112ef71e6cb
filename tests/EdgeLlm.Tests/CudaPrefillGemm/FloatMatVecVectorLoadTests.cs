using System.Runtime.InteropServices;
using System.Text;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Cuda;
using static EdgeLlm.Tests.Cuda.CudaBlockMathHostTests;

namespace EdgeLlm.Tests.CudaPrefillGemm;

/// <summary>
/// The F32/F16/BF16 matvec kernels of kernels/matmul.cu with 16-byte loads (ld.global.nc.v4) of weights and
/// activations, run by the host emulation (Cuda/HostEmulation: matvec_float). Each case runs twice: with the
/// weights and activations 16-byte aligned (vector loads, counted by the emulation, which also aborts on a misaligned
/// one) and placed 4 (F32) or 2 (F16/BF16) bytes past a boundary, where the kernel must fall back to the scalar loads
/// of the previous kernel. Both must give the same bits (the same fused multiply-adds in the same order), match a
/// float64 reference within 2e-5 of the sum of |products| (float FMA chains of K/32 + 8 terms and a 5-level tree),
/// and the count of vector loads must be exactly what the aligned rows need.
/// </summary>
public class FloatMatVecVectorLoadTests
{
    public static TheoryData<GgmlType, int, int, int, int> Cases()
    {
        var data = new TheoryData<GgmlType, int, int, int, int>();
        foreach (var t in new[] { GgmlType.F32, GgmlType.F16, GgmlType.BF16 })
            foreach (int nt in new[] { 1, 8 })
            {
                data.Add(t, nt, 256, 9, 3);  // whole chunks, every row aligned
                data.Add(t, nt, 520, 6, 11); // 65 chunks: lanes with two and with three chunks; 11 tokens (two NT=8 groups)
                data.Add(t, nt, 100, 7, 2);  // K % 8 = 4: a scalar tail; F16/BF16 rows of 200 bytes: every other row aligned
                data.Add(t, nt, 99, 5, 2);   // K % 4 != 0: token rows misaligned, all scalar
                data.Add(t, nt, 8, 3, 1);    // one chunk
            }
        return data;
    }

    [HostCompilerTheory]
    [MemberData(nameof(Cases))]
    public void VectorLoadsGiveTheScalarKernelsBitsAndTheReference(GgmlType type, int nt, int k, int rows, int tokens)
    {
        var rng = new Random(k * 13 + rows + (int)type * 7 + nt);
        var values = new float[rows * k];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 37 == 0 ? 6f : 1f);
        byte[] weights = Encode(type, values);
        var x = new float[tokens * k];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        int elem = type == GgmlType.F32 ? 4 : 2;
        long rowBytes = (long)k * elem;

        var (vec, loads) = Run(type, nt, k, rows, tokens, weights, x, 0, 0);
        var (scalar, scalarLoads) = Run(type, nt, k, rows, tokens, weights, x, elem, 4);
        Assert.Equal(0, scalarLoads);

        long want = 0; // per aligned row: per lane chunk its weight loads once per NT group and two per token
        if (k % 4 == 0)
            for (int r = 0; r < rows; r++)
                if (r * rowBytes % 16 == 0)
                    want += k / 8 * ((elem == 4 ? 2L : 1L) * ((tokens + nt - 1) / nt) + 2L * tokens);
        Assert.Equal(want, loads);
        if (k % 8 == 0) Assert.True(loads > 0);

        var deq = Decode(type, weights, rows * k);
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                int i = t * rows + r;
                Assert.True(BitConverter.SingleToInt32Bits(vec[i]) == BitConverter.SingleToInt32Bits(scalar[i]),
                    $"{type} NT={nt} K={k}: token {t} row {r}: vector loads {vec[i]}, scalar loads {scalar[i]}");
                double sum = 0, mag = 0;
                for (int e = 0; e < k; e++)
                {
                    double p = (double)deq[r * k + e] * x[t * k + e];
                    sum += p;
                    mag += Math.Abs(p);
                }
                Assert.True(Math.Abs(vec[i] - sum) <= 2e-5 * mag, $"{type} NT={nt} K={k}: token {t} row {r}: {vec[i]}, reference {sum}");
            }
    }

    /// <summary>The PTX of every float matvec entry holds the 16-byte read-only loads (and the quantized ones do not need them).</summary>
    [NvrtcTheory]
    [InlineData(61)]
    [InlineData(80)]
    [InlineData(90)]
    public void FloatMatVecPtxUsesSixteenByteLoads(int arch)
    {
        CudaTestEnvironment.RequireNvrtc();
        string ptx = Encoding.UTF8.GetString(KernelCompileMemo.Compile("matmul.cu", arch, cubin: false).Image);
        foreach (string name in new[] { "f32", "f16", "bf16" })
            foreach (string nt in new[] { "t1", "t8" })
            {
                string entry = $"matvec_{name}_{nt}";
                int at = ptx.IndexOf($".entry {entry}(", StringComparison.Ordinal);
                Assert.True(at >= 0, $"sm_{arch}: no .entry {entry}");
                int next = ptx.IndexOf(".entry ", at + 10, StringComparison.Ordinal);
                string body = next < 0 ? ptx[at..] : ptx[at..next];
                Assert.Contains("ld.global.nc.v4.u32", body);
            }
    }

    private static byte[] Encode(GgmlType type, float[] v)
    {
        var b = new byte[v.Length * (type == GgmlType.F32 ? 4 : 2)];
        for (int i = 0; i < v.Length; i++)
        {
            if (type == GgmlType.F32) BitConverter.TryWriteBytes(b.AsSpan(4 * i), v[i]);
            else if (type == GgmlType.F16) BitConverter.TryWriteBytes(b.AsSpan(2 * i), BitConverter.HalfToUInt16Bits((Half)v[i]));
            else BitConverter.TryWriteBytes(b.AsSpan(2 * i), (ushort)(BitConverter.SingleToUInt32Bits(v[i]) >> 16)); // truncated: any bf16 will do
        }
        return b;
    }

    private static float[] Decode(GgmlType type, byte[] b, int n)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++)
            v[i] = type == GgmlType.F32 ? BitConverter.ToSingle(b, 4 * i)
                : type == GgmlType.F16 ? (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(b, 2 * i))
                : BitConverter.UInt32BitsToSingle((uint)BitConverter.ToUInt16(b, 2 * i) << 16);
        return v;
    }

    private static (float[] Out, long Loads) Run(GgmlType type, int nt, int k, int rows, int tokens, byte[] weights, float[] x, int wOffset, int xOffset)
    {
        var input = new MemoryStream();
        input.Write("matvec_float\0"u8);
        input.Write(Encoding.ASCII.GetBytes(CudaKernels.Suffix(type)!));
        input.WriteByte(0);
        foreach (int v in new[] { k, rows, tokens, nt, wOffset, xOffset }) input.Write(BitConverter.GetBytes(v));
        input.Write(BitConverter.GetBytes((long)k * (type == GgmlType.F32 ? 4 : 2)));
        input.Write(weights);
        input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
        var bytes = Harness.Exec(input, $"matvec_float {type} NT={nt} K={k}");
        Assert.Equal(tokens * rows * 4 + 8, bytes.Length);
        var r = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(0, tokens * rows * 4)).ToArray();
        Assert.All(r, v => Assert.True(float.IsFinite(v), "an output the kernel never wrote"));
        return (r, BitConverter.ToInt64(bytes, tokens * rows * 4));
    }
}
