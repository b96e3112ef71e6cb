// Prefill matrix products as tiled GEMMs: dst[t, r] = dot(W row r, x[t]) for a batch of tokens, with the weight
// blocks dequantized once per tile into int8 (plus float scales and a min term per 32 weights) instead of once
// per token as the matvec does. A block of 128 threads owns a tile of GEMM_BM = 64 weight rows by GEMM_BN = 64
// tokens and walks K in steps of GEMM_BK = 256 (eight 32-blocks, one K-quant super-block):
//   1. stage: the 64 x 8 weight blocks become int8 rows in shared memory (one small decode function per type and
//      layout below, to a GemmBlock), with their scales d_w (two per block, one per 16 weights, for Q6_K and Q3_K)
//      and min term m_w; the 64 tokens' q8 activations (quantize.cu: int8, scale dx, dx * sum) are copied next to them;
//   2. compute: per 32-block an integer dot of each (row, token) pair, then in float
//      acc += d_w * dx * isum + m_w * sx (the kinds below say how Q6_K, Q3_K and Q2_K differ).
// Two compute cores share the staging: the int8 tensor-core MMA (mma.sync m16n8k32 s8, sm_80 and later; each
// warp takes 16 rows by the 64 tokens as eight 16x8 tiles) and dp4a over shared memory (sm_61..75; each thread
// takes 4 rows by 8 tokens). Per-16 scales use two m16n8k16 MMAs per block (the k32 fragments are the two k16
// ones side by side). Rows past `rows`, tokens past `nTokens` and blocks past K are zero-filled.
// Types: every block type of the CPU's kernel table (Q4_0, Q8_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q4_K, Q5_K, IQ4_XS,
// Q6_K, Q3_K, Q2_K), over ggml's blocks and over the repacked rows; and the float types (F32, F16, BF16) as a
// float FMA tiling at the end of the file, with F16 and BF16 also as half-precision tensor-core tiles for sm_80 and
// later (mma.sync m16n8k16, f32 accumulators) after it.
#include "common.cuh"

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 256
#define GEMM_KB (GEMM_BK / 32)        // 32-blocks per K step
#define GEMM_THREADS 128
#define GEMM_STRIDE (GEMM_BK + 16)    // bytes per staged row: 68 words, so rows g and tig words hit distinct banks
#define GEMM_WSTRIDE (GEMM_STRIDE / 4)

#define GTYPE_Q4_0 0
#define GTYPE_Q8_0 1
#define GTYPE_Q4_K 2
#define GTYPE_Q6_K 3
#define GTYPE_Q4_1 4
#define GTYPE_Q5_0 5
#define GTYPE_Q5_1 6
#define GTYPE_IQ4_NL 7
#define GTYPE_Q5_K 8
#define GTYPE_IQ4_XS 9
#define GTYPE_Q3_K 10
#define GTYPE_Q2_K 11
#define GTYPE_F32 12 // float weights: gemm_float below
#define GTYPE_F16 13
#define GTYPE_BF16 14

// ---- the int8 MMAs: D = A * B + C, A 16 x K row-major (weights), B K x 8 column-major (tokens) ----
// Fragments (PTX ISA, mma.m16n8k32 / m16n8k16 .s8): g = lane / 4, c = lane % 4.
//   A: reg 0 = A[g][4c..4c+3], reg 1 = A[g+8][4c..], (k32 only) reg 2 = A[g][16+4c..], reg 3 = A[g+8][16+4c..]
//   B: reg 0 = B[4c..4c+3][g], (k32 only) reg 1 = B[16+4c..][g]
//   C/D: c0 = D[g][2c], c1 = D[g][2c+1], c2 = D[g+8][2c], c3 = D[g+8][2c+1]
// The host emulation (tests/.../host_shim.h) gathers the warp's fragments by these formulas and computes the product.
#ifndef EDGELLM_HOST_EMULATION
__device__ __forceinline__ void mma_s8_k32(int* d, const int* a, const int* b)
{
#if __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(0), "r"(0), "r"(0), "r"(0));
#else
    d[0] = d[1] = d[2] = d[3] = 0; // never launched below sm_80 (the backend picks the dp4a kernels there)
    asm volatile("trap;");
#endif
}

__device__ __forceinline__ void mma_s8_k16(int* d, int a0, int a1, int b0)
{
#if __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a0), "r"(a1), "r"(b0), "r"(0), "r"(0), "r"(0), "r"(0));
#else
    d[0] = d[1] = d[2] = d[3] = 0;
    asm volatile("trap;");
#endif
}
#endif

// The paired fragment loads of both MMA cores from a staged tile of `stride` words per row: A's four registers are
// words `word` and `word + 4` of rows ra and rb (reg 0: ra, word; 1: rb, word; 2: ra, word + 4; 3: rb, word + 4), B's
// two are words `word` and `word + 4` of token tb. The int8 k32 fragments (words of four int8, word = 8 kb + c) and the
// f16/bf16 k16 ones (words of two halves, word = 8 h + c) both have this shape.
template <typename T> __device__ __forceinline__ void mma_load_a(T* a, const T* tile, int stride, int ra, int rb, int word)
{
    a[0] = tile[ra * stride + word];
    a[1] = tile[rb * stride + word];
    a[2] = tile[ra * stride + word + 4];
    a[3] = tile[rb * stride + word + 4];
}

template <typename T> __device__ __forceinline__ void mma_load_b(T* b, const T* tile, int stride, int tb, int word)
{
    b[0] = tile[tb * stride + word];
    b[1] = tile[tb * stride + word + 4];
}

// ---- staging: one 32-weight block of a row as 8 int8 words, its scale(s) and its min term ----
//
// Every type is a decode function to this form; the staging and the two compute cores below are written once.
// Three kinds of block (gemm_kind):
//   GEMM_ONE:    weight i = ws[0] * w[i] (+ wm per block, against the activation block's dx * sum(q)):
//                Q4_0, Q8_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q4_K, Q5_K, IQ4_XS;
//   GEMM_HALVES: weight i = ws[i / 16] * w[i], no min: Q6_K, Q3_K (one scale per 16 weights; -32 * -4 leaves int8,
//                so Q3_K's scales stay apart);
//   GEMM_MINS:   Q2_K: w[i] = sc[i / 16] * q[i] (at most 15 * 3 = 45), weight i = ws[0] * w[i] + ws[1] * m[i / 16],
//                ws = (d, -dmin), the two 4-bit mins m exactly as wm = m0 + 16 m1 (a small integer in a float).
#define GEMM_ONE 0
#define GEMM_HALVES 1
#define GEMM_MINS 2

template <int TYPE> __device__ __forceinline__ int gemm_kind()
{
    return TYPE == GTYPE_Q6_K || TYPE == GTYPE_Q3_K ? GEMM_HALVES : TYPE == GTYPE_Q2_K ? GEMM_MINS : GEMM_ONE;
}

struct GemmBlock
{
    int w[8];    // word j: weights 4j..4j+3, one signed byte each
    float ws[2]; // scales (see the kinds above)
    float wm;    // min term (GEMM_ONE) or the packed mins (GEMM_MINS)
};

__device__ __forceinline__ void gemm_scales(GemmBlock& o, float s0, float s1, float m) { o.ws[0] = s0; o.ws[1] = s1; o.wm = m; }

// A block's 16 quant bytes as four words: read where they lie (2-byte aligned ggml blocks, 4-byte aligned ones, the
// repacked rows' 16-byte aligned quads), then split by the helpers below.
__device__ __forceinline__ uint4 gemm_quads_a2(const u8* p)
{
    uint4 v;
    v.x = (u32)load_i32_a2(p); v.y = (u32)load_i32_a2(p + 4); v.z = (u32)load_i32_a2(p + 8); v.w = (u32)load_i32_a2(p + 12);
    return v;
}

__device__ __forceinline__ uint4 gemm_quads_a4(const u8* p)
{
    const u32* w = (const u32*)p;
    uint4 v;
    v.x = w[0]; v.y = w[1]; v.z = w[2]; v.w = w[3];
    return v;
}

__device__ __forceinline__ uint4 gemm_quads_packed(const u8* row, int b) { return *(const uint4*)(row + 16 * (i64)b); }

__device__ __forceinline__ u32 gemm_word(uint4 v, int j) { return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w; }

// 16 nibble bytes (byte i: weight i low, weight i + 16 high): word j of q gives words j and j + 4 of the block,
// minus `bias` per byte.
__device__ __forceinline__ void gemm_nibbles(GemmBlock& o, uint4 q, u32 bias)
{
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        u32 v = gemm_word(q, j);
        o.w[j] = (int)__vsub4(v & 0x0F0F0F0Fu, bias);
        o.w[j + 4] = (int)__vsub4((v >> 4) & 0x0F0F0F0Fu, bias);
    }
}

// The same with the fifth bits (bit i of qh: weight i) above the nibbles.
__device__ __forceinline__ void gemm_nibbles5(GemmBlock& o, uint4 q, u32 qh, u32 bias)
{
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        u32 v = gemm_word(q, j);
        o.w[j] = (int)__vsub4((v & 0x0F0F0F0Fu) | (u32)spread4_bit4(qh >> (4 * j)), bias);
        o.w[j + 4] = (int)__vsub4(((v >> 4) & 0x0F0F0F0Fu) | (u32)spread4_bit4(qh >> (16 + 4 * j)), bias);
    }
}

// The same as IQ4 levels.
__device__ __forceinline__ void gemm_iq4(GemmBlock& o, uint4 q)
{
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        u32 v = gemm_word(q, j);
        o.w[j] = iq4_levels4(v & 0x0F0F0F0Fu);
        o.w[j + 4] = iq4_levels4((v >> 4) & 0x0F0F0F0Fu);
    }
}

// ggml blocks (block b of a row; scales and mins as the CPU's reference code: QuantRef).

__device__ __forceinline__ void gemm_q4_0(const u8* row, int b, GemmBlock& o)
{
    const u8* blk = row + (i64)b * Q4_0_BYTES;
    gemm_nibbles(o, gemm_quads_a2(blk + 2), 0x08080808u);
    gemm_scales(o, half_to_float(*(const u16*)blk), 0.0f, 0.0f);
}

__device__ __forceinline__ void gemm_q8_0(const u8* row, int b, GemmBlock& o)
{
    const u8* blk = row + (i64)b * Q8_0_BYTES;
#pragma unroll
    for (int j = 0; j < 8; j++) o.w[j] = load_i32_a2(blk + 2 + 4 * j);
    gemm_scales(o, half_to_float(*(const u16*)blk), 0.0f, 0.0f);
}

__device__ __forceinline__ void gemm_q4_1(const u8* row, int b, GemmBlock& o)
{
    const u8* blk = row + (i64)b * Q4_1_BYTES; // 4-byte aligned
    gemm_nibbles(o, gemm_quads_a4(blk + 4), 0u);
    gemm_scales(o, half_to_float(*(const u16*)blk), 0.0f, half_to_float(*(const u16*)(blk + 2)));
}

__device__ __forceinline__ void gemm_q5_0(const u8* row, int b, GemmBlock& o)
{
    const u8* blk = row + (i64)b * Q5_0_BYTES;
    u32 qh = (u32)load_i32_a2(blk + 2);
    gemm_nibbles5(o, gemm_quads_a2(blk + 6), qh, 0x10101010u);
    gemm_scales(o, half_to_float(*(const u16*)blk), 0.0f, 0.0f);
}

__device__ __forceinline__ void gemm_q5_1(const u8* row, int b, GemmBlock& o)
{
    const u8* blk = row + (i64)b * Q5_1_BYTES; // 8-byte aligned
    u32 qh = *(const u32*)(blk + 4);
    gemm_nibbles5(o, gemm_quads_a4(blk + 8), qh, 0u);
    gemm_scales(o, half_to_float(*(const u16*)blk), 0.0f, half_to_float(*(const u16*)(blk + 2)));
}

__device__ __forceinline__ void gemm_iq4_nl(const u8* row, int b, GemmBlock& o)
{
    const u8* blk = row + (i64)b * IQ4_NL_BYTES;
    gemm_iq4(o, gemm_quads_a2(blk + 2));
    gemm_scales(o, half_to_float(*(const u16*)blk), 0.0f, 0.0f);
}

// Sub-block s = b % 8 of super-block b / 8: weight = d*sc*q - dmin*m, q = 0..15.
__device__ __forceinline__ void gemm_q4_k(const u8* row, int b, GemmBlock& o)
{
    const u8* blk = row + (i64)(b >> 3) * Q4_K_BYTES;
    int s = b & 7, sc, m;
    q4k_scale_min(s, blk + 4, &sc, &m);
    const int* q = (const int*)(blk + 16 + (s >> 1) * 32);
    int shift = (s & 1) * 4;
#pragma unroll
    for (int j = 0; j < 8; j++) o.w[j] = (q[j] >> shift) & 0x0F0F0F0F;
    gemm_scales(o, half_to_float(*(const u16*)blk) * (float)sc, 0.0f, -half_to_float(*(const u16*)(blk + 2)) * (float)m);
}

// As Q4_K with the fifth bit of weight l of sub-block s in bit s of qh[l]: q = 0..31.
__device__ __forceinline__ void gemm_q5_k(const u8* row, int b, GemmBlock& o)
{
    const u8* blk = row + (i64)(b >> 3) * Q5_K_BYTES;
    int s = b & 7, sc, m;
    q4k_scale_min(s, blk + 4, &sc, &m);
    const int* qh = (const int*)(blk + 16);
    const int* q = (const int*)(blk + 48 + (s >> 1) * 32);
    int shift = (s & 1) * 4;
#pragma unroll
    for (int j = 0; j < 8; j++) o.w[j] = ((q[j] >> shift) & 0x0F0F0F0F) | (((qh[j] >> s) & 0x01010101) << 4);
    gemm_scales(o, half_to_float(*(const u16*)blk) * (float)sc, 0.0f, -half_to_float(*(const u16*)(blk + 2)) * (float)m);
}

// Sub-block s = b % 8: 16 bytes of level indices, a 6-bit scale offset by 32.
__device__ __forceinline__ void gemm_iq4_xs(const u8* row, int b, GemmBlock& o)
{
    const u8* blk = row + (i64)(b >> 3) * IQ4_XS_BYTES; // 8-byte aligned
    int s = b & 7;
    gemm_iq4(o, gemm_quads_a4(blk + 8 + 16 * s));
    gemm_scales(o, half_to_float(*(const u16*)blk) * (float)(iq4xs_scale(s, blk) - 32), 0.0f, 0.0f);
}

// Group g = b % 8: 4 low bits from ql, 2 high bits from qh, minus 32; one int8 scale per 16 weights.
__device__ __forceinline__ void gemm_q6_k(const u8* row, int b, GemmBlock& o)
{
    const u8* blk = row + (i64)(b >> 3) * Q6_K_BYTES;
    int g = b & 7, half = g >> 2, quarter = g & 3;
    const u8* ql = blk + half * 64 + (quarter & 1) * 32;
    const u8* qh = blk + 128 + half * 32;
    const i8* sc = (const i8*)(blk + 192) + half * 8 + quarter * 2;
    int shl = (quarter >> 1) * 4, shh = quarter * 2;
#pragma unroll
    for (int j = 0; j < 8; j++)
    {
        int l = load_i32_a2(ql + 4 * j), h = load_i32_a2(qh + 4 * j);
        o.w[j] = (int)__vsub4((u32)(((l >> shl) & 0x0F0F0F0F) | (((h >> shh) & 0x03030303) << 4)), 0x20202020u);
    }
    float d = half_to_float(*(const u16*)(blk + 208));
    gemm_scales(o, d * (float)sc[0], d * (float)sc[1], 0.0f);
}

// Group g = b % 8: 2-bit field g % 4 of qs[32 (g / 4) + l], the third bit is bit 4 (g / 4) + g % 4 of hmask[l]:
// q = crumb + 4 bit - 4 (ggml subtracts 4 where the bit is clear); two signed 6-bit scales (offset 32), one per 16 weights.
__device__ __forceinline__ void gemm_q3_k(const u8* row, int b, GemmBlock& o)
{
    const u8* blk = row + (i64)(b >> 3) * Q3_K_BYTES;
    int g = b & 7, half = g >> 2, field = g & 3;
    const u8* qs = blk + 32 + half * 32;
    int shl = 2 * field, shh = 4 * half + field;
#pragma unroll
    for (int j = 0; j < 8; j++)
    {
        int l = load_i32_a2(qs + 4 * j), h = load_i32_a2(blk + 4 * j);
        o.w[j] = (int)__vsub4((u32)(((l >> shl) & 0x03030303) | (((h >> shh) & 0x01010101) << 2)), 0x04040404u);
    }
    float d = half_to_float(*(const u16*)(blk + 108));
    gemm_scales(o, d * (float)(q3k_scale(2 * g, blk + 96) - 32), d * (float)(q3k_scale(2 * g + 1, blk + 96) - 32), 0.0f);
}

// Group g = b % 8: 2-bit field g % 4 of qs[32 (g / 4) + l]; scales[2g + h] holds the 4-bit scale (low) and min
// (high) of 16-half h. The scale is multiplied into the weights (a byte-wise product below 256).
__device__ __forceinline__ void gemm_q2_k(const u8* row, int b, GemmBlock& o)
{
    const u8* blk = row + (i64)(b >> 3) * Q2_K_BYTES; // 4-byte aligned
    int g = b & 7;
    const int* qs = (const int*)(blk + 16 + (g >> 2) * 32);
    int shift = 2 * (g & 3);
    u32 s0 = blk[2 * g], s1 = blk[2 * g + 1];
#pragma unroll
    for (int j = 0; j < 8; j++) o.w[j] = (int)((u32)((qs[j] >> shift) & 0x03030303) * (j < 4 ? s0 & 15u : s1 & 15u));
    gemm_scales(o, half_to_float(*(const u16*)(blk + 80)), -half_to_float(*(const u16*)(blk + 82)), (float)((s0 >> 4) | ((s1 >> 4) << 4)));
}

// Rows repacked at upload (matvec_packed.cu's field arrays, nb blocks per row): the same words, scales and min
// terms as the ggml decoders above, read from the row's quant and scale arrays.

__device__ __forceinline__ void gemm_q4_0_packed(const u8* row, int nb, int b, GemmBlock& o)
{
    gemm_nibbles(o, gemm_quads_packed(row, b), 0x08080808u);
    gemm_scales(o, half_to_float(*(const u16*)(row + 16 * (i64)nb + 2 * b)), 0.0f, 0.0f);
}

__device__ __forceinline__ void gemm_q8_0_packed(const u8* row, int nb, int b, GemmBlock& o)
{
    const uint4* p = (const uint4*)(row + 32 * (i64)b);
    uint4 q0 = p[0], q1 = p[1];
#pragma unroll
    for (int j = 0; j < 4; j++) { o.w[j] = (int)gemm_word(q0, j); o.w[j + 4] = (int)gemm_word(q1, j); }
    gemm_scales(o, half_to_float(*(const u16*)(row + 32 * (i64)nb + 2 * b)), 0.0f, 0.0f);
}

__device__ __forceinline__ void gemm_q4_1_packed(const u8* row, int nb, int b, GemmBlock& o)
{
    u32 dm = *(const u32*)(row + 16 * (i64)nb + 4 * b);
    gemm_nibbles(o, gemm_quads_packed(row, b), 0u);
    gemm_scales(o, half_to_float((u16)(dm & 0xFFFFu)), 0.0f, half_to_float((u16)(dm >> 16)));
}

__device__ __forceinline__ void gemm_q5_0_packed(const u8* row, int nb, int b, GemmBlock& o)
{
    u32 qh = *(const u32*)(row + 16 * (i64)nb + 4 * b);
    gemm_nibbles5(o, gemm_quads_packed(row, b), qh, 0x10101010u);
    gemm_scales(o, half_to_float(*(const u16*)(row + 20 * (i64)nb + 2 * b)), 0.0f, 0.0f);
}

__device__ __forceinline__ void gemm_q5_1_packed(const u8* row, int nb, int b, GemmBlock& o)
{
    u32 qh = *(const u32*)(row + 16 * (i64)nb + 4 * b);
    u32 dm = *(const u32*)(row + 20 * (i64)nb + 4 * b);
    gemm_nibbles5(o, gemm_quads_packed(row, b), qh, 0u);
    gemm_scales(o, half_to_float((u16)(dm & 0xFFFFu)), 0.0f, half_to_float((u16)(dm >> 16)));
}

__device__ __forceinline__ void gemm_iq4_nl_packed(const u8* row, int nb, int b, GemmBlock& o)
{
    gemm_iq4(o, gemm_quads_packed(row, b));
    gemm_scales(o, half_to_float(*(const u16*)(row + 16 * (i64)nb + 2 * b)), 0.0f, 0.0f);
}

// Q4_K and Q5_K super-block header: fp16 d, fp16 dmin, ggml's 12 scale bytes.
__device__ __forceinline__ void gemm_k_header(GemmBlock& o, const u8* h, int s)
{
    int sc, m;
    q4k_scale_min(s, h + 4, &sc, &m);
    gemm_scales(o, half_to_float(*(const u16*)h) * (float)sc, 0.0f, -half_to_float(*(const u16*)(h + 2)) * (float)m);
}

__device__ __forceinline__ void gemm_q4_k_packed(const u8* row, int nb, int b, GemmBlock& o)
{
    gemm_nibbles(o, gemm_quads_packed(row, b), 0u);
    gemm_k_header(o, row + 16 * (i64)nb + 16 * (i64)(b >> 3), b & 7);
}

__device__ __forceinline__ void gemm_q5_k_packed(const u8* row, int nb, int b, GemmBlock& o)
{
    u32 qh = *(const u32*)(row + 16 * (i64)nb + 4 * b);
    gemm_nibbles5(o, gemm_quads_packed(row, b), qh, 0u);
    gemm_k_header(o, row + 20 * (i64)nb + 16 * (i64)(b >> 3), b & 7);
}

__device__ __forceinline__ void gemm_iq4_xs_packed(const u8* row, int nb, int b, GemmBlock& o)
{
    const u8* h = row + 16 * (i64)nb + 8 * (i64)(b >> 3); // fp16 d, u16 scales_h, 4 B scales_l: ggml's header
    gemm_iq4(o, gemm_quads_packed(row, b));
    gemm_scales(o, half_to_float(*(const u16*)h) * (float)(iq4xs_scale(b & 7, h) - 32), 0.0f, 0.0f);
}

// Q6_K: low nibbles in Q4_0's order, the high bits as two words (weights 0..15, 16..31; bits 2j..2j+1 of byte i:
// weight 4j + i), two int8 scales per block, one fp16 d per super-block.
__device__ __forceinline__ void gemm_q6_k_packed(const u8* row, int nb, int b, GemmBlock& o)
{
    uint4 l = *(const uint4*)(row + 16 * (i64)b);
    uint2 h = *(const uint2*)(row + 16 * (i64)nb + 8 * (i64)b);
    u32 scw = *(const u16*)(row + 24 * (i64)nb + 2 * b);
    float d = half_to_float(*(const u16*)(row + 26 * (i64)nb + 2 * (b >> 3)));
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        u32 v = gemm_word(l, j);
        o.w[j] = (int)__vsub4((v & 0x0F0F0F0Fu) | (((h.x >> (2 * j)) & 0x03030303u) << 4), 0x20202020u);
        o.w[j + 4] = (int)__vsub4(((v >> 4) & 0x0F0F0F0Fu) | (((h.y >> (2 * j)) & 0x03030303u) << 4), 0x20202020u);
    }
    gemm_scales(o, d * (float)(int)(i8)(u8)(scw & 0xFFu), d * (float)(int)(i8)(u8)(scw >> 8), 0.0f);
}

// Q3_K: crumbs as the Q6_K high bits, the third bits as the fifth bits of Q5_0, ggml's 12 scale bytes and d per super-block.
__device__ __forceinline__ void gemm_q3_k_packed(const u8* row, int nb, int b, GemmBlock& o)
{
    uint2 c = *(const uint2*)(row + 8 * (i64)b);
    u32 hb = *(const u32*)(row + 8 * (i64)nb + 4 * b);
    const u8* sc = row + 12 * (i64)nb + 12 * (i64)(b >> 3);
    int g = b & 7;
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        u32 lo = ((c.x >> (2 * j)) & 0x03030303u) | ((u32)spread4_bit4(hb >> (4 * j)) >> 2);
        u32 hi = ((c.y >> (2 * j)) & 0x03030303u) | ((u32)spread4_bit4(hb >> (16 + 4 * j)) >> 2);
        o.w[j] = (int)__vsub4(lo, 0x04040404u);
        o.w[j + 4] = (int)__vsub4(hi, 0x04040404u);
    }
    float d = half_to_float(*(const u16*)(row + 13 * (i64)nb + (i64)(nb >> 1) + 2 * (b >> 3)));
    gemm_scales(o, d * (float)(q3k_scale(2 * g, sc) - 32), d * (float)(q3k_scale(2 * g + 1, sc) - 32), 0.0f);
}

// Q2_K: crumbs as Q3_K's, ggml's two scale bytes per block, (d, dmin) per super-block.
__device__ __forceinline__ void gemm_q2_k_packed(const u8* row, int nb, int b, GemmBlock& o)
{
    uint2 c = *(const uint2*)(row + 8 * (i64)b);
    u32 scw = *(const u16*)(row + 8 * (i64)nb + 2 * b);
    u32 dd = *(const u32*)(row + 10 * (i64)nb + 4 * (b >> 3));
    u32 s0 = scw & 0xFFu, s1 = scw >> 8;
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        o.w[j] = (int)(((c.x >> (2 * j)) & 0x03030303u) * (s0 & 15u));
        o.w[j + 4] = (int)(((c.y >> (2 * j)) & 0x03030303u) * (s1 & 15u));
    }
    gemm_scales(o, half_to_float((u16)(dd & 0xFFFFu)), -half_to_float((u16)(dd >> 16)), (float)((s0 >> 4) | ((s1 >> 4) << 4)));
}

// Block b (global index) of `row` (nb blocks), ggml's blocks or the repacked row.
template <int TYPE, bool PACKED>
__device__ __forceinline__ void gemm_unpack(const u8* row, int nb, int b, GemmBlock& o)
{
#define GEMM_DECODE(T, F)                                                                                             \
    if (TYPE == T)                                                                                                    \
    {                                                                                                                 \
        if (PACKED) F##_packed(row, nb, b, o);                                                                        \
        else F(row, b, o);                                                                                            \
    }
    GEMM_DECODE(GTYPE_Q4_0, gemm_q4_0)
    GEMM_DECODE(GTYPE_Q8_0, gemm_q8_0)
    GEMM_DECODE(GTYPE_Q4_K, gemm_q4_k)
    GEMM_DECODE(GTYPE_Q6_K, gemm_q6_k)
    GEMM_DECODE(GTYPE_Q4_1, gemm_q4_1)
    GEMM_DECODE(GTYPE_Q5_0, gemm_q5_0)
    GEMM_DECODE(GTYPE_Q5_1, gemm_q5_1)
    GEMM_DECODE(GTYPE_IQ4_NL, gemm_iq4_nl)
    GEMM_DECODE(GTYPE_Q5_K, gemm_q5_k)
    GEMM_DECODE(GTYPE_IQ4_XS, gemm_iq4_xs)
    GEMM_DECODE(GTYPE_Q3_K, gemm_q3_k)
    GEMM_DECODE(GTYPE_Q2_K, gemm_q2_k)
#undef GEMM_DECODE
}

struct GemmTiles
{
    int w[GEMM_BM * GEMM_WSTRIDE];        // weights, int8: row r, byte 32*kb + i
    int x[GEMM_BN * GEMM_WSTRIDE];        // activations, int8: token t, byte 32*kb + i
    float ws[GEMM_BM][2 * GEMM_KB];       // GemmBlock.ws per (row, block)
    float wm[GEMM_BM][GEMM_KB];           // GemmBlock.wm per (row, block)
    float dx[GEMM_BN][GEMM_KB];           // dx per (token, block)
    float sx[GEMM_BN][GEMM_KB];           // dx * sum(q) per (token, block)
};

template <int TYPE, bool PACKED>
__device__ __forceinline__ void gemm_stage(GemmTiles& s, const u8* __restrict__ W, i64 rowBytes, int K, int rows,
                                           const i8* __restrict__ qx, const float* __restrict__ dx,
                                           const float* __restrict__ sx, int nTokens, int r0, int t0, int kb0)
{
    int nb = K / 32;
    // 64 rows x 8 blocks: 4 (row, block) units per thread.
    for (int u = threadIdx.x; u < GEMM_BM * GEMM_KB; u += GEMM_THREADS)
    {
        int r = u / GEMM_KB, kb = u % GEMM_KB, b = kb0 + kb;
        GemmBlock o;
        if (r0 + r < rows && b < nb) gemm_unpack<TYPE, PACKED>(W + (i64)(r0 + r) * rowBytes, nb, b, o);
        else
        {
#pragma unroll
            for (int j = 0; j < 8; j++) o.w[j] = 0;
            gemm_scales(o, 0.0f, 0.0f, 0.0f);
        }
#pragma unroll
        for (int j = 0; j < 8; j++) s.w[r * GEMM_WSTRIDE + kb * 8 + j] = o.w[j];
        s.ws[r][2 * kb] = o.ws[0];
        s.ws[r][2 * kb + 1] = o.ws[1];
        s.wm[r][kb] = o.wm;
    }
    // 64 tokens x 8 blocks x 8 words.
    for (int u = threadIdx.x; u < GEMM_BN * GEMM_KB * 8; u += GEMM_THREADS)
    {
        int t = u / (GEMM_KB * 8), kw = u % (GEMM_KB * 8), b = kb0 + kw / 8;
        bool in = t0 + t < nTokens && b < nb;
        s.x[t * GEMM_WSTRIDE + kw] = in ? ((const int*)(qx + (i64)(t0 + t) * K))[kb0 * 8 + kw] : 0;
        if ((kw & 7) == 0)
        {
            s.dx[t][kw / 8] = in ? dx[(i64)(t0 + t) * nb + b] : 0.0f;
            s.sx[t][kw / 8] = in ? sx[(i64)(t0 + t) * nb + b] : 0.0f;
        }
    }
}

// ---- tensor-core core: warp w owns rows 16w..16w+15 of the tile, all 64 tokens (8 tiles of 8) ----
template <int TYPE, bool PACKED>
__device__ __forceinline__ void gemm_mma(const u8* __restrict__ W, i64 rowBytes, int K, int rows, const i8* __restrict__ qx,
                                         const float* __restrict__ dx, const float* __restrict__ sx,
                                         float* __restrict__ dst, int nTokens)
{
    __shared__ GemmTiles s;
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, g = lane >> 2, c = lane & 3;
    int r0 = blockIdx.x * GEMM_BM, t0 = blockIdx.y * GEMM_BN;
    int ra = warp * 16 + g, rb = ra + 8; // this lane's two rows (tile-relative)
    float acc[GEMM_BN / 8][4];
#pragma unroll
    for (int j = 0; j < GEMM_BN / 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[j][i] = 0.0f;

    int nb = K / 32;
    for (int kb0 = 0; kb0 < nb; kb0 += GEMM_KB)
    {
        __syncthreads(); // the previous step's reads are done
        gemm_stage<TYPE, PACKED>(s, W, rowBytes, K, rows, qx, dx, sx, nTokens, r0, t0, kb0);
        __syncthreads();
        for (int kb = 0; kb < GEMM_KB && kb0 + kb < nb; kb++)
        {
            int a[4];
            mma_load_a(a, s.w, GEMM_WSTRIDE, ra, rb, kb * 8 + c);
            float wsa0 = s.ws[ra][2 * kb], wsb0 = s.ws[rb][2 * kb];
            float wsa1 = s.ws[ra][2 * kb + 1], wsb1 = s.ws[rb][2 * kb + 1];
            float wma = s.wm[ra][kb], wmb = s.wm[rb][kb];
            int am[4]; // GEMM_MINS: the mins as a 16 x 32 A fragment (m0 in k 0..15, m1 in 16..31)
            if (gemm_kind<TYPE>() == GEMM_MINS)
            {
                int ma = (int)wma, mb = (int)wmb;
                am[0] = (ma & 15) * 0x01010101;
                am[1] = (mb & 15) * 0x01010101;
                am[2] = (ma >> 4) * 0x01010101;
                am[3] = (mb >> 4) * 0x01010101;
            }
#pragma unroll
            for (int j = 0; j < GEMM_BN / 8; j++)
            {
                int tb = j * 8 + g; // the token whose column this lane loads
                int b[2];
                mma_load_b(b, s.x, GEMM_WSTRIDE, tb, kb * 8 + c);
                int tc = j * 8 + 2 * c; // the tokens of this lane's accumulators: tc, tc + 1
                float dx0 = s.dx[tc][kb], dx1 = s.dx[tc + 1][kb];
                if (gemm_kind<TYPE>() == GEMM_HALVES)
                {
                    int lo[4], hi[4];
                    mma_s8_k16(lo, a[0], a[1], b[0]);
                    mma_s8_k16(hi, a[2], a[3], b[1]);
                    acc[j][0] += dx0 * (wsa0 * (float)lo[0] + wsa1 * (float)hi[0]);
                    acc[j][1] += dx1 * (wsa0 * (float)lo[1] + wsa1 * (float)hi[1]);
                    acc[j][2] += dx0 * (wsb0 * (float)lo[2] + wsb1 * (float)hi[2]);
                    acc[j][3] += dx1 * (wsb0 * (float)lo[3] + wsb1 * (float)hi[3]);
                }
                else if (gemm_kind<TYPE>() == GEMM_MINS)
                {
                    int d[4], m[4];
                    mma_s8_k32(d, a, b);
                    mma_s8_k32(m, am, b); // sum over the block of m[i / 16] * x[i]
                    acc[j][0] += dx0 * (wsa0 * (float)d[0] + wsa1 * (float)m[0]);
                    acc[j][1] += dx1 * (wsa0 * (float)d[1] + wsa1 * (float)m[1]);
                    acc[j][2] += dx0 * (wsb0 * (float)d[2] + wsb1 * (float)m[2]);
                    acc[j][3] += dx1 * (wsb0 * (float)d[3] + wsb1 * (float)m[3]);
                }
                else
                {
                    int d[4];
                    mma_s8_k32(d, a, b);
                    float sx0 = s.sx[tc][kb], sx1 = s.sx[tc + 1][kb];
                    acc[j][0] += wsa0 * dx0 * (float)d[0] + wma * sx0;
                    acc[j][1] += wsa0 * dx1 * (float)d[1] + wma * sx1;
                    acc[j][2] += wsb0 * dx0 * (float)d[2] + wmb * sx0;
                    acc[j][3] += wsb0 * dx1 * (float)d[3] + wmb * sx1;
                }
            }
        }
    }

#pragma unroll
    for (int j = 0; j < GEMM_BN / 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++)
        {
            int r = r0 + (i < 2 ? ra : rb), t = t0 + j * 8 + 2 * c + (i & 1);
            if (r < rows && t < nTokens) dst[(i64)t * rows + r] = acc[j][i];
        }
}

// ---- dp4a core: thread (tx, ty) = (tid % 16, tid / 16) owns rows tx + 16i (i < 4) and tokens ty + 8j (j < 8) ----
template <int TYPE, bool PACKED>
__device__ __forceinline__ void gemm_dp4a(const u8* __restrict__ W, i64 rowBytes, int K, int rows, const i8* __restrict__ qx,
                                          const float* __restrict__ dx, const float* __restrict__ sx,
                                          float* __restrict__ dst, int nTokens)
{
    __shared__ GemmTiles s;
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    int r0 = blockIdx.x * GEMM_BM, t0 = blockIdx.y * GEMM_BN;
    float acc[4][8];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;

    int nb = K / 32;
    for (int kb0 = 0; kb0 < nb; kb0 += GEMM_KB)
    {
        __syncthreads();
        gemm_stage<TYPE, PACKED>(s, W, rowBytes, K, rows, qx, dx, sx, nTokens, r0, t0, kb0);
        __syncthreads();
        for (int kb = 0; kb < GEMM_KB && kb0 + kb < nb; kb++)
        {
            // GEMM_HALVES and GEMM_MINS take the block as two 16-weight halves (their own scale or min), the others as one.
            const int halves = gemm_kind<TYPE>() == GEMM_ONE ? 1 : 2;
#pragma unroll
            for (int h = 0; h < halves; h++)
            {
                int sumi[4][8], xs[8];
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 8; j++) sumi[i][j] = 0;
#pragma unroll
                for (int j = 0; j < 8; j++) xs[j] = 0;
#pragma unroll
                for (int q = 0; q < 8 / halves; q++)
                {
                    int word = kb * 8 + h * 4 + q;
                    int wv[4], xv[8];
#pragma unroll
                    for (int i = 0; i < 4; i++) wv[i] = s.w[(tx + 16 * i) * GEMM_WSTRIDE + word];
#pragma unroll
                    for (int j = 0; j < 8; j++) xv[j] = s.x[(ty + 8 * j) * GEMM_WSTRIDE + word];
#pragma unroll
                    for (int i = 0; i < 4; i++)
#pragma unroll
                        for (int j = 0; j < 8; j++) sumi[i][j] = dp4a(wv[i], xv[j], sumi[i][j]);
                    if (gemm_kind<TYPE>() == GEMM_MINS)
#pragma unroll
                        for (int j = 0; j < 8; j++) xs[j] = dp4a(0x01010101, xv[j], xs[j]); // the half's activation sum
                }
#pragma unroll
                for (int i = 0; i < 4; i++)
                {
                    int r = tx + 16 * i;
                    if (gemm_kind<TYPE>() == GEMM_HALVES)
                    {
                        float wsv = s.ws[r][2 * kb + h];
#pragma unroll
                        for (int j = 0; j < 8; j++) acc[i][j] += wsv * s.dx[ty + 8 * j][kb] * (float)sumi[i][j];
                    }
                    else if (gemm_kind<TYPE>() == GEMM_MINS)
                    {
                        int mins = (int)s.wm[r][kb], mh = h == 0 ? mins & 15 : mins >> 4;
                        float d = s.ws[r][2 * kb], nd = s.ws[r][2 * kb + 1];
#pragma unroll
                        for (int j = 0; j < 8; j++)
                            acc[i][j] += s.dx[ty + 8 * j][kb] * (d * (float)sumi[i][j] + nd * (float)(mh * xs[j]));
                    }
                    else
                    {
                        float wsv = s.ws[r][2 * kb], wmv = s.wm[r][kb];
#pragma unroll
                        for (int j = 0; j < 8; j++)
                            acc[i][j] += wsv * s.dx[ty + 8 * j][kb] * (float)sumi[i][j] + wmv * s.sx[ty + 8 * j][kb];
                    }
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 8; j++)
        {
            int r = r0 + tx + 16 * i, t = t0 + ty + 8 * j;
            if (r < rows && t < nTokens) dst[(i64)t * rows + r] = acc[i][j];
        }
}

// Grid: (ceil(rows / 64), ceil(nTokens / 64)), 128 threads. Arguments as the matvec kernels'. The _packed kernels
// read rows repacked at upload (CudaRepack), the others ggml's blocks (weights read in place from a mapped file).
#define GEMM_KERNEL(CORE, NAME, SUFFIX, TYPE, PACKED)                                                                 \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS)                                                        \
        gemm_##CORE##_##NAME##SUFFIX(const u8* W, i64 rowBytes, int K, int rows, const i8* qx, const float* dx,        \
                                     const float* sx, float* dst, int nTokens)                                         \
    { gemm_##CORE<TYPE, PACKED>(W, rowBytes, K, rows, qx, dx, sx, dst, nTokens); }
#define GEMM_KERNELS(NAME, TYPE)                                                                                       \
    GEMM_KERNEL(mma, NAME, , TYPE, false)                                                                              \
    GEMM_KERNEL(dp4a, NAME, , TYPE, false)                                                                             \
    GEMM_KERNEL(mma, NAME, _packed, TYPE, true)                                                                        \
    GEMM_KERNEL(dp4a, NAME, _packed, TYPE, true)

GEMM_KERNELS(q4_0, GTYPE_Q4_0)
GEMM_KERNELS(q8_0, GTYPE_Q8_0)
GEMM_KERNELS(q4_k, GTYPE_Q4_K)
GEMM_KERNELS(q6_k, GTYPE_Q6_K)
GEMM_KERNELS(q4_1, GTYPE_Q4_1)
GEMM_KERNELS(q5_0, GTYPE_Q5_0)
GEMM_KERNELS(q5_1, GTYPE_Q5_1)
GEMM_KERNELS(iq4_nl, GTYPE_IQ4_NL)
GEMM_KERNELS(q5_k, GTYPE_Q5_K)
GEMM_KERNELS(iq4_xs, GTYPE_IQ4_XS)
GEMM_KERNELS(q3_k, GTYPE_Q3_K)
GEMM_KERNELS(q2_k, GTYPE_Q2_K)

// ---- float weights (F32, F16, BF16) against float activations: the same 64 x 64 tile and thread layout as the
// dp4a core, K in steps of 32, the weights converted to float as they are staged (matmul.cu's weight_at); every
// architecture. Per (row, token) one fused multiply-add chain in index order. ----
#define GEMMF_BK 32
#define GEMMF_STRIDE (GEMM_BM + 1) // floats per staged k: 65, so the transposing stores hit 32 distinct banks

struct GemmFloatTiles
{
    float w[GEMMF_BK * GEMMF_STRIDE]; // weights: k, then row
    float x[GEMMF_BK * GEMMF_STRIDE]; // activations: k, then token
};

template <int FTYPE>
__device__ __forceinline__ float gemmf_weight(const u8* row, int i)
{
    if (FTYPE == GTYPE_F32) return ((const float*)row)[i];
    if (FTYPE == GTYPE_F16) return half_to_float(((const u16*)row)[i]);
    return bf16_to_float(((const u16*)row)[i]);
}

template <int FTYPE>
__device__ __forceinline__ void gemm_float(const u8* __restrict__ W, i64 rowBytes, int K, int rows, const float* __restrict__ x,
                                           float* __restrict__ dst, int nTokens)
{
    __shared__ GemmFloatTiles s;
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    int r0 = blockIdx.x * GEMM_BM, t0 = blockIdx.y * GEMM_BN;
    float acc[4][8];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += GEMMF_BK)
    {
        __syncthreads();
        // 64 rows (tokens) x 32 k: thread tid stages k = k0 + tid % 32 of rows (tokens) tid / 32 + 4i, so a warp
        // reads 32 consecutive values of a row (coalesced).
        {
            int kk = threadIdx.x % GEMMF_BK, k = k0 + kk;
            bool inK = k < K;
#pragma unroll 4
            for (int r = threadIdx.x / GEMMF_BK; r < GEMM_BM; r += GEMM_THREADS / GEMMF_BK)
            {
                s.w[kk * GEMMF_STRIDE + r] = inK && r0 + r < rows ? gemmf_weight<FTYPE>(W + (i64)(r0 + r) * rowBytes, k) : 0.0f;
                s.x[kk * GEMMF_STRIDE + r] = inK && t0 + r < nTokens ? x[(i64)(t0 + r) * K + k] : 0.0f;
            }
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < GEMMF_BK; kk++)
        {
            float wv[4], xv[8];
#pragma unroll
            for (int i = 0; i < 4; i++) wv[i] = s.w[kk * GEMMF_STRIDE + tx + 16 * i];
#pragma unroll
            for (int j = 0; j < 8; j++) xv[j] = s.x[kk * GEMMF_STRIDE + ty + 8 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[i][j] = __fmaf_rn(wv[i], xv[j], acc[i][j]);
        }
    }

#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 8; j++)
        {
            int r = r0 + tx + 16 * i, t = t0 + ty + 8 * j;
            if (r < rows && t < nTokens) dst[(i64)t * rows + r] = acc[i][j];
        }
}

// Grid as the block types' GEMMs; arguments as matmul.cu's float matvec kernels.
#define GEMM_FLOAT_KERNEL(NAME, FTYPE)                                                                                \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS)                                                        \
        gemm_##NAME(const u8* W, i64 rowBytes, int K, int rows, const float* x, float* dst, int nTokens)              \
    { gemm_float<FTYPE>(W, rowBytes, K, rows, x, dst, nTokens); }

GEMM_FLOAT_KERNEL(f32, GTYPE_F32)
GEMM_FLOAT_KERNEL(f16, GTYPE_F16)
GEMM_FLOAT_KERNEL(bf16, GTYPE_BF16)

// ---- half-precision weights (F16, BF16) on sm_80 and later: tensor-core MMAs, mma.sync m16n8k16 with f16 or bf16
// inputs and f32 accumulators. The same 64 x 64 tile, grid and arguments as gemm_float, K in steps of 32 (two k16
// MMAs). The weights are staged as stored (their bits, two per word); the activations are rounded to the weights'
// format as they are staged (fp16: clamped to +-65504 first, float_to_half_sat; bf16: float_to_bf16), so each
// product is exact in float and the MMA's sums are the only other rounding. Warp w owns rows 16w..16w+15 of the
// tile, all 64 tokens (eight 16 x 8 accumulator tiles). Elements past K, rows past `rows` and tokens past `nTokens`
// are staged as zeros. Fragments (PTX ISA, mma.m16n8k16 .f16/.bf16), g = lane / 4, c = lane % 4, each register
// two elements, the lower k in the low half:
//   A: reg 0 = A[g][2c, 2c+1], reg 1 = A[g+8][2c, 2c+1], reg 2 = A[g][2c+8, 2c+9], reg 3 = A[g+8][2c+8, 2c+9]
//   B: reg 0 = B[2c, 2c+1][g], reg 1 = B[2c+8, 2c+9][g]
//   C/D: as the int8 MMAs' (c0 = D[g][2c], c1 = D[g][2c+1], c2 = D[g+8][2c], c3 = D[g+8][2c+1]).
// The host emulation (host_shim.h host_mma_half) gathers the fragments by these formulas.
//
// Pipelining: two stages of tiles. While the MMAs read stage s, the next K step's weights are on their way into
// stage s ^ 1 by cp.async (16 bytes a copy, no registers; rows past `rows` and chunks past K zero-filled), and its
// activations are loaded into registers, rounded and stored into stage s ^ 1 after the MMAs: one barrier a K step.
// That needs rows of 16-byte aligned chunks (rowBytes and W multiples of 16, so K a multiple of 8); other weights are
// staged through registers as before, with the same pipeline. Fragments come out of the tiles by ldmatrix (x4: four
// 8 x 8 matrices of halves; lane l gives the address of row l % 8 of matrix l / 8 and gets word l % 4 of row l / 4 of
// each): A's four registers are the matrices (rows 0-7, words 0-3), (rows 8-15, words 0-3), (rows 0-7, words 4-7),
// (rows 8-15, words 4-7) of the warp's 16 rows in the K half h; two j's B registers are (tokens 8j.., words 0-3),
// (8j.., 4-7), (8j+8.., 0-3), (8j+8.., 4-7). A staged row is 20 words (80 bytes): eight rows' 16-byte reads of one
// ldmatrix phase start at banks 0, 20, 8, 28, 16, 4, 24, 12 and never conflict.
#define GEMMH_BK 32
#define GEMMH_WSTRIDE (GEMMH_BK / 2 + 4) // words per staged row: 20 (80 bytes, a multiple of 16 for ldmatrix and cp.async)

#ifndef EDGELLM_HOST_EMULATION
template <int FTYPE> __device__ __forceinline__ void mma_half_k16(float* d, const u32* a, const u32* b)
{
#if __CUDA_ARCH__ >= 800
    if (FTYPE == GTYPE_F16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    asm volatile("trap;"); // never launched below sm_80 (the backend takes gemm_f16 / gemm_bf16 there)
#endif
}

// cp.async of 16 bytes from global to shared memory, `bytes` of them read (16, or 0: zero-filled). Below sm_80 (never
// launched there) the same through registers, so every target compiles.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int bytes)
{
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
                 :: "r"((u32)__cvta_generic_to_shared(dst)), "l"(src), "r"(bytes) : "memory");
#else
    asm volatile("trap;"); // never launched below sm_80 (gemm_half traps there first)
#endif
}

// Waits for every cp.async this thread issued (cp.async.commit_group + wait_group 0).
__device__ __forceinline__ void cp_async_wait_all()
{
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n\tcp.async.wait_group 0;" ::: "memory");
#endif
}

// ldmatrix.x4 of 16-bit elements: this lane's address is row lane % 8 of matrix lane / 8 (16 bytes, 16-byte aligned).
__device__ __forceinline__ void ldmatrix_x4(u32* r, const u32* row)
{
#if __CUDA_ARCH__ >= 800
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"((u32)__cvta_generic_to_shared(row)));
#else
    asm volatile("trap;");
#endif
}
#else
template <int FTYPE> static inline void mma_half_k16(float* d, const u32* a, const u32* b) { host_mma_half(d, a, b, FTYPE == GTYPE_BF16); }
#endif

struct GemmHalfTiles
{
    u32 w[GEMM_BM * GEMMH_WSTRIDE]; // weights: row r, elements 2j (low half) and 2j + 1 of the K step in word j
    u32 x[GEMM_BN * GEMMH_WSTRIDE]; // activations rounded to the weights' format: token t, the same words
};

// Activation value v in the weights' half format (its bits).
template <int FTYPE> __device__ __forceinline__ u32 gemmh_round(float v)
{
    return FTYPE == GTYPE_F16 ? (u32)float_to_half_sat(v) : (u32)float_to_bf16(v);
}

// Per thread and K step: GEMMH_STAGE words of weights and of activations (64 rows x 16 words / 128 threads); thread
// tid takes word tid % 16 of rows (tokens) tid / 16 + 8i, so a warp reads two rows' 64 consecutive bytes of weights
// (128 of activations). With cp.async: GEMMH_CHUNKS 16-byte chunks (64 rows x 4), chunk tid % 4 of rows tid / 4 + 32i.
#define GEMMH_STAGE (GEMM_BM * (GEMMH_BK / 2) / GEMM_THREADS)
#define GEMMH_CHUNKS (GEMM_BM * (GEMMH_BK / 8) / GEMM_THREADS)

// The weights of the K step at k0 into tile w: cp.async when the rows are 16-byte chunks, else through registers.
__device__ __forceinline__ void gemmh_stage_w(u32* w, const u8* __restrict__ W, i64 rowBytes, int K, int rows, int r0, int k0, bool chunks)
{
    if (chunks)
    {
#pragma unroll
        for (int i = 0; i < GEMMH_CHUNKS; i++)
        {
            int u = threadIdx.x + i * GEMM_THREADS, r = u / (GEMMH_BK / 8), q = u % (GEMMH_BK / 8), k = k0 + 8 * q;
            bool in = r0 + r < rows && k < K; // K is a multiple of 8: a chunk is all in or all out
            const u8* src = in ? W + (i64)(r0 + r) * rowBytes + 2 * (i64)k : W;
            cp_async16(w + r * GEMMH_WSTRIDE + 4 * q, src, in ? 16 : 0);
        }
        return;
    }
    bool pairs = ((rowBytes | (i64)(unsigned long long)W) & 3) == 0; // rows whose element pairs are 4-byte words
#pragma unroll
    for (int i = 0; i < GEMMH_STAGE; i++)
    {
        int u = threadIdx.x + i * GEMM_THREADS, r = u / (GEMMH_BK / 2), kw = u % (GEMMH_BK / 2), k = k0 + 2 * kw;
        u32 wv = 0;
        if (r0 + r < rows && k < K)
        {
            const u16* row = (const u16*)(W + (i64)(r0 + r) * rowBytes);
            if (pairs && k + 1 < K) wv = *(const u32*)(row + k);
            else wv = (u32)row[k] | (k + 1 < K ? (u32)row[k + 1] << 16 : 0u);
        }
        w[r * GEMMH_WSTRIDE + kw] = wv;
    }
}

// The activations of the K step at k0, as floats in registers (zeros past K and nTokens) ...
__device__ __forceinline__ void gemmh_load_x(float2* v, const float* __restrict__ x, int K, int nTokens, int t0, int k0)
{
#pragma unroll
    for (int i = 0; i < GEMMH_STAGE; i++)
    {
        int u = threadIdx.x + i * GEMM_THREADS, r = u / (GEMMH_BK / 2), kw = u % (GEMMH_BK / 2), k = k0 + 2 * kw;
        float2 f = {0.0f, 0.0f};
        if (t0 + r < nTokens && k < K)
        {
            const float* xt = x + (i64)(t0 + r) * K;
            f.x = xt[k];
            if (k + 1 < K) f.y = xt[k + 1];
        }
        v[i] = f;
    }
}

// ... then rounded to the weights' format into tile xs (a zero stays a zero in both formats).
template <int FTYPE> __device__ __forceinline__ void gemmh_store_x(u32* xs, const float2* v)
{
#pragma unroll
    for (int i = 0; i < GEMMH_STAGE; i++)
    {
        int u = threadIdx.x + i * GEMM_THREADS, r = u / (GEMMH_BK / 2), kw = u % (GEMMH_BK / 2);
        xs[r * GEMMH_WSTRIDE + kw] = gemmh_round<FTYPE>(v[i].x) | gemmh_round<FTYPE>(v[i].y) << 16;
    }
}

template <int FTYPE>
__device__ __forceinline__ void gemm_half(const u8* __restrict__ W, i64 rowBytes, int K, int rows, const float* __restrict__ x,
                                          float* __restrict__ dst, int nTokens)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    asm volatile("trap;"); // never launched below sm_80 (the backend takes gemm_f16 / gemm_bf16 there): no tiles, no registers
#else
    __shared__ __align__(16) GemmHalfTiles s[2];
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, g = lane >> 2, c = lane & 3;
    int r0 = blockIdx.x * GEMM_BM, t0 = blockIdx.y * GEMM_BN;
    int ra = warp * 16 + g, rb = ra + 8; // this lane's two rows (tile-relative), for the results
    // ldmatrix rows of this lane: matrix m = lane / 8, row lane % 8 (A: rows 8 (m % 2) + .., words 4 (m / 2) + ..;
    // B: tokens 8 (m / 2) + .., words 4 (m % 2) + ..)
    int m = lane >> 3, lr = lane & 7;
    int aRow = warp * 16 + 8 * (m & 1) + lr, aWord = 4 * (m >> 1);
    int bTok = 8 * (m >> 1) + lr, bWord = 4 * (m & 1);
    bool chunks = ((rowBytes | (i64)(unsigned long long)W) & 15) == 0;
    float acc[GEMM_BN / 8][4];
#pragma unroll
    for (int j = 0; j < GEMM_BN / 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[j][i] = 0.0f;

    float2 xv[GEMMH_STAGE];
    gemmh_stage_w(s[0].w, W, rowBytes, K, rows, r0, 0, chunks);
    gemmh_load_x(xv, x, K, nTokens, t0, 0);
    gemmh_store_x<FTYPE>(s[0].x, xv);
    int st = 0;
    for (int k0 = 0; k0 < K; k0 += GEMMH_BK, st ^= 1)
    {
        cp_async_wait_all(); // this thread's copies into stage st have landed ...
        __syncthreads();     // ... everyone's, with the activations; and stage st ^ 1 is no longer read
        bool next = k0 + GEMMH_BK < K;
        if (next)
        {
            gemmh_stage_w(s[st ^ 1].w, W, rowBytes, K, rows, r0, k0 + GEMMH_BK, chunks);
            gemmh_load_x(xv, x, K, nTokens, t0, k0 + GEMMH_BK);
        }
        const GemmHalfTiles& t = s[st];
#pragma unroll
        for (int h = 0; h < GEMMH_BK / 16; h++)
        {
            u32 a[4];
            ldmatrix_x4(a, t.w + aRow * GEMMH_WSTRIDE + 8 * h + aWord);
#pragma unroll
            for (int j = 0; j < GEMM_BN / 8; j += 2)
            {
                u32 b[4]; // tokens 8j.. (b[0], b[1]) and 8j+8.. (b[2], b[3])
                ldmatrix_x4(b, t.x + (8 * j + bTok) * GEMMH_WSTRIDE + 8 * h + bWord);
                mma_half_k16<FTYPE>(acc[j], a, b);
                mma_half_k16<FTYPE>(acc[j + 1], a, b + 2);
            }
        }
        if (next) gemmh_store_x<FTYPE>(s[st ^ 1].x, xv);
    }

#pragma unroll
    for (int j = 0; j < GEMM_BN / 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++)
        {
            int r = r0 + (i < 2 ? ra : rb), t = t0 + j * 8 + 2 * c + (i & 1);
            if (r < rows && t < nTokens) dst[(i64)t * rows + r] = acc[j][i];
        }
#endif
}

// Grid and arguments as gemm_f16 / gemm_bf16 (the backend takes these instead on sm_80 and later).
#define GEMM_HALF_KERNEL(NAME, FTYPE)                                                                                 \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS)                                                        \
        gemm_mma_##NAME(const u8* W, i64 rowBytes, int K, int rows, const float* x, float* dst, int nTokens)          \
    { gemm_half<FTYPE>(W, rowBytes, K, rows, x, dst, nTokens); }

GEMM_HALF_KERNEL(f16, GTYPE_F16)
GEMM_HALF_KERNEL(bf16, GTYPE_BF16)
