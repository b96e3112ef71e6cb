// Rotary position embedding, llama.cpp "normal" layout, in place: in each head, pair (x[2i], x[2i+1]) for
// i < half rotates by theta_i = (pos / scale) * invFreq[i] (invFreq already divided by the rope_freqs factors).
// The angle and its sine/cosine are computed in double, then rounded to float, as the CPU backend does.
// One thread per (token, head, pair); the position comes from device memory (see step_pos).
#include "common.cuh"

extern "C" __global__ void rope_f32(float* __restrict__ x, const int* __restrict__ step, int posDelta, int nTokens,
                                    int nHeads, int headDim, int half, const double* __restrict__ invFreq, float scale)
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
    float cs = (float)c, sn = (float)s;
    float* v = x + row * headDim + 2 * i;
    float x0 = v[0], x1 = v[1];
    v[0] = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
    v[1] = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
}
