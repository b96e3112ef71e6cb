// Shared helpers for every EdgeLlm kernel. Passed to NVRTC as a header named "common.cuh"; the sources include
// nothing else (NVRTC has no CUDA toolkit headers), so half precision, dp4a and the reductions are written here
// in inline PTX and warp shuffles.
#pragma once

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

#define WARP 32
#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)

// The inline-PTX helpers. tests/EdgeLlm.Tests/Cuda/HostEmulation compiles the kernel files with a host C++
// compiler to check the block arithmetic on the CPU; it defines EDGELLM_HOST_EMULATION and its own versions.
#ifndef EDGELLM_HOST_EMULATION
// fp16 <-> fp32 with the hardware conversions (round to nearest even), no cuda_fp16.h needed.
__device__ __forceinline__ float half_to_float(u16 h)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ u16 float_to_half(float f)
{
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// Four int8 products summed into c. Inline PTX: NVRTC 11.8 leaves __dp4a as an unresolved extern.
__device__ __forceinline__ int dp4a(int a, int b, int c)
{
    int d;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}
#endif

__device__ __forceinline__ float bf16_to_float(u16 b) { return __uint_as_float(((u32)b) << 16); }

// A float as bf16, rounded to nearest even (cvt.rn.bf16.f32's result, in integer arithmetic so sm_61 compiles it and
// the host emulation runs the same code); NaN stays a (quiet) NaN.
__device__ __forceinline__ u16 float_to_bf16(float f)
{
    u32 u = __float_as_uint(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (u16)((u >> 16) | 0x40u);
    return (u16)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// Reads 4 bytes that are only 2-byte aligned (Q4_0, Q8_0 and Q6_K blocks have odd sizes).
__device__ __forceinline__ int load_i32_a2(const u8* p)
{
    const u16* q = (const u16*)p;
    return (int)((u32)q[0] | ((u32)q[1] << 16));
}

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

__device__ __forceinline__ int warp_sum_i(int v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

// Ggml block layouts (bytes): see QuantRef / field notes.
#define Q4_0_BYTES 18   // fp16 d; u8 qs[16]             weight = d * (nibble - 8)
#define Q8_0_BYTES 34   // fp16 d; i8 qs[32]             weight = d * q
#define Q4_K_BYTES 144  // fp16 d, dmin; u8 scales[12]; u8 qs[128]
#define Q6_K_BYTES 210  // u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d
#define Q4_1_BYTES 20   // fp16 d, m; u8 qs[16]          weight = d * nibble + m
#define Q5_0_BYTES 22   // fp16 d; u32 qh; u8 qs[16]     weight = d * (nibble | bit << 4) - 16 * d
#define Q5_1_BYTES 24   // fp16 d, m; u32 qh; u8 qs[16]  weight = d * (nibble | bit << 4) + m
#define IQ4_NL_BYTES 18 // fp16 d; u8 qs[16]             weight = d * IQ4_VALUES[nibble]
#define Q5_K_BYTES 176  // fp16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
#define IQ4_XS_BYTES 136 // fp16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]
#define Q3_K_BYTES 110  // u8 hmask[32]; u8 qs[64]; u8 scales[12]; fp16 d
#define Q2_K_BYTES 84   // u8 scales[16]; u8 qs[64]; fp16 d, dmin

// The 16 non-linear levels of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl), four per word, lowest index in the low byte.
#define IQ4_LEVELS_0 0xBFAD9881u // -127 -104  -83  -65
#define IQ4_LEVELS_1 0xF6EADDCFu //  -49  -35  -22  -10
#define IQ4_LEVELS_2 0x26190D01u //    1   13   25   38
#define IQ4_LEVELS_3 0x71594535u //   53   69   89  113

// Four 4-bit indices (one per byte, 0..15) to their four int8 IQ4 levels: prmt picks from the low or high eight
// levels by the index's low 3 bits, bit 3 chooses between the two picks.
__device__ __forceinline__ int iq4_levels4(u32 idx)
{
    u32 sel = (idx & 0x7u) | ((idx >> 4) & 0x70u) | ((idx >> 8) & 0x700u) | ((idx >> 12) & 0x7000u);
    u32 lo = __byte_perm(IQ4_LEVELS_0, IQ4_LEVELS_1, sel);
    u32 hi = __byte_perm(IQ4_LEVELS_2, IQ4_LEVELS_3, sel);
    u32 pick = ((idx >> 3) & 0x01010101u) * 0xFFu;
    return (int)((lo & ~pick) | (hi & pick));
}

__device__ __forceinline__ int iq4_level(int idx)
{
    u32 w = idx < 8 ? (idx < 4 ? IQ4_LEVELS_0 : IQ4_LEVELS_1) : (idx < 12 ? IQ4_LEVELS_2 : IQ4_LEVELS_3);
    return (int)(i8)(u8)(w >> (8 * (idx & 3)));
}

// Bits 0..3 of v, one per byte, as bit 4 of that byte (the fifth bit of four Q5 weights).
__device__ __forceinline__ int spread4_bit4(u32 v)
{
    return (int)((((v & 0xFu) * 0x00204081u) & 0x01010101u) << 4);
}

// ggml's 6-bit Q3_K scale i (0..15), still offset by 32: low 4 bits from scales[0..7], high 2 bits from scales[8..11].
__device__ __forceinline__ int q3k_scale(int i, const u8* s)
{
    int lo = i < 8 ? (s[i] & 0xF) : (s[i - 8] >> 4);
    int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
    return lo | (hi << 4);
}

// IQ4_XS: 6-bit scale of sub-block j (0..7), offset by 32: low 4 bits from scales_l, high 2 bits from scales_h.
__device__ __forceinline__ int iq4xs_scale(int j, const u8* blk)
{
    u32 sh = *(const u16*)(blk + 2);
    return ((blk[4 + (j >> 1)] >> (4 * (j & 1))) & 0xF) | (int)(((sh >> (2 * j)) & 3) << 4);
}

// ggml's get_scale_min_k4: 6-bit scale and min of sub-block j (0..7) of a Q4_K super-block.
__device__ __forceinline__ void q4k_scale_min(int j, const u8* s, int* sc, int* m)
{
    if (j < 4) { *sc = s[j] & 63; *m = s[j + 4] & 63; }
    else
    {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// The first position of the batch: kernels read it from device memory so a captured CUDA graph replays for
// any position. pos_delta is the op's offset from it (0 in a decode step).
__device__ __forceinline__ int step_pos(const int* step, int pos_delta) { return step[0] + pos_delta; }

// quantize_q8 of the 32-block a warp holds, lane i owning element i (v: this lane's element), block index b: the
// fused kernels' quantization of their output for the next integer product, and quantize.cu's quantize_q8.
__device__ __forceinline__ void quantize_lane_q8(float v, i64 b, i8* __restrict__ qx, float* __restrict__ dx, float* __restrict__ sx)
{
    int lane = threadIdx.x % WARP;
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

// A float as fp16, clamped to fp16's finite range (+-65504; NaN stays NaN), then rounded to nearest even. kv_half: a
// K/V value as the fp16 cache stores it (an infinite key would make every score of its position NaN;
// store_kv_f16's conversion, written once for the fused kernels and the matvec epilogues).
__device__ __forceinline__ u16 float_to_half_sat(float x)
{
    const float m = 65504.0f;
    return float_to_half(x > m ? m : (x < -m ? -m : x));
}

__device__ __forceinline__ u16 kv_half(float x) { return float_to_half_sat(x); }

// Element h of one head after rotary embedding (rope_f32's arithmetic): pair i < half rotates by
// theta_i = (pos / scale) * invFreq[i], the pair being (2i, 2i+1) in the normal layout and (i, i + half) in NEOX;
// elements from 2 * half on (partial rotary) are returned as they are. The angle, its sine and cosine in double,
// times attnFactor, rounded to float; each element of a pair computes the pair's angle itself (the same floats).
// P: a plain or a volatile float pointer to the head's first element (the epilogues read what other blocks wrote).
template <typename P>
__device__ __forceinline__ float rope_head_value(P head, int h, int half, int neox, int pos, const double* __restrict__ invFreq,
                                                 float scale, float attnFactor)
{
    float val = head[h];
    if (h >= 2 * half) return val;
    int i = neox ? (h < half ? h : h - half) : h / 2;
    bool first = neox ? h < half : h % 2 == 0;
    int partner = h + (first ? (neox ? half : 1) : -(neox ? half : 1));
    double theta = (double)pos / (double)scale * invFreq[i];
    double s, co;
    sincos(theta, &s, &co);
    float cs = (float)(co * (double)attnFactor), sn = (float)(s * (double)attnFactor);
    float other = head[partner];
    float x0 = first ? val : other, x1 = first ? other : val;
    return first ? __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn)) : __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
}

// One head of a stacked Q/K/V product as rope_head_value reads it, with its part's bias added first (add_bias_f32's
// __fadd_rn; b points at the head's first bias value, null: no bias, the values as they are).
template <typename P> struct BiasedHead
{
    P x;
    const float* b;
    __device__ __forceinline__ float operator[](int i) const { return b ? __fadd_rn(x[i], b[i]) : x[i]; }
};

template <typename P> __device__ __forceinline__ BiasedHead<P> biased_head(P x, const float* b) { BiasedHead<P> h; h.x = x; h.b = b; return h; }

// silu(g) * u and gelu_tanh(g) * u exactly as swiglu_f32 and geglu_f32 compute them.
__device__ __forceinline__ float fused_swiglu(float g, float u) { return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u); }

__device__ __forceinline__ float fused_geglu(float g, float u)
{
    const float c1 = -1.5957691216057308f;  // -2 sqrt(2/pi)
    const float c3 = -0.07135481627159515f; // -2 sqrt(2/pi) * 0.044715
    float m2u = __fmul_rn(g, __fmaf_rn(__fmul_rn(g, g), c3, c1));
    return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(m2u))), u);
}


// ---- the epilogues of the one-token products (matvec_packed.cu, matmul.cu): 128-thread blocks ----

#define EPILOGUE_WARPS 4

// The matvec epilogues (below) are calls, not inlined, and their loops are not unrolled: for the norm epilogue, inlined it raised the products' register
// count (up to 69 on sm_90 for Q4_0, from 40), and with it the registers of every product; as a call it costs
// 0-8 registers. (The host emulation has no such attribute.)
#ifdef EDGELLM_HOST_EMULATION
#define EPILOGUE_NOINLINE
#else
#define EPILOGUE_NOINLINE __noinline__
#endif

// The epilogues of a stacked product (one token) that finish groups of its rows: every block makes its rows visible
// device-wide and is counted on the counter of the group its rows belong to (a block's rows never straddle two
// groups); the block counted last puts the counter back to 0 (zero before the first launch, zero after each) and
// returns true: the whole group is then in dst, read with volatile loads (from L2, not a stale L1).
// epilogue_rows_done: the same for groups of `total` rows, this block having finished `n` of them (the Q/K/V
// epilogue's heads, whose rows a block may share with the next head when the head size is not a multiple of the
// block's rows): the block that brings the group's count to total is the last.
__device__ __forceinline__ bool epilogue_rows_done(int* counter, int n, int total)
{
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0)
    {
        last = atomicAdd(counter, n) == total - n;
        if (last) *counter = 0;
    }
    __syncthreads();
    bool done = last != 0;
    if (done) __threadfence();
    return done;
}

__device__ __forceinline__ bool epilogue_group_done(int* counter, int blocksPerGroup) { return epilogue_rows_done(counter, 1, blocksPerGroup); }

// The norm epilogue: add_rmsnorm_q8_f32's norm [+ quantization] (residual 0) of one token's dim floats x, in the
// 128 threads of a matvec block (matvec_packed.cu's and matmul.cu's one-token products), as add_rmsnorm_q8_f32's 256-thread block computes it: thread i keeps the double
// sums of the virtual threads i and i + 128 apart and each warp reduces both (virtual warps w and w + 4), so the eight
// warp sums and their total are added in the same order and the same floats come out. x is read with volatile loads
// (other blocks wrote it: from L2, not a stale L1). dim must be a multiple of 32.
__device__ EPILOGUE_NOINLINE void epilogue_norm_q8(const float* x, const float* __restrict__ w, float* __restrict__ out,
                                               i8* __restrict__ qo, float* __restrict__ dO, float* __restrict__ so, int dim, float eps,
                                                 int quantize)
{
    __shared__ double partial[2 * EPILOGUE_WARPS];
    const volatile float* xv = x;
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    double s0 = 0.0, s1 = 0.0;
#pragma unroll 1
    for (int i = threadIdx.x; i < dim; i += 2 * EPILOGUE_WARPS * WARP) s0 += (double)xv[i] * (double)xv[i];
#pragma unroll 1
    for (int i = threadIdx.x + EPILOGUE_WARPS * WARP; i < dim; i += 2 * EPILOGUE_WARPS * WARP) s1 += (double)xv[i] * (double)xv[i];
    s0 = warp_sum_d(s0);
    s1 = warp_sum_d(s1);
    if (lane == 0)
    {
        partial[warp] = s0;
        partial[warp + EPILOGUE_WARPS] = s1;
    }
    __syncthreads();
    if (warp == 0)
    {
        double v = lane < 2 * EPILOGUE_WARPS ? partial[lane] : 0.0;
        v = warp_sum_d(v);
        if (lane == 0) partial[0] = v;
    }
    __syncthreads();
    float scale = (float)(1.0 / sqrt(partial[0] / dim + (double)eps));
#pragma unroll 1
    for (int i = threadIdx.x; i < dim; i += EPILOGUE_WARPS * WARP)
    {
        float v = __fmul_rn(__fmul_rn(xv[i], scale), w[i]);
        out[i] = v;
        if (quantize) quantize_lane_q8(v, i / 32, qo, dO, so);
    }
}

