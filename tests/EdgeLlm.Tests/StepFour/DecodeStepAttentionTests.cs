using System.Runtime.InteropServices;
using EdgeLlm.Backends.Cpu;
using EdgeLlm.Compute;

namespace EdgeLlm.Tests.StepFour;

/// <summary>
/// The attention of a server decode step (<see cref="Attention.RunSegments"/>: several sequences of one token each,
/// every work unit one GQA group of rows, fewer than the tile's 32 lanes) on scratch that starts as NaN and that a
/// prefill of 32-row tiles has filled just before (so every lane of the transposed queries held a query of another
/// tile): each output element against a float64 causal GQA attention, and the bits of each sequence run alone, for
/// groups of 1, 2, 6, 8 and 20 rows (one or two vectors of lanes), every vector width and 1 or 2 threads. The tile writes
/// only the lanes the kernels read (the vectors that hold its rows); this checks that no lane it leaves alone reaches an
/// output and that the rows it does write are the step's queries.
/// </summary>
public sealed unsafe class DecodeStepAttentionTests
{
    private const int Context = 96, HeadDim = 64, KvHeads = 2;
    private static readonly int[] Starts = [40, 3, 71, 17]; // each sequence's one token sits at this position

    public static TheoryData<int, int, int> Cases()
    {
        var d = new TheoryData<int, int, int>();
        foreach (int group in new[] { 1, 2, 6, 8, 20 })
            foreach (int width in new[] { 16, 8, 4, 1 })
                foreach (int threads in new[] { 1, 2 })
                    d.Add(group, width, threads);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DecodeTilesMatchFloat64AndEachSequenceAlone(int group, int width, int threads)
    {
        int heads = KvHeads * group, qDim = heads * HeadDim, kvDim = KvHeads * HeadDim;
        var rng = new Random(group * 100 + width);
        int seqs = Starts.Length;
        var q = new float*[seqs];
        var k = new float*[seqs];
        var v = new float*[seqs];
        var dst = new float*[seqs];
        var scratch = new float*[threads];
        var memory = new AlignedFloats();
        float* Alloc(long floats, float fill) => memory.Alloc(floats, fill);
        try
        {
            for (int s = 0; s < seqs; s++)
            {
                q[s] = Alloc(qDim, 0f);
                k[s] = Alloc((long)Context * kvDim, 0f);
                v[s] = Alloc((long)Context * kvDim, 0f);
                dst[s] = Alloc(qDim, float.NaN);
                for (int i = 0; i < qDim; i++) q[s][i] = (rng.NextSingle() * 2 - 1) * (1 + i / HeadDim % 3);
                for (int i = 0; i < (Starts[s] + 1) * kvDim; i++)
                {
                    k[s][i] = rng.NextSingle() * 2 - 1;
                    v[s][i] = rng.NextSingle() * 2 - 1;
                }
            }
            for (int i = 0; i < threads; i++) scratch[i] = Alloc(Attention.ScratchFloats(Context, HeadDim), float.NaN);

            // A prefill first: 9 tokens of sequence 0's queries repeated at positions 0..8 fill every lane of 32-row tiles.
            const int prefill = 9;
            float* pq = Alloc((long)prefill * qDim, 0f), pd = Alloc((long)prefill * qDim, 0f);
            for (int t = 0; t < prefill; t++) new Span<float>(q[0], qDim).CopyTo(new Span<float>(pq + (long)t * qDim, qDim));
            float scale = 1f / MathF.Sqrt(HeadDim);
            using var pool = new WorkerPool(threads);
            var attention = new Attention(scratch, Context, HeadDim) { Width = width };
            attention.Run(pool, pq, k[0], v[0], pd, 0, prefill, heads, HeadDim, kvDim, scale, 0f, 0);

            var segs = attention.Segments(seqs);
            for (int s = 0; s < seqs; s++)
            {
                segs[s].Q = q[s];
                segs[s].Dst = dst[s];
                segs[s].K = (byte*)k[s];
                segs[s].V = (byte*)v[s];
                segs[s].KType = KvCacheType.F32;
                segs[s].VType = KvCacheType.F32;
                segs[s].KRow = 4L * kvDim;
                segs[s].VRow = 4L * kvDim;
                segs[s].StartPos = Starts[s];
                segs[s].NTokens = 1;
            }
            attention.RunSegments(pool, seqs, heads, HeadDim, kvDim, scale, 0f, 0);

            for (int s = 0; s < seqs; s++)
            {
                double[] want = Reference(q[s], k[s], v[s], Starts[s], heads, group, kvDim, scale);
                float* alone = Alloc(qDim, float.NaN);
                attention.Run(pool, q[s], k[s], v[s], alone, Starts[s], 1, heads, HeadDim, kvDim, scale, 0f, 0);
                for (int i = 0; i < qDim; i++)
                {
                    float got = dst[s][i];
                    Assert.True(Math.Abs(got - want[i]) <= 2e-5, $"group {group} width {width} threads {threads} sequence {s} element {i}: {got} vs float64 {want[i]}");
                    Assert.True(BitConverter.SingleToInt32Bits(got) == BitConverter.SingleToInt32Bits(alone[i]), $"group {group} width {width} sequence {s} element {i}: in the step {got}, alone {alone[i]}");
                }
            }
        }
        finally
        {
            memory.Dispose();
        }
    }

    /// <summary>Plain causal GQA attention of one token at <paramref name="pos"/> in float64.</summary>
    private static double[] Reference(float* q, float* k, float* v, int pos, int heads, int group, int kvDim, double scale)
    {
        var o = new double[heads * HeadDim];
        var s = new double[pos + 1];
        for (int h = 0; h < heads; h++)
        {
            int kvOff = h / group * HeadDim;
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j <= pos; j++)
            {
                double dot = 0;
                for (int d = 0; d < HeadDim; d++) dot += (double)q[h * HeadDim + d] * k[j * kvDim + kvOff + d];
                s[j] = dot * scale;
                max = Math.Max(max, s[j]);
            }
            for (int j = 0; j <= pos; j++) sum += s[j] = Math.Exp(s[j] - max);
            for (int j = 0; j <= pos; j++)
                for (int d = 0; d < HeadDim; d++) o[h * HeadDim + d] += s[j] / sum * v[j * kvDim + kvOff + d];
        }
        return o;
    }
}
