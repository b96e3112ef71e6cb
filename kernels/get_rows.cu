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

__device__ __forceinline__ float deq_q4_1(const u8* row, int e)
{
    const u8* blk = row + (i64)(e / 32) * Q4_1_BYTES;
    int i = e % 32;
    u8 q = blk[4 + (i & 15)];
    int v = i < 16 ? (q & 0xF) : (q >> 4);
    return __fadd_rn(__fmul_rn((float)v, half_to_float(*(const u16*)blk)), half_to_float(*(const u16*)(blk + 2)));
}

// Fifth bit of weight i of a Q5 block: bit i of the 32-bit qh.
__device__ __forceinline__ int q5_value(const u8* qs, u32 qh, int i)
{
    u8 q = qs[i & 15];
    return (i < 16 ? (q & 0xF) : (q >> 4)) | (int)(((qh >> i) & 1) << 4);
}

__device__ __forceinline__ float deq_q5_0(const u8* row, int e)
{
    const u8* blk = row + (i64)(e / 32) * Q5_0_BYTES;
    int v = q5_value(blk + 6, (u32)load_i32_a2(blk + 2), e % 32);
    return __fmul_rn((float)(v - 16), half_to_float(*(const u16*)blk));
}

__device__ __forceinline__ float deq_q5_1(const u8* row, int e)
{
    const u8* blk = row + (i64)(e / 32) * Q5_1_BYTES;
    int v = q5_value(blk + 8, *(const u32*)(blk + 4), e % 32);
    return __fadd_rn(__fmul_rn((float)v, half_to_float(*(const u16*)blk)), half_to_float(*(const u16*)(blk + 2)));
}

__device__ __forceinline__ float deq_iq4_nl(const u8* row, int e)
{
    const u8* blk = row + (i64)(e / 32) * IQ4_NL_BYTES;
    int i = e % 32;
    u8 q = blk[2 + (i & 15)];
    return __fmul_rn(half_to_float(*(const u16*)blk), (float)iq4_level(i < 16 ? (q & 0xF) : (q >> 4)));
}

__device__ __forceinline__ float deq_q5_k(const u8* row, int e)
{
    const u8* blk = row + (i64)(e / 256) * Q5_K_BYTES;
    int i = e % 256, chunk = i / 64, l = i % 64;
    int sub = 2 * chunk + (l >= 32 ? 1 : 0);
    int sc, m;
    q4k_scale_min(sub, blk + 4, &sc, &m);
    u8 q = blk[48 + chunk * 32 + (l % 32)];
    int v = (l < 32 ? (q & 0xF) : (q >> 4)) + (((blk[16 + l % 32] >> sub) & 1) << 4);
    float d = half_to_float(*(const u16*)blk), dmin = half_to_float(*(const u16*)(blk + 2));
    return __fsub_rn(__fmul_rn(__fmul_rn(d, (float)sc), (float)v), __fmul_rn(dmin, (float)m));
}

__device__ __forceinline__ float deq_iq4_xs(const u8* row, int e)
{
    const u8* blk = row + (i64)(e / 256) * IQ4_XS_BYTES;
    int i = e % 256, sub = i / 32, l = i % 32;
    u8 q = blk[8 + sub * 16 + (l & 15)];
    float dl = __fmul_rn(half_to_float(*(const u16*)blk), (float)(iq4xs_scale(sub, blk) - 32));
    return __fmul_rn(dl, (float)iq4_level(l < 16 ? (q & 0xF) : (q >> 4)));
}

__device__ __forceinline__ float deq_q3_k(const u8* row, int e)
{
    const u8* blk = row + (i64)(e / 256) * Q3_K_BYTES;
    int i = e % 256, half = i / 128, r = i % 128, field = r / 32, l = r % 32;
    int q = (blk[32 + half * 32 + l] >> (2 * field)) & 3;
    int h = (blk[l] >> (4 * half + field)) & 1;
    int s = q3k_scale(8 * half + 2 * field + l / 16, blk + 96) - 32;
    float dl = __fmul_rn(half_to_float(*(const u16*)(blk + 108)), (float)s);
    return __fmul_rn(dl, (float)(q - (h ? 0 : 4)));
}

__device__ __forceinline__ float deq_q2_k(const u8* row, int e)
{
    const u8* blk = row + (i64)(e / 256) * Q2_K_BYTES;
    int i = e % 256, half = i / 128, r = i % 128, field = r / 32, l = r % 32;
    int q = (blk[16 + half * 32 + l] >> (2 * field)) & 3;
    int sc = blk[8 * half + 2 * field + l / 16];
    float d = half_to_float(*(const u16*)(blk + 80)), dmin = half_to_float(*(const u16*)(blk + 82));
    return __fsub_rn(__fmul_rn(__fmul_rn(d, (float)(sc & 0xF)), (float)q), __fmul_rn(dmin, (float)(sc >> 4)));
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
GET_ROWS(q4_1)
GET_ROWS(q5_0)
GET_ROWS(q5_1)
GET_ROWS(iq4_nl)
GET_ROWS(q5_k)
GET_ROWS(iq4_xs)
GET_ROWS(q3_k)
GET_ROWS(q2_k)
