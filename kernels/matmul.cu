// Matrix-vector and small-batch matrix products, dst[t, r] = dot(W row r, x[t]), with the weights dequantized on
// the fly. One warp per weight row; lane i takes the row's 32-weight blocks i, i+32, ... and the warp sums the
// lanes with shuffles. The block-quantized types dot their 4- to 6-bit weights with 8-bit activations
// (quantize.cu) through dp4a; the float types (F32, F16, BF16) use float activations.
//
// Each kernel exists for NT = 1 (decode) and NT = 8 (prefill: a row is read once per 8 tokens). For a given
// (row, token) both do the same operations in the same order (explicit _rn intrinsics, so no contraction
// differs), so a token's result does not depend on the batch it came in.
#include "common.cuh"

// ---- one 32-weight block of a quantized row against one 32-element q8 activation block ----

__device__ __forceinline__ float dot_q4_0(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    const u8* blk = row + (i64)b * Q4_0_BYTES;
    float d = half_to_float(*(const u16*)blk);
    int sumi = 0;
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        int v = load_i32_a2(blk + 2 + 4 * j);
        sumi = dp4a(v & 0x0F0F0F0F, xq[j], sumi);            // weights 4j..4j+3 (low nibbles)
        sumi = dp4a((v >> 4) & 0x0F0F0F0F, xq[j + 4], sumi); // weights 16+4j.. (high nibbles)
    }
    // sum (q - 8) * xq * dx * d = d * (dx * sum(q * xq) - 8 * s)
    return __fmul_rn(d, __fsub_rn(__fmul_rn(dxv, (float)sumi), __fmul_rn(8.0f, sxv)));
}

__device__ __forceinline__ float dot_q8_0(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    const u8* blk = row + (i64)b * Q8_0_BYTES;
    float d = half_to_float(*(const u16*)blk);
    int sumi = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) sumi = dp4a(load_i32_a2(blk + 2 + 4 * j), xq[j], sumi);
    return __fmul_rn(__fmul_rn(d, dxv), (float)sumi);
}

// Block b is sub-block b % 8 of super-block b / 8: 32 nibbles (low or high half of a 32-byte chunk), one
// 6-bit scale and min. weight = d*sc*q - dmin*m.
__device__ __forceinline__ float dot_q4_k(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    const u8* blk = row + (i64)(b >> 3) * Q4_K_BYTES;
    int s = b & 7;
    float d = half_to_float(*(const u16*)blk);
    float dmin = half_to_float(*(const u16*)(blk + 2));
    int sc, m;
    q4k_scale_min(s, blk + 4, &sc, &m);
    const int* q = (const int*)(blk + 16 + (s >> 1) * 32);
    int shift = (s & 1) * 4;
    int sumi = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) sumi = dp4a((q[j] >> shift) & 0x0F0F0F0F, xq[j], sumi);
    return __fsub_rn(__fmul_rn(__fmul_rn(d, (float)sc), __fmul_rn(dxv, (float)sumi)),
                     __fmul_rn(__fmul_rn(dmin, (float)m), sxv));
}

// Block b is group b % 8 of super-block b / 8: half g/4 (128 weights), quarter g%4 (32 weights) whose low 4
// bits come from ql (low or high nibbles), high 2 bits from qh, with two 8-bit scales (one per 16 weights).
__device__ __forceinline__ float dot_q6_k(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    const u8* blk = row + (i64)(b >> 3) * Q6_K_BYTES;
    int g = b & 7, half = g >> 2, quarter = g & 3;
    const u8* ql = blk + half * 64 + (quarter & 1) * 32;
    const u8* qh = blk + 128 + half * 32;
    const i8* sc = (const i8*)(blk + 192) + half * 8 + quarter * 2;
    int shl = (quarter >> 1) * 4, shh = quarter * 2;
    float d = half_to_float(*(const u16*)(blk + 208));
    int s1 = 0, s2 = 0;
#pragma unroll
    for (int j = 0; j < 8; j++)
    {
        int l = load_i32_a2(ql + 4 * j);
        int h = load_i32_a2(qh + 4 * j);
        int q = ((l >> shl) & 0x0F0F0F0F) | (((h >> shh) & 0x03030303) << 4); // 0..63 per byte
        q = __vsub4(q, 0x20202020);                                        // -32..31 per byte
        if (j < 4) s1 = dp4a(q, xq[j], s1);
        else s2 = dp4a(q, xq[j], s2);
    }
    int sumi = (int)sc[0] * s1 + (int)sc[1] * s2;
    return __fmul_rn(__fmul_rn(d, dxv), (float)sumi);
}

// weight = d * q + m: sum (d q + m) x = d * dx * sum(q * xq) + m * s.
__device__ __forceinline__ float dot_q4_1(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    const u8* blk = row + (i64)b * Q4_1_BYTES;
    float d = half_to_float(*(const u16*)blk), m = half_to_float(*(const u16*)(blk + 2));
    const int* q = (const int*)(blk + 4);
    int sumi = 0;
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        sumi = dp4a(q[j] & 0x0F0F0F0F, xq[j], sumi);
        sumi = dp4a((q[j] >> 4) & 0x0F0F0F0F, xq[j + 4], sumi);
    }
    return __fadd_rn(__fmul_rn(d, __fmul_rn(dxv, (float)sumi)), __fmul_rn(m, sxv));
}

// Bit i of qh is the fifth bit of weight i (0..31); weights 0..15 are the low nibbles of qs, 16..31 the high.
__device__ __forceinline__ int q5_sum(const u8* qs, u32 qh, const int* xq, bool aligned4)
{
    int sumi = 0;
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        int v = aligned4 ? ((const int*)qs)[j] : load_i32_a2(qs + 4 * j);
        int lo = (v & 0x0F0F0F0F) | spread4_bit4(qh >> (4 * j));
        int hi = ((v >> 4) & 0x0F0F0F0F) | spread4_bit4(qh >> (16 + 4 * j));
        sumi = dp4a(lo, xq[j], sumi);
        sumi = dp4a(hi, xq[j + 4], sumi);
    }
    return sumi;
}

// weight = d * (q - 16), q = 0..31: d * (dx * sum(q * xq) - 16 * s).
__device__ __forceinline__ float dot_q5_0(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    const u8* blk = row + (i64)b * Q5_0_BYTES;
    float d = half_to_float(*(const u16*)blk);
    int sumi = q5_sum(blk + 6, (u32)load_i32_a2(blk + 2), xq, false);
    return __fmul_rn(d, __fsub_rn(__fmul_rn(dxv, (float)sumi), __fmul_rn(16.0f, sxv)));
}

__device__ __forceinline__ float dot_q5_1(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    const u8* blk = row + (i64)b * Q5_1_BYTES;
    float d = half_to_float(*(const u16*)blk), m = half_to_float(*(const u16*)(blk + 2));
    int sumi = q5_sum(blk + 8, *(const u32*)(blk + 4), xq, true);
    return __fadd_rn(__fmul_rn(d, __fmul_rn(dxv, (float)sumi)), __fmul_rn(m, sxv));
}

// 16 nibbles of IQ4 indices (low nibbles: weights 0..15, high: 16..31) against a q8 block, the levels looked up
// four at a time.
__device__ __forceinline__ int iq4_sum(const u8* qs, const int* xq, bool aligned4)
{
    int sumi = 0;
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        int v = aligned4 ? ((const int*)qs)[j] : load_i32_a2(qs + 4 * j);
        sumi = dp4a(iq4_levels4((u32)v & 0x0F0F0F0Fu), xq[j], sumi);
        sumi = dp4a(iq4_levels4(((u32)v >> 4) & 0x0F0F0F0Fu), xq[j + 4], sumi);
    }
    return sumi;
}

__device__ __forceinline__ float dot_iq4_nl(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    const u8* blk = row + (i64)b * IQ4_NL_BYTES;
    float d = half_to_float(*(const u16*)blk);
    return __fmul_rn(__fmul_rn(d, dxv), (float)iq4_sum(blk + 2, xq, false));
}

// Block b is sub-block s = b % 8 of super-block b / 8: low 4 bits as in Q4_K, the fifth bit is bit s of qh[l].
__device__ __forceinline__ float dot_q5_k(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    const u8* blk = row + (i64)(b >> 3) * Q5_K_BYTES;
    int s = b & 7;
    float d = half_to_float(*(const u16*)blk);
    float dmin = half_to_float(*(const u16*)(blk + 2));
    int sc, m;
    q4k_scale_min(s, blk + 4, &sc, &m);
    const int* qh = (const int*)(blk + 16);
    const int* q = (const int*)(blk + 48 + (s >> 1) * 32);
    int shift = (s & 1) * 4;
    int sumi = 0;
#pragma unroll
    for (int j = 0; j < 8; j++)
        sumi = dp4a(((q[j] >> shift) & 0x0F0F0F0F) | (((qh[j] >> s) & 0x01010101) << 4), xq[j], sumi);
    return __fsub_rn(__fmul_rn(__fmul_rn(d, (float)sc), __fmul_rn(dxv, (float)sumi)),
                     __fmul_rn(__fmul_rn(dmin, (float)m), sxv));
}

// Block b is sub-block s = b % 8 of an IQ4_XS super-block: 16 bytes of indices, one 6-bit scale (offset 32).
__device__ __forceinline__ float dot_iq4_xs(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    const u8* blk = row + (i64)(b >> 3) * IQ4_XS_BYTES;
    int s = b & 7;
    float d = half_to_float(*(const u16*)blk);
    int ls = iq4xs_scale(s, blk) - 32;
    int sumi = iq4_sum(blk + 8 + s * 16, xq, true);
    return __fmul_rn(__fmul_rn(d, (float)ls), __fmul_rn(dxv, (float)sumi));
}

// Block b is group g = b % 8 of a Q3_K super-block: half g/4 (128 weights), 2-bit field g%4 of qs[half*32 + l],
// high bit (g/4)*4 + g%4 of hmask[l] (clear: subtract 4), and two signed 6-bit scales, one per 16 weights.
__device__ __forceinline__ float dot_q3_k(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    const u8* blk = row + (i64)(b >> 3) * Q3_K_BYTES;
    int g = b & 7, half = g >> 2, field = g & 3;
    const u8* qs = blk + 32 + half * 32;
    int shl = 2 * field, shh = 4 * half + field;
    int s1 = 0, s2 = 0;
#pragma unroll
    for (int j = 0; j < 8; j++)
    {
        int l = load_i32_a2(qs + 4 * j);
        int h = load_i32_a2(blk + 4 * j);
        int q = ((l >> shl) & 0x03030303) | (((h >> shh) & 0x01010101) << 2); // 0..7 per byte
        q = __vsub4(q, 0x04040404);                                           // -4..3 per byte
        if (j < 4) s1 = dp4a(q, xq[j], s1);
        else s2 = dp4a(q, xq[j], s2);
    }
    int sumi = (q3k_scale(2 * g, blk + 96) - 32) * s1 + (q3k_scale(2 * g + 1, blk + 96) - 32) * s2;
    float d = half_to_float(*(const u16*)(blk + 108));
    return __fmul_rn(__fmul_rn(d, dxv), (float)sumi);
}

// Block b is group g = b % 8 of a Q2_K super-block: 2-bit field g%4 of qs[(g/4)*32 + l]; scales[2g], scales[2g+1]
// hold a 4-bit scale (low) and min (high) for 16 weights each. weight = d*sc*q - dmin*m, so the mins need the
// activation sums of each 16-half (dp4a against ones).
__device__ __forceinline__ float dot_q2_k(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    const u8* blk = row + (i64)(b >> 3) * Q2_K_BYTES;
    int g = b & 7;
    const int* qs = (const int*)(blk + 16 + (g >> 2) * 32);
    int shift = 2 * (g & 3);
    int s1 = 0, s2 = 0, x1 = 0, x2 = 0;
#pragma unroll
    for (int j = 0; j < 8; j++)
    {
        int q = (qs[j] >> shift) & 0x03030303;
        if (j < 4) { s1 = dp4a(q, xq[j], s1); x1 = dp4a(0x01010101, xq[j], x1); }
        else { s2 = dp4a(q, xq[j], s2); x2 = dp4a(0x01010101, xq[j], x2); }
    }
    int sc1 = blk[2 * g], sc2 = blk[2 * g + 1];
    int isum = (sc1 & 0xF) * s1 + (sc2 & 0xF) * s2;
    int msum = (sc1 >> 4) * x1 + (sc2 >> 4) * x2;
    float d = half_to_float(*(const u16*)(blk + 80)), dmin = half_to_float(*(const u16*)(blk + 82));
    return __fmul_rn(dxv, __fsub_rn(__fmul_rn(d, (float)isum), __fmul_rn(dmin, (float)msum)));
}

#define QTYPE_Q4_0 0
#define QTYPE_Q8_0 1
#define QTYPE_Q4_K 2
#define QTYPE_Q6_K 3
#define QTYPE_Q4_1 4
#define QTYPE_Q5_0 5
#define QTYPE_Q5_1 6
#define QTYPE_IQ4_NL 7
#define QTYPE_Q5_K 8
#define QTYPE_IQ4_XS 9
#define QTYPE_Q3_K 10
#define QTYPE_Q2_K 11

template <int TYPE>
__device__ __forceinline__ float dot_block(const u8* row, int b, const int* xq, float dxv, float sxv)
{
    if (TYPE == QTYPE_Q4_0) return dot_q4_0(row, b, xq, dxv, sxv);
    if (TYPE == QTYPE_Q8_0) return dot_q8_0(row, b, xq, dxv, sxv);
    if (TYPE == QTYPE_Q4_K) return dot_q4_k(row, b, xq, dxv, sxv);
    if (TYPE == QTYPE_Q4_1) return dot_q4_1(row, b, xq, dxv, sxv);
    if (TYPE == QTYPE_Q5_0) return dot_q5_0(row, b, xq, dxv, sxv);
    if (TYPE == QTYPE_Q5_1) return dot_q5_1(row, b, xq, dxv, sxv);
    if (TYPE == QTYPE_IQ4_NL) return dot_iq4_nl(row, b, xq, dxv, sxv);
    if (TYPE == QTYPE_Q5_K) return dot_q5_k(row, b, xq, dxv, sxv);
    if (TYPE == QTYPE_IQ4_XS) return dot_iq4_xs(row, b, xq, dxv, sxv);
    if (TYPE == QTYPE_Q3_K) return dot_q3_k(row, b, xq, dxv, sxv);
    if (TYPE == QTYPE_Q2_K) return dot_q2_k(row, b, xq, dxv, sxv);
    return dot_q6_k(row, b, xq, dxv, sxv);
}

// W: rows x rowBytes; qx/dx/sx: the q8 activations of nTokens rows of K; dst: [nTokens, rows]; RES: dst += W x
// (the residual epilogue: each element read once, by the lane that writes it: add_f32's x + y on the same floats).
template <int NT, int TYPE, bool RES = false>
__device__ __forceinline__ void matvec_quant(const u8* __restrict__ W, i64 rowBytes, int K, int rows,
                                             const i8* __restrict__ qx, const float* __restrict__ dx,
                                             const float* __restrict__ sx, float* __restrict__ dst, int nTokens)
{
    int lane = threadIdx.x % WARP;
    int r = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (r >= rows) return;
    const u8* row = W + (i64)r * rowBytes;
    int nb = K / 32;
    for (int t0 = 0; t0 < nTokens; t0 += NT)
    {
        float acc[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) acc[t] = 0.0f;
        for (int b = lane; b < nb; b += WARP)
        {
#pragma unroll
            for (int t = 0; t < NT; t++)
            {
                if (t0 + t < nTokens)
                {
                    i64 tok = t0 + t;
                    const int* xq = (const int*)(qx + tok * K + (i64)b * 32);
                    acc[t] = __fadd_rn(acc[t], dot_block<TYPE>(row, b, xq, dx[tok * nb + b], sx[tok * nb + b]));
                }
            }
        }
#pragma unroll
        for (int t = 0; t < NT; t++)
        {
            if (t0 + t < nTokens)
            {
                float s = warp_sum(acc[t]);
                if (lane == 0)
                {
                    float* o = dst + (i64)(t0 + t) * rows + r;
                    *o = RES ? __fadd_rn(*o, s) : s;
                }
            }
        }
    }
}

// The one-token products with the residual epilogue, dst += W x (the Wo and ffn_down products of a fused decode
// step over weights read as stored: the mapped file of an integrated GPU, float weights), 4 rows per 128-thread
// block; norm != 0: also the norm epilogue, as matvec_packed's: every block is counted on *counter, the block counted
// last puts it back to 0 and writes the RMSNorm of the updated dst (rows floats) with normW into normDst [and its q8
// quantization into nqx/ndx/nsx, which must not be the product's qx/dx/sx]. x: the q8 activations (qx) for the
// integer types (dx, sx their scales), the float activations for F32/F16/BF16 (dx, sx unused).
#define MATVEC_RES_EPILOGUE                                                                                    \
    if (norm && epilogue_group_done(counter, (rows + EPILOGUE_WARPS - 1) / EPILOGUE_WARPS))                   \
        epilogue_norm_q8(dst, normW, normDst, nqx, ndx, nsx, rows, eps, quantize);

#define MATVEC_RES_PARAMS                                                                                      \
    const u8* W, i64 rowBytes, int K, int rows, const void* x, const float* dx, const float* sx, float* dst,  \
        int* counter, const float* normW, float* normDst, i8* nqx, float* ndx, float* nsx, float eps, int norm, \
        int quantize

#define MATVEC_QUANT(NAME, TYPE)                                                                               \
    extern "C" __global__ void matvec_##NAME##_t1(const u8* W, i64 rowBytes, int K, int rows, const i8* qx,    \
                                                  const float* dx, const float* sx, float* dst, int nTokens)   \
    { matvec_quant<1, TYPE>(W, rowBytes, K, rows, qx, dx, sx, dst, nTokens); }                                 \
    extern "C" __global__ void matvec_##NAME##_t8(const u8* W, i64 rowBytes, int K, int rows, const i8* qx,    \
                                                  const float* dx, const float* sx, float* dst, int nTokens)   \
    { matvec_quant<8, TYPE>(W, rowBytes, K, rows, qx, dx, sx, dst, nTokens); }                                 \
    extern "C" __global__ void __launch_bounds__(EPILOGUE_WARPS * WARP) matvec_##NAME##_res(MATVEC_RES_PARAMS)   \
    {                                                                                                          \
        if ((int)(blockIdx.x * EPILOGUE_WARPS + threadIdx.x / WARP) < rows)                                    \
            matvec_quant<1, TYPE, true>(W, rowBytes, K, rows, (const i8*)x, dx, sx, dst, 1);                   \
        MATVEC_RES_EPILOGUE                                                                                    \
    }

MATVEC_QUANT(q4_0, QTYPE_Q4_0)
MATVEC_QUANT(q8_0, QTYPE_Q8_0)
MATVEC_QUANT(q4_k, QTYPE_Q4_K)
MATVEC_QUANT(q6_k, QTYPE_Q6_K)
MATVEC_QUANT(q4_1, QTYPE_Q4_1)
MATVEC_QUANT(q5_0, QTYPE_Q5_0)
MATVEC_QUANT(q5_1, QTYPE_Q5_1)
MATVEC_QUANT(iq4_nl, QTYPE_IQ4_NL)
MATVEC_QUANT(q5_k, QTYPE_Q5_K)
MATVEC_QUANT(iq4_xs, QTYPE_IQ4_XS)
MATVEC_QUANT(q3_k, QTYPE_Q3_K)
MATVEC_QUANT(q2_k, QTYPE_Q2_K)

// ---- float weights (F32, F16, BF16) against float activations ----

#define FTYPE_F32 0
#define FTYPE_F16 1
#define FTYPE_BF16 2

template <int TYPE>
__device__ __forceinline__ float weight_at(const u8* row, int i)
{
    if (TYPE == FTYPE_F32) return ((const float*)row)[i];
    if (TYPE == FTYPE_F16) return half_to_float(((const u16*)row)[i]);
    return bf16_to_float(((const u16*)row)[i]);
}

// 16 bytes through the read-only data path: one ld.global.nc.v4 (p 16-byte aligned; the caller checks). The
// host emulation counts these loads and traps on a misaligned one.
#ifndef EDGELLM_HOST_EMULATION
__device__ __forceinline__ uint4 load_nc16(const void* p)
{
    uint4 v;
    asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}
#endif

// Two bf16/f16 values of a word as floats (low half first).
template <int TYPE>
__device__ __forceinline__ void weight_pair(u32 v, float* w)
{
    if (TYPE == FTYPE_F16) { w[0] = half_to_float((u16)(v & 0xFFFFu)); w[1] = half_to_float((u16)(v >> 16)); }
    else { w[0] = __uint_as_float(v << 16); w[1] = __uint_as_float(v & 0xFFFF0000u); }
}

// Weights 8c..8c+7 of a row: with VEC, one 16-byte load (F16, BF16) or two (F32) from a 16-byte aligned row.
template <int TYPE, bool VEC>
__device__ __forceinline__ void weight_chunk(const u8* row, int c, float* w)
{
    if (!VEC)
    {
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = weight_at<TYPE>(row, c * 8 + i);
    }
    else if (TYPE == FTYPE_F32)
    {
        uint4 a = load_nc16(row + 32 * (i64)c), b = load_nc16(row + 32 * (i64)c + 16);
        w[0] = __uint_as_float(a.x); w[1] = __uint_as_float(a.y); w[2] = __uint_as_float(a.z); w[3] = __uint_as_float(a.w);
        w[4] = __uint_as_float(b.x); w[5] = __uint_as_float(b.y); w[6] = __uint_as_float(b.z); w[7] = __uint_as_float(b.w);
    }
    else
    {
        uint4 a = load_nc16(row + 16 * (i64)c);
        weight_pair<TYPE>(a.x, w);
        weight_pair<TYPE>(a.y, w + 2);
        weight_pair<TYPE>(a.z, w + 4);
        weight_pair<TYPE>(a.w, w + 6);
    }
}

// Activations 8c..8c+7 of a token row x: with VEC, two 16-byte loads (x 16-byte aligned).
template <bool VEC>
__device__ __forceinline__ void x_chunk(const float* x, int c, float* v)
{
    if (!VEC)
    {
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = x[c * 8 + i];
        return;
    }
    uint4 a = load_nc16(x + 8 * (i64)c), b = load_nc16(x + 8 * (i64)c + 4);
    v[0] = __uint_as_float(a.x); v[1] = __uint_as_float(a.y); v[2] = __uint_as_float(a.z); v[3] = __uint_as_float(a.w);
    v[4] = __uint_as_float(b.x); v[5] = __uint_as_float(b.y); v[6] = __uint_as_float(b.z); v[7] = __uint_as_float(b.w);
}

// The whole 8-weight chunks of a row for tokens t0..t0+NT-1 into acc; per token the products are fused-multiply-
// added in index order within a chunk, so VEC (vector loads) and !VEC (scalar loads) give the same bits.
template <int NT, int TYPE, bool VEC>
__device__ __forceinline__ void matvec_float_chunks(const u8* __restrict__ row, int K, const float* __restrict__ x,
                                                    int t0, int nTokens, int lane, float* acc)
{
    int chunks = K / 8;
    for (int c = lane; c < chunks; c += WARP)
    {
        float w[8];
        weight_chunk<TYPE, VEC>(row, c, w);
#pragma unroll
        for (int t = 0; t < NT; t++)
        {
            if (t0 + t < nTokens)
            {
                float xv[8];
                x_chunk<VEC>(x + (i64)(t0 + t) * K, c, xv);
#pragma unroll
                for (int i = 0; i < 8; i++) acc[t] = __fmaf_rn(w[i], xv[i], acc[t]);
            }
        }
    }
}

// Lane i takes 8-weight chunks i, i+32, ... then the K % 8 tail one weight per lane. The chunks use 16-byte loads
// when the row and every token's activations are 16-byte aligned (x aligned and K % 4 == 0; the row's address,
// which for F16/BF16 rows with K % 8 != 0 differs from row to row), scalar loads otherwise, with the same
// arithmetic.
template <int NT, int TYPE, bool RES = false>
__device__ __forceinline__ void matvec_float(const u8* __restrict__ W, i64 rowBytes, int K, int rows,
                                             const float* __restrict__ x, float* __restrict__ dst, int nTokens)
{
    int lane = threadIdx.x % WARP;
    int r = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (r >= rows) return;
    const u8* row = W + (i64)r * rowBytes;
    bool vec = (((unsigned long long)row | (unsigned long long)x) & 15) == 0 && (K & 3) == 0; // the same for the whole warp
    int chunks = K / 8;
    for (int t0 = 0; t0 < nTokens; t0 += NT)
    {
        float acc[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) acc[t] = 0.0f;
        if (vec) matvec_float_chunks<NT, TYPE, true>(row, K, x, t0, nTokens, lane, acc);
        else matvec_float_chunks<NT, TYPE, false>(row, K, x, t0, nTokens, lane, acc);
        int e = chunks * 8 + lane;
        if (e < K)
        {
            float w = weight_at<TYPE>(row, e);
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (t0 + t < nTokens) acc[t] = __fmaf_rn(w, x[(i64)(t0 + t) * K + e], acc[t]);
        }
#pragma unroll
        for (int t = 0; t < NT; t++)
        {
            if (t0 + t < nTokens)
            {
                float s = warp_sum(acc[t]);
                if (lane == 0)
                {
                    float* o = dst + (i64)(t0 + t) * rows + r;
                    *o = RES ? __fadd_rn(*o, s) : s;
                }
            }
        }
    }
}

#define MATVEC_FLOAT(NAME, TYPE)                                                                               \
    extern "C" __global__ void matvec_##NAME##_t1(const u8* W, i64 rowBytes, int K, int rows, const float* x,  \
                                                  float* dst, int nTokens)                                     \
    { matvec_float<1, TYPE>(W, rowBytes, K, rows, x, dst, nTokens); }                                          \
    extern "C" __global__ void matvec_##NAME##_t8(const u8* W, i64 rowBytes, int K, int rows, const float* x,  \
                                                  float* dst, int nTokens)                                     \
    { matvec_float<8, TYPE>(W, rowBytes, K, rows, x, dst, nTokens); }                                          \
    extern "C" __global__ void __launch_bounds__(EPILOGUE_WARPS * WARP) matvec_##NAME##_res(MATVEC_RES_PARAMS)   \
    {                                                                                                          \
        if ((int)(blockIdx.x * EPILOGUE_WARPS + threadIdx.x / WARP) < rows)                                    \
            matvec_float<1, TYPE, true>(W, rowBytes, K, rows, (const float*)x, dst, 1);                        \
        MATVEC_RES_EPILOGUE                                                                                    \
    }

MATVEC_FLOAT(f32, FTYPE_F32)
MATVEC_FLOAT(f16, FTYPE_F16)
MATVEC_FLOAT(bf16, FTYPE_BF16)
