// Prefill matrix products as tiled GEMMs: dst[t, r] = dot(W row r, x[t]) for a batch of tokens, with the weight
// blocks dequantized once per tile into int8 (plus a float scale and min term per 32 weights) instead of once
// per token as the matvec does. A block of 128 threads owns a tile of GEMM_BM = 64 weight rows by GEMM_BN = 64
// tokens and walks K in steps of GEMM_BK = 256 (eight 32-blocks, one K-quant super-block):
//   1. stage: the 64 x 8 weight blocks become int8 rows in shared memory (per-type unpacking below), with
//      their scale d_w (two per block for Q6_K, one per 16 weights) and min term m_w; the 64 tokens' q8
//      activations (quantize.cu: int8, scale dx, dx * sum) are copied next to them;
//   2. compute: per 32-block an integer dot of each (row, token) pair, then in float
//      acc += d_w * dx * isum + m_w * sx.
// Two compute cores share the staging: the int8 tensor-core MMA (mma.sync m16n8k32 s8, sm_80 and later; each
// warp takes 16 rows by the 64 tokens as eight 16x8 tiles) and dp4a over shared memory (sm_61..75; each thread
// takes 4 rows by 8 tokens). Q6_K's per-16 scales use two m16n8k16 MMAs per block (the k32 fragments are the
// two k16 ones side by side). Rows past `rows`, tokens past `nTokens` and blocks past K are zero-filled.
// Types: Q4_0, Q8_0, Q4_K, Q6_K; the others keep the matvec kernels (matmul.cu).
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

// ---- staging: one 32-weight block of a row as 8 int8 words, its scale(s) and its min term ----

// Block b of a row repacked at upload (matvec_packed.cu's field arrays; nb blocks per row): the same 8 words,
// scales and min term as gemm_unpack gives for ggml's block, read from the row's quant and scale arrays.
template <int TYPE>
__device__ __forceinline__ void gemm_unpack_packed(const u8* row, int nb, int b, int* w, float* ws, float* wm)
{
    if (TYPE == GTYPE_Q4_0)
    {
        uint4 q = *(const uint4*)(row + 16 * (i64)b); // byte j: weight j (low nibble), weight j + 16 (high)
#pragma unroll
        for (int j = 0; j < 4; j++)
        {
            u32 v = j == 0 ? q.x : j == 1 ? q.y : j == 2 ? q.z : q.w;
            w[j] = (int)__vsub4(v & 0x0F0F0F0Fu, 0x08080808u);
            w[j + 4] = (int)__vsub4((v >> 4) & 0x0F0F0F0Fu, 0x08080808u);
        }
        ws[0] = half_to_float(*(const u16*)(row + 16 * (i64)nb + 2 * b));
        ws[1] = 0.0f;
        *wm = 0.0f;
    }
    else if (TYPE == GTYPE_Q8_0)
    {
        const uint4* p = (const uint4*)(row + 32 * (i64)b);
        uint4 q0 = p[0], q1 = p[1];
        w[0] = (int)q0.x; w[1] = (int)q0.y; w[2] = (int)q0.z; w[3] = (int)q0.w;
        w[4] = (int)q1.x; w[5] = (int)q1.y; w[6] = (int)q1.z; w[7] = (int)q1.w;
        ws[0] = half_to_float(*(const u16*)(row + 32 * (i64)nb + 2 * b));
        ws[1] = 0.0f;
        *wm = 0.0f;
    }
    else if (TYPE == GTYPE_Q4_K)
    {
        // Nibbles in Q4_0's order; per super-block 16 bytes: fp16 d, fp16 dmin, ggml's 12 scale bytes.
        uint4 q = *(const uint4*)(row + 16 * (i64)b);
        const u8* h = row + 16 * (i64)nb + 16 * (i64)(b >> 3);
        int sc, m;
        q4k_scale_min(b & 7, h + 4, &sc, &m);
#pragma unroll
        for (int j = 0; j < 4; j++)
        {
            u32 v = j == 0 ? q.x : j == 1 ? q.y : j == 2 ? q.z : q.w;
            w[j] = (int)(v & 0x0F0F0F0Fu);
            w[j + 4] = (int)((v >> 4) & 0x0F0F0F0Fu);
        }
        ws[0] = half_to_float(*(const u16*)h) * (float)sc;
        ws[1] = 0.0f;
        *wm = -half_to_float(*(const u16*)(h + 2)) * (float)m;
    }
    else
    {
        // Q6_K: low nibbles in Q4_0's order, the high bits as two words (weights 0..15, 16..31; bits 2j..2j+1 of
        // byte i: weight 4j + i), two int8 scales per block, one fp16 d per super-block.
        uint4 l = *(const uint4*)(row + 16 * (i64)b);
        uint2 h = *(const uint2*)(row + 16 * (i64)nb + 8 * (i64)b);
        u32 scw = *(const u16*)(row + 24 * (i64)nb + 2 * b);
        float d = half_to_float(*(const u16*)(row + 26 * (i64)nb + 2 * (b >> 3)));
#pragma unroll
        for (int j = 0; j < 4; j++)
        {
            u32 v = j == 0 ? l.x : j == 1 ? l.y : j == 2 ? l.z : l.w;
            u32 lo = (v & 0x0F0F0F0Fu) | (((h.x >> (2 * j)) & 0x03030303u) << 4);
            u32 hi = ((v >> 4) & 0x0F0F0F0Fu) | (((h.y >> (2 * j)) & 0x03030303u) << 4);
            w[j] = (int)__vsub4(lo, 0x20202020u);
            w[j + 4] = (int)__vsub4(hi, 0x20202020u);
        }
        ws[0] = d * (float)(int)(i8)(u8)(scw & 0xFFu);
        ws[1] = d * (float)(int)(i8)(u8)(scw >> 8);
        *wm = 0.0f;
    }
}

// Writes the 8 words of block b (global index) of `row` to w, d_w to ws[0] (and ws[1] for Q6_K's second half), m_w to *wm.
template <int TYPE>
__device__ __forceinline__ void gemm_unpack(const u8* row, int b, int* w, float* ws, float* wm)
{
    if (TYPE == GTYPE_Q4_0)
    {
        const u8* blk = row + (i64)b * Q4_0_BYTES;
#pragma unroll
        for (int j = 0; j < 4; j++)
        {
            int v = load_i32_a2(blk + 2 + 4 * j);
            w[j] = (int)__vsub4((u32)v & 0x0F0F0F0Fu, 0x08080808u);            // weights 4j.. (low nibbles) - 8
            w[j + 4] = (int)__vsub4(((u32)v >> 4) & 0x0F0F0F0Fu, 0x08080808u); // weights 16+4j.. (high nibbles) - 8
        }
        ws[0] = half_to_float(*(const u16*)blk);
        ws[1] = 0.0f;
        *wm = 0.0f;
    }
    else if (TYPE == GTYPE_Q8_0)
    {
        const u8* blk = row + (i64)b * Q8_0_BYTES;
#pragma unroll
        for (int j = 0; j < 8; j++) w[j] = load_i32_a2(blk + 2 + 4 * j);
        ws[0] = half_to_float(*(const u16*)blk);
        ws[1] = 0.0f;
        *wm = 0.0f;
    }
    else if (TYPE == GTYPE_Q4_K)
    {
        // Sub-block s = b % 8 of super-block b / 8: weight = d*sc*q - dmin*m, q = 0..15.
        const u8* blk = row + (i64)(b >> 3) * Q4_K_BYTES;
        int s = b & 7, sc, m;
        q4k_scale_min(s, blk + 4, &sc, &m);
        const int* q = (const int*)(blk + 16 + (s >> 1) * 32);
        int shift = (s & 1) * 4;
#pragma unroll
        for (int j = 0; j < 8; j++) w[j] = (q[j] >> shift) & 0x0F0F0F0F;
        ws[0] = half_to_float(*(const u16*)blk) * (float)sc;
        ws[1] = 0.0f;
        *wm = -half_to_float(*(const u16*)(blk + 2)) * (float)m;
    }
    else
    {
        // Q6_K group g = b % 8: 4 low bits from ql, 2 high bits from qh, minus 32; one int8 scale per 16 weights.
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
            w[j] = (int)__vsub4((u32)(((l >> shl) & 0x0F0F0F0F) | (((h >> shh) & 0x03030303) << 4)), 0x20202020u);
        }
        float d = half_to_float(*(const u16*)(blk + 208));
        ws[0] = d * (float)sc[0];
        ws[1] = d * (float)sc[1];
        *wm = 0.0f;
    }
}

struct GemmTiles
{
    int w[GEMM_BM * GEMM_WSTRIDE];        // weights, int8: row r, byte 32*kb + i
    int x[GEMM_BN * GEMM_WSTRIDE];        // activations, int8: token t, byte 32*kb + i
    float ws[GEMM_BM][2 * GEMM_KB];       // d_w per (row, block, half)
    float wm[GEMM_BM][GEMM_KB];           // m_w per (row, block)
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
        int w[8];
        float ws[2], wm;
        if (r0 + r < rows && b < nb)
        {
            if (PACKED) gemm_unpack_packed<TYPE>(W + (i64)(r0 + r) * rowBytes, nb, b, w, ws, &wm);
            else gemm_unpack<TYPE>(W + (i64)(r0 + r) * rowBytes, b, w, ws, &wm);
        }
        else
        {
#pragma unroll
            for (int j = 0; j < 8; j++) w[j] = 0;
            ws[0] = ws[1] = wm = 0.0f;
        }
#pragma unroll
        for (int j = 0; j < 8; j++) s.w[r * GEMM_WSTRIDE + kb * 8 + j] = w[j];
        s.ws[r][2 * kb] = ws[0];
        s.ws[r][2 * kb + 1] = ws[1];
        s.wm[r][kb] = wm;
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
            a[0] = s.w[ra * GEMM_WSTRIDE + kb * 8 + c];
            a[1] = s.w[rb * GEMM_WSTRIDE + kb * 8 + c];
            a[2] = s.w[ra * GEMM_WSTRIDE + kb * 8 + 4 + c];
            a[3] = s.w[rb * GEMM_WSTRIDE + kb * 8 + 4 + c];
            float wsa0 = s.ws[ra][2 * kb], wsb0 = s.ws[rb][2 * kb];
            float wsa1 = s.ws[ra][2 * kb + 1], wsb1 = s.ws[rb][2 * kb + 1];
            float wma = s.wm[ra][kb], wmb = s.wm[rb][kb];
#pragma unroll
            for (int j = 0; j < GEMM_BN / 8; j++)
            {
                int tb = j * 8 + g; // the token whose column this lane loads
                int b[2];
                b[0] = s.x[tb * GEMM_WSTRIDE + kb * 8 + c];
                b[1] = s.x[tb * GEMM_WSTRIDE + kb * 8 + 4 + c];
                int tc = j * 8 + 2 * c; // the tokens of this lane's accumulators: tc, tc + 1
                float dx0 = s.dx[tc][kb], dx1 = s.dx[tc + 1][kb];
                if (TYPE == GTYPE_Q6_K)
                {
                    int lo[4], hi[4];
                    mma_s8_k16(lo, a[0], a[1], b[0]);
                    mma_s8_k16(hi, a[2], a[3], b[1]);
                    acc[j][0] += dx0 * (wsa0 * (float)lo[0] + wsa1 * (float)hi[0]);
                    acc[j][1] += dx1 * (wsa0 * (float)lo[1] + wsa1 * (float)hi[1]);
                    acc[j][2] += dx0 * (wsb0 * (float)lo[2] + wsb1 * (float)hi[2]);
                    acc[j][3] += dx1 * (wsb0 * (float)lo[3] + wsb1 * (float)hi[3]);
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
            // Q6_K: the two 16-weight halves have their own scales; the others take the block as one half.
#pragma unroll
            for (int h = 0; h < (TYPE == GTYPE_Q6_K ? 2 : 1); h++)
            {
                int sumi[4][8];
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 8; j++) sumi[i][j] = 0;
#pragma unroll
                for (int q = 0; q < (TYPE == GTYPE_Q6_K ? 4 : 8); q++)
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
                }
#pragma unroll
                for (int i = 0; i < 4; i++)
                {
                    float wsv = s.ws[tx + 16 * i][2 * kb + h], wmv = h == 0 ? s.wm[tx + 16 * i][kb] : 0.0f;
#pragma unroll
                    for (int j = 0; j < 8; j++)
                        acc[i][j] += wsv * s.dx[ty + 8 * j][kb] * (float)sumi[i][j] + wmv * s.sx[ty + 8 * j][kb];
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
