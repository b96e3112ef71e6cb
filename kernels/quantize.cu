// Activation quantization for the integer matrix-vector products: every 32 consecutive floats of x become
// int8 q = round(x / d) with d = max|x| / 127, plus d and s = d * sum(q) (the sum serves the offset/min terms
// of Q4_0 and Q4_K). One warp per 32-block, lane i owns element i.
#include "common.cuh"

extern "C" __global__ void quantize_q8(const float* __restrict__ x, i8* __restrict__ qx, float* __restrict__ dx,
                                       float* __restrict__ sx, long long nBlocks)
{
    long long b = (long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (b >= nBlocks) return;
    quantize_lane_q8(x[b * 32 + threadIdx.x % WARP], b, qx, dx, sx);
}
