using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cuda;
using EdgeLlm.Gguf;
using EdgeLlm.Quant;
using EdgeLlm.Tests.Cuda;
using static EdgeLlm.Tests.Cuda.CudaBlockMathHostTests;

namespace EdgeLlm.Tests.CudaPrefillGemm;

/// <summary>
/// The prefill GEMMs of kernels/gemm.cu, compiled from the kernel file by the host C++ compiler (Cuda/HostEmulation)
/// and run with emulated 128-thread blocks: quantize_q8 then gemm_mma_&lt;type&gt; (the int8 MMAs emulated by
/// host_mma_s8, which rebuilds the 16 x K and K x 8 matrices from the 32 lanes' fragment registers by the PTX ISA
/// layouts, so a fragment loaded from the wrong row, column or byte gives a wrong product) or gemm_dp4a_&lt;type&gt;,
/// over the grid CudaBackend launches. The reference is computed here in double, independently of the kernels:
/// the weights dequantized by the CPU's reference code (QuantRef), the activations quantized to 8 bits per 32
/// as quantize.cu does, summed block by block. Shapes cover whole tiles, ragged rows, ragged token tiles, a single
/// token tile column, and (the 32-weight block types) K that is not a multiple of the 256-wide K step. Every block
/// type of the CPU's kernel table (<see cref="CudaKernels.GemmTypes"/>): the three kinds of gemm.cu's decoders (one
/// scale and a min per 32 weights; Q6_K and Q3_K's scale per 16; Q2_K's scale per 16 folded into the int8 weights
/// and its per-16 mins as a second MMA / dp4a against ones). Tolerance: 2e-5 of the sum of |products| (the kernel
/// sums exact int32 block dots scaled in float: a few float ulps per block term).
/// </summary>
public class GemmHostTests
{
    public static TheoryData<GgmlType, bool, int, int, int> Cases()
    {
        var data = new TheoryData<GgmlType, bool, int, int, int>();
        foreach (var t in CudaKernels.GemmTypes)
            foreach (bool mma in new[] { true, false })
            {
                data.Add(t, mma, 64, 64, 256);   // exactly one tile, one K step
                data.Add(t, mma, 70, 5, 512);    // ragged rows (a 6-row second tile), 5 tokens, two K steps
                data.Add(t, mma, 130, 67, 768);  // ragged rows and tokens (3 x 2 tiles), three K steps
                if (t is GgmlType.Q4_0 or GgmlType.Q8_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.IQ4_NL) // 32-weight blocks
                {
                    data.Add(t, mma, 33, 9, 96);   // three 32-blocks: one partial K step
                    data.Add(t, mma, 64, 2, 288);  // nine 32-blocks: a full K step and one block
                }
            }
        return data;
    }

    [HostCompilerTheory]
    [MemberData(nameof(Cases))]
    public void GemmMatchesTheDoubleReference(GgmlType type, bool mma, int rows, int tokens, int k)
    {
        var rng = new Random(rows * 31 + tokens * 7 + k + (int)type + (mma ? 1000 : 0));
        var values = new float[rows * k];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 53 == 0 ? 3f : 0.5f);
        var weights = QuantRef.QuantizeRow(type, values); // rows of k quantize alike as one long row (whole blocks)
        Assert.Equal(GgmlTypes.RowBytes(type, k) * rows, weights.Length);
        var x = new float[tokens * k];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 97 == 0 ? 8f : 1f);

        var got = Gemm(type, mma, k, rows, tokens, weights, x);

        var deq = new float[rows * k];
        QuantRef.DequantizeRow(type, weights, deq);
        int nb = k / 32;
        var xq = new sbyte[tokens * k];
        var dx = new double[tokens * nb];
        for (int b = 0; b < tokens * nb; b++)
        {
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = Math.Max(amax, Math.Abs(x[b * 32 + i]));
            float d = amax / 127f;
            for (int i = 0; i < 32; i++) xq[b * 32 + i] = amax == 0 ? (sbyte)0 : (sbyte)Math.Round(x[b * 32 + i] / d, MidpointRounding.ToEven);
            dx[b] = d;
        }
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                double want = 0, scale = 0;
                for (int b = 0; b < nb; b++)
                    for (int i = 0; i < 32; i++)
                    {
                        double p = deq[(long)r * k + b * 32 + i] * (double)xq[t * k + b * 32 + i] * dx[t * nb + b];
                        want += p;
                        scale += Math.Abs(p);
                    }
                float g = got[t * rows + r];
                // float scales and float sums of per-block terms: a few float ulps of the magnitudes involved
                Assert.True(Math.Abs(g - want) <= 2e-5 * scale + 1e-30,
                    $"{type} {(mma ? "mma" : "dp4a")} {rows}x{tokens}x{k}: token {t} row {r}: gemm {g}, reference {want} (sum of |products| {scale})");
            }
    }

    /// <summary>A token's products do not depend on the other tokens of the batch or on its place in a token tile.</summary>
    [HostCompilerTheory]
    [InlineData(GgmlType.Q4_K, true)]
    [InlineData(GgmlType.Q6_K, false)]
    [InlineData(GgmlType.Q2_K, true)]
    [InlineData(GgmlType.Q2_K, false)]
    [InlineData(GgmlType.Q3_K, true)]
    [InlineData(GgmlType.IQ4_XS, false)]
    public void ATokensProductsDoNotDependOnItsBatch(GgmlType type, bool mma)
    {
        const int rows = 40, k = 256, tokens = 70;
        var rng = new Random(5);
        var values = new float[rows * k];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1);
        var weights = QuantRef.QuantizeRow(type, values);
        var x = new float[tokens * k];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var all = Gemm(type, mma, k, rows, tokens, weights, x);
        var pair = Gemm(type, mma, k, rows, 2, weights, x.AsSpan(67 * k, 2 * k).ToArray()); // tokens 67, 68 alone
        for (int t = 0; t < 2; t++)
            for (int r = 0; r < rows; r++)
                Assert.Equal(all[(67 + t) * rows + r], pair[t * rows + r]);
    }

    /// <summary>
    /// The _packed kernels over the rows as the upload repacks them (CudaRepack.PackRow, the code the backend runs)
    /// give exactly the bits of the kernels over ggml's blocks (the same int8 words, scales and sums), which the
    /// test above holds to the double reference: so a field read from the wrong place of the repacked row fails here.
    /// </summary>
    /// <summary>
    /// The packed-row comparison's shapes: one whole tile, and ragged rows (two row tiles) with a partial token tile over
    /// three K steps; plus the 32-weight block types' partial K steps. (The packing is per row, so the token tiling is
    /// already held to the double reference above, by the same tile loop.)
    /// </summary>
    public static TheoryData<GgmlType, bool, int, int, int> PackedCases()
    {
        var data = new TheoryData<GgmlType, bool, int, int, int>();
        foreach (var t in CudaKernels.GemmTypes)
            foreach (bool mma in new[] { true, false })
            {
                data.Add(t, mma, 64, 64, 256);
                data.Add(t, mma, 70, 9, 768);
                if (t is GgmlType.Q4_0 or GgmlType.Q8_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.IQ4_NL)
                {
                    data.Add(t, mma, 33, 9, 96);
                    data.Add(t, mma, 64, 2, 288);
                }
            }
        return data;
    }

    [HostCompilerTheory]
    [MemberData(nameof(PackedCases))]
    public void PackedRowsGiveTheSameProductsAsGgmlBlocks(GgmlType type, bool mma, int rows, int tokens, int k)
    {
        var rng = new Random(rows * 17 + tokens * 5 + k + (int)type + (mma ? 500 : 0));
        var values = new float[rows * k];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 41 == 0 ? 4f : 0.5f);
        var weights = QuantRef.QuantizeRow(type, values);
        var x = new float[tokens * k];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 89 == 0 ? 8f : 1f);

        var ggml = Gemm(type, mma, k, rows, tokens, weights, x);
        var packed = Gemm(type, mma, k, rows, tokens, weights, x, packed: true);
        for (int i = 0; i < ggml.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(ggml[i]) == BitConverter.SingleToInt32Bits(packed[i]),
                $"{type} {(mma ? "mma" : "dp4a")} {rows}x{tokens}x{k}: token {i / rows} row {i % rows}: packed {packed[i]}, ggml blocks {ggml[i]}");
    }

    internal static float[] Gemm(GgmlType type, bool mma, int k, int rows, int tokens, byte[] weights, float[] x, bool packed = false)
    {
        long rowBytes = GgmlTypes.RowBytes(type, k);
        if (packed)
        {
            long packedBytes = CudaRepack.RowBytes(type, k);
            var rewritten = new byte[packedBytes * rows];
            for (int row = 0; row < rows; row++)
                CudaRepack.PackRow(type, k, weights.AsSpan((int)(row * rowBytes), (int)rowBytes), rewritten.AsSpan((int)(row * packedBytes), (int)packedBytes));
            weights = rewritten;
            rowBytes = packedBytes;
        }
        var input = new MemoryStream();
        input.Write(packed ? "gemm_packed\0"u8 : "gemm\0"u8);
        input.Write(System.Text.Encoding.ASCII.GetBytes(CudaKernels.Suffix(type)!));
        input.WriteByte(0);
        foreach (int v in new[] { k, rows, tokens, mma ? 1 : 0 }) input.Write(BitConverter.GetBytes(v));
        input.Write(BitConverter.GetBytes(rowBytes));
        input.Write(weights);
        input.Write(MemoryMarshal.AsBytes(x.AsSpan()));
        var bytes = Harness.Exec(input, $"gemm {type} {(mma ? "mma" : "dp4a")}{(packed ? " packed" : "")}");
        Assert.Equal(tokens * rows * 4, bytes.Length);
        var r = MemoryMarshal.Cast<byte, float>(bytes).ToArray();
        Assert.All(r, v => Assert.True(float.IsFinite(v), "an output the kernel never wrote (NaN) or an overflow"));
        return r;
    }
}
