using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Quant;

/// <summary>The type-traits table against ggml's facts, and every type's matmul through the CPU kernel table.</summary>
public unsafe class TypeTraitsTests
{
    /// <summary>
    /// ggml's geometry (ggml-common.h: QK and sizeof(block_TYPE)) and vec_dot_type (ggml-cpu.c type_traits_cpu) of every
    /// type EdgeLlm computes or is adding; F32 marks the float types, dotted with float activations.
    /// </summary>
    private static readonly Dictionary<GgmlType, (int BlockSize, int BlockBytes, GgmlType Activation)> Ggml = new()
    {
        [GgmlType.F32] = (1, 4, GgmlType.F32),
        [GgmlType.F16] = (1, 2, GgmlType.F32),
        [GgmlType.BF16] = (1, 2, GgmlType.F32),
        [GgmlType.Q4_0] = (32, 18, GgmlType.Q8_0),
        [GgmlType.Q4_1] = (32, 20, GgmlType.Q8_1),
        [GgmlType.Q5_0] = (32, 22, GgmlType.Q8_0),
        [GgmlType.Q5_1] = (32, 24, GgmlType.Q8_1),
        [GgmlType.Q8_0] = (32, 34, GgmlType.Q8_0),
        [GgmlType.IQ4_NL] = (32, 18, GgmlType.Q8_0),
        [GgmlType.Q2_K] = (256, 84, GgmlType.Q8_K),
        [GgmlType.Q3_K] = (256, 110, GgmlType.Q8_K),
        [GgmlType.Q4_K] = (256, 144, GgmlType.Q8_K),
        [GgmlType.Q5_K] = (256, 176, GgmlType.Q8_K),
        [GgmlType.Q6_K] = (256, 210, GgmlType.Q8_K),
        [GgmlType.IQ4_XS] = (256, 136, GgmlType.Q8_K),
    };

    [Fact]
    public void EveryRowHasGgmlsGeometryAndActivationFormat()
    {
        Assert.True(TypeTraits.All.Count >= 7);
        foreach (var row in TypeTraits.All)
        {
            Assert.True(Ggml.TryGetValue(row.Type, out var want), $"{row.Type} is not a type ggml's table lists here");
            Assert.Equal((want.BlockSize, want.BlockBytes), (row.BlockSize, row.BlockBytes));
            Assert.Equal(want.Activation, row.Activation);
            Assert.Equal((want.BlockSize, want.BlockBytes), GgmlTypes.Geometry(row.Type));
            Assert.True(TypeTraits.IsComputable(row.Type));
            Assert.Same(row, TypeTraits.Of(row.Type));
        }
        foreach (var (type, want) in Ggml)
        {
            // Types still without a row keep their geometry for the loader (it must size them to name them).
            Assert.Equal((want.BlockSize, want.BlockBytes), GgmlTypes.Geometry(type));
        }
        Assert.Null(TypeTraits.Of(GgmlType.IQ2_XXS));
        Assert.False(TypeTraits.IsComputable(GgmlType.IQ2_XXS));
        Assert.Equal((256, 66), GgmlTypes.Geometry(GgmlType.IQ2_XXS));
        Assert.Throws<NotSupportedException>(() => QuantRef.DequantizeRow(GgmlType.IQ2_XXS, new byte[66], new float[256]));
    }

    [Fact]
    public void EveryRowHasKernelsOnEverySupportedVariant()
    {
        foreach (var row in TypeTraits.All)
        {
            foreach (var v in Kernels.KernelVariants.SupportedVariants())
            {
                var k = Kernels.KernelVariants.Row(row.Type, v);
                Assert.Same(row, k.Traits);
                Assert.True(k.Dot != null && k.Rows != null && k.ToFloat != null, $"{row.Type} {v}");
                Assert.Equal(row.IsQuantized, k.QuantizeActivations != null);
            }
            Assert.NotNull(KernelTable.For(row.Type));
        }
    }

    public static TheoryData<GgmlType, int> MatMulCases()
    {
        var d = new TheoryData<GgmlType, int>();
        foreach (var row in TypeTraits.All)
            foreach (int tokens in new[] { 1, 3, 4, 9 })
                d.Add(row.Type, tokens);
        return d;
    }

    /// <summary>
    /// A matmul through the table (the range driver of the selected row, one or four tokens at a time, split over two
    /// threads) gives each (token, row) what the row's one-token kernel gives it: exactly below four tokens (the same
    /// kernel), to float reassociation above (four-token loops, Q4_0's panel) and for Q4_K's x64 decode copy. For the float types the kernel is the
    /// row's own Dot on the float activations.
    /// </summary>
    [Theory]
    [MemberData(nameof(MatMulCases))]
    public void MatMulThroughTheTableMatchesTheRowKernel(GgmlType type, int tokens)
    {
        const int ne0 = 512, rows = 37;
        var traits = TypeTraits.Of(type)!;
        var k = KernelTable.For(type)!;
        var rng = new Random(3 + (int)type);
        long rowBytes = GgmlTypes.RowBytes(type, ne0);
        byte* w = (byte*)NativeMemory.AlignedAlloc((nuint)(rowBytes * rows), 64);
        try
        {
            var wDeq = new float[rows * ne0];
            for (int r = 0; r < rows; r++)
            {
                var vals = new float[ne0];
                for (int i = 0; i < ne0; i++) vals[i] = rng.NextSingle() * 2 - 1;
                QuantRef.QuantizeRow(type, vals).CopyTo(new Span<byte>(w + r * rowBytes, (int)rowBytes));
                QuantRef.DequantizeRow(type, new ReadOnlySpan<byte>(w + r * rowBytes, (int)rowBytes), wDeq.AsSpan(r * ne0, ne0));
            }
            var x = new float[tokens * ne0];
            for (int i = 0; i < x.Length; i++) x[i] = rng.NextSingle() * 2 - 1;

            using var backend = new CpuBackend(threads: 2);
            backend.Prepare(new BackendLimits(tokens, ne0, 4, 2, 2));
            var weight = backend.LoadWeight(new TensorView("w", type, [ne0, rows], w, rowBytes * rows));
            var bx = backend.Allocate(x.Length);
            var bd = backend.Allocate(tokens * rows);
            fixed (float* p = x) Buffer.MemoryCopy(p, ((CpuBuffer)bx).Data, x.Length * 4L, x.Length * 4L);
            backend.MatMul(weight, bx, bd, tokens);
            var got = new float[tokens * rows];
            backend.CopyOut(bd, 0, got);

            long xqBytes = k.ActivationBytes(ne0);
            var xq = new byte[Math.Max(1, xqBytes)];
            for (int t = 0; t < tokens; t++)
            {
                fixed (float* px = &x[t * ne0]) fixed (byte* pq = xq)
                {
                    byte* act = (byte*)px;
                    if (traits.IsQuantized)
                    {
                        k.QuantizeActivations(px, pq, ne0);
                        act = pq;
                    }
                    for (int r = 0; r < rows; r++)
                    {
                        float want = k.Dot(w + r * rowBytes, act, ne0);
                        float have = got[t * rows + r];
                        if (tokens < 4 && !k.Panel && !k.PackedDecodeOnly)
                        {
                            Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(have), $"{type} t={t} r={r}: {have} vs {want}");
                        }
                        else
                        {
                            double mag = 0;
                            for (int i = 0; i < ne0; i++) mag += Math.Abs((double)wDeq[r * ne0 + i] * x[t * ne0 + i]);
                            Assert.True(Math.Abs(have - want) <= 2e-6 * mag + 1e-6, $"{type} t={t} r={r}: {have} vs {want} (magnitude {mag})");
                        }
                    }
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(w);
        }
    }
}
