using System.Runtime.InteropServices;
using EdgeLlm.Tests.Cuda;
using static EdgeLlm.Tests.Cuda.CudaBlockMathHostTests;

namespace EdgeLlm.Tests.CudaPrefillGemm;

/// <summary>
/// kernels/attention_prefill.cu (attention_prefill_f16 over the fp16 cache, attention_prefill_f32 over a float one),
/// compiled by the host C++ compiler (Cuda/HostEmulation) and run with emulated 128-thread blocks over the grid
/// CudaBackend launches, against a float64 reference written here: causal (token t at position start + t sees
/// positions up to its own), grouped-query heads, sliding window and softcap, on caches that already hold earlier
/// positions. Outputs the kernel never writes stay NaN and fail.
/// </summary>
public class FlashAttentionPrefillTests
{
    public static TheoryData<int, int, int, int, int, int, float, bool> Cases() => new()
    {
        // tokens, headDim, heads, kvHeads, startPos, window, softcap, f32 cache
        { 8, 64, 4, 2, 0, 0, 0f, false },       // one query tile from the first position
        { 21, 64, 4, 2, 0, 0, 0f, false },      // a ragged last query tile, key tiles across the batch
        { 13, 128, 8, 2, 37, 0, 0f, false },    // earlier positions in the cache, group 4
        { 17, 128, 8, 1, 5, 0, 0f, true },      // float cache, group 8
        { 30, 64, 4, 4, 10, 9, 3f, false },     // sliding window (keys before it skipped) and softcap, no grouping
        { 12, 80, 4, 2, 3, 0, 0f, true },       // head dimension 80 (lanes idle in the last 32)
        { 9, 256, 2, 1, 20, 16, 0f, false },    // head dimension 256, window of one key tile
        { 2, 64, 6, 2, 50, 0, 50f, false },     // a two-token batch, group 3
    };

    [HostCompilerTheory]
    [MemberData(nameof(Cases))]
    public void FlashAttentionMatchesTheFloat64Reference(int tokens, int headDim, int heads, int kvHeads, int start, int window, float softcap, bool f32)
    {
        int kvDim = kvHeads * headDim, total = start + tokens, group = heads / kvHeads;
        const float scale = 0.3f;
        var rng = new Random(tokens * 101 + headDim + start);
        float[] Random(int n, float s) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * s).ToArray();
        var k = Random(total * kvDim, 2f);
        var v = Random(total * kvDim, 1f);
        if (!f32)
        {
            for (int i = 0; i < k.Length; i++) k[i] = (float)(Half)k[i];
            for (int i = 0; i < v.Length; i++) v[i] = (float)(Half)v[i];
        }
        var q = Random(tokens * heads * headDim, 2f);

        var input = new MemoryStream();
        input.Write("attention_prefill\0"u8);
        foreach (int x in new[] { tokens, heads, headDim, kvDim, start, window, f32 ? 1 : 0 }) input.Write(BitConverter.GetBytes(x));
        input.Write(BitConverter.GetBytes(scale));
        input.Write(BitConverter.GetBytes(softcap));
        foreach (var cache in new[] { k, v })
        {
            if (f32) input.Write(MemoryMarshal.AsBytes(cache.AsSpan()));
            else foreach (float x in cache) input.Write(BitConverter.GetBytes(BitConverter.HalfToUInt16Bits((Half)x)));
        }
        input.Write(MemoryMarshal.AsBytes(q.AsSpan()));
        var got = MemoryMarshal.Cast<byte, float>(Harness.Exec(input, "attention_prefill")).ToArray();
        Assert.Equal(q.Length, got.Length);

        var scores = new double[total];
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
            {
                int pos = start + t, kvh = h / group, first = window > 0 ? Math.Max(0, pos - window + 1) : 0;
                double max = double.NegativeInfinity;
                for (int j = first; j <= pos; j++)
                {
                    double s = 0;
                    for (int d = 0; d < headDim; d++) s += (double)q[(t * heads + h) * headDim + d] * k[j * kvDim + kvh * headDim + d];
                    s *= scale;
                    if (softcap > 0) s = softcap * Math.Tanh(s / softcap);
                    scores[j] = s;
                    max = Math.Max(max, s);
                }
                double sum = 0;
                for (int j = first; j <= pos; j++) sum += Math.Exp(scores[j] - max);
                for (int d = 0; d < headDim; d++)
                {
                    double o = 0;
                    for (int j = first; j <= pos; j++) o += Math.Exp(scores[j] - max) / sum * v[j * kvDim + kvh * headDim + d];
                    float g = got[(t * heads + h) * headDim + d];
                    // float scores (|s| up to ~20) and float sums over up to 90 positions: well under 1e-5 of order-1 values;
                    // a missed or extra key, a wrong head group or a stale tile is of order 0.01 or more.
                    Assert.True(Math.Abs(g - o) <= 1e-5 + 1e-5 * Math.Abs(o),
                        $"token {t} head {h} element {d}: kernel {g}, float64 reference {o}");
                }
            }
    }
}
