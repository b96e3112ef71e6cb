using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;

namespace EdgeLlm.Tests.Model;

/// <summary>
/// The tiled CPU attention against a plain float64 causal GQA attention on random q/k/v, for every vector rung,
/// odd batch sizes, prefill at position 0 and later, GQA groups 1 and 8 and head sizes 64 and 48; plus the
/// determinism it promises: bit-identical for any thread count and for any split of a sequence into batches; the
/// same with Gemma's options (a score scale other than 1/sqrt(head_dim), logit softcapping, a sliding window).
/// </summary>
public unsafe class AttentionTests
{
    private const int Context = 128;
    private const int KvHeads = 2;

    public static TheoryData<int, int, int, int> Shapes()
    {
        var data = new TheoryData<int, int, int, int>();
        foreach (int headDim in new[] { 64, 48 })
            foreach (int group in new[] { 1, 8 })
                foreach (int nTokens in new[] { 1, 3, 17, 64 })
                    foreach (int startPos in new[] { 0, 37 })
                        data.Add(nTokens, startPos, group, headDim);
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatchesFloat64AndIsThreadCountIndependent(int nTokens, int startPos, int group, int headDim)
    {
        using var c = new Case(nTokens, startPos, group, headDim, seed: nTokens * 1000 + startPos * 10 + group + headDim);
        double[] want = c.Reference();
        foreach (int width in new[] { 0, 16, 8, 4, 1 })
        {
            float[] one = c.Run(threads: 1, width);
            float[] two = c.Run(threads: 2, width);
            float[] three = c.Run(threads: 3, width);
            for (int i = 0; i < want.Length; i++)
            {
                Assert.True(Math.Abs(one[i] - want[i]) <= 2e-5, $"width {width}, element {i}: {one[i]} vs {want[i]}");
                Assert.True(BitConverter.SingleToInt32Bits(one[i]) == BitConverter.SingleToInt32Bits(two[i]), $"width {width}, element {i}: 1 thread {one[i]}, 2 threads {two[i]}");
                Assert.True(BitConverter.SingleToInt32Bits(one[i]) == BitConverter.SingleToInt32Bits(three[i]), $"width {width}, element {i}: 1 thread {one[i]}, 3 threads {three[i]}");
            }
        }
    }

    [Theory]
    [InlineData(1, 64)]
    [InlineData(8, 64)]
    [InlineData(8, 48)]
    public void BatchEqualsTokenByToken(int group, int headDim)
    {
        // A row's result must not depend on which rows share its tile: 17 tokens at once, then one at a time.
        const int nTokens = 17, startPos = 5;
        using var c = new Case(nTokens, startPos, group, headDim, seed: 77 + group);
        foreach (int width in new[] { 0, 8, 1 })
        {
            float[] batch = c.Run(threads: 2, width);
            int rowFloats = c.HeadsQ * headDim;
            for (int t = 0; t < nTokens; t++)
            {
                float[] single = c.Run(threads: 1, width, firstToken: t, count: 1);
                for (int i = 0; i < rowFloats; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(single[i]) == BitConverter.SingleToInt32Bits(batch[t * rowFloats + i]),
                        $"width {width}, token {t}, element {i}: alone {single[i]}, in the batch {batch[t * rowFloats + i]}");
            }
        }
    }

    public static TheoryData<int, int, int, int, float> WindowShapes()
    {
        var data = new TheoryData<int, int, int, int, float>();
        foreach (int window in new[] { 1, 5, 40 })
            foreach (float softcap in new[] { 0f, 1.5f })
                foreach (int nTokens in new[] { 1, 17, 64 })
                    foreach (int startPos in new[] { 0, 37 })
                        data.Add(nTokens, startPos, window, nTokens % 2 == 0 ? 8 : 1, softcap);
        return data;
    }

    [Theory]
    [MemberData(nameof(WindowShapes))]
    public void WindowAndSoftcapMatchFloat64AndAreThreadCountIndependent(int nTokens, int startPos, int window, int group, float softcap)
    {
        const int headDim = 48;
        using var c = new Case(nTokens, startPos, group, headDim, seed: 5 + nTokens + startPos + window, scale: 0.3f, softcap: softcap, window: window);
        double[] want = c.Reference();
        foreach (int width in new[] { 0, 16, 8, 4, 1 })
        {
            float[] one = c.Run(threads: 1, width);
            float[] three = c.Run(threads: 3, width);
            for (int i = 0; i < want.Length; i++)
            {
                Assert.True(Math.Abs(one[i] - want[i]) <= 2e-5, $"width {width}, element {i}: {one[i]} vs {want[i]}");
                Assert.True(BitConverter.SingleToInt32Bits(one[i]) == BitConverter.SingleToInt32Bits(three[i]), $"width {width}, element {i}: 1 thread {one[i]}, 3 threads {three[i]}");
            }
        }
    }

    [Theory]
    [InlineData(1, 3, 0f)]
    [InlineData(8, 6, 2f)]
    [InlineData(1, 30, 2f)]
    public void WindowedBatchEqualsTokenByToken(int group, int window, float softcap)
    {
        const int nTokens = 40, startPos = 3, headDim = 64;
        using var c = new Case(nTokens, startPos, group, headDim, seed: 91 + window, scale: 0.125f, softcap: softcap, window: window);
        foreach (int width in new[] { 0, 8, 1 })
        {
            float[] batch = c.Run(threads: 2, width);
            int rowFloats = c.HeadsQ * headDim;
            for (int t = 0; t < nTokens; t++)
            {
                float[] single = c.Run(threads: 1, width, firstToken: t, count: 1);
                for (int i = 0; i < rowFloats; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(single[i]) == BitConverter.SingleToInt32Bits(batch[t * rowFloats + i]),
                        $"width {width}, token {t}, element {i}: alone {single[i]}, in the batch {batch[t * rowFloats + i]}");
            }
        }
    }

    /// <summary>Random q for nTokens tokens at startPos.., and a cache filled for positions 0..startPos + nTokens − 1.</summary>
    private sealed class Case : IDisposable
    {
        private readonly int _nTokens, _startPos, _group, _headDim, _window;
        private readonly float _scale, _softcap;
        private readonly float* _q, _k, _v, _dst;
        public int HeadsQ => KvHeads * _group;
        private int KvDim => KvHeads * _headDim;

        public Case(int nTokens, int startPos, int group, int headDim, int seed, float scale = 0f, float softcap = 0f, int window = 0)
        {
            (_nTokens, _startPos, _group, _headDim) = (nTokens, startPos, group, headDim);
            (_scale, _softcap, _window) = (scale == 0f ? 1f / MathF.Sqrt(headDim) : scale, softcap, window);
            var rng = new Random(seed);
            _q = Alloc((long)nTokens * HeadsQ * headDim);
            _k = Alloc((long)Context * KvDim);
            _v = Alloc((long)Context * KvDim);
            _dst = Alloc((long)nTokens * HeadsQ * headDim);
            // Queries scaled up so the softmax is peaked as well as flat across rows.
            for (long i = 0; i < (long)nTokens * HeadsQ * headDim; i++) _q[i] = (rng.NextSingle() * 2 - 1) * (1 + (i / headDim) % 4);
            for (long i = 0; i < (long)(startPos + nTokens) * KvDim; i++)
            {
                _k[i] = rng.NextSingle() * 2 - 1;
                _v[i] = rng.NextSingle() * 2 - 1;
            }
        }

        public float[] Run(int threads, int width, int firstToken = 0, int count = -1)
        {
            if (count < 0) count = _nTokens;
            var scratch = new float*[threads];
            for (int i = 0; i < threads; i++) scratch[i] = Alloc(Attention.ScratchFloats(Context, 64));
            try
            {
                using var pool = new WorkerPool(threads);
                var attention = new Attention(scratch, Context, 64) { Width = width };
                long rowFloats = (long)HeadsQ * _headDim;
                new Span<float>(_dst, (int)(count * rowFloats)).Fill(float.NaN);
                attention.Run(pool, _q + firstToken * rowFloats, _k, _v, _dst, _startPos + firstToken, count, HeadsQ, _headDim, KvDim, _scale, _softcap, _window);
                return new Span<float>(_dst, (int)(count * rowFloats)).ToArray();
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
            double scale = _scale;
            for (int t = 0; t < _nTokens; t++)
                for (int h = 0; h < HeadsQ; h++)
                {
                    float* q = _q + ((long)t * HeadsQ + h) * _headDim;
                    int kvOff = h / _group * _headDim, last = _startPos + t;
                    // Visible keys: j <= i and, with a window W, i - j < W.
                    int first = _window == 0 ? 0 : Math.Max(0, last - _window + 1);
                    double max = double.NegativeInfinity, sum = 0;
                    for (int j = first; j <= last; j++)
                    {
                        double dot = 0;
                        for (int d = 0; d < _headDim; d++) dot += (double)q[d] * _k[j * KvDim + kvOff + d];
                        s[j] = dot * scale;
                        if (_softcap > 0) s[j] = _softcap * Math.Tanh(s[j] / _softcap);
                        max = Math.Max(max, s[j]);
                    }
                    for (int j = first; j <= last; j++) sum += s[j] = Math.Exp(s[j] - max);
                    for (int j = first; j <= last; j++)
                        for (int d = 0; d < _headDim; d++)
                            o[((t * HeadsQ) + h) * _headDim + d] += s[j] / sum * _v[j * KvDim + kvOff + d];
                }
            return o;
        }

        private static float* Alloc(long floats) => (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);

        public void Dispose()
        {
            NativeMemory.AlignedFree(_q);
            NativeMemory.AlignedFree(_k);
            NativeMemory.AlignedFree(_v);
            NativeMemory.AlignedFree(_dst);
        }
    }
}
