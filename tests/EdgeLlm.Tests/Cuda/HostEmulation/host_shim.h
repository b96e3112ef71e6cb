// Host versions of the CUDA built-ins the kernel files use, so a host C++ compiler can build kernels/*.cu and
// the tests can run their block arithmetic (dot_<type>, deq_<type>) on the CPU. Force-included before the
// kernel sources (-include host_shim.h). One "thread": the index variables are globals the harness sets, and a
// warp shuffle returns its own value, so only code without cross-lane communication is meaningful here.
#pragma once
#include <cmath>
#include <math.h> // expf, tanhf, sincos (a GNU extension, as in CUDA)
#include <cstdint>
#include <cstring>

#define EDGELLM_HOST_EMULATION 1
#define __device__
#define __global__
#define __forceinline__ inline

struct HostDim3 { unsigned x, y, z; };
static HostDim3 threadIdx, blockIdx, blockDim;

static inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
static inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
static inline int __float2int_rn(float x) { return (int)std::nearbyint(x); }
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int) { return v; }

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
