// Token selection on the device, so only the chosen id crosses the bus. Both kernels run as one block of
// SAMPLE_THREADS threads over the n logits of one row.
//   argmax_f32:  the largest logit (ties: the lowest id, as the CPU sampler picks).
//   sample_f32:  temperature, then top-k, then top-p (nucleus), then a draw with the host-supplied uniform u in
//                [0, 1): the kept ids are walked in id order until the running probability passes u * total.
//                top-k and top-p cut by value thresholds found by bisection (ties at a threshold are kept), which
//                needs no sort.
#include "common.cuh"

#define SAMPLE_THREADS 1024

// Block-wide sum of a float (every thread gets the result).
__device__ float block_sum(float v, float* scratch)
{
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = lane < blockDim.x / WARP ? scratch[lane] : 0.0f;
    r = warp_sum(r);
    return r;
}

__device__ float block_max(float v, float* scratch)
{
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = lane < blockDim.x / WARP ? scratch[lane] : NEG_INF;
    return warp_max(r);
}

__device__ float block_min(float v, float* scratch) { return -block_max(-v, scratch); }

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
        best = lane < blockDim.x / WARP ? sv[lane] : NEG_INF;
        id = lane < blockDim.x / WARP ? si[lane] : n;
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

extern "C" __global__ void argmax_f32(const float* __restrict__ logits, int n, int* __restrict__ out)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    int id = block_argmax(logits, n, sv, si);
    if (threadIdx.x == 0) out[0] = id;
}

extern "C" __global__ void sample_f32(const float* __restrict__ logits, int n, float temperature, int topK, float topP,
                                      const float* __restrict__ uniform, int* __restrict__ out)
{
    __shared__ float scratch[32];
    __shared__ int si[32];
    __shared__ float chunkSum[SAMPLE_THREADS];
    if (temperature <= 0.0f || topK == 1)
    {
        int id = block_argmax(logits, n, scratch, si);
        if (threadIdx.x == 0) out[0] = id;
        return;
    }
    float lmax = NEG_INF, lmin = -NEG_INF;
    for (int i = threadIdx.x; i < n; i += blockDim.x) { lmax = fmaxf(lmax, logits[i]); lmin = fminf(lmin, logits[i]); }
    lmax = block_max(lmax, scratch);
    lmin = block_min(lmin, scratch);

    // top-k: the largest threshold with at least k logits at or above it.
    float cut = lmin;
    if (topK > 0 && topK < n)
    {
        float lo = lmin, hi = lmax;
        for (int it = 0; it < 32; it++)
        {
            float mid = 0.5f * (lo + hi);
            float c = 0.0f;
            for (int i = threadIdx.x; i < n; i += blockDim.x) c += logits[i] >= mid ? 1.0f : 0.0f;
            c = block_sum(c, scratch);
            if (c >= (float)topK) lo = mid; else hi = mid;
        }
        cut = lo;
    }

    // Unnormalised probabilities p = exp((l - max) / T) of the survivors; total Z.
    float invT = 1.0f / temperature;
    float z = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (logits[i] >= cut) z += expf((logits[i] - lmax) * invT);
    z = block_sum(z, scratch);

    // top-p: the largest probability threshold whose survivors still hold topP of the mass (p ranges over (0, 1]).
    float pcut = 0.0f;
    if (topP < 1.0f)
    {
        float lo = 0.0f, hi = 1.0f;
        for (int it = 0; it < 24; it++)
        {
            float mid = 0.5f * (lo + hi);
            float s = 0.0f;
            for (int i = threadIdx.x; i < n; i += blockDim.x)
            {
                if (logits[i] < cut) continue;
                float p = expf((logits[i] - lmax) * invT);
                if (p >= mid) s += p;
            }
            s = block_sum(s, scratch);
            if (s >= topP * z) lo = mid; else hi = mid;
        }
        pcut = lo;
    }

    // Each thread owns a contiguous chunk of ids; prefix sums over chunks find the one holding the draw.
    int per = (n + blockDim.x - 1) / blockDim.x;
    int begin = min(n, (int)threadIdx.x * per), end = min(n, begin + per);
    float mine = 0.0f;
    for (int i = begin; i < end; i++)
    {
        if (logits[i] < cut) continue;
        float p = expf((logits[i] - lmax) * invT);
        if (p >= pcut) mine += p;
    }
    chunkSum[threadIdx.x] = mine;
    __syncthreads();
    if (threadIdx.x == 0)
    {
        float total = 0.0f;
        for (int i = 0; i < blockDim.x; i++) total += chunkSum[i];
        float target = uniform[0] * total, run = 0.0f;
        int chosen = -1;
        for (int c = 0; c < blockDim.x && chosen < 0; c++)
        {
            if (run + chunkSum[c] <= target) { run += chunkSum[c]; continue; } // the draw lies past this chunk
            int b = min(n, c * per), e = min(n, b + per);
            for (int i = b; i < e && chosen < 0; i++)
            {
                if (logits[i] < cut) continue;
                float p = expf((logits[i] - lmax) * invT);
                if (p < pcut) continue;
                run += p;
                if (run > target) chosen = i;
            }
        }
        // Rounding can leave the draw just past the last survivor: take the last one.
        for (int i = n - 1; chosen < 0 && i >= 0; i--)
            if (logits[i] >= cut && expf((logits[i] - lmax) * invT) >= pcut) chosen = i;
        out[0] = chosen >= 0 ? chosen : 0;
    }
}
