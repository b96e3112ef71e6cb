// Matrix-vector products over weights repacked at upload (CudaRepack.cs), and the embedding lookup of such
// weights. matmul.cu reads ggml's blocks as stored: 18- or 210-byte blocks allow only 2-byte loads, so a Q4_0
// block costs 9 weight loads and 8 activation loads, and the L1 load pipe, not memory, sets the speed. Here a
// row keeps its bytes (same size, padded to 16) but each field of the row's blocks lies in its own array, so a
// lane reads a block's quants with one 16-byte load and its activations with two:
//
//   Q4_0  [nb x 16 B nibbles][nb x fp16 d]                           (nibble byte j: weight j low, j+16 high)
//   Q8_0  [nb x 32 B int8][nb x fp16 d]
//   Q4_K  [nb x 16 B nibbles][nsb x 16 B: fp16 d, fp16 dmin, 12 B ggml scales]   (nb = 8 nsb)
//   Q6_K  [nb x 16 B low nibbles][nb x 8 B high bits][nb x 2 i8 scales][nsb x fp16 d]
//   Q4_1  [nb x 16 B nibbles][nb x (fp16 d, fp16 m)]
//   Q5_0  [nb x 16 B nibbles][nb x u32 fifth bits][nb x fp16 d]
//   Q5_1  [nb x 16 B nibbles][nb x u32 fifth bits][nb x (fp16 d, fp16 m)]
//   IQ4_NL [nb x 16 B nibble indices][nb x fp16 d]
//   Q5_K  [nb x 16 B nibbles][nb x u32 fifth bits][nsb x 16 B: fp16 d, fp16 dmin, 12 B ggml scales]
//   IQ4_XS [nb x 16 B nibble indices][nsb x 8 B: fp16 d, u16 scales_h, 4 B scales_l]
//   Q2_K  [nb x 8 B crumbs][nb x 2 B ggml scale bytes][nsb x (fp16 d, fp16 dmin)]
//   Q3_K  [nb x 8 B crumbs][nb x u32 third bits][nsb x 12 B ggml scales][nsb x fp16 d]
//
// Crumbs (2-bit values) as two words, one for weights 0..15 and one for 16..31, bits 2j..2j+1 of byte i holding
// weight 4j + i's (the same order as the Q6_K high bits); third bits as the fifth bits (bit i: weight i).
// nb = K / 32 blocks of 32 weights; nibbles as in Q4_0 whatever the source type; fifth bits as in Q5_0 (bit i of
// the word: weight i); the Q6_K high bits as two words, one for weights 0..15 and one for 16..31, bits 2j..2j+1
// of byte i holding weight 4j + i's.
//
// Lane i of a warp takes blocks i, i+32, ... exactly as matmul.cu does, with the same block arithmetic, so with
// one warp per row a result is bit-identical to matmul.cu's. Rows that are few and long (70B's K/V projections:
// 1024 rows of 8192) take wpr = 2 or 4 warps of the block each: warp w of a row starts at block 32 w and steps
// by 32 wpr, and the warps' sums are added in warp order through shared memory.
#include "common.cuh"

#define MVP_WARPS EPILOGUE_WARPS // warps per thread block (128 threads)

#define PTYPE_Q4_0 0
#define PTYPE_Q8_0 1
#define PTYPE_Q4_K 2
#define PTYPE_Q6_K 3
#define PTYPE_Q4_1 4
#define PTYPE_Q5_0 5
#define PTYPE_Q5_1 6
#define PTYPE_IQ4_NL 7
#define PTYPE_Q5_K 8
#define PTYPE_IQ4_XS 9
#define PTYPE_Q2_K 10
#define PTYPE_Q3_K 11

// Nibbles of four bytes: low (weights 4j..4j+3) against xq[j], high (16+4j..) against xq[j+4].
__device__ __forceinline__ int nibble_dot(uint4 q, const int* xq)
{
    int sumi = 0;
    sumi = dp4a((int)(q.x & 0x0F0F0F0Fu), xq[0], sumi);
    sumi = dp4a((int)((q.x >> 4) & 0x0F0F0F0Fu), xq[4], sumi);
    sumi = dp4a((int)(q.y & 0x0F0F0F0Fu), xq[1], sumi);
    sumi = dp4a((int)((q.y >> 4) & 0x0F0F0F0Fu), xq[5], sumi);
    sumi = dp4a((int)(q.z & 0x0F0F0F0Fu), xq[2], sumi);
    sumi = dp4a((int)((q.z >> 4) & 0x0F0F0F0Fu), xq[6], sumi);
    sumi = dp4a((int)(q.w & 0x0F0F0F0Fu), xq[3], sumi);
    sumi = dp4a((int)((q.w >> 4) & 0x0F0F0F0Fu), xq[7], sumi);
    return sumi;
}

// Nibbles with their fifth bits (bit i of qh: weight i) against the activations.
__device__ __forceinline__ int nibble5_dot(uint4 q, u32 qh, const int* xq)
{
    int sumi = 0;
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        u32 v = j == 0 ? q.x : j == 1 ? q.y : j == 2 ? q.z : q.w;
        sumi = dp4a((int)(v & 0x0F0F0F0Fu) | spread4_bit4(qh >> (4 * j)), xq[j], sumi);
        sumi = dp4a((int)((v >> 4) & 0x0F0F0F0Fu) | spread4_bit4(qh >> (16 + 4 * j)), xq[j + 4], sumi);
    }
    return sumi;
}

// IQ4 level indices against the activations.
__device__ __forceinline__ int iq4_nibble_dot(uint4 q, const int* xq)
{
    int sumi = 0;
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        u32 v = j == 0 ? q.x : j == 1 ? q.y : j == 2 ? q.z : q.w;
        sumi = dp4a(iq4_levels4(v & 0x0F0F0F0Fu), xq[j], sumi);
        sumi = dp4a(iq4_levels4((v >> 4) & 0x0F0F0F0Fu), xq[j + 4], sumi);
    }
    return sumi;
}

__device__ __forceinline__ u32 word_of(uint4 v, int j) { return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w; }

// Sub-block s's 6-bit scale and min from the 12 ggml scale bytes held in words a (bytes 0..3), b (4..7), c (8..11).
__device__ __forceinline__ void q4k_scale_min_words(int s, u32 a, u32 b, u32 c, int* sc, int* m)
{
    int sh = 8 * (s & 3);
    int A = (int)((a >> sh) & 0xFFu), B = (int)((b >> sh) & 0xFFu), C = (int)((c >> sh) & 0xFFu);
    if (s < 4) { *sc = A & 63; *m = B & 63; }
    else { *sc = (C & 0xF) | ((A >> 6) << 4); *m = (C >> 4) | ((B >> 6) << 4); }
}

// Block b of a packed row of nb blocks against the 8 activation words xq (scale dxv, scaled sum sxv).
template <int TYPE>
__device__ __forceinline__ float packed_dot(const u8* __restrict__ row, int nb, int b, const int* xq, float dxv, float sxv)
{
    if (TYPE == PTYPE_Q4_0)
    {
        uint4 q = *(const uint4*)(row + 16 * (i64)b);
        float d = half_to_float(*(const u16*)(row + 16 * (i64)nb + 2 * b));
        int sumi = nibble_dot(q, xq);
        return __fmul_rn(d, __fsub_rn(__fmul_rn(dxv, (float)sumi), __fmul_rn(8.0f, sxv)));
    }
    if (TYPE == PTYPE_Q8_0)
    {
        const uint4* p = (const uint4*)(row + 32 * (i64)b);
        uint4 q0 = p[0], q1 = p[1];
        float d = half_to_float(*(const u16*)(row + 32 * (i64)nb + 2 * b));
        int sumi = 0;
        sumi = dp4a((int)q0.x, xq[0], sumi);
        sumi = dp4a((int)q0.y, xq[1], sumi);
        sumi = dp4a((int)q0.z, xq[2], sumi);
        sumi = dp4a((int)q0.w, xq[3], sumi);
        sumi = dp4a((int)q1.x, xq[4], sumi);
        sumi = dp4a((int)q1.y, xq[5], sumi);
        sumi = dp4a((int)q1.z, xq[6], sumi);
        sumi = dp4a((int)q1.w, xq[7], sumi);
        return __fmul_rn(__fmul_rn(d, dxv), (float)sumi);
    }
    if (TYPE == PTYPE_Q4_K)
    {
        uint4 q = *(const uint4*)(row + 16 * (i64)b);
        uint4 h = *(const uint4*)(row + 16 * (i64)nb + 16 * (i64)(b >> 3));
        float d = half_to_float((u16)(h.x & 0xFFFFu)), dmin = half_to_float((u16)(h.x >> 16));
        int sc, m;
        q4k_scale_min_words(b & 7, h.y, h.z, h.w, &sc, &m);
        int sumi = nibble_dot(q, xq);
        return __fsub_rn(__fmul_rn(__fmul_rn(d, (float)sc), __fmul_rn(dxv, (float)sumi)),
                         __fmul_rn(__fmul_rn(dmin, (float)m), sxv));
    }
    if (TYPE == PTYPE_Q4_1)
    {
        uint4 q = *(const uint4*)(row + 16 * (i64)b);
        u32 dm = *(const u32*)(row + 16 * (i64)nb + 4 * b);
        float d = half_to_float((u16)(dm & 0xFFFFu)), m = half_to_float((u16)(dm >> 16));
        int sumi = nibble_dot(q, xq);
        return __fadd_rn(__fmul_rn(d, __fmul_rn(dxv, (float)sumi)), __fmul_rn(m, sxv));
    }
    if (TYPE == PTYPE_Q5_0)
    {
        uint4 q = *(const uint4*)(row + 16 * (i64)b);
        u32 qh = *(const u32*)(row + 16 * (i64)nb + 4 * b);
        float d = half_to_float(*(const u16*)(row + 20 * (i64)nb + 2 * b));
        int sumi = nibble5_dot(q, qh, xq);
        return __fmul_rn(d, __fsub_rn(__fmul_rn(dxv, (float)sumi), __fmul_rn(16.0f, sxv)));
    }
    if (TYPE == PTYPE_Q5_1)
    {
        uint4 q = *(const uint4*)(row + 16 * (i64)b);
        u32 qh = *(const u32*)(row + 16 * (i64)nb + 4 * b);
        u32 dm = *(const u32*)(row + 20 * (i64)nb + 4 * b);
        float d = half_to_float((u16)(dm & 0xFFFFu)), m = half_to_float((u16)(dm >> 16));
        int sumi = nibble5_dot(q, qh, xq);
        return __fadd_rn(__fmul_rn(d, __fmul_rn(dxv, (float)sumi)), __fmul_rn(m, sxv));
    }
    if (TYPE == PTYPE_IQ4_NL)
    {
        uint4 q = *(const uint4*)(row + 16 * (i64)b);
        float d = half_to_float(*(const u16*)(row + 16 * (i64)nb + 2 * b));
        return __fmul_rn(__fmul_rn(d, dxv), (float)iq4_nibble_dot(q, xq));
    }
    if (TYPE == PTYPE_Q5_K)
    {
        uint4 q = *(const uint4*)(row + 16 * (i64)b);
        u32 qh = *(const u32*)(row + 16 * (i64)nb + 4 * b);
        uint4 h = *(const uint4*)(row + 20 * (i64)nb + 16 * (i64)(b >> 3));
        float d = half_to_float((u16)(h.x & 0xFFFFu)), dmin = half_to_float((u16)(h.x >> 16));
        int sc, m;
        q4k_scale_min_words(b & 7, h.y, h.z, h.w, &sc, &m);
        int sumi = nibble5_dot(q, qh, xq);
        return __fsub_rn(__fmul_rn(__fmul_rn(d, (float)sc), __fmul_rn(dxv, (float)sumi)),
                         __fmul_rn(__fmul_rn(dmin, (float)m), sxv));
    }
    if (TYPE == PTYPE_IQ4_XS)
    {
        uint4 q = *(const uint4*)(row + 16 * (i64)b);
        uint2 h = *(const uint2*)(row + 16 * (i64)nb + 8 * (i64)(b >> 3));
        int s = b & 7;
        float d = half_to_float((u16)(h.x & 0xFFFFu));
        int ls = (int)(((h.y >> (4 * s)) & 0xFu) | (((h.x >> (16 + 2 * s)) & 3u) << 4)) - 32;
        return __fmul_rn(__fmul_rn(d, (float)ls), __fmul_rn(dxv, (float)iq4_nibble_dot(q, xq)));
    }
    if (TYPE == PTYPE_Q2_K)
    {
        uint2 c = *(const uint2*)(row + 8 * (i64)b);
        u32 scw = *(const u16*)(row + 8 * (i64)nb + 2 * b);
        u32 dd = *(const u32*)(row + 10 * (i64)nb + 4 * (b >> 3));
        int s1 = 0, s2 = 0, x1 = 0, x2 = 0;
#pragma unroll
        for (int j = 0; j < 4; j++)
        {
            s1 = dp4a((int)((c.x >> (2 * j)) & 0x03030303u), xq[j], s1);
            x1 = dp4a(0x01010101, xq[j], x1);
            s2 = dp4a((int)((c.y >> (2 * j)) & 0x03030303u), xq[j + 4], s2);
            x2 = dp4a(0x01010101, xq[j + 4], x2);
        }
        int sc1 = (int)(scw & 0xFFu), sc2 = (int)(scw >> 8);
        int isum = (sc1 & 0xF) * s1 + (sc2 & 0xF) * s2;
        int msum = (sc1 >> 4) * x1 + (sc2 >> 4) * x2;
        float d = half_to_float((u16)(dd & 0xFFFFu)), dmin = half_to_float((u16)(dd >> 16));
        return __fmul_rn(dxv, __fsub_rn(__fmul_rn(d, (float)isum), __fmul_rn(dmin, (float)msum)));
    }
    if (TYPE == PTYPE_Q3_K)
    {
        uint2 c = *(const uint2*)(row + 8 * (i64)b);
        u32 hb = *(const u32*)(row + 8 * (i64)nb + 4 * b);
        const u8* sc = row + 12 * (i64)nb + 12 * (i64)(b >> 3);
        int g = b & 7;
        int s1 = 0, s2 = 0;
#pragma unroll
        for (int j = 0; j < 4; j++)
        {
            u32 lo = ((c.x >> (2 * j)) & 0x03030303u) | ((u32)spread4_bit4(hb >> (4 * j)) >> 2);
            u32 hi = ((c.y >> (2 * j)) & 0x03030303u) | ((u32)spread4_bit4(hb >> (16 + 4 * j)) >> 2);
            s1 = dp4a((int)__vsub4(lo, 0x04040404u), xq[j], s1);
            s2 = dp4a((int)__vsub4(hi, 0x04040404u), xq[j + 4], s2);
        }
        int sumi = (q3k_scale(2 * g, sc) - 32) * s1 + (q3k_scale(2 * g + 1, sc) - 32) * s2;
        float d = half_to_float(*(const u16*)(row + 13 * (i64)nb + (i64)(nb >> 1) + 2 * (b >> 3)));
        return __fmul_rn(__fmul_rn(d, dxv), (float)sumi);
    }
    // PTYPE_Q6_K
    uint4 l = *(const uint4*)(row + 16 * (i64)b);
    uint2 h = *(const uint2*)(row + 16 * (i64)nb + 8 * (i64)b);
    u32 scw = *(const u16*)(row + 24 * (i64)nb + 2 * b);
    float d = half_to_float(*(const u16*)(row + 26 * (i64)nb + 2 * (b >> 3)));
    int s1 = 0, s2 = 0;
#pragma unroll
    for (int j = 0; j < 4; j++)
    {
        u32 v = word_of(l, j);
        u32 lo = (v & 0x0F0F0F0Fu) | (((h.x >> (2 * j)) & 0x03030303u) << 4);
        u32 hi = ((v >> 4) & 0x0F0F0F0Fu) | (((h.y >> (2 * j)) & 0x03030303u) << 4);
        s1 = dp4a((int)__vsub4(lo, 0x20202020u), xq[j], s1);
        s2 = dp4a((int)__vsub4(hi, 0x20202020u), xq[j + 4], s2);
    }
    int sumi = (int)(i8)(u8)(scw & 0xFFu) * s1 + (int)(i8)(u8)(scw >> 8) * s2;
    return __fmul_rn(__fmul_rn(d, dxv), (float)sumi);
}

// W: rows x rowBytes packed rows; qx/dx/sx: the q8 activations of nTokens rows of K (quantize.cu);
// dst: [nTokens, rows]; wpr: warps per row (1, 2 or 4), MVP_WARPS / wpr rows per thread block.
// residual != 0: the residual-add epilogue, dst += W x (each element read once, by the lane that writes it, after
// the product: add_f32's x + y on the same floats, so the same bits as a product into scratch followed by add_f32).
// residual == 2 (one token): then also the norm epilogue: every block makes its rows visible device-wide and is
// counted on *counter; the block counted last puts the counter back to 0 (zero before the first launch, zero after
// each) and writes the RMSNorm of the updated dst (rows floats) with weight normW into normDst and its q8
// quantization into nqx/ndx/nsx (epilogue_norm_q8 in common.cuh: add_rmsnorm_q8_f32's floats). These must not be qx/dx/sx, which
// the other blocks may still read: the backend alternates two q8 buffers.
template <int NT, int TYPE>
__device__ __forceinline__ void matvec_packed(const u8* __restrict__ W, i64 rowBytes, int K, int rows,
                                              const i8* __restrict__ qx, const float* __restrict__ dx,
                                              const float* __restrict__ sx, float* __restrict__ dst, int nTokens, int wpr,
                                              int residual, int* counter, const float* __restrict__ normW, float* __restrict__ normDst,
                                              i8* __restrict__ nqx, float* __restrict__ ndx, float* __restrict__ nsx, float eps)
{
    __shared__ float part[MVP_WARPS][NT];
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    int sub = warp % wpr;
    int r = blockIdx.x * (MVP_WARPS / wpr) + warp / wpr;
    bool live = r < rows; // no early return: the warps of a row meet at the barriers below
    const u8* row = W + (i64)(live ? r : 0) * rowBytes;
    int nb = K / 32;
    for (int t0 = 0; t0 < nTokens; t0 += NT)
    {
        float acc[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) acc[t] = 0.0f;
        if (live)
            for (int b = sub * WARP + lane; b < nb; b += WARP * wpr)
            {
#pragma unroll
                for (int t = 0; t < NT; t++)
                {
                    if (t0 + t < nTokens)
                    {
                        i64 tok = t0 + t;
                        const uint4* xp = (const uint4*)(qx + tok * K + (i64)b * 32);
                        uint4 x0 = xp[0], x1 = xp[1];
                        int xq[8] = {(int)x0.x, (int)x0.y, (int)x0.z, (int)x0.w, (int)x1.x, (int)x1.y, (int)x1.z, (int)x1.w};
                        acc[t] = __fadd_rn(acc[t], packed_dot<TYPE>(row, nb, b, xq, dx[tok * nb + b], sx[tok * nb + b]));
                    }
                }
            }
#pragma unroll
        for (int t = 0; t < NT; t++)
        {
            if (t0 + t < nTokens)
            {
                float s = warp_sum(acc[t]);
                if (wpr == 1)
                {
                    if (lane == 0 && live)
                    {
                        float* o = dst + (i64)(t0 + t) * rows + r;
                        *o = residual ? __fadd_rn(*o, s) : s;
                    }
                }
                else if (lane == 0) part[warp][t] = s;
            }
        }
        if (wpr > 1)
        {
            __syncthreads();
            if (sub == 0 && lane < NT && live && t0 + lane < nTokens)
            {
                float s = part[warp][lane];
                for (int w = 1; w < wpr; w++) s = __fadd_rn(s, part[warp + w][lane]);
                float* o = dst + (i64)(t0 + lane) * rows + r;
                *o = residual ? __fadd_rn(*o, s) : s;
            }
            __syncthreads();
        }
    }
    if (NT == 1 && residual == 2) // (the t8 kernels never get it: one token)
    {
        __shared__ int lastBlock;
        int blocks = (rows + MVP_WARPS / wpr - 1) / (MVP_WARPS / wpr);
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0)
        {
            lastBlock = atomicAdd(counter, 1) == blocks - 1;
            if (lastBlock) *counter = 0;
        }
        __syncthreads();
        if (lastBlock)
        {
            __threadfence();
            epilogue_norm_q8(dst, normW, normDst, nqx, ndx, nsx, rows, eps, 1);
        }
    }
}

// The Q/K/V epilogue (rope_store_qkv_f32's work for one head of the stacked [q | k | v] row x, once the head's
// rows are all written): the part's bias added (bq, bk, bv; null: none), a q or k head rotated (rope_head_value),
// into q or k, keys also into the fp16 cache row pos; a v head copied to v and the value cache. The same floats as
// the product into scratch + rope_store_qkv_f32.
__device__ EPILOGUE_NOINLINE void packed_rope_store(const float* x, int head, float* __restrict__ q, float* __restrict__ k,
                                               float* __restrict__ v, u16* __restrict__ kc, u16* __restrict__ vc, int pos,
                                               int qDim, int kvDim, int headDim, int half, const double* __restrict__ invFreq,
                                               float scale, int neox, float attnFactor, const float* __restrict__ bq,
                                               const float* __restrict__ bk, const float* __restrict__ bv)
{
    int c0 = head * headDim;
    const volatile float* hv = x + c0;
    // the head's part and its bias from the head's first element (a head never straddles two parts)
    const float* hb = c0 < qDim ? (bq ? bq + c0 : nullptr) : c0 < qDim + kvDim ? (bk ? bk + (c0 - qDim) : nullptr)
                                                                              : (bv ? bv + (c0 - qDim - kvDim) : nullptr);
#pragma unroll 1
    for (int h = threadIdx.x; h < headDim; h += MVP_WARPS * WARP)
    {
        int c = c0 + h;
        if (c >= qDim + kvDim)
        {
            int e = c - qDim - kvDim;
            float val = hb ? __fadd_rn(hv[h], hb[h]) : hv[h];
            v[e] = val;
            vc[(i64)pos * kvDim + e] = kv_half(val);
            continue;
        }
        float val = rope_head_value(biased_head(hv, hb), h, half, neox, pos, invFreq, scale, attnFactor);
        if (c < qDim) q[c] = val;
        else
        {
            int e = c - qDim;
            k[e] = val;
            kc[(i64)pos * kvDim + e] = kv_half(val);
        }
    }
}

// The gate/up epilogue (glu_split_q8_f32's work for one 32-block of the stacked [gate (ffn) | up (ffn)] row x, once
// its 32 gate rows and 32 up rows are all written), in the block's first warp, lane i on element 32 group + i:
// gate = act(g) * u, up = u, and with quantize the q8 quantization of gate into qo/dO/so (for the down projection).
__device__ EPILOGUE_NOINLINE void packed_glu_q8(const float* x, int group, int ffn, int geglu, int quantize, float* __restrict__ gate,
                                           float* __restrict__ up, i8* __restrict__ qo, float* __restrict__ dO, float* __restrict__ so)
{
    if (threadIdx.x >= WARP) return;
    const volatile float* xv = x;
    int i = group * 32 + (int)threadIdx.x;
    float g = xv[i], u = xv[ffn + i];
    float r = geglu ? fused_geglu(g, u) : fused_swiglu(g, u);
    gate[i] = r;
    up[i] = u;
    if (quantize) quantize_lane_q8(r, group, qo, dO, so);
}

#define MATVEC_PACKED(NAME, TYPE)                                                                                     \
    extern "C" __global__ void __launch_bounds__(MVP_WARPS * WARP, 4)                                                 \
    matvec_packed_##NAME##_t1(const u8* W, i64 rowBytes, int K, int rows, const i8* qx, const float* dx,             \
                              const float* sx, float* dst, int nTokens, int wpr, int residual, int* counter,          \
                              const float* normW, float* normDst, i8* nqx, float* ndx, float* nsx, float eps)         \
    { matvec_packed<1, TYPE>(W, rowBytes, K, rows, qx, dx, sx, dst, nTokens, wpr, residual, counter, normW, normDst,   \
                             nqx, ndx, nsx, eps); }                                                                   \
    extern "C" __global__ void __launch_bounds__(MVP_WARPS * WARP, 4)                                                 \
    matvec_packed_##NAME##_t8(const u8* W, i64 rowBytes, int K, int rows, const i8* qx, const float* dx,             \
                              const float* sx, float* dst, int nTokens, int wpr, int residual, int* counter,          \
                              const float* normW, float* normDst, i8* nqx, float* ndx, float* nsx, float eps)         \
    { matvec_packed<8, TYPE>(W, rowBytes, K, rows, qx, dx, sx, dst, nTokens, wpr, residual, counter, normW, normDst,   \
                             nqx, ndx, nsx, eps); }                                                                   \
    extern "C" __global__ void __launch_bounds__(MVP_WARPS * WARP, 4)                                                 \
    matvec_packed_##NAME##_qkv(const u8* W, i64 rowBytes, int K, int rows, const i8* qx, const float* dx,            \
                               const float* sx, float* dst, int wpr, int* counters, float* q, float* k, float* v,     \
                               u16* kc, u16* vc, const int* step, int posDelta, int qDim, int kvDim, int headDim,     \
                               int half, const double* invFreq, float scale, int neox, float attnFactor,              \
                               const float* bq, const float* bk, const float* bv)                                     \
    {                                                                                                                 \
        matvec_packed<1, TYPE>(W, rowBytes, K, rows, qx, dx, sx, dst, 1, wpr, 0, nullptr, nullptr, nullptr, nullptr,   \
                               nullptr, nullptr, 0.0f);                                                               \
        /* this block's rows r0..r1-1 count towards each head they fall in (two when a head ends inside them) */      \
        int r0 = (int)blockIdx.x * (MVP_WARPS / wpr), r1 = min(r0 + MVP_WARPS / wpr, rows);                           \
        for (int head = r0 / headDim; head * headDim < r1; head++)                                                    \
            if (epilogue_rows_done(counters + head, min(r1, (head + 1) * headDim) - max(r0, head * headDim), headDim))  \
                packed_rope_store(dst, head, q, k, v, kc, vc, step_pos(step, posDelta), qDim, kvDim, headDim, half,    \
                                  invFreq, scale, neox, attnFactor, bq, bk, bv);                                      \
    }                                                                                                                 \
    extern "C" __global__ void __launch_bounds__(MVP_WARPS * WARP, 4)                                                 \
    matvec_packed_##NAME##_glu(const u8* W, i64 rowBytes, int K, int rows, const i8* qx, const float* dx,            \
                               const float* sx, float* dst, int wpr, int* counters, float* gate, float* up, i8* nqx,  \
                               float* ndx, float* nsx, int ffn, int geglu, int quantize)                              \
    {                                                                                                                 \
        matvec_packed<1, TYPE>(W, rowBytes, K, rows, qx, dx, sx, dst, 1, wpr, 0, nullptr, nullptr, nullptr, nullptr,   \
                               nullptr, nullptr, 0.0f);                                                               \
        int rowsPerBlock = MVP_WARPS / wpr, r0 = (int)blockIdx.x * rowsPerBlock;                                      \
        int group = (r0 < ffn ? r0 : r0 - ffn) / 32;                                                                  \
        if (epilogue_group_done(counters + group, 64 / rowsPerBlock))                                                   \
            packed_glu_q8(dst, group, ffn, geglu, quantize, gate, up, nqx, ndx, nsx);                                 \
    }

MATVEC_PACKED(q4_0, PTYPE_Q4_0)
MATVEC_PACKED(q8_0, PTYPE_Q8_0)
MATVEC_PACKED(q4_k, PTYPE_Q4_K)
MATVEC_PACKED(q6_k, PTYPE_Q6_K)
MATVEC_PACKED(q4_1, PTYPE_Q4_1)
MATVEC_PACKED(q5_0, PTYPE_Q5_0)
MATVEC_PACKED(q5_1, PTYPE_Q5_1)
MATVEC_PACKED(iq4_nl, PTYPE_IQ4_NL)
MATVEC_PACKED(q5_k, PTYPE_Q5_K)
MATVEC_PACKED(iq4_xs, PTYPE_IQ4_XS)
MATVEC_PACKED(q2_k, PTYPE_Q2_K)
MATVEC_PACKED(q3_k, PTYPE_Q3_K)

// ---- weight e of a packed row (the embedding lookup), with get_rows.cu's arithmetic for the ggml blocks ----

template <int TYPE>
__device__ __forceinline__ float packed_weight(const u8* row, int nb, int e)
{
    int b = e / 32, i = e % 32;
    if (TYPE == PTYPE_Q2_K || TYPE == PTYPE_Q3_K)
    {
        int w = i & 15;
        int q = (row[8 * (i64)b + (i < 16 ? 0 : 4) + (w & 3)] >> (2 * (w >> 2))) & 3;
        if (TYPE == PTYPE_Q2_K)
        {
            int sc = row[8 * (i64)nb + 2 * b + (i >= 16 ? 1 : 0)];
            const u8* dd = row + 10 * (i64)nb + 4 * (i64)(b >> 3);
            float d = half_to_float(*(const u16*)dd), dmin = half_to_float(*(const u16*)(dd + 2));
            return __fsub_rn(__fmul_rn(__fmul_rn(d, (float)(sc & 0xF)), (float)q), __fmul_rn(dmin, (float)(sc >> 4)));
        }
        int h = (int)((*(const u32*)(row + 8 * (i64)nb + 4 * b) >> i) & 1u);
        int s = q3k_scale(2 * (b & 7) + (i >= 16 ? 1 : 0), row + 12 * (i64)nb + 12 * (i64)(b >> 3)) - 32;
        float dl = __fmul_rn(half_to_float(*(const u16*)(row + 13 * (i64)nb + (i64)(nb >> 1) + 2 * (b >> 3))), (float)s);
        return __fmul_rn(dl, (float)(q - (h ? 0 : 4)));
    }
    u8 nib = row[16 * (i64)b + (i & 15)];
    int v4 = i < 16 ? (nib & 0xF) : (nib >> 4);
    if (TYPE == PTYPE_Q4_0)
        return __fmul_rn((float)(v4 - 8), half_to_float(*(const u16*)(row + 16 * (i64)nb + 2 * b)));
    if (TYPE == PTYPE_Q8_0)
        return __fmul_rn((float)(i8)row[32 * (i64)b + i], half_to_float(*(const u16*)(row + 32 * (i64)nb + 2 * b)));
    if (TYPE == PTYPE_Q4_K)
    {
        const u8* h = row + 16 * (i64)nb + 16 * (i64)(b >> 3);
        int sc, m;
        q4k_scale_min(b & 7, h + 4, &sc, &m);
        float d = half_to_float(*(const u16*)h), dmin = half_to_float(*(const u16*)(h + 2));
        return __fsub_rn(__fmul_rn(__fmul_rn(d, (float)sc), (float)v4), __fmul_rn(dmin, (float)m));
    }
    if (TYPE == PTYPE_Q4_1)
    {
        const u8* dm = row + 16 * (i64)nb + 4 * b;
        return __fadd_rn(__fmul_rn((float)v4, half_to_float(*(const u16*)dm)), half_to_float(*(const u16*)(dm + 2)));
    }
    if (TYPE == PTYPE_Q5_0 || TYPE == PTYPE_Q5_1 || TYPE == PTYPE_Q5_K)
    {
        int v = v4 | (int)(((*(const u32*)(row + 16 * (i64)nb + 4 * b) >> i) & 1u) << 4);
        if (TYPE == PTYPE_Q5_0) return __fmul_rn((float)(v - 16), half_to_float(*(const u16*)(row + 20 * (i64)nb + 2 * b)));
        if (TYPE == PTYPE_Q5_1)
        {
            const u8* dm = row + 20 * (i64)nb + 4 * b;
            return __fadd_rn(__fmul_rn((float)v, half_to_float(*(const u16*)dm)), half_to_float(*(const u16*)(dm + 2)));
        }
        const u8* h = row + 20 * (i64)nb + 16 * (i64)(b >> 3);
        int sc, m;
        q4k_scale_min(b & 7, h + 4, &sc, &m);
        float d = half_to_float(*(const u16*)h), dmin = half_to_float(*(const u16*)(h + 2));
        return __fsub_rn(__fmul_rn(__fmul_rn(d, (float)sc), (float)v), __fmul_rn(dmin, (float)m));
    }
    if (TYPE == PTYPE_IQ4_NL)
        return __fmul_rn(half_to_float(*(const u16*)(row + 16 * (i64)nb + 2 * b)), (float)iq4_level(v4));
    if (TYPE == PTYPE_IQ4_XS)
    {
        const u8* h = row + 16 * (i64)nb + 8 * (i64)(b >> 3);
        int s = b & 7;
        int ls = ((h[4 + (s >> 1)] >> (4 * (s & 1))) & 0xF) | (int)(((*(const u16*)(h + 2) >> (2 * s)) & 3) << 4);
        float dl = __fmul_rn(half_to_float(*(const u16*)h), (float)(ls - 32));
        return __fmul_rn(dl, (float)iq4_level(v4));
    }
    // PTYPE_Q6_K
    int w = i & 15;
    u8 hb = row[16 * (i64)nb + 8 * (i64)b + (i < 16 ? 0 : 4) + (w & 3)];
    int v = (v4 | (((hb >> (2 * (w >> 2))) & 3) << 4)) - 32;
    int s = (i8)row[24 * (i64)nb + 2 * b + (i >= 16 ? 1 : 0)];
    float d = half_to_float(*(const u16*)(row + 26 * (i64)nb + 2 * (b >> 3)));
    return __fmul_rn(__fmul_rn(d, (float)s), (float)v);
}

#define GET_ROWS_PACKED(NAME, TYPE)                                                                                   \
    extern "C" __global__ void get_rows_packed_##NAME(const u8* __restrict__ table, i64 rowBytes, int ne0,            \
                                                      const int* __restrict__ ids, float* __restrict__ dst)           \
    {                                                                                                                 \
        const u8* row = table + (i64)ids[blockIdx.x] * rowBytes;                                                      \
        float* out = dst + (i64)blockIdx.x * ne0;                                                                     \
        for (int e = threadIdx.x; e < ne0; e += blockDim.x) out[e] = packed_weight<TYPE>(row, ne0 / 32, e);           \
    }

GET_ROWS_PACKED(q4_0, PTYPE_Q4_0)
GET_ROWS_PACKED(q8_0, PTYPE_Q8_0)
GET_ROWS_PACKED(q4_k, PTYPE_Q4_K)
GET_ROWS_PACKED(q6_k, PTYPE_Q6_K)
GET_ROWS_PACKED(q4_1, PTYPE_Q4_1)
GET_ROWS_PACKED(q5_0, PTYPE_Q5_0)
GET_ROWS_PACKED(q5_1, PTYPE_Q5_1)
GET_ROWS_PACKED(iq4_nl, PTYPE_IQ4_NL)
GET_ROWS_PACKED(q5_k, PTYPE_Q5_K)
GET_ROWS_PACKED(iq4_xs, PTYPE_IQ4_XS)
GET_ROWS_PACKED(q2_k, PTYPE_Q2_K)
GET_ROWS_PACKED(q3_k, PTYPE_Q3_K)
