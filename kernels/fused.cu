// Fused kernels of a decode step (issue 17 item 2): each does the work of a short sequence of the unfused kernels
// in one launch and leaves every buffer those kernels write with the same bits (the same float operations in the
// same order), so CudaBackend can use them whenever its recorded step shows the sequence
// (CudaLaunchPlanner). The int8 activation quantization of the next matrix-vector product is written here with
// quantize.cu's arithmetic: one warp per 32-block, lane i owning element i.
#include "common.cuh"

// quantize_q8 of the 32-block this warp holds (common.cuh's quantize_lane_q8).
__device__ __forceinline__ void fused_quantize_lane(float v, i64 b, i8* __restrict__ qx, float* __restrict__ dx,
                                                    float* __restrict__ sx)
{
    quantize_lane_q8(v, b, qx, dx, sx);
}

// One block per token row (blockDim a multiple of 32, 256 as rmsnorm_f32 runs):
//   residual != 0:  x += y                                   (add_f32)
//   then            dst = x / sqrt(mean(x^2) + eps) * w      (rmsnorm_f32, the same reduction order)
//   quantize != 0:  dst's 32-blocks quantized into qx/dx/sx  (quantize_q8 over the nTokens * dim floats of dst;
//                   dim must be a multiple of 32)
// y may be dst (the forward adds the branch output held in the norm's output buffer): every y[i] is read in the
// first loop, before the barrier of the reduction, and dst is written after it. x may be dst when residual is 0.
extern "C" __global__ void add_rmsnorm_q8_f32(float* x, const float* y, const float* __restrict__ w, float* dst,
                                              i8* __restrict__ qx, float* __restrict__ dx, float* __restrict__ sx,
                                              int dim, float eps, int residual, int quantize)
{
    __shared__ double partial[32];
    float* xr = x + (i64)blockIdx.x * dim;
    float* dr = dst + (i64)blockIdx.x * dim;
    double ss = 0.0;
    if (residual)
    {
        const float* yr = y + (i64)blockIdx.x * dim;
        for (int i = threadIdx.x; i < dim; i += blockDim.x)
        {
            float v = __fadd_rn(xr[i], yr[i]);
            xr[i] = v;
            ss += (double)v * (double)v;
        }
    }
    else
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
    // With dim a multiple of 32 the 32 lanes of a warp run the same iterations, on one 32-block each time.
    i64 rowBlock = (i64)blockIdx.x * (dim / 32);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
    {
        float v = __fmul_rn(__fmul_rn(xr[i], scale), w[i]);
        dr[i] = v;
        if (quantize) fused_quantize_lane(v, rowBlock + i / 32, qx, dx, sx);
    }
}

// The split of a stacked Q/K/V product and what follows it in a layer, in one pass: the product of the stacked
// weight holds per token [q (qDim) | k (kvDim) | v (kvDim)]. Each part's bias is added first when it has one
// (bq, bk, bv: add_bias_f32's arithmetic; null: none, Qwen2 has all three). q and k are rotated (rope_f32's
// arithmetic, the same table and position for both), q goes to q, k to k and to the fp16 key cache, v to v and to
// the value cache (store_kv_f16's conversion), at cache rows pos + t. One thread per element of a token's
// [q | k | v]; each element of a rotated pair computes the pair's angle itself (the same double arithmetic, so the
// same floats). Any head size.
extern "C" __global__ void rope_store_qkv_f32(const float* __restrict__ qkv, float* __restrict__ q, float* __restrict__ k,
                                              float* __restrict__ v, u16* __restrict__ kc, u16* __restrict__ vc,
                                              const int* __restrict__ step, int posDelta, int nTokens, int qDim, int kvDim,
                                              int headDim, int half, const double* __restrict__ invFreq, float scale,
                                              int neox, float attnFactor, const float* __restrict__ bq,
                                              const float* __restrict__ bk, const float* __restrict__ bv)
{
    int width = qDim + 2 * kvDim;
    i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (i64)nTokens * width) return;
    int t = (int)(idx / width), c = (int)(idx % width);
    int pos = step_pos(step, posDelta) + t;
    const float* src = qkv + (i64)t * width;
    if (c >= qDim + kvDim)
    {
        int e = c - qDim - kvDim;
        float val = bv ? __fadd_rn(src[c], bv[e]) : src[c];
        v[(i64)t * kvDim + e] = val;
        vc[(i64)pos * kvDim + e] = kv_half(val);
        return;
    }
    int e = c < qDim ? c : c - qDim; // index in the q or k part
    int h = e % headDim;             // index in the head
    const float* bias = c < qDim ? bq : bk;
    float val = rope_head_value(biased_head(src + (c - h), bias ? bias + (e - h) : nullptr), h, half, neox, pos, invFreq, scale, attnFactor);
    if (c < qDim) q[(i64)t * qDim + e] = val;
    else
    {
        k[(i64)t * kvDim + e] = val;
        kc[(i64)pos * kvDim + e] = kv_half(val);
    }
}

// The split of a stacked gate/up product ([gate (ffn) | up (ffn)] per token) and the gated activation in one
// pass: gate = act(g) * u, up = u; with quantize != 0 also gate's 32-blocks into qx/dx/sx for the down
// projection (ffn must then be a multiple of 32, so a warp never straddles two tokens). One thread per element of
// the nTokens * ffn gate buffer.
extern "C" __global__ void glu_split_q8_f32(const float* __restrict__ gu, float* __restrict__ gate, float* __restrict__ up,
                                            i8* __restrict__ qx, float* __restrict__ dx, float* __restrict__ sx,
                                            int ffn, int nTokens, int geglu, int quantize)
{
    i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (i64)nTokens * ffn) return;
    i64 t = idx / ffn;
    int i = (int)(idx % ffn);
    float g = gu[t * 2 * ffn + i], u = gu[t * 2 * ffn + ffn + i];
    float r = geglu ? fused_geglu(g, u) : fused_swiglu(g, u);
    gate[idx] = r;
    up[idx] = u;
    if (quantize) fused_quantize_lane(r, idx / 32, qx, dx, sx);
}

// The split of a stacked product alone (when nothing it feeds can take the split): per token, the first w0
// floats go to d0, the next w1 to d1, the last w2 (0: none) to d2.
extern "C" __global__ void split_rows_f32(const float* __restrict__ src, float* __restrict__ d0, float* __restrict__ d1,
                                          float* __restrict__ d2, int w0, int w1, int w2, int nTokens)
{
    int width = w0 + w1 + w2;
    i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (i64)nTokens * width) return;
    i64 t = idx / width;
    int c = (int)(idx % width);
    float v = src[idx];
    if (c < w0) d0[t * w0 + c] = v;
    else if (c < w0 + w1) d1[t * w1 + c - w0] = v;
    else d2[t * w2 + c - w0 - w1] = v;
}
