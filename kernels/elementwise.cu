// Element-wise operations of the forward pass: the gated activations (SwiGLU, GeGLU with tanh-approximated GELU),
// the residual add, bias add, scaling, softcapping, and storing K/V rows into the fp16 cache at the batch's
// positions.
#include "common.cuh"

// gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g).
extern "C" __global__ void swiglu_f32(float* __restrict__ gate, const float* __restrict__ up, i64 count)
{
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    float g = gate[i];
    gate[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
}

// gate[i] = gelu(gate[i]) * up[i], gelu(g) = 0.5 g (1 + tanh u), u = sqrt(2/pi) (g + 0.044715 g^3), written as
// g / (1 + e^(-2u)) (the same number without the cancellation at large negative g), as the CPU backend does.
extern "C" __global__ void geglu_f32(float* __restrict__ gate, const float* __restrict__ up, i64 count)
{
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const float c1 = -1.5957691216057308f;  // -2 sqrt(2/pi)
    const float c3 = -0.07135481627159515f; // -2 sqrt(2/pi) * 0.044715
    float g = gate[i];
    float m2u = __fmul_rn(g, __fmaf_rn(__fmul_rn(g, g), c3, c1));
    gate[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(m2u))), up[i]);
}

// x[t * width + i] += bias[i] for the count / width rows of x.
extern "C" __global__ void add_bias_f32(float* __restrict__ x, const float* __restrict__ bias, int width, i64 count)
{
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    x[i] = __fadd_rn(x[i], bias[i % width]);
}

// x[i] *= factor.
extern "C" __global__ void scale_f32(float* __restrict__ x, float factor, i64 count)
{
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    x[i] = __fmul_rn(x[i], factor);
}

// x[i] = cap * tanh(x[i] / cap), the division as a product with 1 / cap (as the CPU backend does).
extern "C" __global__ void softcap_f32(float* __restrict__ x, float cap, i64 count)
{
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    x[i] = __fmul_rn(cap, tanhf(__fmul_rn(x[i], __frcp_rn(cap))));
}

// x[i] += y[i].
extern "C" __global__ void add_f32(float* __restrict__ x, const float* __restrict__ y, i64 count)
{
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    x[i] = __fadd_rn(x[i], y[i]);
}

// The largest finite fp16 value. K/V values beyond it are stored as +-65504 instead of +-infinity (an infinite key
// makes every score of that position NaN); NaN stays NaN (the comparisons below are false for it).
#define HALF_MAX 65504.0f

__device__ __forceinline__ float clamp_half(float x) { return x > HALF_MAX ? HALF_MAX : (x < -HALF_MAX ? -HALF_MAX : x); }

// Rows t < nTokens of k and v (kvDim floats each) go to cache rows pos + t, converted to fp16 (clamped to its
// finite range).
extern "C" __global__ void store_kv_f16(const float* __restrict__ k, const float* __restrict__ v, u16* __restrict__ kc,
                                        u16* __restrict__ vc, const int* __restrict__ step, int posDelta, int nTokens, int kvDim)
{
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (i64)nTokens * kvDim) return;
    int t = (int)(i / kvDim), e = (int)(i % kvDim);
    i64 at = (i64)(step_pos(step, posDelta) + t) * kvDim + e;
    kc[at] = float_to_half(clamp_half(k[i]));
    vc[at] = float_to_half(clamp_half(v[i]));
}
