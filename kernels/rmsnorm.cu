// RMS normalisation, one block per token row: dst = x / sqrt(mean(x^2) + eps) * w. The sum of squares is
// accumulated in double (as the CPU backend and ggml do), then the scale is rounded to float once. x and dst may be
// the same buffer (per-head q/k norms run in place over nTokens * nHeads rows of headDim): every element is read
// by the thread that writes it, after the block's sum is complete.
#include "common.cuh"

extern "C" __global__ void rmsnorm_f32(const float* x, const float* __restrict__ w, float* dst,
                                       int dim, float eps)
{
    __shared__ double partial[32];
    const float* xr = x + (i64)blockIdx.x * dim;
    float* dr = dst + (i64)blockIdx.x * dim;
    double ss = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += (double)xr[i] * (double)xr[i];
    ss = warp_sum_d(ss);
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (lane == 0) partial[warp] = ss;
    __syncthreads();
    if (warp == 0)
    {
        int warps = blockDim.x / WARP;
        double v = lane < warps ? partial[lane] : 0.0;
        v = warp_sum_d(v);
        if (lane == 0) partial[0] = v;
    }
    __syncthreads();
    float scale = (float)(1.0 / sqrt(partial[0] / dim + (double)eps));
    for (int i = threadIdx.x; i < dim; i += blockDim.x) dr[i] = __fmul_rn(__fmul_rn(xr[i], scale), w[i]);
}
