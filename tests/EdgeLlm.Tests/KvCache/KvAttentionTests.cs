using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Backends.Cpu.Kernels;
using EdgeLlm.Model;

namespace EdgeLlm.Tests.Kv;

/// <summary>
/// Attention over f16 and q8_0 KV caches: against a float64 attention fed the same dequantized K/V (decoded here
/// independently: <see cref="Half"/> for f16, the reference <see cref="EdgeLlm.Quant.Q8_0.Dequantize"/> for q8_0), on every
/// vector rung, with more keys than one conversion chunk, heads of 64 and 128 (whole q8_0 blocks) and 8 (a quarter
/// of a block, stories260K's shape); bit-identical for 1 and 3 threads, and bit-identical to the float32 cache
/// holding the dequantized values.
/// </summary>
public unsafe class KvAttentionTests
{
    private const int Context = 320;

    public static TheoryData<KvCacheType, KvCacheType, int, int, int, int> Shapes()
    {
        var data = new TheoryData<KvCacheType, KvCacheType, int, int, int, int>();
        var pairs = new[] { (KvCacheType.F16, KvCacheType.F16), (KvCacheType.Q8_0, KvCacheType.Q8_0), (KvCacheType.Q8_0, KvCacheType.F16), (KvCacheType.F32, KvCacheType.Q8_0) };
        foreach (var (k, v) in pairs)
            foreach (var (headDim, kvHeads, group) in new[] { (64, 2, 4), (128, 1, 2), (8, 4, 2) })
                foreach (var (nTokens, startPos) in new[] { (1, 0), (17, 0), (1, 200), (9, 150) })
                    data.Add(k, v, headDim, kvHeads, group, nTokens * 1000 + startPos);
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatchesFloat64OnTheDequantizedCache(KvCacheType kType, KvCacheType vType, int headDim, int kvHeads, int group, int tokensAndStart)
    {
        int nTokens = tokensAndStart / 1000, startPos = tokensAndStart % 1000;
        using var c = new Case(kType, vType, headDim, kvHeads, group, nTokens, startPos, seed: tokensAndStart + headDim);
        double[] want = c.Reference();
        double maxAbs = 0;
        foreach (int width in new[] { 0, 16, 8, 4, 1 })
        {
            float[] one = c.Run(threads: 1, width);
            float[] three = c.Run(threads: 3, width);
            float[] asF32 = c.RunOnDequantizedF32(threads: 1, width);
            for (int i = 0; i < want.Length; i++)
            {
                maxAbs = Math.Max(maxAbs, Math.Abs(one[i] - want[i]));
                Assert.True(Math.Abs(one[i] - want[i]) <= 2e-5, $"{kType}/{vType} width {width}, element {i}: {one[i]} vs {want[i]}");
                Assert.True(BitConverter.SingleToInt32Bits(one[i]) == BitConverter.SingleToInt32Bits(three[i]), $"width {width}, element {i}: 1 thread {one[i]}, 3 threads {three[i]}");
                // On every rung (the conversions' 512/256/128-bit and scalar paths included) the f32 cache's bits on that rung.
                Assert.True(BitConverter.SingleToInt32Bits(one[i]) == BitConverter.SingleToInt32Bits(asF32[i]), $"width {width}, element {i}: {kType}/{vType} cache {one[i]}, f32 cache of the same values {asF32[i]}");
            }
        }
        // (One key at position 0 gives exactly its value row; anything else rounds somewhere.)
        Assert.True(maxAbs > 0 || nTokens + startPos == 1, "the comparison saw no rounding at all: the test is not exercising the float32 kernel");
    }

    [Fact]
    public void StoredRowsAreGgmlBytes()
    {
        // q8_0 rows are ggml block_q8_0s of the row (the reference quantizer), f16 rows IEEE halves rounded to nearest even.
        const int kvDim = 96;
        var rng = new Random(3);
        var x = new float[2 * kvDim];
        for (int i = 0; i < x.Length; i++) x[i] = (rng.NextSingle() * 2 - 1) * (i % 7 + 1);
        var q8 = new byte[2 * KvCacheTypes.RowBytes(KvCacheType.Q8_0, kvDim)];
        var want = new byte[q8.Length];
        var f16 = new ushort[2 * kvDim];
        fixed (float* px = x)
        fixed (byte* pq = q8, pw = want)
        fixed (ushort* ph = f16)
        {
            KvRows.Store(KvCacheType.Q8_0, px, pq, 2, kvDim);
            EdgeLlm.Quant.Q8_0.Quantize(px, pw, kvDim);
            EdgeLlm.Quant.Q8_0.Quantize(px + kvDim, pw + want.Length / 2, kvDim);
            KvRows.Store(KvCacheType.F16, px, (byte*)ph, 2, kvDim);
        }
        Assert.Equal(want, q8);
        Assert.Equal(2 * 3 * 34, q8.Length);
        for (int i = 0; i < x.Length; i++) Assert.Equal(BitConverter.HalfToUInt16Bits((Half)x[i]), f16[i]);
    }

    /// <summary>Random q; a cache of positions 0..startPos+nTokens−1 stored in the given types; the same values dequantized.</summary>
    private sealed class Case : IDisposable
    {
        private readonly KvCacheType _kType, _vType;
        private readonly int _headDim, _kvHeads, _group, _nTokens, _startPos;
        private readonly float* _q, _dst, _kDeq, _vDeq;
        private readonly byte* _k, _v;
        private int HeadsQ => _kvHeads * _group;
        private int KvDim => _kvHeads * _headDim;

        public Case(KvCacheType kType, KvCacheType vType, int headDim, int kvHeads, int group, int nTokens, int startPos, int seed)
        {
            (_kType, _vType, _headDim, _kvHeads, _group, _nTokens, _startPos) = (kType, vType, headDim, kvHeads, group, nTokens, startPos);
            var rng = new Random(seed);
            _q = Alloc((long)nTokens * HeadsQ * headDim);
            _dst = Alloc((long)nTokens * HeadsQ * headDim);
            _kDeq = Alloc((long)Context * KvDim);
            _vDeq = Alloc((long)Context * KvDim);
            float* kRaw = Alloc((long)Context * KvDim), vRaw = Alloc((long)Context * KvDim);
            _k = (byte*)Alloc(KvCacheTypes.RowBytes(kType, KvDim) * Context / 4 + 1);
            _v = (byte*)Alloc(KvCacheTypes.RowBytes(vType, KvDim) * Context / 4 + 1);
            for (long i = 0; i < (long)nTokens * HeadsQ * headDim; i++) _q[i] = (rng.NextSingle() * 2 - 1) * (1 + (i / headDim) % 4);
            int rows = startPos + nTokens;
            for (long i = 0; i < (long)rows * KvDim; i++)
            {
                kRaw[i] = (rng.NextSingle() * 2 - 1) * (1 + i % 3);
                vRaw[i] = rng.NextSingle() * 2 - 1;
            }
            KvRows.Store(kType, kRaw, _k, rows, KvDim);
            KvRows.Store(vType, vRaw, _v, rows, KvDim);
            Decode(kType, _k, rows, _kDeq);
            Decode(vType, _v, rows, _vDeq);
            NativeMemory.AlignedFree(kRaw);
            NativeMemory.AlignedFree(vRaw);
        }

        /// <summary>The stored rows decoded without the kernels' code.</summary>
        private void Decode(KvCacheType t, byte* src, int rows, float* dst)
        {
            long rowBytes = KvCacheTypes.RowBytes(t, KvDim);
            for (int r = 0; r < rows; r++)
            {
                byte* row = src + r * rowBytes;
                float* o = dst + (long)r * KvDim;
                switch (t)
                {
                    case KvCacheType.F32: for (int i = 0; i < KvDim; i++) o[i] = ((float*)row)[i]; break;
                    case KvCacheType.F16: for (int i = 0; i < KvDim; i++) o[i] = (float)BitConverter.UInt16BitsToHalf(((ushort*)row)[i]); break;
                    default: EdgeLlm.Quant.Q8_0.Dequantize(row, o, KvDim); break;
                }
            }
        }

        public float[] Run(int threads, int width) => RunOn(threads, width, _k, _kType, _v, _vType);

        public float[] RunOnDequantizedF32(int threads, int width) => RunOn(threads, width, (byte*)_kDeq, KvCacheType.F32, (byte*)_vDeq, KvCacheType.F32);

        private float[] RunOn(int threads, int width, byte* k, KvCacheType kt, byte* v, KvCacheType vt)
        {
            var scratch = new float*[threads];
            for (int i = 0; i < threads; i++) scratch[i] = Alloc(Attention.ScratchFloats(Context, 128));
            try
            {
                using var pool = new WorkerPool(threads);
                var attention = new Attention(scratch, Context, 128) { Width = width };
                int n = _nTokens * HeadsQ * _headDim;
                new Span<float>(_dst, n).Fill(float.NaN);
                attention.Run(pool, _q, k, kt, KvCacheTypes.RowBytes(kt, KvDim), v, vt, KvCacheTypes.RowBytes(vt, KvDim), _dst,
                    _startPos, _nTokens, HeadsQ, _headDim, KvDim, 1f / MathF.Sqrt(_headDim), 0f, 0);
                return new Span<float>(_dst, n).ToArray();
            }
            finally
            {
                foreach (float* p in scratch) NativeMemory.AlignedFree(p);
            }
        }

        public double[] Reference()
        {
            var o = new double[_nTokens * HeadsQ * _headDim];
            var s = new double[Context];
            double scale = 1.0 / Math.Sqrt(_headDim);
            for (int t = 0; t < _nTokens; t++)
                for (int h = 0; h < HeadsQ; h++)
                {
                    float* q = _q + ((long)t * HeadsQ + h) * _headDim;
                    int kvOff = h / _group * _headDim, last = _startPos + t;
                    double max = double.NegativeInfinity, sum = 0;
                    for (int j = 0; j <= last; j++)
                    {
                        double dot = 0;
                        for (int d = 0; d < _headDim; d++) dot += (double)q[d] * _kDeq[j * KvDim + kvOff + d];
                        s[j] = dot * scale;
                        max = Math.Max(max, s[j]);
                    }
                    for (int j = 0; j <= last; j++) sum += s[j] = Math.Exp(s[j] - max);
                    for (int j = 0; j <= last; j++)
                        for (int d = 0; d < _headDim; d++)
                            o[(t * HeadsQ + h) * _headDim + d] += s[j] / sum * _vDeq[j * KvDim + kvOff + d];
                }
            return o;
        }

        private static float* Alloc(long floats) => (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, floats) * sizeof(float)), 64);

        public void Dispose()
        {
            NativeMemory.AlignedFree(_q);
            NativeMemory.AlignedFree(_dst);
            NativeMemory.AlignedFree(_kDeq);
            NativeMemory.AlignedFree(_vDeq);
            NativeMemory.AlignedFree(_k);
            NativeMemory.AlignedFree(_v);
        }
    }
}
