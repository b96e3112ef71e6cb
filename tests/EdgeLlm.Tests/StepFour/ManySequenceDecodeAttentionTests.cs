using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Compute;

namespace EdgeLlm.Tests.StepFour;

/// <summary>
/// A decode step of 1 to 8 sequences of one token each (<see cref="Attention.RunSegments"/>), every sequence at its own
/// position, the key counts spanning the score blocks' edges (1, 3, 4, 7, 8, 9, 15-17, 31-33, 63-65, 127-129 keys) and
/// the f16/q8_0 chunk of 128: 1 to 4 KV heads (odd counts leave a head without a partner when KV heads go by pairs),
/// GQA groups of 1, 4, 8 (rows fit half a 16-lane vector) and 9 (they do not), with and without the query rotation, a
/// sliding window and a softcap, every vector width, 1 and 3 threads. Each output element against a float64 causal
/// attention (the rotation in float64 too, from the same table values), and its bits against the sequence run alone
/// and against the same row as the last of a 3-token prompt chunk of its sequence (a prefill tile of several tokens):
/// the promise that a row's result does not depend on the rows, heads or sequences it shares a call with. The scratch
/// starts as NaN and a prefill runs first, so a lane a unit reads but does not write would show.
/// </summary>
public sealed unsafe class ManySequenceDecodeAttentionTests
{
    private const int Context = 160, HeadDim = 32, MaxSeqs = 8;
    private static readonly int[] Keys = [1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129];

    public static TheoryData<int, int, int, int> Cases()
    {
        var d = new TheoryData<int, int, int, int>();
        foreach (int kvHeads in new[] { 1, 2, 3, 4 })
            foreach (int group in new[] { 1, 4, 8, 9 })
                foreach (int variant in new[] { 0, 1, 2 }) // plain; rotated (normal layout), window 20; rotated (NEOX), softcap
                    d.Add(kvHeads, group, variant, (kvHeads * 7 + group + variant) % 5);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Each_sequence_gets_float64_values_and_its_alone_and_prefill_bits(int kvHeads, int group, int variant, int seedShift)
    {
        int heads = kvHeads * group, qDim = heads * HeadDim, kvDim = kvHeads * HeadDim;
        bool rotate = variant > 0, neox = variant == 2;
        int window = variant == 1 ? 20 : 0;
        float softcap = variant == 2 ? 3f : 0f, scale = 1f / MathF.Sqrt(HeadDim);
        var rng = new Random(kvHeads * 1000 + group * 10 + variant);
        var memory = new AlignedFloats();
        float* Alloc(long floats, float fill) => memory.Alloc(floats, fill);
        try
        {
            // Sequence s: queries of its last 3 positions (rows t = 0, 1, 2 at positions pos - 2, pos - 1, pos), its cache,
            // and the rotation table of those 3 positions (half = HeadDim / 2 values per row).
            const int half = HeadDim / 2;
            var pos = new int[MaxSeqs];
            var q = new float*[MaxSeqs];
            var k = new float*[MaxSeqs];
            var v = new float*[MaxSeqs];
            var cos = new float*[MaxSeqs];
            var sin = new float*[MaxSeqs];
            for (int s = 0; s < MaxSeqs; s++)
            {
                pos[s] = Keys[(s * 5 + seedShift * 3 + group) % Keys.Length] - 1;
                q[s] = Alloc(3L * qDim, 0f);
                k[s] = Alloc((long)Context * kvDim, 0f);
                v[s] = Alloc((long)Context * kvDim, 0f);
                cos[s] = Alloc(3 * half, 0f);
                sin[s] = Alloc(3 * half, 0f);
                for (int i = 0; i < 3 * qDim; i++) q[s][i] = (rng.NextSingle() * 2 - 1) * (1 + i / HeadDim % 3);
                for (int i = 0; i < (pos[s] + 1) * kvDim; i++)
                {
                    k[s][i] = rng.NextSingle() * 2 - 1;
                    v[s][i] = rng.NextSingle() * 2 - 1;
                }
                for (int t = 0; t < 3; t++)
                    for (int i = 0; i < half; i++)
                    {
                        double theta = (pos[s] - 2 + t) * Math.Pow(10000, -2.0 * i / HeadDim);
                        cos[s][t * half + i] = (float)Math.Cos(theta);
                        sin[s][t * half + i] = (float)Math.Sin(theta);
                    }
            }

            var want = new double[MaxSeqs][];
            for (int s = 0; s < MaxSeqs; s++)
                want[s] = Reference(q[s] + 2L * qDim, rotate ? cos[s] + 2 * half : null, rotate ? sin[s] + 2 * half : null, neox,
                    k[s], v[s], pos[s], heads, group, kvDim, scale, softcap, window);

            foreach (int width in new[] { 0, 16, 8, 4, 1 })
                foreach (int threads in new[] { 1, 3 })
                {
                    var scratch = new float*[threads];
                    for (int i = 0; i < threads; i++) scratch[i] = Alloc(Attention.ScratchFloats(Context, HeadDim), float.NaN);
                    using var pool = new WorkerPool(threads);
                    var attention = new Attention(scratch, Context, HeadDim) { Width = width };

                    // Each sequence's 3-token chunk first (its last row is the decode row), on the scratch the step then reads.
                    var prefill = new float*[MaxSeqs];
                    for (int s = 0; s < MaxSeqs; s++)
                    {
                        prefill[s] = Alloc(3L * qDim, float.NaN);
                        if (pos[s] < 2) continue;
                        Set(attention.Segments(1), 0, q[s], prefill[s], k[s], v[s], kvDim, pos[s] - 2, 3, rotate ? cos[s] : null, rotate ? sin[s] : null);
                        attention.RunSegments(pool, 1, heads, HeadDim, kvDim, scale, softcap, window, rotate ? HeadDim : 0, neox);
                    }

                    for (int count = 1; count <= MaxSeqs; count++)
                    {
                        var dst = new float*[count];
                        var segs = attention.Segments(count);
                        for (int s = 0; s < count; s++)
                        {
                            dst[s] = Alloc(qDim, float.NaN);
                            Set(segs, s, q[s] + 2L * qDim, dst[s], k[s], v[s], kvDim, pos[s], 1, rotate ? cos[s] + 2 * half : null, rotate ? sin[s] + 2 * half : null);
                        }
                        attention.RunSegments(pool, count, heads, HeadDim, kvDim, scale, softcap, window, rotate ? HeadDim : 0, neox);

                        for (int s = 0; s < count; s++)
                        {
                            float* alone = Alloc(qDim, float.NaN);
                            Set(attention.Segments(1), 0, q[s] + 2L * qDim, alone, k[s], v[s], kvDim, pos[s], 1, rotate ? cos[s] + 2 * half : null, rotate ? sin[s] + 2 * half : null);
                            attention.RunSegments(pool, 1, heads, HeadDim, kvDim, scale, softcap, window, rotate ? HeadDim : 0, neox);
                            string where = $"kv heads {kvHeads} group {group} variant {variant} width {width} threads {threads}: sequence {s} of {count} at {pos[s]}";
                            for (int i = 0; i < qDim; i++)
                            {
                                float got = dst[s][i];
                                Assert.True(Math.Abs(got - want[s][i]) <= 2e-5, $"{where}, element {i}: {got} vs float64 {want[s][i]}");
                                Assert.True(BitConverter.SingleToInt32Bits(got) == BitConverter.SingleToInt32Bits(alone[i]), $"{where}, element {i}: {got}, alone {alone[i]}");
                                if (pos[s] >= 2)
                                    Assert.True(BitConverter.SingleToInt32Bits(got) == BitConverter.SingleToInt32Bits(prefill[s][2L * qDim + i]),
                                        $"{where}, element {i}: {got}, as the last row of a 3-token chunk {prefill[s][2L * qDim + i]}");
                            }
                        }
                    }
                    foreach (var p in scratch) memory.Free(p);
                }
        }
        finally
        {
            memory.Dispose();
        }
    }

    private static void Set(Span<Attention.Segment> segs, int s, float* q, float* dst, float* k, float* v, int kvDim, int start, int tokens, float* cos, float* sin)
    {
        segs[s].Q = q;
        segs[s].Dst = dst;
        segs[s].K = (byte*)k;
        segs[s].V = (byte*)v;
        segs[s].KType = KvCacheType.F32;
        segs[s].VType = KvCacheType.F32;
        segs[s].KRow = 4L * kvDim;
        segs[s].VRow = 4L * kvDim;
        segs[s].StartPos = start;
        segs[s].NTokens = tokens;
        segs[s].Cos = cos;
        segs[s].Sin = sin;
    }

    /// <summary>One token at <paramref name="pos"/>: its query rotated in float64 (when a table is given), causal GQA attention in float64.</summary>
    private static double[] Reference(float* q, float* cos, float* sin, bool neox, float* k, float* v, int pos, int heads, int group, int kvDim,
        double scale, double softcap, int window)
    {
        var o = new double[heads * HeadDim];
        var s = new double[pos + 1];
        var qr = new double[HeadDim];
        const int half = HeadDim / 2;
        int first = window == 0 ? 0 : Math.Max(0, pos - window + 1);
        for (int h = 0; h < heads; h++)
        {
            for (int d = 0; d < HeadDim; d++) qr[d] = q[h * HeadDim + d];
            if (cos != null)
                for (int i = 0; i < half; i++)
                {
                    int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                    double x0 = qr[a], x1 = qr[b];
                    qr[a] = x0 * cos[i] - x1 * sin[i];
                    qr[b] = x0 * sin[i] + x1 * cos[i];
                }
            int kvOff = h / group * HeadDim;
            double max = double.NegativeInfinity, sum = 0;
            for (int j = first; j <= pos; j++)
            {
                double dot = 0;
                for (int d = 0; d < HeadDim; d++) dot += qr[d] * k[j * kvDim + kvOff + d];
                s[j] = dot * scale;
                if (softcap > 0) s[j] = softcap * Math.Tanh(s[j] / softcap);
                max = Math.Max(max, s[j]);
            }
            for (int j = first; j <= pos; j++) sum += s[j] = Math.Exp(s[j] - max);
            for (int j = first; j <= pos; j++)
                for (int d = 0; d < HeadDim; d++) o[h * HeadDim + d] += s[j] / sum * v[j * kvDim + kvOff + d];
        }
        return o;
    }
}
