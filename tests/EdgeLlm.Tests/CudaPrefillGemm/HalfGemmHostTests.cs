using System.Runtime.InteropServices;
using System.Text;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Gguf;
using EdgeLlm.Tests.Cuda;
using static EdgeLlm.Tests.Cuda.CudaBlockMathHostTests;

namespace EdgeLlm.Tests.CudaPrefillGemm;

/// <summary>
/// The half-precision tensor-core GEMMs of kernels/gemm.cu (gemm_mma_f16, gemm_mma_bf16: mma.sync m16n8k16 with f16 /
/// bf16 inputs and f32 accumulators), run by the host emulation over the grid CudaBackend launches; host_shim.h
/// rebuilds each MMA's A and B from the 32 lanes' registers by the PTX ISA's fragment layouts, so a kernel that loads
/// a fragment from the wrong row, column or half fails here. Against two float64 references:
/// (1) the weights times the activations rounded as the kernel must round them (fp16: clamped to +-65504, then to
/// nearest even; bf16: to nearest even), where every product is exact in float and only the float sums round: bound
/// K * 2^-24 * sum of |products|; (2) the weights times the activations as given, where the activations' rounding adds
/// at most 2^-11 (fp16) or 2^-8 (bf16) of each product. Shapes: whole tiles, ragged rows and tokens, K not a multiple
/// of the 32-wide K step, odd K (rows of 2-byte aligned element pairs: the kernel's unpaired loads), K below one step.
/// </summary>
public class HalfGemmHostTests
{
    public static TheoryData<GgmlType, int, int, int> Cases()
    {
        var data = new TheoryData<GgmlType, int, int, int>();
        foreach (var t in CudaKernels.GemmHalfTypes)
        {
            data.Add(t, 64, 64, 64);
            data.Add(t, 70, 5, 256);
            data.Add(t, 130, 67, 100); // ragged rows, tokens and K (three full K steps and 4)
            data.Add(t, 100, 70, 136); // rows of 16-byte chunks (cp.async) with a last K step of one chunk
            data.Add(t, 33, 9, 45);    // odd K: element pairs straddle the rows' 4-byte words
            data.Add(t, 9, 2, 7);      // K below one step
        }
        return data;
    }

    /// <summary>fp16 bits of v as the kernel stages an activation: clamped to the finite range, rounded to nearest even.</summary>
    private static double RoundF16(float v) => (double)(Half)Math.Clamp(v, -65504f, 65504f);

    /// <summary>bf16 of v rounded to nearest even (the top 16 bits of the float after adding half an ulp, ties to even).</summary>
    internal static double RoundBf16(float v)
    {
        uint u = BitConverter.SingleToUInt32Bits(v);
        uint r = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
        return BitConverter.UInt32BitsToSingle(r);
    }

    private static float[] Run(GgmlType type, int rows, int tokens, int k, byte[] w, float[] x) => Run(type, rows, tokens, k, w, x, out _, out _);

    /// <summary>The GEMM's results, and the cp.async copies and warp-wide ldmatrix loads the emulation counted.</summary>
    private static float[] Run(GgmlType type, int rows, int tokens, int k, byte[] w, float[] x, out long copies, out long ldmatrix)
    {
        var input = new MemoryStream();
        input.Write("gemm_float_counted\0"u8);
        input.Write(Encoding.ASCII.GetBytes("mma_" + CudaKernels.Suffix(type)));
        input.WriteByte(0);
        foreach (int v in new[] { k, rows, tokens }) input.Write(BitConverter.GetBytes(v));
        input.Write(BitConverter.GetBytes((long)k * 2));
        input.Write(w);
        input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
        var bytes = Harness.Exec(input, $"gemm_mma {type} {rows}x{tokens}x{k}");
        Assert.Equal(tokens * rows * 4 + 16, bytes.Length);
        copies = BitConverter.ToInt64(bytes, tokens * rows * 4);
        ldmatrix = BitConverter.ToInt64(bytes, tokens * rows * 4 + 8);
        return MemoryMarshal.Cast<byte, float>(bytes.AsSpan(0, tokens * rows * 4)).ToArray();
    }

    /// <summary>Random weights in <paramref name="type"/> (their bits and values).</summary>
    private static (byte[] Bits, double[] Values) Weights(GgmlType type, int count, Random rng)
    {
        var w = new byte[count * 2];
        var deq = new double[count];
        for (int i = 0; i < count; i++)
        {
            float v = (float)(rng.NextDouble() * 2 - 1) * (i % 29 == 0 ? 5f : 1f);
            ushort bits = type == GgmlType.F16 ? BitConverter.HalfToUInt16Bits((Half)v) : (ushort)(BitConverter.SingleToUInt32Bits((float)RoundBf16(v)) >> 16);
            BitConverter.TryWriteBytes(w.AsSpan(2 * i), bits);
            deq[i] = type == GgmlType.F16 ? (double)BitConverter.UInt16BitsToHalf(bits) : BitConverter.UInt32BitsToSingle((uint)bits << 16);
        }
        return (w, deq);
    }

    [HostCompilerTheory]
    [MemberData(nameof(Cases))]
    public void HalfMmaGemmMatchesTheDoubleReference(GgmlType type, int rows, int tokens, int k)
    {
        var rng = new Random(rows * 5 + tokens * 13 + k + (int)type);
        var (w, deq) = Weights(type, rows * k, rng);
        var x = new float[tokens * k];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 31 == 0 ? 40f : 1f);
        var got = Run(type, rows, tokens, k, w, x);

        double unit = type == GgmlType.F16 ? Math.Pow(2, -11) : Math.Pow(2, -8); // the activations' rounding, relative
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                double rounded = 0, exact = 0, mag = 0;
                for (int e = 0; e < k; e++)
                {
                    float xv = x[t * k + e];
                    double xr = type == GgmlType.F16 ? RoundF16(xv) : RoundBf16(xv);
                    rounded += deq[r * k + e] * xr;
                    exact += deq[r * k + e] * xv;
                    mag += Math.Abs(deq[r * k + e] * xv);
                }
                float g = got[t * rows + r];
                Assert.True(float.IsFinite(g), $"{type} token {t} row {r}: never written");
                Assert.True(Math.Abs(g - rounded) <= k * Math.Pow(2, -24) * mag * (1 + unit) + 1e-30,
                    $"{type} {rows}x{tokens}x{k}: token {t} row {r}: gemm {g}, reference over the rounded activations {rounded} (sum of |products| {mag})");
                Assert.True(Math.Abs(g - exact) <= (unit + k * Math.Pow(2, -24)) * mag + 1e-30,
                    $"{type} {rows}x{tokens}x{k}: token {t} row {r}: gemm {g}, reference {exact} (sum of |products| {mag})");
            }
    }

    /// <summary>
    /// Which staging the kernel takes: rows of 16-byte chunks (rowBytes a multiple of 16: K a multiple of 8) go by
    /// cp.async, 256 copies per block and K step (64 rows x 4 chunks, the ones past the rows or K zero-filled); other
    /// rows through registers, no copy. Both read every fragment by ldmatrix: per warp and K step, two K halves of one
    /// A load and four B loads (two 8-token tiles each). The results are checked in HalfMmaGemmMatchesTheDoubleReference.
    /// </summary>
    [HostCompilerTheory]
    [InlineData(GgmlType.F16, 100, 70, 136, true)]
    [InlineData(GgmlType.BF16, 64, 64, 64, true)]
    [InlineData(GgmlType.F16, 130, 67, 100, false)]
    [InlineData(GgmlType.BF16, 33, 9, 45, false)]
    public void AlignedRowsAreCopiedByCpAsyncAndFragmentsLoadedByLdmatrix(GgmlType type, int rows, int tokens, int k, bool chunks)
    {
        var rng = new Random(k);
        var (w, _) = Weights(type, rows * k, rng);
        var x = new float[tokens * k];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        Run(type, rows, tokens, k, w, x, out long copies, out long ldmatrix);
        long blockSteps = (long)((rows + 63) / 64) * ((tokens + 63) / 64) * ((k + 31) / 32);
        Assert.Equal(chunks ? 256 * blockSteps : 0, copies);
        Assert.Equal(4 * 2 * (1 + 4) * blockSteps, ldmatrix);
    }

    /// <summary>
    /// fp16 activations past fp16's range are clamped to +-65504 (not infinite): the F16 GEMM of a batch with values of
    /// +-1e6 stays finite and equals the float64 product over the clamped activations; BF16 keeps them (its range is
    /// float's) and equals the product over the bf16-rounded ones.
    /// </summary>
    [HostCompilerTheory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    public void ActivationsPastTheHalfRangeAreClampedForF16AndKeptForBf16(GgmlType type)
    {
        const int rows = 16, tokens = 3, k = 40;
        var rng = new Random(17 + (int)type);
        var (w, deq) = Weights(type, rows * k, rng);
        var x = new float[tokens * k];
        for (int i = 0; i < x.Length; i++) x[i] = i % 9 == 4 ? (i % 2 == 0 ? 1e6f : -1e6f) : (float)(rng.NextDouble() * 2 - 1);
        var got = Run(type, rows, tokens, k, w, x);
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                double want = 0, mag = 0;
                for (int e = 0; e < k; e++)
                {
                    float xv = x[t * k + e];
                    double xr = type == GgmlType.F16 ? RoundF16(xv) : RoundBf16(xv);
                    Assert.True(type == GgmlType.BF16 || Math.Abs(xr) <= 65504);
                    want += deq[r * k + e] * xr;
                    mag += Math.Abs(deq[r * k + e] * xr);
                }
                float g = got[t * rows + r];
                Assert.True(float.IsFinite(g), $"{type} token {t} row {r}: {g}");
                Assert.True(Math.Abs(g - want) <= k * Math.Pow(2, -24) * mag, $"{type} token {t} row {r}: gemm {g}, reference {want}");
            }
    }
}
