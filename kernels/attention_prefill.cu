// Flash-attention for prefill batches: causal grouped-query attention of nTokens queries (token t at position
// pos + t) over the KV cache, with an online softmax so no score matrix is ever stored. One block of 128 threads
// per (query head, tile of APF_BQ = 8 tokens); the block walks the keys the tile can see in tiles of APF_BKV = 16
// positions, staged once in shared memory (as float) for all 8 queries, where the one-block-per-(head, token)
// kernel of attention.cu reads every key once per token. Warp w takes queries 2w and 2w+1 of the tile; for a
// key tile, lane l scores key l % 16 over the head elements of parity l / 16 (the two halves summed with one
// shuffle), the warp takes the tile's max, rescales its running sum and value accumulator (lane i holds head
// elements i, i + 32, ...) and adds the tile's probabilities times the values. Semantics as attention_f16:
// score = scale * (q . k), softcap * tanh(score / softcap) when softcap > 0, key j visible to position i when
// j <= i and (window == 0 or i - j < window). head_dim <= 256. K/V in fp16 (the cache) or float.
#include "common.cuh"

#define APF_MAX_HEAD_DIM 256
#define APF_BQ 8
#define APF_BKV 16
#define APF_THREADS 128

__device__ __forceinline__ float apf_load(const u16* p) { return half_to_float(*p); }
__device__ __forceinline__ float apf_load(const float* p) { return *p; }

template <typename T>
__device__ __forceinline__ void attention_prefill(const float* __restrict__ q, const T* __restrict__ kc, const T* __restrict__ vc,
                                                  float* __restrict__ dst, const int* __restrict__ step, int posDelta,
                                                  int nTokens, int nHeads, int headDim, int kvDim, int group, float scale,
                                                  float softcap, int window)
{
    __shared__ float qs[APF_BQ][APF_MAX_HEAD_DIM];
    __shared__ float ks[APF_BKV][APF_MAX_HEAD_DIM + 1]; // padded: the 16 lanes of a score step read 16 keys
    __shared__ float vs[APF_BKV][APF_MAX_HEAD_DIM];

    int h = blockIdx.x, t0 = blockIdx.y * APF_BQ;
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int pos = step_pos(step, posDelta);
    int tEnd = min(t0 + APF_BQ, nTokens);
    i64 qDim = (i64)nHeads * headDim;
    i64 kvOff = (i64)(h / group) * headDim;
    for (int u = threadIdx.x; u < APF_BQ * headDim; u += APF_THREADS)
    {
        int i = u / headDim, d = u % headDim;
        qs[i][d] = t0 + i < nTokens ? q[(i64)(t0 + i) * qDim + (i64)h * headDim + d] : 0.0f;
    }

    // The keys some query of the tile sees: from the first visible to the first query to the last query's position.
    int lastKey = pos + tEnd - 1;
    int firstKey = window > 0 ? max(0, pos + t0 - window + 1) : 0;

    float m[2], l[2], acc[2][APF_MAX_HEAD_DIM / WARP];
#pragma unroll
    for (int qi = 0; qi < 2; qi++)
    {
        m[qi] = NEG_INF;
        l[qi] = 0.0f;
#pragma unroll
        for (int i = 0; i < APF_MAX_HEAD_DIM / WARP; i++) acc[qi][i] = 0.0f;
    }

    int key = lane & (APF_BKV - 1), par = lane >> 4;
    for (int k0 = firstKey; k0 <= lastKey; k0 += APF_BKV)
    {
        __syncthreads(); // the previous tile's reads (and the query staging) are done
        for (int u = threadIdx.x; u < APF_BKV * headDim; u += APF_THREADS)
        {
            int j = u / headDim, d = u % headDim, kp = k0 + j;
            bool in = kp <= lastKey;
            ks[j][d] = in ? apf_load(kc + (i64)kp * kvDim + kvOff + d) : 0.0f;
            vs[j][d] = in ? apf_load(vc + (i64)kp * kvDim + kvOff + d) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int qi = 0; qi < 2; qi++)
        {
            int ql = 2 * warp + qi, t = t0 + ql;
            if (t >= nTokens) continue; // the same for the whole warp
            int qpos = pos + t, kp = k0 + key;
            float s = 0.0f;
            for (int d = par; d < headDim; d += 2) s = __fmaf_rn(qs[ql][d], ks[key][d], s);
            s += __shfl_xor_sync(FULL_MASK, s, 16);
            s *= scale;
            if (softcap > 0.0f) s = __fmul_rn(softcap, tanhf(__fmul_rn(s, __frcp_rn(softcap))));
            bool visible = kp <= qpos && (window == 0 || qpos - kp < window);
            if (!visible) s = NEG_INF;
            float mNew = fmaxf(m[qi], warp_max(s));
            if (mNew == NEG_INF) continue; // no visible key yet (a window ahead of this tile)
            float corr = expf(m[qi] - mNew);
            float p = visible ? expf(s - mNew) : 0.0f;
            l[qi] = l[qi] * corr + warp_sum(par == 0 ? p : 0.0f);
#pragma unroll
            for (int i = 0; i < APF_MAX_HEAD_DIM / WARP; i++) acc[qi][i] *= corr;
            for (int j = 0; j < APF_BKV; j++)
            {
                float pj = __shfl_sync(FULL_MASK, p, j);
                if (pj == 0.0f) continue; // the same for the whole warp
#pragma unroll
                for (int i = 0; i < APF_MAX_HEAD_DIM / WARP; i++)
                {
                    int d = lane + i * WARP;
                    if (d < headDim) acc[qi][i] = __fmaf_rn(pj, vs[j][d], acc[qi][i]);
                }
            }
            m[qi] = mNew;
        }
    }

#pragma unroll
    for (int qi = 0; qi < 2; qi++)
    {
        int t = t0 + 2 * warp + qi;
        if (t >= nTokens) continue;
        float* out = dst + (i64)t * qDim + (i64)h * headDim;
        float inv = 1.0f / l[qi];
#pragma unroll
        for (int i = 0; i < APF_MAX_HEAD_DIM / WARP; i++)
        {
            int d = lane + i * WARP;
            if (d < headDim) out[d] = acc[qi][i] * inv;
        }
    }
}

// Grid: (nHeads, ceil(nTokens / 8)), 128 threads.
extern "C" __global__ void __launch_bounds__(APF_THREADS)
    attention_prefill_f16(const float* q, const u16* kc, const u16* vc, float* dst, const int* step, int posDelta, int nTokens,
                          int nHeads, int headDim, int kvDim, int group, float scale, float softcap, int window)
{ attention_prefill<u16>(q, kc, vc, dst, step, posDelta, nTokens, nHeads, headDim, kvDim, group, scale, softcap, window); }

extern "C" __global__ void __launch_bounds__(APF_THREADS)
    attention_prefill_f32(const float* q, const float* kc, const float* vc, float* dst, const int* step, int posDelta, int nTokens,
                          int nHeads, int headDim, int kvDim, int group, float scale, float softcap, int window)
{ attention_prefill<float>(q, kc, vc, dst, step, posDelta, nTokens, nHeads, headDim, kvDim, group, scale, softcap, window); }
