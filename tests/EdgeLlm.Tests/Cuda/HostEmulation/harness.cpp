// Runs the CUDA block arithmetic of kernels/matmul.cu and kernels/get_rows.cu, and the one-thread-per-element
// kernels of elementwise.cu and rope.cu, and attention.cu's block (simt_launch), on the CPU (see host_shim.h). The first NUL-terminated string names a
// weight type (below) or an operation (run_op).
// stdin: type name (NUL-terminated), i32 K, i32 rows, i64 rowBytes, rows * rowBytes bytes of weights, K floats of
// activations. stdout: rows * K floats (get_rows_<type> of every row); per 32-block of the activations its scale
// dx (float) and 32 int8 quants (quantize_q8's arithmetic); then for every row and block, dot_block<type> of the
// weight block with the activation block (float).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
#include "matmul.cu"
#include "get_rows.cu"
#include "elementwise.cu"
#include "rope.cu"
#include "attention.cu"
#include "quantize.cu"
#include "sample.cu"
#include "gemm.cu"
#include "attention_prefill.cu"
#include "rmsnorm.cu"
#include "fused.cu"
#include <functional>

typedef void (*GetRowsFn)(const u8*, i64, int, const int*, float*);
typedef float (*DotFn)(const u8*, int, const int*, float, float);
typedef void (*MatVecFn)(const u8*, i64, int, int, const i8*, const float*, const float*, float*, int);

struct Entry { const char* name; GetRowsFn rows; DotFn dot; MatVecFn t1, t8; };

#define ENTRY(NAME, TYPE) {#NAME, get_rows_##NAME, dot_block<TYPE>, matvec_##NAME##_t1, matvec_##NAME##_t8}

static const Entry Types[] = {
    ENTRY(q4_0, QTYPE_Q4_0), ENTRY(q8_0, QTYPE_Q8_0), ENTRY(q4_k, QTYPE_Q4_K), ENTRY(q6_k, QTYPE_Q6_K),
    ENTRY(q4_1, QTYPE_Q4_1), ENTRY(q5_0, QTYPE_Q5_0), ENTRY(q5_1, QTYPE_Q5_1), ENTRY(iq4_nl, QTYPE_IQ4_NL),
    ENTRY(q5_k, QTYPE_Q5_K), ENTRY(iq4_xs, QTYPE_IQ4_XS), ENTRY(q3_k, QTYPE_Q3_K), ENTRY(q2_k, QTYPE_Q2_K),
};

static const Entry* find_type(const std::string& name)
{
    for (const Entry& e : Types) if (name == e.name) return &e;
    return nullptr;
}


static void read_exact(void* p, size_t n)
{
    if (std::fread(p, 1, n, stdin) != n) { std::fprintf(stderr, "harness: short input\n"); std::exit(2); }
}

template <typename T> static T read1() { T v; read_exact(&v, sizeof v); return v; }

static std::vector<float> read_floats(i64 n)
{
    std::vector<float> v((size_t)n);
    read_exact(v.data(), (size_t)n * 4);
    return v;
}

// Launches a kernel of one thread per block over `threads` blocks (no kernel here communicates across threads).
template <typename F> static void launch(i64 threads, F kernel)
{
    blockDim.x = 1; threadIdx.x = 0;
    for (i64 i = 0; i < threads; i++) { blockIdx.x = (unsigned)i; kernel(); }
}

// Element-wise kernels and RoPE. Inputs per op:
//   swiglu, geglu: i64 count, count floats gate, count floats up           -> count floats (gate)
//   scale, softcap: f32 factor/cap, i64 count, count floats                -> count floats
//   add_bias: i32 width, i64 count, width floats bias, count floats x      -> count floats
//   rope: i32 nTokens, nHeads, headDim, half, startPos, neox; f32 scale, attnFactor; half doubles invFreq;
//         nTokens * nHeads * headDim floats                                 -> the same count of floats
//   matvec: type name (NUL-terminated), i32 K, rows, nTokens, NT (1 or 8), i64 rowBytes, rows * rowBytes bytes,
//         nTokens * K floats x                                              -> nTokens * rows floats
//   store_kv: i32 nTokens, kvDim, startPos; nTokens * kvDim floats k, as many v
//                                                                           -> (startPos + nTokens) * kvDim u16 keys, as many values
//   attention_split: as attention, then i32 context, chunkSize: attention_split_f16 over the fixed grid of
//         ceil(context / chunkSize) chunks, then attention_combine_f32      -> nTokens * nHeads * headDim floats
//   argmax: i32 n, threads; n floats                                         -> i32 id, i32 non-finite flag, fed token
//   sample: cases to the end of the input, each: i32 n, threads, stateBytes; f32 repeat, presence, frequency,
//         temperature, invTemp; i32 topK; f32 topP, minP, logMinP; stateBytes bytes of the sample state block
//         (uniform, pair count, pairs, as CudaSampleState writes it); n floats
//                                                                           -> per case i32 token, flag, fed token
//   attention: i32 nTokens, nHeads, headDim, kvDim, startPos, window, threads; f32 scale, softcap;
//         (startPos + nTokens) * kvDim fp16 keys, as many fp16 values, nTokens * nHeads * headDim floats q
//                                                                           -> nTokens * nHeads * headDim floats
static bool run_op(const std::string& op)
{
    std::vector<float> out;
    if (op == "swiglu" || op == "geglu")
    {
        i64 n = read1<i64>();
        out = read_floats(n);
        std::vector<float> up = read_floats(n);
        launch(n, [&] { (op == "swiglu" ? swiglu_f32 : geglu_f32)(out.data(), up.data(), n); });
    }
    else if (op == "scale" || op == "softcap")
    {
        float f = read1<float>();
        i64 n = read1<i64>();
        out = read_floats(n);
        launch(n, [&] { (op == "scale" ? scale_f32 : softcap_f32)(out.data(), f, n); });
    }
    else if (op == "add_bias")
    {
        int width = read1<int>();
        i64 n = read1<i64>();
        std::vector<float> bias = read_floats(width);
        out = read_floats(n);
        launch(n, [&] { add_bias_f32(out.data(), bias.data(), width, n); });
    }
    else if (op == "rope")
    {
        int nTokens = read1<int>(), nHeads = read1<int>(), headDim = read1<int>(), half = read1<int>(), start = read1<int>(), neox = read1<int>();
        float scale = read1<float>(), attnFactor = read1<float>();
        std::vector<double> inv((size_t)half);
        read_exact(inv.data(), (size_t)half * 8);
        out = read_floats((i64)nTokens * nHeads * headDim);
        int step[1] = {start};
        launch((i64)nTokens * nHeads * half, [&] { rope_f32(out.data(), step, 0, nTokens, nHeads, headDim, half, inv.data(), scale, neox, attnFactor); });
    }
    else if (op == "matvec")
    {
        // The product kernels as CudaBackend launches them: quantize_q8 (8 warps per block), then
        // matvec_<type>_t1 or _t8 (4 warps = 4 rows per block).
        std::string type;
        for (int c; (c = std::fgetc(stdin)) > 0;) type.push_back((char)c);
        const Entry* t = find_type(type);
        if (!t) { std::fprintf(stderr, "harness: unknown type '%s'\n", type.c_str()); std::exit(2); }
        int K = read1<int>(), rows = read1<int>(), nTokens = read1<int>(), nt = read1<int>();
        i64 rowBytes = read1<i64>();
        std::vector<u32> store((size_t)(rows * rowBytes + 3) / 4);
        read_exact(store.data(), (size_t)(rows * rowBytes));
        std::vector<float> x = read_floats((i64)nTokens * K);
        i64 blocks = (i64)nTokens * K / 32;
        std::vector<u32> qxStore((size_t)nTokens * K / 4);
        std::vector<float> dx((size_t)blocks), sx((size_t)blocks);
        simt_launch((unsigned)((blocks + 7) / 8), 1, 256, [&] { quantize_q8(x.data(), (i8*)qxStore.data(), dx.data(), sx.data(), blocks); });
        out.assign((size_t)nTokens * rows, 0.0f);
        MatVecFn fn = nt == 1 ? t->t1 : t->t8;
        simt_launch((unsigned)((rows + 3) / 4), 1, 128, [&] {
            fn((const u8*)store.data(), rowBytes, K, rows, (const i8*)qxStore.data(), dx.data(), sx.data(), out.data(), nTokens);
        });
    }
    else if (op == "matvec_float")
    {
        // matvec_{f32,f16,bf16}_t1 or _t8 as CudaBackend launches them (4 warps = 4 rows per block), the weights
        // and activations placed wOffset and xOffset bytes past a 16-byte boundary (to take the scalar loads).
        // Input: type name (NUL-terminated), i32 K, rows, nTokens, NT, wOffset, xOffset, i64 rowBytes,
        // rows * rowBytes bytes, nTokens * K floats -> nTokens * rows floats, then i64 the 16-byte loads made.
        std::string type;
        for (int c; (c = std::fgetc(stdin)) > 0;) type.push_back((char)c);
        int K = read1<int>(), rows = read1<int>(), nTokens = read1<int>(), nt = read1<int>(), wOff = read1<int>(), xOff = read1<int>();
        i64 rowBytes = read1<i64>();
        typedef void (*FloatFn)(const u8*, i64, int, int, const float*, float*, int);
        FloatFn fn = type == "f32" ? (nt == 1 ? matvec_f32_t1 : matvec_f32_t8)
                   : type == "f16" ? (nt == 1 ? matvec_f16_t1 : matvec_f16_t8)
                   : type == "bf16" ? (nt == 1 ? matvec_bf16_t1 : matvec_bf16_t8) : nullptr;
        if (!fn) { std::fprintf(stderr, "harness: no float matvec for '%s'\n", type.c_str()); std::exit(2); }
        size_t wBytes = (size_t)(rows * rowBytes), xBytes = (size_t)nTokens * K * 4;
        std::vector<uint64_t> wStore((wBytes + wOff + 31) / 8 + 2), xStore((xBytes + xOff + 31) / 8 + 2);
        u8* wBase = (u8*)(((uintptr_t)wStore.data() + 15) & ~(uintptr_t)15) + wOff;
        u8* xBase = (u8*)(((uintptr_t)xStore.data() + 15) & ~(uintptr_t)15) + xOff;
        read_exact(wBase, wBytes);
        read_exact(xBase, xBytes);
        out.assign((size_t)nTokens * rows, NAN);
        host_nc16_loads = 0;
        simt_launch((unsigned)((rows + 3) / 4), 1, 128, [&] { fn(wBase, rowBytes, K, rows, (const float*)xBase, out.data(), nTokens); });
        std::fwrite(out.data(), 4, out.size(), stdout);
        long loads = host_nc16_loads;
        i64 count = loads;
        std::fwrite(&count, 8, 1, stdout);
        return true;
    }
    else if (op == "gemm" || op == "gemm_packed")
    {
        // gemm.cu as CudaBackend launches it: quantize_q8, then gemm_{mma,dp4a}_<type> over (ceil(rows/64), ceil(nTokens/64)).
        // Input: type name (NUL-terminated), i32 K, rows, nTokens, mma (0 dp4a, 1 mma), i64 rowBytes, rows * rowBytes bytes,
        // nTokens * K floats x -> nTokens * rows floats. gemm_packed: the rows in CudaRepack's layout, the _packed kernels.
        bool packed = op == "gemm_packed";
        std::string type;
        for (int c; (c = std::fgetc(stdin)) > 0;) type.push_back((char)c);
        int K = read1<int>(), rows = read1<int>(), nTokens = read1<int>(), mma = read1<int>();
        i64 rowBytes = read1<i64>();
        MatVecFn fn = nullptr;
#define GEMM_PICK(NAME)                                                                                                \
    if (type == #NAME) fn = packed ? (mma ? gemm_mma_##NAME##_packed : gemm_dp4a_##NAME##_packed) : (mma ? gemm_mma_##NAME : gemm_dp4a_##NAME);
        GEMM_PICK(q4_0) GEMM_PICK(q8_0) GEMM_PICK(q4_k) GEMM_PICK(q6_k) GEMM_PICK(q4_1) GEMM_PICK(q5_0)
        GEMM_PICK(q5_1) GEMM_PICK(iq4_nl) GEMM_PICK(q5_k) GEMM_PICK(iq4_xs) GEMM_PICK(q3_k) GEMM_PICK(q2_k)
#undef GEMM_PICK
        if (!fn) { std::fprintf(stderr, "harness: no gemm for '%s'\n", type.c_str()); std::exit(2); }
        std::vector<u32> store((size_t)(rows * rowBytes + 3) / 4);
        read_exact(store.data(), (size_t)(rows * rowBytes));
        std::vector<float> x = read_floats((i64)nTokens * K);
        i64 blocks = (i64)nTokens * K / 32;
        std::vector<u32> qxStore((size_t)nTokens * K / 4);
        std::vector<float> dx((size_t)blocks), sx((size_t)blocks);
        simt_launch((unsigned)((blocks + 7) / 8), 1, 256, [&] { quantize_q8(x.data(), (i8*)qxStore.data(), dx.data(), sx.data(), blocks); });
        out.assign((size_t)nTokens * rows, NAN); // every output must be written
        simt_launch((unsigned)((rows + GEMM_BM - 1) / GEMM_BM), (unsigned)((nTokens + GEMM_BN - 1) / GEMM_BN), GEMM_THREADS, [&] {
            fn((const u8*)store.data(), rowBytes, K, rows, (const i8*)qxStore.data(), dx.data(), sx.data(), out.data(), nTokens);
        });
    }
    else if (op == "gemm_float" || op == "gemm_float_counted")
    {
        // gemm_{f32,f16,bf16,mma_f16,mma_bf16} over (ceil(rows/64), ceil(nTokens/64)) blocks of 128 threads. Input: type name
        // (NUL-terminated), i32 K, rows, nTokens, i64 rowBytes, rows * rowBytes bytes, nTokens * K floats -> nTokens * rows floats.
        std::string type;
        for (int c; (c = std::fgetc(stdin)) > 0;) type.push_back((char)c);
        int K = read1<int>(), rows = read1<int>(), nTokens = read1<int>();
        i64 rowBytes = read1<i64>();
        typedef void (*FloatFn)(const u8*, i64, int, int, const float*, float*, int);
        FloatFn fn = type == "f32" ? gemm_f32 : type == "f16" ? gemm_f16 : type == "bf16" ? gemm_bf16
                   : type == "mma_f16" ? gemm_mma_f16 : type == "mma_bf16" ? gemm_mma_bf16 : nullptr;
        if (!fn) { std::fprintf(stderr, "harness: no float gemm for '%s'\n", type.c_str()); std::exit(2); }
        // the rows start 16-byte aligned (as cuMemAlloc's), so rows of a multiple of 16 bytes take gemm_half's cp.async
        std::vector<uint64_t> store((size_t)(rows * rowBytes + 7) / 8 + 2);
        u8* wBase = (u8*)(((uintptr_t)store.data() + 15) & ~(uintptr_t)15);
        read_exact(wBase, (size_t)(rows * rowBytes));
        std::vector<float> x = read_floats((i64)nTokens * K);
        out.assign((size_t)nTokens * rows, NAN);
        host_cp_async_copies = 0;
        host_ldmatrix = 0;
        simt_launch((unsigned)((rows + GEMM_BM - 1) / GEMM_BM), (unsigned)((nTokens + GEMM_BN - 1) / GEMM_BN), GEMM_THREADS, [&] {
            fn(wBase, rowBytes, K, rows, x.data(), out.data(), nTokens);
        });
        if (op == "gemm_float_counted")
        {
            // the results, then i64 cp.async copies and i64 warp-wide ldmatrix loads
            std::fwrite(out.data(), 4, out.size(), stdout);
            i64 counts[2] = {host_cp_async_copies, host_ldmatrix};
            std::fwrite(counts, 8, 2, stdout);
            return true;
        }
    }
    else if (op == "attention_prefill")
    {
        // i32 nTokens, nHeads, headDim, kvDim, startPos, window, f32Cache (0: fp16, 1: float); f32 scale, softcap;
        // (startPos + nTokens) * kvDim keys and as many values (u16 or float), nTokens * nHeads * headDim floats q
        //                                                                   -> nTokens * nHeads * headDim floats
        int nTokens = read1<int>(), nHeads = read1<int>(), headDim = read1<int>(), kvDim = read1<int>(), start = read1<int>(),
            window = read1<int>(), f32 = read1<int>();
        float scale = read1<float>(), softcap = read1<float>();
        size_t cache = (size_t)(start + nTokens) * kvDim;
        std::vector<u16> kh, vh;
        std::vector<float> kf, vf;
        if (f32) { kf = read_floats((i64)cache); vf = read_floats((i64)cache); }
        else
        {
            kh.resize(cache); vh.resize(cache);
            read_exact(kh.data(), cache * 2);
            read_exact(vh.data(), cache * 2);
        }
        std::vector<float> q = read_floats((i64)nTokens * nHeads * headDim);
        out.assign(q.size(), NAN);
        int step[1] = {start};
        int group = nHeads / (kvDim / headDim);
        simt_launch((unsigned)nHeads, (unsigned)((nTokens + APF_BQ - 1) / APF_BQ), APF_THREADS, [&] {
            if (f32) attention_prefill_f32(q.data(), kf.data(), vf.data(), out.data(), step, 0, nTokens, nHeads, headDim, kvDim, group, scale, softcap, window);
            else attention_prefill_f16(q.data(), kh.data(), vh.data(), out.data(), step, 0, nTokens, nHeads, headDim, kvDim, group, scale, softcap, window);
        });
    }
    else if (op == "attention")
    {
        int nTokens = read1<int>(), nHeads = read1<int>(), headDim = read1<int>(), kvDim = read1<int>(), start = read1<int>(),
            window = read1<int>(), threads = read1<int>();
        float scale = read1<float>(), softcap = read1<float>();
        size_t cache = (size_t)(start + nTokens) * kvDim;
        std::vector<u16> kc(cache), vc(cache);
        read_exact(kc.data(), cache * 2);
        read_exact(vc.data(), cache * 2);
        std::vector<float> q = read_floats((i64)nTokens * nHeads * headDim);
        out.assign(q.size(), 0.0f);
        int step[1] = {start};
        int group = nHeads / (kvDim / headDim);
        simt_launch((unsigned)nHeads, (unsigned)nTokens, (unsigned)threads, [&] {
            attention_f16(q.data(), kc.data(), vc.data(), out.data(), step, 0, nHeads, headDim, kvDim, group, scale, softcap, window);
        });
    }
    else if (op == "attention_split")
    {
        int nTokens = read1<int>(), nHeads = read1<int>(), headDim = read1<int>(), kvDim = read1<int>(), start = read1<int>(),
            window = read1<int>(), threads = read1<int>();
        float scale = read1<float>(), softcap = read1<float>();
        int context = read1<int>(), chunkSize = read1<int>();
        size_t cache = (size_t)context * kvDim;
        std::vector<u16> kc(cache, 0x7E00), vc(cache, 0x7E00); // NaN past the stored rows: a chunk reading them would show
        read_exact(kc.data(), (size_t)(start + nTokens) * kvDim * 2);
        read_exact(vc.data(), (size_t)(start + nTokens) * kvDim * 2);
        std::vector<float> q = read_floats((i64)nTokens * nHeads * headDim);
        int chunks = (context + chunkSize - 1) / chunkSize;
        std::vector<float> part((size_t)nTokens * nHeads * chunks * (headDim + 2), NAN); // unwritten chunks stay NaN
        out.assign(q.size(), 0.0f);
        int step[1] = {start};
        int kvHeads = kvDim / headDim, group = nHeads / kvHeads;
        simt_launch((unsigned)kvHeads, (unsigned)chunks, (unsigned)threads, [&] {
            attention_split_f16(q.data(), kc.data(), vc.data(), part.data(), step, 0, nHeads, headDim, kvDim, group, scale, softcap, window,
                                chunkSize, chunks);
        }, (unsigned)nTokens);
        simt_launch((unsigned)nHeads, (unsigned)nTokens, 128, [&] {
            attention_combine_f32(part.data(), out.data(), step, 0, nHeads, headDim, window, chunkSize, chunks);
        });
    }
    else if (op == "store_kv")
    {
        int nTokens = read1<int>(), kvDim = read1<int>(), start = read1<int>();
        std::vector<float> k = read_floats((i64)nTokens * kvDim), v = read_floats((i64)nTokens * kvDim);
        size_t cache = (size_t)(start + nTokens) * kvDim;
        std::vector<u16> kc(cache, 0xFFFF), vc(cache, 0xFFFF); // rows before startPos must stay untouched
        int step[1] = {start};
        launch((i64)nTokens * kvDim, [&] { store_kv_f16(k.data(), v.data(), kc.data(), vc.data(), step, 0, nTokens, kvDim); });
        std::fwrite(kc.data(), 2, cache, stdout);
        std::fwrite(vc.data(), 2, cache, stdout);
        return true;
    }
    else if (op == "argmax")
    {
        int n = read1<int>(), threads = read1<int>();
        std::vector<float> logits = read_floats(n);
        int result[3] = {-1, -1, -1};
        simt_launch(1, 1, (unsigned)threads, [&] { argmax_f32(logits.data(), n, result, result + 2); });
        std::fwrite(result, 4, 3, stdout);
        return true;
    }
    else if (op == "sample")
    {
        // Cases until the end of the input, each run as CudaBackend launches sample_f32 (one block).
        for (int n; std::fread(&n, 4, 1, stdin) == 1;)
        {
            int threads = read1<int>(), stateBytes = read1<int>();
            float repeat = read1<float>(), presence = read1<float>(), frequency = read1<float>(), temperature = read1<float>(),
                  invTemp = read1<float>();
            int topK = read1<int>();
            float topP = read1<float>(), minP = read1<float>(), logMinP = read1<float>();
            std::vector<double> state((size_t)stateBytes / 8 + 1); // 8-byte aligned, as a device allocation
            read_exact(state.data(), (size_t)stateBytes);
            std::vector<float> logits = read_floats(n);
            int padded = 1;
            while (padded < n) padded <<= 1;
            std::vector<double> work((size_t)padded * 3, NAN); // 24 bytes per padded candidate, garbage to start
            int result[2] = {-1, -1}, feed = -1;
            simt_launch(1, 1, (unsigned)threads, [&] {
                sample_f32(logits.data(), n, (const u8*)state.data(), repeat, presence, frequency, temperature, invTemp, topK, topP, minP,
                           logMinP, (u8*)work.data(), padded, result, &feed);
            });
            int answer[3] = {result[0], result[1], feed};
            std::fwrite(answer, 4, 3, stdout);
        }
        return true;
    }
    else return false;
    std::fwrite(out.data(), 4, out.size(), stdout);
    return true;
}

#include "fused_ops.h"

int main()
{
    std::string name;
    for (int c; (c = std::fgetc(stdin)) > 0;) name.push_back((char)c);
    if (run_op(name) || run_fused_op(name)) return 0;
    const Entry* t = find_type(name);
    if (!t) { std::fprintf(stderr, "harness: unknown type '%s'\n", name.c_str()); return 2; }
    int K, rows; i64 rowBytes;
    read_exact(&K, 4);
    read_exact(&rows, 4);
    read_exact(&rowBytes, 8);
    // 4-byte aligned storage, as cuMemAlloc gives the kernels.
    std::vector<u32> store((size_t)(rows * rowBytes + 3) / 4);
    const u8* W = (const u8*)store.data();
    read_exact(store.data(), (size_t)(rows * rowBytes));
    std::vector<float> x((size_t)K), deq((size_t)K * rows);
    read_exact(x.data(), (size_t)K * 4);

    // The get_rows kernel, one block of one thread per row: the thread walks the whole row.
    std::vector<int> ids((size_t)rows);
    for (int r = 0; r < rows; r++) ids[(size_t)r] = r;
    blockDim.x = 1; threadIdx.x = 0;
    for (int r = 0; r < rows; r++)
    {
        blockIdx.x = (unsigned)r;
        t->rows(W, rowBytes, K, ids.data(), deq.data());
    }
    std::fwrite(deq.data(), 4, deq.size(), stdout);

    // quantize_q8's arithmetic for each 32-block (its warp reductions done serially).
    int nb = K / 32;
    std::vector<u32> xqStore((size_t)K / 4);
    i8* xq = (i8*)xqStore.data();
    std::vector<float> dx((size_t)nb), sx((size_t)nb);
    for (int b = 0; b < nb; b++)
    {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = std::fmax(amax, std::fabs(x[(size_t)b * 32 + i]));
        float d = amax / 127.0f;
        int sum = 0;
        for (int i = 0; i < 32; i++)
        {
            int q = amax == 0.0f ? 0 : __float2int_rn(x[(size_t)b * 32 + i] / d);
            xq[b * 32 + i] = (i8)q;
            sum += q;
        }
        dx[(size_t)b] = d;
        sx[(size_t)b] = d * (float)sum;
        std::fwrite(&d, 4, 1, stdout);
        std::fwrite(xq + b * 32, 1, 32, stdout);
    }
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++)
        {
            float dot = t->dot(W + (i64)r * rowBytes, b, (const int*)(xq + b * 32), dx[(size_t)b], sx[(size_t)b]);
            std::fwrite(&dot, 4, 1, stdout);
        }
    return 0;
}
