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

__device__ __forceinline__ float bf16_to_float(u16 b) { return __uint_as_float(((u32)b) << 16); }

// Four int8 products summed into c. Inline PTX: NVRTC 11.8 leaves __dp4a as an unresolved extern.
__device__ __forceinline__ int dp4a(int a, int b, int c)
{
    int d;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
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
