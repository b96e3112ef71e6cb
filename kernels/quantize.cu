// Activation quantization for the integer matrix-vector products: every 32 consecutive floats of x become
// int8 q = round(x / d) with d = max|x| / 127, plus d and s = d * sum(q) (the sum serves the offset/min terms
// of Q4_0 and Q4_K). One warp per 32-block, lane i owns element i.
#include "common.cuh"

extern "C" __global__ void quantize_q8(const float* __restrict__ x, i8* __restrict__ qx, float* __restrict__ dx,
                                       float* __restrict__ sx, long long nBlocks)
{
    long long b = (long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (b >= nBlocks) return;
    float v = x[b * 32 + lane];
    float amax = warp_max(fabsf(v));
    float d = amax / 127.0f;
    int q = amax == 0.0f ? 0 : __float2int_rn(v / d);
    qx[b * 32 + lane] = (i8)q;
    int sum = warp_sum_i(q);
    if (lane == 0)
    {
        dx[b] = d;
        sx[b] = d * (float)sum;
    }
}
