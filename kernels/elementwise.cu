// Element-wise operations of the forward pass: SwiGLU, the residual add, and storing K/V rows into the fp16
// cache at the batch's positions.
#include "common.cuh"

// gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g).
extern "C" __global__ void swiglu_f32(float* __restrict__ gate, const float* __restrict__ up, i64 count)
{
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    float g = gate[i];
    gate[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
}

// x[i] += y[i].
extern "C" __global__ void add_f32(float* __restrict__ x, const float* __restrict__ y, i64 count)
{
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    x[i] = __fadd_rn(x[i], y[i]);
}

// Rows t < nTokens of k and v (kvDim floats each) go to cache rows pos + t, converted to fp16.
extern "C" __global__ void store_kv_f16(const float* __restrict__ k, const float* __restrict__ v, u16* __restrict__ kc,
                                        u16* __restrict__ vc, const int* __restrict__ step, int posDelta, int nTokens, int kvDim)
{
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (i64)nTokens * kvDim) return;
    int t = (int)(i / kvDim), e = (int)(i % kvDim);
    i64 at = (i64)(step_pos(step, posDelta) + t) * kvDim + e;
    kc[at] = float_to_half(k[i]);
    vc[at] = float_to_half(v[i]);
}
