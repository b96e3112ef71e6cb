// Embedding lookup: dst[t] = dequantize(table row ids[t]) for every supported weight type, one block per token.
// The ids come from device memory (uploaded with the step), so a captured graph replays for any token. Each
// element is dequantized exactly as the CPU reference does (same products, no contraction).
#include "common.cuh"

__device__ __forceinline__ float deq_f32(const u8* row, int e) { return ((const float*)row)[e]; }
__device__ __forceinline__ float deq_f16(const u8* row, int e) { return half_to_float(((const u16*)row)[e]); }
__device__ __forceinline__ float deq_bf16(const u8* row, int e) { return bf16_to_float(((const u16*)row)[e]); }

__device__ __forceinline__ float deq_q4_0(const u8* row, int e)
{
    const u8* blk = row + (i64)(e / 32) * Q4_0_BYTES;
    int i = e % 32;
    u8 q = blk[2 + (i & 15)];
    int v = i < 16 ? (q & 0xF) : (q >> 4);
    return __fmul_rn((float)(v - 8), half_to_float(*(const u16*)blk));
}

__device__ __forceinline__ float deq_q8_0(const u8* row, int e)
{
    const u8* blk = row + (i64)(e / 32) * Q8_0_BYTES;
    return __fmul_rn((float)((const i8*)blk)[2 + e % 32], half_to_float(*(const u16*)blk));
}

__device__ __forceinline__ float deq_q4_k(const u8* row, int e)
{
    const u8* blk = row + (i64)(e / 256) * Q4_K_BYTES;
    int i = e % 256, chunk = i / 64, l = i % 64;
    int sub = 2 * chunk + (l >= 32 ? 1 : 0);
    int sc, m;
    q4k_scale_min(sub, blk + 4, &sc, &m);
    u8 q = blk[16 + chunk * 32 + (l % 32)];
    int v = l < 32 ? (q & 0xF) : (q >> 4);
    float d = half_to_float(*(const u16*)blk), dmin = half_to_float(*(const u16*)(blk + 2));
    return __fsub_rn(__fmul_rn(__fmul_rn(d, (float)sc), (float)v), __fmul_rn(dmin, (float)m));
}

__device__ __forceinline__ float deq_q6_k(const u8* row, int e)
{
    const u8* blk = row + (i64)(e / 256) * Q6_K_BYTES;
    int i = e % 256, half = i / 128, r = i % 128, quarter = r / 32, l = r % 32;
    u8 lo = blk[half * 64 + (quarter & 1) * 32 + l];
    u8 hi = blk[128 + half * 32 + l];
    int v = (((quarter >> 1) ? (lo >> 4) : (lo & 0xF)) | (((hi >> (2 * quarter)) & 3) << 4)) - 32;
    int s = ((const i8*)(blk + 192))[half * 8 + quarter * 2 + l / 16];
    float d = half_to_float(*(const u16*)(blk + 208));
    return __fmul_rn(__fmul_rn(d, (float)s), (float)v);
}

#define GET_ROWS(NAME)                                                                                          \
    extern "C" __global__ void get_rows_##NAME(const u8* __restrict__ table, i64 rowBytes, int ne0,            \
                                               const int* __restrict__ ids, float* __restrict__ dst)            \
    {                                                                                                           \
        const u8* row = table + (i64)ids[blockIdx.x] * rowBytes;                                                \
        float* out = dst + (i64)blockIdx.x * ne0;                                                               \
        for (int e = threadIdx.x; e < ne0; e += blockDim.x) out[e] = deq_##NAME(row, e);                       \
    }

GET_ROWS(f32)
GET_ROWS(f16)
GET_ROWS(bf16)
GET_ROWS(q4_0)
GET_ROWS(q8_0)
GET_ROWS(q4_k)
GET_ROWS(q6_k)
