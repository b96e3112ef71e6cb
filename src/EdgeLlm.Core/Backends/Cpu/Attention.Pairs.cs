using EdgeLlm.Backends.Cpu.Kernels;
using System.Runtime.Intrinsics;
using EdgeLlm.Compute;

namespace EdgeLlm.Backends.Cpu;

/// <summary>
/// Two KV heads in one unit: a decode token's GQA group (8 rows on the 1.1B and 7B shapes) fills half of a 16-lane
/// vector, so a unit of one head computes its scores and its softmax on as many idle lanes as rows. A segment whose
/// rows per KV head fit in 8 (<see cref="Paired"/>) runs heads 2u and 2u + 1 as one unit: the first head's rows in
/// lanes 0..7, the second's in lanes 8..15 (lanes past the rows zero, seeing every key), the score step broadcasting
/// each head's key element into its half (<see cref="AttentionTile.ScoresPair"/>), one softmax over the 16 lanes, then
/// each head's values as in <see cref="Unit"/>. Every lane goes through the same operations as in a unit of its own
/// head, so each output element keeps its bits (the same as the row gets in a prefill tile, alone or in a batch).
/// </summary>
internal sealed unsafe partial class Attention
{
    /// <summary>Lanes of a pair unit's half.</summary>
    private const int Half = 8;

    /// <summary>
    /// Whether <paramref name="sg"/>'s units go by pairs of KV heads: 16-lane vectors, at most <see cref="Half"/> rows
    /// per KV head (one tile: a decode token of a group of up to 8), two KV heads or more and an f32 cache.
    /// </summary>
    private bool Paired(in Segment sg) =>
        _width == 16 && _nKv >= 2 && sg.NTokens * _group <= Half && sg.KType == KvCacheType.F32 && sg.VType == KvCacheType.F32;

    /// <summary>KV heads <paramref name="kvHead"/> and kvHead + 1 of a paired segment (<see cref="Paired"/>) on <paramref name="thread"/>'s scratch.</summary>
    private void PairUnit(int thread, in Segment sg, int kvHead)
    {
        int startPos = sg.StartPos, headDim = _headDim, group = _group;
        int rows = sg.NTokens * group;
        float* qt = _scratch[thread];
        float* st = qt + (long)_maxHeadDim * Lanes;
        int* limit = (int*)(st + (long)_contextSize * Lanes);
        float* inv = (float*)(limit + Lanes);
        float* dummy = inv + Lanes;
        int keys = startPos + (rows - 1) / group + 1;
        int j0 = FirstKey(startPos);
        int n = keys - j0;
        long qDim = (long)_nHeads * headDim;

        // Each head's rows into its half of qt (rotated when asked), the lanes past them zero. A decode token's rows (one
        // token: consecutive heads) are moved by blocks and rotated across the 16 lanes at once.
        bool oneToken = sg.NTokens == 1;
        for (int half = 0; half < 2; half++)
        {
            int head = kvHead + half, lane0 = half * Half;
            if (oneToken) AttentionTile.TransposeRows(sg.Q + (long)head * group * headDim, headDim, rows, headDim, qt, lane0);
            for (int r = 0; r < rows; r++)
            {
                int t = r / group;
                limit[lane0 + r] = startPos + t;
                if (oneToken) continue;
                int h = head * group + r % group;
                float* src = sg.Q + t * qDim + (long)h * headDim;
                if (sg.Cos != null) Rope.Rotate(src, sg.Cos + (long)t * _ropeHalf, sg.Sin + (long)t * _ropeHalf, _ropeHalf, headDim, _ropeNeox, qt + lane0 + r, Lanes);
                else for (int d = 0; d < headDim; d++) qt[d * Lanes + lane0 + r] = src[d];
            }
            for (int r = rows; r < Half; r++)
            {
                for (int d = 0; d < headDim; d++) qt[d * Lanes + lane0 + r] = 0f;
                limit[lane0 + r] = keys - 1;
            }
        }
        if (oneToken && sg.Cos != null) AttentionTile.RotateLanes<SimdF512, Vector512<float>>(qt, 1, sg.Cos, sg.Sin, _ropeHalf, _ropeNeox);

        long kvOff = (long)kvHead * headDim;
        AttentionTile.ScoresPair(qt, (float*)sg.K + kvOff + (long)j0 * _kvDim, _kvDim, headDim, headDim, n, _scale, st, (float*)sg.V + kvOff + (long)j0 * _kvDim);
        if (_softcap > 0) AttentionTile.Softcap<SimdF512, Vector512<float>>(st, n, 1, _softcap);
        for (int half = 0; half < 2; half++)
            for (int r = half * Half; r < half * Half + rows; r++)
            {
                for (int j = limit[r] + 1; j < keys; j++) st[(long)(j - j0) * Lanes + r] = float.NegativeInfinity;
                if (_window != 0)
                    for (int j = j0, lo = FirstKey(limit[r]); j < lo; j++) st[(long)(j - j0) * Lanes + r] = float.NegativeInfinity;
            }
        AttentionTile.Softmax<SimdF512, Vector512<float>>(st, n, 1, inv);

        for (int half = 0; half < 2; half++)
        {
            int head = kvHead + half, lane0 = half * Half;
            float* v = (float*)sg.V + (long)head * headDim + (long)j0 * _kvDim;
            for (int r = 0; r < rows; r += 4)
            {
                float* o0 = Out(sg.Dst, r, head), o1 = r + 1 < rows ? Out(sg.Dst, r + 1, head) : dummy;
                float* o2 = r + 2 < rows ? Out(sg.Dst, r + 2, head) : dummy, o3 = r + 3 < rows ? Out(sg.Dst, r + 3, head) : dummy;
                int nv = limit[lane0 + Math.Min(rows, r + 4) - 1] + 1 - j0;
                AttentionTile.Values<SimdF512, Vector512<float>>(st, lane0 + r, v, _kvDim, headDim, nv, inv, o0, o1, o2, o3);
            }
        }
    }
}
