using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Gguf;
using EdgeLlm.Model;
using EdgeLlm.Quant;

namespace EdgeLlm.Tests.Model;

/// <summary>The CPU kernels against the reference scalar code, including vector tails.</summary>
public unsafe class CpuKernelTests
{
    [Fact]
    public void F16ConversionIsExactForAllHalves()
    {
        const int n = 65536 + 7; // every bit pattern, plus a tail the scalar path handles
        var src = new ushort[n];
        for (int i = 0; i < n; i++) src[i] = (ushort)i;
        var dst = new float[n];
        fixed (ushort* s = src) fixed (float* d = dst) HalfConvert.F16ToF32(s, d, n);
        for (int i = 0; i < n; i++)
        {
            float want = (float)BitConverter.UInt16BitsToHalf(src[i]);
            if (float.IsNaN(want)) Assert.True(float.IsNaN(dst[i]), $"0x{src[i]:X4} should be NaN");
            else Assert.True(BitConverter.SingleToUInt32Bits(want) == BitConverter.SingleToUInt32Bits(dst[i]), $"0x{src[i]:X4}: {dst[i]} vs {want}");
        }
    }

    [Fact]
    public void BF16ConversionIsExact()
    {
        const int n = 65536 + 5;
        var src = new ushort[n];
        for (int i = 0; i < n; i++) src[i] = (ushort)(i * 40503);
        var dst = new float[n];
        fixed (ushort* s = src) fixed (float* d = dst) HalfConvert.BF16ToF32(s, d, n);
        for (int i = 0; i < n; i++) Assert.Equal((uint)src[i] << 16, BitConverter.SingleToUInt32Bits(dst[i]));
    }

    [Fact]
    public void DotMatchesDoubleForEveryTailLength()
    {
        var rng = new Random(5);
        for (int n = 1; n <= 150; n++)
        {
            var a = new float[n];
            var b = new float[n];
            double want = 0, mag = 0;
            for (int i = 0; i < n; i++)
            {
                a[i] = rng.NextSingle() * 2 - 1;
                b[i] = rng.NextSingle() * 2 - 1;
                want += (double)a[i] * b[i];
                mag += Math.Abs((double)a[i] * b[i]);
            }
            float got;
            fixed (float* pa = a) fixed (float* pb = b) got = EdgeLlm.Backends.Cpu.Kernels.DotF32.Dot(pa, pb, n);
            Assert.True(Math.Abs(got - want) <= 1e-6 * mag + 1e-7, $"n={n}: {got} vs {want}");
        }
    }

    [Theory]
    [InlineData(GgmlType.F32, 37)]
    [InlineData(GgmlType.F16, 37)]
    [InlineData(GgmlType.BF16, 45)]
    [InlineData(GgmlType.Q8_0, 96)]
    [InlineData(GgmlType.Q4_0, 64)]
    [InlineData(GgmlType.Q4_K, 256)]
    [InlineData(GgmlType.Q6_K, 256)]
    public void MatMulMatchesQuantRefDot(GgmlType type, int ne0)
    {
        const int rows = 13, tokens = 3;
        var rng = new Random(11);
        long rowBytes = GgmlTypes.RowBytes(type, ne0);
        byte* w = (byte*)NativeMemory.AlignedAlloc((nuint)(rowBytes * rows), 64);
        try
        {
            for (int r = 0; r < rows; r++)
            {
                var vals = new float[ne0];
                for (int i = 0; i < ne0; i++) vals[i] = rng.NextSingle() * 2 - 1;
                QuantRef.QuantizeRow(type, vals).CopyTo(new Span<byte>(w + r * rowBytes, (int)rowBytes));
            }
            var x = new float[tokens * ne0];
            for (int i = 0; i < x.Length; i++) x[i] = rng.NextSingle() * 2 - 1;

            using var backend = new CpuBackend(threads: 2);
            backend.Prepare(new BackendLimits(tokens, ne0, 4, 2, 2));
            var weight = backend.LoadWeight(new TensorView("w", type, [ne0, rows], w, rowBytes * rows));
            var bx = backend.Allocate(x.Length);
            var bd = backend.Allocate(tokens * rows);
            CopyIn(bx, x);
            backend.MatMul(weight, bx, bd, tokens);
            var got = new float[tokens * rows];
            backend.CopyOut(bd, 0, got);
            for (int t = 0; t < tokens; t++)
            {
                for (int r = 0; r < rows; r++)
                {
                    // Quantized weights are dotted with 8-bit activations: the reference is the weights' float dot with
                    // the activations rounded through that format (Q8_0 or Q8_K), computed in double.
                    float want;
                    float[] xr = x.AsSpan(t * ne0, ne0).ToArray();
                    if (type is GgmlType.Q4_0 or GgmlType.Q8_0)
                        QuantRef.DequantizeRow(GgmlType.Q8_0, QuantRef.QuantizeRow(GgmlType.Q8_0, xr), xr);
                    else if (type is GgmlType.Q4_K or GgmlType.Q6_K)
                    {
                        var q8k = new byte[ne0 / 256 * EdgeLlm.Backends.Cpu.Kernels.ActivationQuant.Q8_KBlockBytes];
                        fixed (float* pxr = xr) fixed (byte* pq = q8k)
                        {
                            EdgeLlm.Backends.Cpu.Kernels.ActivationQuant.QuantizeQ8_K(pxr, pq, ne0);
                            EdgeLlm.Backends.Cpu.Kernels.ActivationQuant.DequantizeQ8_K(pq, pxr, ne0);
                        }
                    }
                    fixed (float* px = xr) want = QuantRef.Dot(type, w + r * rowBytes, px, ne0);
                    Assert.True(Math.Abs(got[t * rows + r] - want) <= 1e-5 * (1 + Math.Abs(want)), $"t={t} r={r}: {got[t * rows + r]} vs {want}");
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(w);
        }
    }

    private static void CopyIn(BackendBuffer b, float[] x)
    {
        fixed (float* p = x) Buffer.MemoryCopy(p, ((CpuBuffer)b).Data, x.Length * 4L, x.Length * 4L);
    }

    private sealed class CountWork(int items) : ParallelWork
    {
        public readonly int[] Counts = new int[items];

        public override void Execute(int thread, int threadCount)
        {
            var (a, b) = WorkerPool.Range(Counts.Length, thread, threadCount);
            for (long i = a; i < b; i++) Counts[i]++;
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void WorkerPoolRunsEveryItemExactlyOncePerDispatch(int threads)
    {
        using var pool = new WorkerPool(threads);
        var work = new CountWork(101);
        for (int i = 0; i < 500; i++) pool.Run(work);
        Assert.All(work.Counts, c => Assert.Equal(500, c));
    }

    private sealed class ThrowingWork : ParallelWork
    {
        public override void Execute(int thread, int threadCount)
        {
            if (thread == threadCount - 1) throw new InvalidOperationException("boom");
        }
    }

    [Fact]
    public void WorkerPoolReportsAWorkerFailureAndKeepsWorking()
    {
        using var pool = new WorkerPool(2);
        var e = Assert.Throws<AggregateException>(() => pool.Run(new ThrowingWork()));
        Assert.Contains("boom", e.Message);
        var work = new CountWork(10);
        pool.Run(work);
        Assert.All(work.Counts, c => Assert.Equal(1, c));
    }
}
