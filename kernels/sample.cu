// Token selection on the device, so only the chosen id (and a finiteness flag) crosses the bus instead of the
// whole logits row. One block of SAMPLE_THREADS threads over the n logits of one row.
// argmax_f32: greedy decoding of the raw logits. sample_f32: the CPU Sampler's whole chain (penalties, top-k,
// top-p, min-p, temperature, then the draw) with the uniform drawn on the host by the Sampler's own generator.
// Both are the last launch of a captured decode step: what changes from token to token (the draw's uniform, the
// penalty window) is read from device memory (the sample state block), never from a kernel argument, so the same
// graph replays every step; both also write the token where the next step's get_rows reads its id.
#include "common.cuh"

#define SAMPLE_THREADS 1024

// (value, id) argmax of the block; ties resolve to the lower id.
__device__ int block_argmax(const float* x, int n, float* sv, int* si)
{
    float best = NEG_INF;
    int id = n; // larger than any id
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (x[i] > best) { best = x[i]; id = i; } // strided ascending: first occurrence wins
    for (int o = 16; o > 0; o >>= 1)
    {
        float ov = __shfl_xor_sync(FULL_MASK, best, o);
        int oi = __shfl_xor_sync(FULL_MASK, id, o);
        if (ov > best || (ov == best && oi < id)) { best = ov; id = oi; }
    }
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    __syncthreads();
    if (lane == 0) { sv[warp] = best; si[warp] = id; }
    __syncthreads();
    if (warp == 0)
    {
        int warps = (int)(blockDim.x / WARP);
        best = lane < warps ? sv[lane] : NEG_INF;
        id = lane < warps ? si[lane] : n;
        for (int o = 16; o > 0; o >>= 1)
        {
            float ov = __shfl_xor_sync(FULL_MASK, best, o);
            int oi = __shfl_xor_sync(FULL_MASK, id, o);
            if (ov > best || (ov == best && oi < id)) { best = ov; id = oi; }
        }
        if (lane == 0) si[0] = id;
    }
    __syncthreads();
    return si[0] >= n ? 0 : si[0];
}

// out[0] = the id of the largest of the n logits (ties: the lowest id, as the CPU sampler's greedy pick);
// out[1] = 1 when a logit is NaN or infinite (the host then refuses the row, as LogitCheck does), else 0;
// feed, when not null, also gets the id (the next step's get_rows ids).
extern "C" __global__ void argmax_f32(const float* __restrict__ logits, int n, int* __restrict__ out, int* __restrict__ feed)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ int nonFinite;
    if (threadIdx.x == 0) nonFinite = 0;
    __syncthreads();
    bool bad = false;
    for (int i = threadIdx.x; i < n; i += blockDim.x) bad |= !(__fmul_rn(logits[i], 0.0f) == 0.0f); // x * 0 is NaN for NaN and +-inf
    if (bad) nonFinite = 1;
    int id = block_argmax(logits, n, sv, si); // its barriers order the flag's writes before the read below
    if (threadIdx.x == 0)
    {
        out[0] = id;
        out[1] = nonFinite;
        if (feed) feed[0] = id;
    }
}

// ---- The sampler chain (Generation.Sampler, step by step, in its order and with its float operations) ----
// Candidates are (logit, id) pairs; "better" is the CPU sampler's order: higher logit first, equal logits by lower
// id. Every step that the CPU sampler runs in a sequence of float or double additions (the top-p mass, the draw's
// running sum) runs here in the same sequence on thread 0; the terms are computed in parallel. Products and sums
// use the _rn intrinsics so NVRTC does not fuse them into FMAs (the CPU rounds each operation). The exponentials
// are the one place the device may differ: CUDA's expf/exp are within 2 ulp / 1 ulp, not always the glibc result
// .NET calls, so a top-p mass or a running sum that lands within a few ulp of its threshold can fall the other
// way (perf/README.md, GPU section). Under host emulation the same libm is used and the tokens are equal.

#define SAMPLE_NO_ID 0x7fffffff

__device__ __forceinline__ bool sample_better(float a, int ia, float b, int ib)
{
    return a > b || (a == b && ia < ib);
}

// Bitonic sort of the padded candidate arrays, best first (the padding is (-inf, SAMPLE_NO_ID): worse than any
// real candidate). padded is a power of two. Global memory, one block: __syncthreads orders the passes.
__device__ void sample_sort(float* keys, int* ids, int padded)
{
    for (int k = 2; k <= padded; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1)
        {
            for (int i = threadIdx.x; i < padded; i += blockDim.x)
            {
                int o = i ^ j;
                if (o <= i) continue;
                float a = keys[i], b = keys[o];
                int ia = ids[i], ib = ids[o];
                bool bestFirst = (i & k) == 0;
                if (bestFirst ? sample_better(b, ib, a, ia) : sample_better(a, ia, b, ib))
                {
                    keys[i] = b; keys[o] = a;
                    ids[i] = ib; ids[o] = ia;
                }
            }
            __syncthreads();
        }
}

// The float's order as an unsigned key (larger float, larger key); -0 counts as +0, as the float comparisons do.
__device__ __forceinline__ u32 sample_order_key(float v)
{
    u32 u = __float_as_uint(__fadd_rn(v, 0.0f));
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Top-k without sorting the row: the k best of keys/ids[0..n) (k < n) into keys2/ids2[0..k), unordered. A radix
// select over the order keys (four 8-bit digits, most significant first) finds the k-th best value T; every
// candidate above T is kept, and of those equal to T the lowest ids, as many as k leaves room for: exactly the
// set the CPU sampler's (logit, id) order keeps. counts: one int per thread; hist: 258 ints.
__device__ void sample_select_top(const float* keys, const int* ids, int n, int k, float* keys2, int* ids2, int* counts, int* hist)
{
    int tid = threadIdx.x, threads = blockDim.x;
    u32 prefix = 0, mask = 0;
    int need = k; // how many of the candidates matching prefix under mask are still to be taken
    for (int shift = 24; shift >= 0; shift -= 8)
    {
        for (int b = tid; b < 256; b += threads) hist[b] = 0;
        __syncthreads();
        for (int i = tid; i < n; i += threads)
        {
            u32 key = sample_order_key(keys[i]);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1);
        }
        __syncthreads();
        if (tid == 0)
        {
            int above = 0, b = 255;
            for (; b > 0 && above + hist[b] < need; b--) above += hist[b];
            hist[256] = b;
            hist[257] = need - above;
        }
        __syncthreads();
        prefix |= (u32)hist[256] << shift;
        mask |= 255u << shift;
        need = hist[257];
        __syncthreads();
    }
    // prefix is T's key; need of the candidates equal to T are kept (the lowest ids), all of those above T.
    // A stable compaction: each thread a contiguous run of ids, the runs' counts scanned on thread 0.
    int per = (n + threads - 1) / threads, begin = min(n, tid * per), end = min(n, begin + per);
    int above = 0, equal = 0;
    for (int i = begin; i < end; i++)
    {
        u32 key = sample_order_key(keys[i]);
        above += key > prefix ? 1 : 0;
        equal += key == prefix ? 1 : 0;
    }
    counts[tid] = above;
    __syncthreads();
    if (tid == 0)
    {
        int at = 0;
        for (int t = 0; t < threads; t++) { int c = counts[t]; counts[t] = at; at += c; }
    }
    __syncthreads();
    int aboveAt = counts[tid];
    __syncthreads();
    counts[tid] = equal;
    __syncthreads();
    if (tid == 0)
    {
        int at = 0;
        for (int t = 0; t < threads; t++) { int c = counts[t]; counts[t] = at; at += c; }
    }
    __syncthreads();
    int equalAt = counts[tid], base = k - need;
    for (int i = begin; i < end; i++)
    {
        u32 key = sample_order_key(keys[i]);
        if (key > prefix) { keys2[aboveAt] = keys[i]; ids2[aboveAt] = ids[i]; aboveAt++; }
        else if (key == prefix)
        {
            if (equalAt < need) { keys2[base + equalAt] = keys[i]; ids2[base + equalAt] = ids[i]; }
            equalAt++;
        }
    }
    __syncthreads();
}

// Largest of keys[0..size) (MathF.Max's result for finite and infinite values). Every thread gets it.
__device__ float sample_block_max(const float* keys, int size, float* sv)
{
    float m = NEG_INF;
    for (int i = threadIdx.x; i < size; i += blockDim.x) m = fmaxf(m, keys[i]);
    m = warp_max(m);
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    __syncthreads();
    if (lane == 0) sv[warp] = m;
    __syncthreads();
    if (warp == 0)
    {
        int warps = (int)(blockDim.x / WARP);
        m = lane < warps ? sv[lane] : NEG_INF;
        m = warp_max(m);
        if (lane == 0) sv[0] = m;
    }
    __syncthreads();
    m = sv[0];
    __syncthreads();
    return m;
}

// The sample state block (CudaSampleState on the host), written by the host before each step's graph launch:
//   bytes 0..8: double uniform, the Sampler's next NextDouble() (unused when greedy);
//   bytes 8..12: int penaltyCount; 12..16: zero;
//   from byte 16: penaltyCount (id, count) int pairs, each id once: the distinct tokens of the penalty window and
//              how often each occurs there (the host counts them; none when the penalties are off).
#define SAMPLE_STATE_PAIRS 16

// sample_f32: one block. work holds 24 * padded bytes (padded: the power of two >= n): double terms[padded],
// float keys[padded], int ids[padded], float keys2[padded], int ids2[padded]. state: the sample state block above.
//   temperature <= 0: greedy (argmax of the penalised logits); invTemp = 1 / temperature as the host rounds it;
//   topK <= 0, topP >= 1, minP <= 0 turn those steps off; logMinP = ln(minP) as the host rounds it;
// out[0] = the token, out[1] = 1 when a raw logit was NaN or infinite; feed, when not null, also gets the token
// (the next step's get_rows ids).
// __launch_bounds__: launched with SAMPLE_THREADS threads, so at most 64 registers each (NVRTC 11.8: see perf/README.md).
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS) sample_f32(const float* __restrict__ logits, int n, const u8* __restrict__ state,
                                      float repeatPenalty, float presencePenalty, float frequencyPenalty, float temperature, float invTemp,
                                      int topK, float topP, float minP, float logMinP, u8* __restrict__ work, int padded,
                                      int* __restrict__ out, int* __restrict__ feed)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ int nonFinite;
    __shared__ int size;
    __shared__ int counts[1024];
    __shared__ int hist[256 + 2];
    __shared__ float fshared;
    __shared__ int keptAll;
    double* terms = (double*)work;
    float* const keys1 = (float*)(terms + padded);
    int* const ids1 = (int*)(keys1 + padded);
    float* const keys2 = (float*)(ids1 + padded);
    int* const ids2 = (int*)(keys2 + padded);
    float* keys = keys1; // the current candidates: keys1/ids1 or keys2/ids2
    int* ids = ids1;
    int tid = threadIdx.x, threads = blockDim.x;

    if (tid == 0) nonFinite = 0;
    __syncthreads();
    bool bad = false;
    for (int i = tid; i < padded; i += threads)
    {
        float v = i < n ? logits[i] : NEG_INF;
        if (i < n) bad |= !(__fmul_rn(v, 0.0f) == 0.0f);
        keys[i] = v;
        ids[i] = i < n ? i : SAMPLE_NO_ID;
    }
    if (bad) nonFinite = 1;
    __syncthreads();

    // Penalties: positive logits divided by the repeat penalty, the others multiplied; then count * frequency +
    // presence subtracted. The ids are distinct, so the threads write different candidates. (The state block is read
    // where it is used, so nothing of it stays in registers through the kernel.)
    const int penaltyCount = ((const int*)state)[2];
    const int* __restrict__ penalties = (const int*)(state + SAMPLE_STATE_PAIRS);
    for (int p = tid; p < penaltyCount; p += threads)
    {
        int id = penalties[2 * p], count = penalties[2 * p + 1];
        if ((unsigned)id >= (unsigned)n) continue;
        float l = keys[id];
        l = l <= 0.0f ? __fmul_rn(l, repeatPenalty) : __fdiv_rn(l, repeatPenalty);
        l = __fsub_rn(l, __fadd_rn(__fmul_rn((float)count, frequencyPenalty), presencePenalty));
        keys[id] = l;
    }
    __syncthreads();

    if (temperature <= 0.0f)
    {
        int id = block_argmax(keys, n, sv, si);
        if (tid == 0)
        {
            out[0] = id;
            out[1] = nonFinite;
            if (feed) feed[0] = id;
        }
        return;
    }

    // Top-k and top-p see the candidates best first; without either they stay in id order. Top-k selects its k
    // candidates first (sample_select_top) and sorts only those; top-p alone sorts the whole row.
    if (topK > 0 && topK < n)
    {
        sample_select_top(keys, ids, n, topK, keys2, ids2, counts, hist);
        int sortPad = 1;
        while (sortPad < topK) sortPad <<= 1;
        for (int i = topK + tid; i < sortPad; i += threads) { keys2[i] = NEG_INF; ids2[i] = SAMPLE_NO_ID; }
        __syncthreads();
        sample_sort(keys2, ids2, sortPad);
        keys = keys2;
        ids = ids2;
    }
    else if (topK > 0 || topP < 1.0f) sample_sort(keys, ids, padded);
    if (tid == 0) size = topK > 0 && topK < n ? topK : n;
    __syncthreads();
    int m = size;

    if (topP < 1.0f)
    {
        // Softmax of the kept candidates in float and its running mass, as the CPU sampler: the sum and the scan
        // in candidate order on thread 0, the terms in parallel.
        float top = keys[0];
        for (int i = tid; i < m; i += threads) terms[i] = (double)expf(__fsub_rn(keys[i], top));
        __syncthreads();
        if (tid == 0)
        {
            float sum = 0.0f;
            for (int i = 0; i < m; i++) sum = __fadd_rn(sum, (float)terms[i]);
            fshared = sum;
        }
        __syncthreads();
        float sum = fshared;
        for (int i = tid; i < m; i += threads) terms[i] = (double)__fdiv_rn((float)terms[i], sum);
        __syncthreads();
        if (tid == 0)
        {
            float cum = 0.0f;
            for (int i = 0; i < m; i++)
            {
                cum = __fadd_rn(cum, (float)terms[i]);
                if (cum >= topP) { size = i + 1; break; }
            }
        }
        __syncthreads();
        m = size;
    }

    if (minP > 0.0f)
    {
        // Keep the candidates with logit >= max + ln(minP), in their order (a stable compaction into keys2/ids2:
        // each thread takes a contiguous run, the runs' kept counts are scanned on thread 0).
        float mx = sample_block_max(keys, m, sv);
        float cut = __fadd_rn(mx, logMinP);
        int per = (m + threads - 1) / threads, begin = min(m, tid * per), end = min(m, begin + per);
        int kept = 0;
        for (int i = begin; i < end; i++) kept += keys[i] >= cut ? 1 : 0;
        counts[tid] = kept;
        __syncthreads();
        if (tid == 0)
        {
            int at = 0;
            for (int t = 0; t < threads; t++) { int c = counts[t]; counts[t] = at; at += c; }
            if (at > 0) size = at;
            keptAll = at;
        }
        __syncthreads();
        if (keptAll > 0)
        {
            // into the pair of arrays the candidates are not in (top-k may have left them in keys2/ids2)
            float* toKeys = keys == keys2 ? keys1 : keys2;
            int* toIds = keys == keys2 ? ids1 : ids2;
            int at = counts[tid];
            for (int i = begin; i < end; i++)
                if (keys[i] >= cut) { toKeys[at] = keys[i]; toIds[at] = ids[i]; at++; }
            keys = toKeys;
            ids = toIds;
        }
        __syncthreads();
        m = size;
    }

    if (temperature != 1.0f)
    {
        for (int i = tid; i < m; i += threads) keys[i] = __fmul_rn(keys[i], invTemp);
        __syncthreads();
    }

    // The draw: softmax terms in double, their running sum on thread 0 in candidate order, the first candidate
    // whose running sum passes uniform * total (the last one if rounding leaves the uniform on the very top).
    float mx = sample_block_max(keys, m, sv);
    for (int i = tid; i < m; i += threads) terms[i] = exp((double)__fsub_rn(keys[i], mx));
    __syncthreads();
    if (tid == 0)
    {
        double total = 0.0;
        for (int i = 0; i < m; i++) total = __dadd_rn(total, terms[i]);
        double u = __dmul_rn(*(const double*)state, total); // the uniform
        double cum = 0.0;
        int id = ids[m - 1];
        for (int i = 0; i < m; i++)
        {
            cum = __dadd_rn(cum, terms[i]);
            if (u < cum) { id = ids[i]; break; }
        }
        out[0] = id;
        out[1] = nonFinite;
        if (feed) feed[0] = id;
    }
}
