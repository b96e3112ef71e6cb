// Causal grouped-query attention over the fp16 KV cache, one block per (query head, token). Token t sits at
// position i = pos + t and sees cache rows j <= i, and with a sliding window (window > 0) only i - j < window.
// A key's score is scale * (q . k), then softcap * tanh(score / softcap) when softcap > 0. Each of the block's warps takes positions w, w+WARPS, ... and
// keeps an online softmax (running max m, running sum l, weighted value sum acc); the warps' states are merged
// at the end. Lane i holds the head elements i, i+32, ... (head_dim <= 256).
#include "common.cuh"

#define MAX_HEAD_DIM 256
#define MAX_WARPS 8

extern "C" __global__ void attention_f16(const float* __restrict__ q, const u16* __restrict__ kc, const u16* __restrict__ vc,
                                         float* __restrict__ dst, const int* __restrict__ step, int posDelta, int nHeads,
                                         int headDim, int kvDim, int group, float scale, float softcap, int window)
{
    __shared__ float qs[MAX_HEAD_DIM];
    __shared__ float wm[MAX_WARPS], wl[MAX_WARPS];
    __shared__ float wacc[MAX_WARPS][MAX_HEAD_DIM];

    int h = blockIdx.x, t = blockIdx.y;
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, warps = blockDim.x / WARP;
    int last = step_pos(step, posDelta) + t;
    i64 qDim = (i64)nHeads * headDim;
    const float* qh = q + t * qDim + (i64)h * headDim;
    i64 kvOff = (i64)(h / group) * headDim;
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) qs[d] = qh[d];
    __syncthreads();

    float m = NEG_INF, l = 0.0f;
    float acc[MAX_HEAD_DIM / WARP];
#pragma unroll
    for (int i = 0; i < MAX_HEAD_DIM / WARP; i++) acc[i] = 0.0f;

    int first = window > 0 ? max(0, last - window + 1) : 0;
    for (int j = first + warp; j <= last; j += warps)
    {
        const u16* kr = kc + (i64)j * kvDim + kvOff;
        const u16* vr = vc + (i64)j * kvDim + kvOff;
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < MAX_HEAD_DIM / WARP; i++)
        {
            int d = lane + i * WARP;
            if (d < headDim) s = __fmaf_rn(qs[d], half_to_float(kr[d]), s);
        }
        s = warp_sum(s) * scale;
        if (softcap > 0.0f) s = __fmul_rn(softcap, tanhf(__fmul_rn(s, __frcp_rn(softcap))));
        float mNew = fmaxf(m, s);
        float corr = expf(m - mNew); // 0 on the first position (m = -inf)
        float p = expf(s - mNew);
        l = l * corr + p;
#pragma unroll
        for (int i = 0; i < MAX_HEAD_DIM / WARP; i++)
        {
            int d = lane + i * WARP;
            if (d < headDim) acc[i] = acc[i] * corr + p * half_to_float(vr[d]);
        }
        m = mNew;
    }

    if (lane == 0) { wm[warp] = m; wl[warp] = l; }
#pragma unroll
    for (int i = 0; i < MAX_HEAD_DIM / WARP; i++)
    {
        int d = lane + i * WARP;
        if (d < headDim) wacc[warp][d] = acc[i];
    }
    __syncthreads();

    float M = NEG_INF;
    for (int w = 0; w < warps; w++) M = fmaxf(M, wm[w]);
    float L = 0.0f;
    for (int w = 0; w < warps; w++) L += wl[w] == 0.0f ? 0.0f : wl[w] * expf(wm[w] - M);
    float* out = dst + t * qDim + (i64)h * headDim;
    for (int d = threadIdx.x; d < headDim; d += blockDim.x)
    {
        float o = 0.0f;
        for (int w = 0; w < warps; w++)
            if (wl[w] != 0.0f) o += wacc[w][d] * expf(wm[w] - M);
        out[d] = o / L;
    }
}

// Flash-decoding: the same attention with the positions split into chunks of chunkSize across blocks, then a
// combine step. attention_split_f16 runs one block per (kv head, chunk, token): all `group` query heads that share
// the kv head are done by the same block, so each K/V row is read once per group, with one 16-byte load of 8
// halves per lane (head_dim a multiple of 8, at most 256, group at most SPLIT_MAX_GROUP). The block's warps take
// the chunk's positions in turn with an online softmax per query head; the warps are merged in shared memory and
// the block writes, per query head, its unnormalised weighted value sum, its running max M and its sum L to
// part[((t * nHeads + h) * chunks + c) * (headDim + 2) ...]. The grid is fixed for the whole context (chunks =
// ceil(context / chunkSize)), so a captured graph stays valid as the position grows: chunks wholly past the
// position (or before the window) exit at once, and attention_combine_f32 reads only the chunks that hold
// positions first..last.
#define SPLIT_WARPS 4
#define SPLIT_MAX_GROUP 8
#define SPLIT_PER_LANE 8

__device__ __forceinline__ void unpack_half8(uint4 u, float* f)
{
    f[0] = half_to_float((u16)(u.x & 0xFFFFu)); f[1] = half_to_float((u16)(u.x >> 16));
    f[2] = half_to_float((u16)(u.y & 0xFFFFu)); f[3] = half_to_float((u16)(u.y >> 16));
    f[4] = half_to_float((u16)(u.z & 0xFFFFu)); f[5] = half_to_float((u16)(u.z >> 16));
    f[6] = half_to_float((u16)(u.w & 0xFFFFu)); f[7] = half_to_float((u16)(u.w >> 16));
}

// The work of block (kv head kvh, chunk c, token t) of attention_split_f16 over its positions begin..end (begin <= end):
// the partial results of the group's query heads into part.
__device__ __forceinline__ void attention_split_chunk(const float* __restrict__ q, const u16* __restrict__ kc, const u16* __restrict__ vc,
                                                      float* part, int nHeads, int headDim, int kvDim, int group, float scale,
                                                      float softcap, int chunks, int kvh, int c, int t, int begin, int end)
{
    __shared__ float qs[SPLIT_MAX_GROUP][MAX_HEAD_DIM];
    __shared__ float sacc[SPLIT_MAX_GROUP][MAX_HEAD_DIM];
    __shared__ float wm[SPLIT_WARPS][SPLIT_MAX_GROUP], wl[SPLIT_WARPS][SPLIT_MAX_GROUP];
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;

    i64 qDim = (i64)nHeads * headDim;
    int h0 = kvh * group;
    for (int i = threadIdx.x; i < group * headDim; i += blockDim.x) qs[i / headDim][i % headDim] = q[t * qDim + (i64)h0 * headDim + i];
    for (int i = threadIdx.x; i < group * headDim; i += blockDim.x) sacc[i / headDim][i % headDim] = 0.0f;
    __syncthreads();

    int d0 = lane * SPLIT_PER_LANE;
    bool active = d0 < headDim;
    i64 kvOff = (i64)kvh * headDim + d0;
    float m[SPLIT_MAX_GROUP], l[SPLIT_MAX_GROUP], acc[SPLIT_MAX_GROUP][SPLIT_PER_LANE];
#pragma unroll
    for (int g = 0; g < SPLIT_MAX_GROUP; g++)
    {
        m[g] = NEG_INF;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < SPLIT_PER_LANE; e++) acc[g][e] = 0.0f;
    }

    for (int j = begin + warp; j <= end; j += SPLIT_WARPS)
    {
        float kf[SPLIT_PER_LANE], vf[SPLIT_PER_LANE];
        if (active)
        {
            unpack_half8(*(const uint4*)(kc + (i64)j * kvDim + kvOff), kf);
            unpack_half8(*(const uint4*)(vc + (i64)j * kvDim + kvOff), vf);
        }
        else
        {
#pragma unroll
            for (int e = 0; e < SPLIT_PER_LANE; e++) { kf[e] = 0.0f; vf[e] = 0.0f; }
        }
#pragma unroll
        for (int g = 0; g < SPLIT_MAX_GROUP; g++)
        {
            if (g >= group) break;
            float s = 0.0f;
#pragma unroll
            for (int e = 0; e < SPLIT_PER_LANE; e++) s = __fmaf_rn(active ? qs[g][d0 + e] : 0.0f, kf[e], s);
            s = warp_sum(s) * scale;
            if (softcap > 0.0f) s = __fmul_rn(softcap, tanhf(__fmul_rn(s, __frcp_rn(softcap))));
            float mNew = fmaxf(m[g], s);
            float corr = expf(m[g] - mNew); // 0 on the warp's first position (m = -inf)
            float p = expf(s - mNew);
            l[g] = l[g] * corr + p;
#pragma unroll
            for (int e = 0; e < SPLIT_PER_LANE; e++) acc[g][e] = acc[g][e] * corr + p * vf[e];
            m[g] = mNew;
        }
    }

    // Merge the warps: each rescales to the block's max per head, then they add into shared memory in turn (a
    // warp that had no position holds l = 0 and adds nothing).
    if (lane == 0)
        for (int g = 0; g < group; g++) wm[warp][g] = m[g];
    __syncthreads();
    float f[SPLIT_MAX_GROUP];
#pragma unroll
    for (int g = 0; g < SPLIT_MAX_GROUP; g++)
    {
        if (g >= group) break;
        float M = NEG_INF;
        for (int w = 0; w < SPLIT_WARPS; w++) M = fmaxf(M, wm[w][g]);
        f[g] = l[g] == 0.0f ? 0.0f : expf(m[g] - M);
    }
    for (int w = 0; w < SPLIT_WARPS; w++)
    {
        if (warp == w)
        {
#pragma unroll
            for (int g = 0; g < SPLIT_MAX_GROUP; g++)
            {
                if (g >= group) break;
                if (active)
#pragma unroll
                    for (int e = 0; e < SPLIT_PER_LANE; e++) sacc[g][d0 + e] += acc[g][e] * f[g];
                if (lane == 0) wl[w][g] = l[g] * f[g];
            }
        }
        __syncthreads();
    }

    for (int i = threadIdx.x; i < group * headDim; i += blockDim.x)
    {
        int g = i / headDim, d = i % headDim;
        float* out = part + (((i64)t * nHeads + h0 + g) * chunks + c) * (headDim + 2);
        out[d] = sacc[g][d];
        if (d == 0)
        {
            float M = NEG_INF, L = 0.0f;
            for (int w = 0; w < SPLIT_WARPS; w++) M = fmaxf(M, wm[w][g]);
            for (int w = 0; w < SPLIT_WARPS; w++) L += wl[w][g];
            out[headDim] = M;
            out[headDim + 1] = L;
        }
    }
}

extern "C" __global__ void attention_split_f16(const float* __restrict__ q, const u16* __restrict__ kc, const u16* __restrict__ vc,
                                               float* __restrict__ part, const int* __restrict__ step, int posDelta, int nHeads,
                                               int headDim, int kvDim, int group, float scale, float softcap, int window,
                                               int chunkSize, int chunks)
{
    int kvh = blockIdx.x, c = blockIdx.y, t = blockIdx.z;
    int last = step_pos(step, posDelta) + t;
    int first = window > 0 ? max(0, last - window + 1) : 0;
    int begin = max(c * chunkSize, first), end = min(c * chunkSize + chunkSize - 1, last);
    if (begin > end) return; // the whole block: the combine step never reads this chunk
    attention_split_chunk(q, kc, vc, part, nHeads, headDim, kvDim, group, scale, softcap, chunks, kvh, c, t, begin, end);
}

// dst = the attention output of every (query head, token): the chunks first / chunkSize .. last / chunkSize of
// attention_split_f16's partial results, rescaled to their common max and normalised. One block per (head, token).
extern "C" __global__ void attention_combine_f32(const float* __restrict__ part, float* __restrict__ dst, const int* __restrict__ step,
                                                 int posDelta, int nHeads, int headDim, int window, int chunkSize, int chunks)
{
    int h = blockIdx.x, t = blockIdx.y;
    int last = step_pos(step, posDelta) + t;
    int first = window > 0 ? max(0, last - window + 1) : 0;
    int c0 = first / chunkSize, c1 = last / chunkSize;
    i64 stride = headDim + 2;
    const float* ph = part + ((i64)t * nHeads + h) * chunks * stride;
    float M = NEG_INF;
    for (int c = c0; c <= c1; c++) M = fmaxf(M, ph[c * stride + headDim]);
    float L = 0.0f;
    for (int c = c0; c <= c1; c++) L += ph[c * stride + headDim + 1] * expf(ph[c * stride + headDim] - M);
    float* out = dst + (i64)t * nHeads * headDim + (i64)h * headDim;
    for (int d = threadIdx.x; d < headDim; d += blockDim.x)
    {
        float o = 0.0f;
        for (int c = c0; c <= c1; c++) o += ph[c * stride + d] * expf(ph[c * stride + headDim] - M);
        out[d] = o / L;
    }
}

// Flash-decoding in one launch (issue 17.3): attention_split_f16's grid (kv heads, chunks of the whole context,
// tokens) and per-chunk work, then the block of each (kv head, token) that is counted last on
// counters[t * kvHeads + kvh] combines the partial results of that kv head's group of query heads into dst with
// attention_combine_f32's loops (so the same floats), and with quantize != 0 also quantizes dst for the Wo product
// (quantize_q8's arithmetic; headDim must then be a multiple of 32, so each warp's 32 elements are one 32-block). A
// block whose chunk holds no position only counts. Each block makes its partials visible device-wide
// (__threadfence) before it is counted, and the last block reads them with volatile loads (from L2, not a stale
// L1). The last block puts the counter back to 0, so the next launch (the next layer, a graph replay) starts from
// zero: counters must be zero before the first launch. The grid is fixed for the context, so a captured graph
// stays valid as the position grows.
extern "C" __global__ void attention_flash_f16(const float* __restrict__ q, const u16* __restrict__ kc, const u16* __restrict__ vc,
                                               float* part, float* __restrict__ dst, i8* __restrict__ qx, float* __restrict__ dx,
                                               float* __restrict__ sx, int* counters, const int* __restrict__ step, int posDelta,
                                               int nHeads, int headDim, int kvDim, int group, float scale, float softcap, int window,
                                               int chunkSize, int chunks, int quantize)
{
    __shared__ int lastBlock;
    int kvh = blockIdx.x, c = blockIdx.y, t = blockIdx.z, kvHeads = kvDim / headDim;
    int last = step_pos(step, posDelta) + t;
    int first = window > 0 ? max(0, last - window + 1) : 0;
    int begin = max(c * chunkSize, first), end = min(c * chunkSize + chunkSize - 1, last);
    if (begin <= end) attention_split_chunk(q, kc, vc, part, nHeads, headDim, kvDim, group, scale, softcap, chunks, kvh, c, t, begin, end);
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0)
    {
        int* counter = counters + (i64)t * kvHeads + kvh;
        lastBlock = atomicAdd(counter, 1) == chunks - 1;
        if (lastBlock) *counter = 0; // every block of this (kv head, token) has been counted
    }
    __syncthreads();
    if (!lastBlock) return;
    __threadfence();
    int c0 = first / chunkSize, c1 = last / chunkSize;
    i64 stride = headDim + 2;
    for (int i = threadIdx.x; i < group * headDim; i += blockDim.x)
    {
        int h = kvh * group + i / headDim, d = i % headDim;
        const volatile float* ph = part + ((i64)t * nHeads + h) * chunks * stride;
        float M = NEG_INF;
        for (int k = c0; k <= c1; k++) M = fmaxf(M, ph[k * stride + headDim]);
        float L = 0.0f;
        for (int k = c0; k <= c1; k++) L += ph[k * stride + headDim + 1] * expf(ph[k * stride + headDim] - M);
        float o = 0.0f;
        for (int k = c0; k <= c1; k++) o += ph[k * stride + d] * expf(ph[k * stride + headDim] - M);
        float r = o / L;
        i64 at = (i64)t * nHeads * headDim + (i64)h * headDim + d;
        dst[at] = r;
        if (quantize) quantize_lane_q8(r, at / 32, qx, dx, sx);
    }
}
