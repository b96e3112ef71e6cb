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
