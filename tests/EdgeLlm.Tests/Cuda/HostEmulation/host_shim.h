// Host versions of the CUDA built-ins the kernel files use, so a host C++ compiler can build kernels/*.cu and
// the tests can run them on the CPU. Force-included before the kernel sources (-include host_shim.h).
// Two ways to run a kernel: serially, one "thread" at a time (the index variables set by the caller; a shuffle
// then returns its own value, so only kernels without cross-thread communication), or with simt_launch, which
// runs every thread of a block as a fiber (its own stack, ucontext) on the calling OS thread: a thread runs until it
// waits at a barrier, then the next runnable one runs. __syncthreads is a block barrier, the warp shuffles exchange
// values through the warp's slots between two warp barriers, __shared__ variables are statics. (Each thread was an
// OS thread with condition-variable barriers until 2026-12-06: the same results, but every shuffle cost two rounds of
// 32 futex waits and wakes, and the emulated GEMM tests took most of CI's time on a loaded 2-core machine.)
#pragma once
#include <cmath>
#include <math.h> // expf, tanhf, sincos (a GNU extension, as in CUDA)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <atomic>
#include <cstring>
#include <condition_variable>
#include <mutex>
#include <functional>
#include <vector>
#include <ucontext.h>

#define EDGELLM_HOST_EMULATION 1
#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct HostDim3 { unsigned x, y, z; };
struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };
struct float2 { float x, y; };
static thread_local HostDim3 threadIdx;
static HostDim3 blockIdx, blockDim;
using std::max;
using std::min;

// The fibers of the block simt_launch runs (one per emulated thread) and the one running now.
struct HostFiber
{
    ucontext_t ctx;
    unsigned index;
    const long* waitGen = nullptr; // blocked until *waitGen != waitValue
    long waitValue = 0;
    bool done = false;
};
static ucontext_t host_scheduler;
static HostFiber* host_fiber = nullptr; // null outside simt_launch

// Blocks the running fiber until *gen changes (another fiber completed the barrier it waits at).
static inline void host_fiber_wait(const long* gen, long value)
{
    if (!host_fiber) { std::fprintf(stderr, "harness: a barrier outside simt_launch\n"); std::abort(); }
    host_fiber->waitGen = gen;
    host_fiber->waitValue = value;
    swapcontext(&host_fiber->ctx, &host_scheduler);
}

// A barrier of n fibers: the last to arrive releases the others (they run again when the scheduler reaches them).
class HostBarrier
{
public:
    explicit HostBarrier(int n) : _n(n) {}
    void wait()
    {
        long gen = _gen;
        if (++_count == _n) { _count = 0; _gen++; return; }
        host_fiber_wait(&_gen, gen);
    }
private:
    int _n, _count = 0;
    long _gen = 0;
};

struct HostWarp
{
    HostBarrier barrier{32};
    uint64_t slots[32];
    int mmaA[32][4], mmaB[32][2]; // each lane's MMA fragments (host_mma_s8)
};

static thread_local HostWarp* host_warp = nullptr;     // null: serial mode
static thread_local HostBarrier* host_block = nullptr;

static inline void __syncthreads() { if (host_block) host_block->wait(); }

static inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
static inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
static inline int __float2int_rn(float x) { return (int)std::nearbyint(x); }
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int laneMask)
{
    if (!host_warp) return v;
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    int lane = (int)(threadIdx.x % 32);
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    host_warp->slots[lane] = bits;
    host_warp->barrier.wait();
    bits = host_warp->slots[lane ^ laneMask];
    host_warp->barrier.wait();
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}

// __shfl_sync: lane `srcLane` (0..31) of the warp's value.
template <typename T> static inline T __shfl_sync(unsigned, T v, int srcLane)
{
    if (!host_warp) return v;
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    int lane = (int)(threadIdx.x % 32);
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    host_warp->slots[lane] = bits;
    host_warp->barrier.wait();
    bits = host_warp->slots[srcLane & 31];
    host_warp->barrier.wait();
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}

// Runs kernel() for every thread of every block of a gridX x gridY (x gridZ) grid of `threads`-thread blocks (a
// multiple of 32), the blocks one after another; within a block the threads are fibers, resumed round robin (thread
// order) whenever the barrier they wait at has been completed. A block whose threads all wait and none can go on
// (a barrier some thread never reaches: a hang on the device too) aborts with a message.
static std::function<void()>* host_kernel = nullptr;
static void host_fiber_entry()
{
    (*host_kernel)();
    host_fiber->done = true; // returns to host_scheduler through uc_link
}

template <typename F> static void simt_launch(unsigned gridX, unsigned gridY, unsigned threads, F kernel, unsigned gridZ = 1)
{
    const size_t stackBytes = 512 * 1024;
    static std::vector<char*> stacks;
    while (stacks.size() < threads) stacks.push_back(static_cast<char*>(std::malloc(stackBytes)));
    std::function<void()> body = kernel;
    host_kernel = &body;
    std::vector<HostFiber> fibers(threads);
    blockDim = {threads, 1, 1};
    for (unsigned bz = 0; bz < gridZ; bz++)
    for (unsigned by = 0; by < gridY; by++)
        for (unsigned bx = 0; bx < gridX; bx++)
        {
            blockIdx = {bx, by, bz};
            HostBarrier block((int)threads);
            std::vector<HostWarp> warps(threads / 32);
            for (unsigned t = 0; t < threads; t++)
            {
                HostFiber& f = fibers[t];
                f.index = t; f.waitGen = nullptr; f.done = false;
                getcontext(&f.ctx);
                f.ctx.uc_stack.ss_sp = stacks[t];
                f.ctx.uc_stack.ss_size = stackBytes;
                f.ctx.uc_link = &host_scheduler;
                makecontext(&f.ctx, host_fiber_entry, 0);
            }
            unsigned finished = 0;
            while (finished < threads)
            {
                bool ran = false;
                for (unsigned t = 0; t < threads; t++)
                {
                    HostFiber& f = fibers[t];
                    if (f.done || (f.waitGen && *f.waitGen == f.waitValue)) continue;
                    f.waitGen = nullptr;
                    threadIdx = {t, 0, 0};
                    host_warp = &warps[t / 32];
                    host_block = &block;
                    host_fiber = &f;
                    swapcontext(&host_scheduler, &f.ctx);
                    host_fiber = nullptr;
                    ran = true;
                    if (f.done) finished++;
                }
                if (!ran)
                {
                    std::fprintf(stderr, "harness: block (%u, %u, %u): %u of %u threads wait at a barrier no other thread reaches\n",
                                 bx, by, bz, threads - finished, threads);
                    std::abort();
                }
            }
            host_warp = nullptr;
            host_block = nullptr;
        }
    host_kernel = nullptr;
}

// Per-byte wrap-around subtraction.
static inline unsigned __vsub4(unsigned a, unsigned b)
{
    unsigned r = 0;
    for (int k = 0; k < 32; k += 8) r |= (((a >> k) - (b >> k)) & 0xFFu) << k;
    return r;
}

// Byte n of the result is byte (s >> 4n) & 7 of the eight bytes y:x (x the low four).
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s)
{
    uint64_t xy = ((uint64_t)y << 32) | x;
    unsigned r = 0;
    for (int n = 0; n < 4; n++) r |= (unsigned)((xy >> (8 * ((s >> (4 * n)) & 7))) & 0xFF) << (8 * n);
    return r;
}

static inline float half_to_float(unsigned short h)
{
    int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    float f = e == 0 ? std::ldexp((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -f : f;
}

static inline unsigned short float_to_half(float f)
{
    unsigned u; std::memcpy(&u, &f, 4);
    unsigned short sign = (unsigned short)((u >> 16) & 0x8000);
    float a = std::fabs(f);
    if (std::isnan(f)) return (unsigned short)(sign | 0x7E00);
    if (a >= 65520.0f) return (unsigned short)(sign | 0x7C00);
    if (a < 6.103515625e-05f) return (unsigned short)(sign | (unsigned short)std::nearbyint(a * 16777216.0f)); // subnormal: units of 2^-24
    int e; float m = std::frexp(a, &e);                     // a = m * 2^e, m in [0.5, 1)
    unsigned q = (unsigned)std::nearbyint(std::ldexp(m, 11)); // 11 significant bits, 1024..2048
    if (q == 2048) { q = 1024; e++; }
    return (unsigned short)(sign | ((unsigned)(e + 14) << 10) | (q & 0x3FF));
}

static inline int dp4a(int a, int b, int c)
{
    for (int k = 0; k < 32; k += 8) c += (int)(signed char)(a >> k) * (int)(signed char)(b >> k);
    return c;
}

// The warp-wide int8 MMAs of kernels/gemm.cu (mma.sync.aligned.m16n8k{32,16}.row.col.s32.s8.s8.s32 with a zero C):
// every lane posts its A and B fragment registers in the warp's slots, then each lane rebuilds the whole 16 x K
// matrix A and K x 8 matrix B from all 32 lanes' fragments by the PTX ISA's fragment layouts (g = lane / 4,
// c = lane % 4; A element i of a lane is row g (+8 for the odd registers), column 4c + i%4 (+16 for registers 2, 3
// of k32); B element i is row 4c + i%4 (+16 for register 1 of k32), column g), and computes its own four
// accumulators D[g][2c], D[g][2c+1], D[g+8][2c], D[g+8][2c+1]. Needs simt_launch (a whole warp).
static inline void host_mma_s8(int* d, const int* a, const int* b, int k)
{
    if (!host_warp) { std::fprintf(stderr, "host_mma_s8 needs a whole warp (simt_launch)\n"); std::abort(); }
    int lane = (int)(threadIdx.x % 32);
    int aRegs = k / 8, bRegs = k / 16;
    for (int r = 0; r < aRegs; r++) host_warp->mmaA[lane][r] = a[r];
    for (int r = 0; r < bRegs; r++) host_warp->mmaB[lane][r] = b[r];
    host_warp->barrier.wait();
    signed char A[16][32], B[32][8];
    for (int l = 0; l < 32; l++)
    {
        int g = l >> 2, c = l & 3;
        for (int r = 0; r < aRegs; r++)
            for (int i = 0; i < 4; i++)
                A[g + 8 * (r & 1)][4 * c + i + 16 * (r >> 1)] = (signed char)(host_warp->mmaA[l][r] >> (8 * i));
        for (int r = 0; r < bRegs; r++)
            for (int i = 0; i < 4; i++)
                B[4 * c + i + 16 * r][g] = (signed char)(host_warp->mmaB[l][r] >> (8 * i));
    }
    host_warp->barrier.wait();
    int g = lane >> 2, c = lane & 3;
    for (int e = 0; e < 4; e++)
    {
        int row = g + 8 * (e >> 1), col = 2 * c + (e & 1), sum = 0;
        for (int kk = 0; kk < k; kk++) sum += (int)A[row][kk] * (int)B[kk][col];
        d[e] = sum;
    }
}

static inline void mma_s8_k32(int* d, const int* a, const int* b) { host_mma_s8(d, a, b, 32); }
static inline void mma_s8_k16(int* d, int a0, int a1, int b0)
{
    int a[2] = {a0, a1}, b[1] = {b0};
    host_mma_s8(d, a, b, 16);
}
// The warp-wide half-precision MMA of kernels/gemm.cu (mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32,
// D = A * B + C in place): every lane posts its four A and two B registers, then each lane rebuilds the 16 x 16 A
// and 16 x 8 B from all 32 lanes by the PTX ISA's layouts (g = lane / 4, c = lane % 4; register element e = 0 the
// low half, 1 the high half; A register r: row g + 8 (r % 2), column 2c + e + 8 (r / 2); B register r: row
// 2c + e + 8r, column g) and computes its own accumulators D[g][2c], D[g][2c+1], D[g+8][2c], D[g+8][2c+1]: the 16
// exact products and C summed in double, rounded to float once. Needs simt_launch (a whole warp).
static inline float host_half_bits(unsigned h, bool bf16)
{
    if (bf16) { unsigned u = h << 16; float f; std::memcpy(&f, &u, 4); return f; }
    return half_to_float((unsigned short)h);
}

static inline void host_mma_half(float* d, const unsigned* a, const unsigned* b, bool bf16)
{
    if (!host_warp) { std::fprintf(stderr, "host_mma_half needs a whole warp (simt_launch)\n"); std::abort(); }
    int lane = (int)(threadIdx.x % 32);
    for (int r = 0; r < 4; r++) host_warp->mmaA[lane][r] = (int)a[r];
    for (int r = 0; r < 2; r++) host_warp->mmaB[lane][r] = (int)b[r];
    host_warp->barrier.wait();
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++)
    {
        int g = l >> 2, c = l & 3;
        for (int e = 0; e < 2; e++)
        {
            for (int r = 0; r < 4; r++)
                A[g + 8 * (r & 1)][2 * c + e + 8 * (r >> 1)] = host_half_bits(((unsigned)host_warp->mmaA[l][r] >> (16 * e)) & 0xFFFFu, bf16);
            for (int r = 0; r < 2; r++)
                B[2 * c + e + 8 * r][g] = host_half_bits(((unsigned)host_warp->mmaB[l][r] >> (16 * e)) & 0xFFFFu, bf16);
        }
    }
    host_warp->barrier.wait();
    int g = lane >> 2, c = lane & 3;
    for (int e = 0; e < 4; e++)
    {
        int row = g + 8 * (e >> 1), col = 2 * c + (e & 1);
        double sum = d[e];
        for (int kk = 0; kk < 16; kk++) sum += (double)A[row][kk] * (double)B[kk][col];
        d[e] = (float)sum;
    }
}

static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
static inline int atomicAdd(int* p, int v) { return __sync_fetch_and_add(p, v); }

// ld.global.nc.v4 (matmul.cu load_nc16): counted, and a misaligned address aborts as it faults on the device.
static long host_nc16_loads = 0;
static inline uint4 load_nc16(const void* p)
{
    if ((uintptr_t)p & 15) { std::fprintf(stderr, "harness: misaligned 16-byte load at %p\n", p); std::abort(); }
    __sync_fetch_and_add(&host_nc16_loads, 1L);
    uint4 v;
    std::memcpy(&v, p, 16);
    return v;
}
static inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// cp.async (gemm.cu gemm_half): the copy at once (the wait is then a no-op), counted; an address that is not 16-byte
// aligned aborts as it faults on the device. `bytes` 0 zero-fills without reading the source.
static long host_cp_async_copies = 0;
static inline void cp_async16(void* dst, const void* src, int bytes)
{
    if (((uintptr_t)dst | (uintptr_t)src) & 15) { std::fprintf(stderr, "harness: misaligned cp.async %p <- %p\n", dst, src); std::abort(); }
    if (bytes != 0 && bytes != 16) { std::fprintf(stderr, "harness: cp.async of %d bytes\n", bytes); std::abort(); }
    if (bytes) std::memcpy(dst, src, 16);
    else std::memset(dst, 0, 16);
    __sync_fetch_and_add(&host_cp_async_copies, 1L);
}
static inline void cp_async_wait_all() {}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: lane l posts the address of row l % 8 of matrix l / 8; register m of lane
// l is word l % 4 of the row that lane 8m + l / 4 posted. Rows must be 16-byte aligned. Counted per warp.
static long host_ldmatrix = 0;
static inline void ldmatrix_x4(unsigned* r, const unsigned* row)
{
    if (!host_warp) { std::fprintf(stderr, "ldmatrix_x4 needs a whole warp (simt_launch)\n"); std::abort(); }
    if ((uintptr_t)row & 15) { std::fprintf(stderr, "harness: misaligned ldmatrix row %p\n", (const void*)row); std::abort(); }
    int lane = (int)(threadIdx.x % 32);
    for (int m = 0; m < 4; m++)
    {
        const unsigned* src = __shfl_sync(0xFFFFFFFFu, row, 8 * m + lane / 4);
        r[m] = src[lane % 4];
    }
    if (lane == 0) __sync_fetch_and_add(&host_ldmatrix, 1L);
}
