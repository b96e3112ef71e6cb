// Rotary position embedding, in place: in each head, pair i < half rotates by theta_i = (pos / scale) * invFreq[i]
// (invFreq already divided by the rope_freqs factors). The pair is (x[2i], x[2i+1]) in llama.cpp's "normal"
// layout and (x[i], x[i + half]) in the NEOX layout (neox != 0); elements from 2 * half on (partial rotary) are
// not touched. The angle and its sine/cosine are computed in double, multiplied by attnFactor, then rounded to
// float, as the CPU backend does. One thread per (token, head, pair); the position comes from device memory
// (see step_pos).
#include "common.cuh"

extern "C" __global__ void rope_f32(float* __restrict__ x, const int* __restrict__ step, int posDelta, int nTokens,
                                    int nHeads, int headDim, int half, const double* __restrict__ invFreq, float scale,
                                    int neox, float attnFactor)
{
    i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    i64 total = (i64)nTokens * nHeads * half;
    if (idx >= total) return;
    int i = (int)(idx % half);
    i64 row = idx / half; // token * nHeads + head
    int t = (int)(row / nHeads);
    int pos = step_pos(step, posDelta) + t;
    double theta = (double)pos / (double)scale * invFreq[i];
    double s, c;
    sincos(theta, &s, &c);
    float cs = (float)(c * (double)attnFactor), sn = (float)(s * (double)attnFactor);
    float* v0 = x + row * headDim + (neox ? i : 2 * i);
    float* v1 = v0 + (neox ? half : 1);
    float x0 = *v0, x1 = *v1;
    *v0 = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
    *v1 = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
}
