// Greedy token selection on the device, so only the chosen id (and a finiteness flag) crosses the bus instead
// of the whole logits row. One block of SAMPLE_THREADS threads over the n logits of one row.
// Sampling with temperature stays on the CPU (Sampler): its chain (penalties, top-k, top-p, min-p, temperature,
// then a draw from its own generator) is not reproduced here, so a device draw could not give the same tokens
// for the same seed.
#include "common.cuh"

#define SAMPLE_THREADS 1024

// (value, id) argmax of the block; ties resolve to the lower id.
__device__ int block_argmax(const float* x, int n, float* sv, int* si)
{
    float best = NEG_INF;
    int id = n; // larger than any id
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (x[i] > best) { best = x[i]; id = i; } // strided ascending: first occurrence wins
    for (int o = 16; o > 0; o >>= 1)
    {
        float ov = __shfl_xor_sync(FULL_MASK, best, o);
        int oi = __shfl_xor_sync(FULL_MASK, id, o);
        if (ov > best || (ov == best && oi < id)) { best = ov; id = oi; }
    }
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    __syncthreads();
    if (lane == 0) { sv[warp] = best; si[warp] = id; }
    __syncthreads();
    if (warp == 0)
    {
        int warps = (int)(blockDim.x / WARP);
        best = lane < warps ? sv[lane] : NEG_INF;
        id = lane < warps ? si[lane] : n;
        for (int o = 16; o > 0; o >>= 1)
        {
            float ov = __shfl_xor_sync(FULL_MASK, best, o);
            int oi = __shfl_xor_sync(FULL_MASK, id, o);
            if (ov > best || (ov == best && oi < id)) { best = ov; id = oi; }
        }
        if (lane == 0) si[0] = id;
    }
    __syncthreads();
    return si[0] >= n ? 0 : si[0];
}

// out[0] = the id of the largest of the n logits (ties: the lowest id, as the CPU sampler's greedy pick);
// out[1] = 1 when a logit is NaN or infinite (the host then refuses the row, as LogitCheck does), else 0.
extern "C" __global__ void argmax_f32(const float* __restrict__ logits, int n, int* __restrict__ out)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ int nonFinite;
    if (threadIdx.x == 0) nonFinite = 0;
    __syncthreads();
    bool bad = false;
    for (int i = threadIdx.x; i < n; i += blockDim.x) bad |= !(__fmul_rn(logits[i], 0.0f) == 0.0f); // x * 0 is NaN for NaN and +-inf
    if (bad) nonFinite = 1;
    int id = block_argmax(logits, n, sv, si); // its barriers order the flag's writes before the read below
    if (threadIdx.x == 0) { out[0] = id; out[1] = nonFinite; }
}
