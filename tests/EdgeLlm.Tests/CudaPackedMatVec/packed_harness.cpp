// Runs kernels/matvec_packed.cu (and, for comparison, matmul.cu's product over the same weights in ggml's layout)
// on the CPU with the emulated SIMT blocks of ../Cuda/HostEmulation/host_shim.h (force-included).
// stdin: op name (NUL-terminated), type name (NUL-terminated), then
//   matvec:   i32 K, rows, nTokens, NT (1 or 8), wpr (1, 2 or 4); i64 packedRowBytes, rows * packedRowBytes bytes;
//             i64 rowBytes, rows * rowBytes bytes (ggml); nTokens * K floats x
//             -> per 32-block of x: dx (float) and 32 int8 quants (quantize_q8's arithmetic); nTokens * rows floats from
//                matvec_packed_<type>_t<NT> with wpr warps per row; nTokens * rows floats from matvec_<type>_t<NT>;
//                nTokens * rows floats of a residual r (made up here), then nTokens * rows floats from
//                matvec_packed_<type>_t<NT> with the residual epilogue on a copy of r (r += W x)
//   matvec_norm: as matvec (one token, rows a multiple of 32), then the same quantized x and residual r ->
//             per run (first matvec_packed_<type>_t1 with the norm epilogue, residual 2; then residual 1 followed by
//             add_rmsnorm_q8_f32 without add, 256 threads): rows floats r + W x, rows floats of the norm, rows int8,
//             rows / 32 floats dx, as many sx, one int counter
//   matvec_qkv: i32 K, qHeads, kvHeads, headDim, wpr, half, neox, pos, biased; f32 scale, attnFactor; half f64 invFreq;
//             if biased: rows floats of biases (q | k | v); i64 packedRowBytes, rows * packedRowBytes bytes
//             (rows = (qHeads + 2 kvHeads) headDim); K floats x
//             -> per run (first matvec_packed_<type>_qkv; then matvec_packed_<type>_t1 into the stack followed by
//                rope_store_qkv_f32, 256 threads): rows floats of the stacked product, qDim floats q, kvDim k, kvDim v,
//                (pos + 1) * kvDim fp16 keys, as many values (cache rows before pos: 0xFFFF), one int counter per head
//   matvec_glu: i32 K, ffn, wpr, geglu, quantize; i64 packedRowBytes, 2 ffn * packedRowBytes bytes; K floats x
//             -> per run (first matvec_packed_<type>_glu; then matvec_packed_<type>_t1 into the stack followed by
//                glu_split_q8_f32, 256 threads): 2 ffn floats of the stacked product, ffn floats gate, ffn up,
//                ffn int8, ffn / 32 floats dx, as many sx, one int counter per 32-block
//   matvec_res (type: any of matmul.cu's, ggml's layout): i32 K, rows (a multiple of 32), norm, quantize; i64 rowBytes,
//             rows * rowBytes bytes; K floats x
//             -> per run (first matvec_<type>_res on a copy of a residual r made up here, with the norm epilogue when
//                norm != 0; then matvec_<type>_t1 into scratch followed by add_rmsnorm_q8_f32 (x += y, 256 threads) or,
//                without norm, add_f32's x + y): rows floats r + W x, rows floats of the norm, rows int8, rows / 32
//                floats dx, as many sx, one int counter (the norm outputs untouched without norm: NaN, 0x5A)
//   get_rows: i32 K, rows; i64 packedRowBytes, rows * packedRowBytes bytes -> rows * K floats (get_rows_packed_<type>)
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "matmul.cu"
#include "matvec_packed.cu"
#include "fused.cu"

typedef void (*MatVecFn)(const u8*, i64, int, int, const i8*, const float*, const float*, float*, int);
typedef void (*PackedFn)(const u8*, i64, int, int, const i8*, const float*, const float*, float*, int, int, int, int*, const float*, float*, i8*,
                         float*, float*, float);
typedef void (*GetRowsFn)(const u8*, i64, int, const int*, float*);
typedef void (*QkvFn)(const u8*, i64, int, int, const i8*, const float*, const float*, float*, int, int*, float*, float*, float*, u16*, u16*,
                      const int*, int, int, int, int, int, const double*, float, int, float, const float*, const float*, const float*);
typedef void (*GluFn)(const u8*, i64, int, int, const i8*, const float*, const float*, float*, int, int*, float*, float*, i8*, float*, float*,
                      int, int, int);

struct Entry { const char* name; PackedFn p1, p8; MatVecFn m1, m8; GetRowsFn rows; QkvFn qkv; GluFn glu; };

#define ENTRY(NAME) {#NAME, matvec_packed_##NAME##_t1, matvec_packed_##NAME##_t8, matvec_##NAME##_t1, matvec_##NAME##_t8, get_rows_packed_##NAME, \
                     matvec_packed_##NAME##_qkv, matvec_packed_##NAME##_glu}

static const Entry Types[] = {
    ENTRY(q4_0), ENTRY(q8_0), ENTRY(q4_k), ENTRY(q6_k), ENTRY(q4_1), ENTRY(q5_0), ENTRY(q5_1), ENTRY(iq4_nl), ENTRY(q5_k), ENTRY(iq4_xs), ENTRY(q2_k), ENTRY(q3_k),
};

static void read_exact(void* p, size_t n)
{
    if (std::fread(p, 1, n, stdin) != n) { std::fprintf(stderr, "packed_harness: short input\n"); std::exit(2); }
}

template <typename T> static T read1() { T v; read_exact(&v, sizeof v); return v; }

static std::string read_name()
{
    std::string s;
    for (int c; (c = std::fgetc(stdin)) > 0;) s.push_back((char)c);
    return s;
}

// 16-byte aligned storage, as cuMemAlloc gives the kernels (the packed rows are read with 16-byte loads).
static std::vector<uint4> read_rows(int rows, i64 rowBytes)
{
    std::vector<uint4> v((size_t)(rows * rowBytes + 15) / 16);
    read_exact(v.data(), (size_t)(rows * rowBytes));
    return v;
}

// quantize_q8's arithmetic for each 32-block, serially (as ../Cuda/HostEmulation/harness.cpp does: the quantize
// kernel's own emulation is tested there; here it would cost an OS thread per value).
static void quantize_serial(const std::vector<float>& x, i8* qx, std::vector<float>& dx, std::vector<float>& sx)
{
    for (size_t b = 0; b < x.size() / 32; b++)
    {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = std::fmax(amax, std::fabs(x[b * 32 + (size_t)i]));
        float d = amax / 127.0f;
        int sum = 0;
        for (int i = 0; i < 32; i++)
        {
            int q = amax == 0.0f ? 0 : __float2int_rn(x[b * 32 + (size_t)i] / d);
            qx[b * 32 + i] = (i8)q;
            sum += q;
        }
        dx[b] = d;
        sx[b] = d * (float)sum;
    }
}

template <typename T> static void put(const std::vector<T>& v) { std::fwrite(v.data(), sizeof(T), v.size(), stdout); }

// The Q/K/V epilogue against the product into scratch + rope_store_qkv_f32 (see the op list above).
static int run_qkv(const Entry* t)
{
    int K = read1<int>(), qHeads = read1<int>(), kvHeads = read1<int>(), headDim = read1<int>(), wpr = read1<int>();
    int half = read1<int>(), neox = read1<int>(), pos = read1<int>(), biased = read1<int>();
    float scale = read1<float>(), attnFactor = read1<float>();
    std::vector<double> inv((size_t)half);
    read_exact(inv.data(), inv.size() * 8);
    int qDim = qHeads * headDim, kvDim = kvHeads * headDim, rows = qDim + 2 * kvDim, heads = qHeads + 2 * kvHeads;
    std::vector<float> bias(biased ? (size_t)rows : 0);
    read_exact(bias.data(), bias.size() * 4);
    const float* bq = biased ? bias.data() : nullptr;
    const float* bk = biased ? bias.data() + qDim : nullptr;
    const float* bv = biased ? bias.data() + qDim + kvDim : nullptr;
    i64 packedRow = read1<i64>();
    std::vector<uint4> packed = read_rows(rows, packedRow);
    std::vector<float> x((size_t)K);
    read_exact(x.data(), x.size() * 4);
    std::vector<uint4> qxStore((size_t)K / 16);
    i8* qx = (i8*)qxStore.data();
    std::vector<float> dx((size_t)K / 32), sx((size_t)K / 32);
    quantize_serial(x, qx, dx, sx);
    int step[1] = {pos};
    int rowsPerBlock = MVP_WARPS / wpr, blocks = (rows + rowsPerBlock - 1) / rowsPerBlock;
    for (int fused = 1; fused >= 0; fused--)
    {
        std::vector<float> stack((size_t)rows, NAN), q((size_t)qDim, NAN), k((size_t)kvDim, NAN), v((size_t)kvDim, NAN);
        std::vector<u16> kc((size_t)(pos + 1) * kvDim, 0xFFFF), vc((size_t)(pos + 1) * kvDim, 0xFFFF);
        std::vector<int> counters((size_t)heads, 0);
        if (fused)
            simt_launch((unsigned)blocks, 1, MVP_WARPS * 32, [&] {
                t->qkv((const u8*)packed.data(), packedRow, K, rows, qx, dx.data(), sx.data(), stack.data(), wpr, counters.data(), q.data(),
                       k.data(), v.data(), kc.data(), vc.data(), step, 0, qDim, kvDim, headDim, half, inv.data(), scale, neox, attnFactor,
                       bq, bk, bv);
            });
        else
        {
            simt_launch((unsigned)blocks, 1, MVP_WARPS * 32, [&] {
                t->p1((const u8*)packed.data(), packedRow, K, rows, qx, dx.data(), sx.data(), stack.data(), 1, wpr, 0, nullptr, nullptr,
                      nullptr, nullptr, nullptr, nullptr, 0.0f);
            });
            simt_launch((unsigned)((rows + 255) / 256), 1, 256, [&] {
                rope_store_qkv_f32(stack.data(), q.data(), k.data(), v.data(), kc.data(), vc.data(), step, 0, 1, qDim, kvDim, headDim, half,
                                   inv.data(), scale, neox, attnFactor, bq, bk, bv);
            });
        }
        put(stack); put(q); put(k); put(v); put(kc); put(vc); put(counters);
    }
    return 0;
}

// The gate/up epilogue against the product into scratch + glu_split_q8_f32 (see the op list above).
static int run_glu(const Entry* t)
{
    int K = read1<int>(), ffn = read1<int>(), wpr = read1<int>(), geglu = read1<int>(), quantize = read1<int>();
    int rows = 2 * ffn;
    i64 packedRow = read1<i64>();
    std::vector<uint4> packed = read_rows(rows, packedRow);
    std::vector<float> x((size_t)K);
    read_exact(x.data(), x.size() * 4);
    std::vector<uint4> qxStore((size_t)K / 16);
    i8* qx = (i8*)qxStore.data();
    std::vector<float> dx((size_t)K / 32), sx((size_t)K / 32);
    quantize_serial(x, qx, dx, sx);
    int rowsPerBlock = MVP_WARPS / wpr, blocks = (rows + rowsPerBlock - 1) / rowsPerBlock;
    for (int fused = 1; fused >= 0; fused--)
    {
        std::vector<float> stack((size_t)rows, NAN), gate((size_t)ffn, NAN), up((size_t)ffn, NAN);
        std::vector<float> ndx((size_t)ffn / 32, NAN), nsx((size_t)ffn / 32, NAN);
        std::vector<uint4> nqStore((size_t)ffn / 16);
        std::memset(nqStore.data(), 0x5A, (size_t)ffn);
        i8* nq = (i8*)nqStore.data();
        std::vector<int> counters((size_t)ffn / 32, 0);
        if (fused)
            simt_launch((unsigned)blocks, 1, MVP_WARPS * 32, [&] {
                t->glu((const u8*)packed.data(), packedRow, K, rows, qx, dx.data(), sx.data(), stack.data(), wpr, counters.data(), gate.data(),
                       up.data(), nq, ndx.data(), nsx.data(), ffn, geglu, quantize);
            });
        else
        {
            simt_launch((unsigned)blocks, 1, MVP_WARPS * 32, [&] {
                t->p1((const u8*)packed.data(), packedRow, K, rows, qx, dx.data(), sx.data(), stack.data(), 1, wpr, 0, nullptr, nullptr,
                      nullptr, nullptr, nullptr, nullptr, 0.0f);
            });
            simt_launch((unsigned)((ffn + 255) / 256), 1, 256, [&] {
                glu_split_q8_f32(stack.data(), gate.data(), up.data(), nq, ndx.data(), nsx.data(), ffn, 1, geglu, quantize);
            });
        }
        put(stack); put(gate); put(up);
        std::fwrite(nq, 1, (size_t)ffn, stdout);
        put(ndx); put(nsx); put(counters);
    }
    return 0;
}

typedef void (*ResFn)(const u8*, i64, int, int, const void*, const float*, const float*, float*, int*, const float*, float*, i8*, float*,
                      float*, float, int, int);
typedef void (*FloatFn)(const u8*, i64, int, int, const float*, float*, int);
struct ResEntry { const char* name; ResFn res; MatVecFn m1; FloatFn f1; };
#define RES_Q(NAME) {#NAME, matvec_##NAME##_res, matvec_##NAME##_t1, nullptr}
#define RES_F(NAME) {#NAME, matvec_##NAME##_res, nullptr, matvec_##NAME##_t1}
static const ResEntry ResTypes[] = {
    RES_Q(q4_0), RES_Q(q8_0), RES_Q(q4_k), RES_Q(q6_k), RES_Q(q4_1), RES_Q(q5_0), RES_Q(q5_1), RES_Q(iq4_nl), RES_Q(q5_k), RES_Q(iq4_xs),
    RES_Q(q2_k), RES_Q(q3_k), RES_F(f32), RES_F(f16), RES_F(bf16),
};

// matmul.cu's residual [+ norm] epilogue against the product into scratch + the add [+ norm] (see the op list above).
static int run_res(const std::string& type)
{
    const ResEntry* t = nullptr;
    for (const ResEntry& e : ResTypes) if (type == e.name) t = &e;
    if (!t) { std::fprintf(stderr, "packed_harness: unknown type '%s'\n", type.c_str()); return 2; }
    int K = read1<int>(), rows = read1<int>(), norm = read1<int>(), quantize = read1<int>();
    i64 rowBytes = read1<i64>();
    std::vector<uint4> raw = read_rows(rows, rowBytes);
    std::vector<float> x((size_t)K);
    read_exact(x.data(), x.size() * 4);
    std::vector<uint4> qxStore((size_t)K / 16 + 1);
    i8* qx = (i8*)qxStore.data();
    std::vector<float> dx((size_t)K / 32 + 1), sx((size_t)K / 32 + 1);
    if (t->m1) quantize_serial(x, qx, dx, sx);
    const void* act = t->m1 ? (const void*)qx : (const void*)x.data();
    std::vector<float> w((size_t)rows), residual((size_t)rows);
    for (int i = 0; i < rows; i++)
    {
        w[(size_t)i] = 1.0f + 0.01f * (float)(i % 13);
        residual[(size_t)i] = (float)((i * 37 % 101) - 50) * 0.0625f;
    }
    int nb = rows / 32;
    unsigned blocks = (unsigned)((rows + 3) / 4);
    for (int fused = 1; fused >= 0; fused--)
    {
        std::vector<float> r = residual, out((size_t)rows, NAN), ndx((size_t)nb, NAN), nsx((size_t)nb, NAN), y((size_t)rows, NAN);
        std::vector<uint4> nqStore((size_t)rows / 16);
        std::memset(nqStore.data(), 0x5A, (size_t)rows);
        i8* nq = (i8*)nqStore.data();
        int counter = 0;
        if (fused)
            simt_launch(blocks, 1, 128, [&] {
                t->res((const u8*)raw.data(), rowBytes, K, rows, act, dx.data(), sx.data(), r.data(), &counter, w.data(), out.data(), nq, ndx.data(),
                       nsx.data(), 1e-5f, norm, quantize);
            });
        else
        {
            simt_launch(blocks, 1, 128, [&] {
                if (t->m1) t->m1((const u8*)raw.data(), rowBytes, K, rows, qx, dx.data(), sx.data(), y.data(), 1);
                else t->f1((const u8*)raw.data(), rowBytes, K, rows, x.data(), y.data(), 1);
            });
            if (norm)
                simt_launch(1, 1, 256, [&] {
                    add_rmsnorm_q8_f32(r.data(), y.data(), w.data(), out.data(), nq, ndx.data(), nsx.data(), rows, 1e-5f, 1, quantize);
                });
            else
                for (int i = 0; i < rows; i++) r[(size_t)i] = __fadd_rn(r[(size_t)i], y[(size_t)i]);
        }
        put(r); put(out);
        std::fwrite(nq, 1, (size_t)rows, stdout);
        put(ndx); put(nsx);
        std::fwrite(&counter, 4, 1, stdout);
    }
    return 0;
}

int main()
{
    std::string op = read_name(), type = read_name();
    if (op == "matvec_res") return run_res(type);
    const Entry* t = nullptr;
    for (const Entry& e : Types) if (type == e.name) t = &e;
    if (!t) { std::fprintf(stderr, "packed_harness: unknown type '%s'\n", type.c_str()); return 2; }
    if (op == "get_rows")
    {
        int K = read1<int>(), rows = read1<int>();
        i64 packedRow = read1<i64>();
        std::vector<uint4> packed = read_rows(rows, packedRow);
        std::vector<int> ids((size_t)rows);
        for (int r = 0; r < rows; r++) ids[(size_t)r] = r;
        std::vector<float> out((size_t)rows * K);
        simt_launch((unsigned)rows, 1, 64, [&] { t->rows((const u8*)packed.data(), packedRow, K, ids.data(), out.data()); });
        std::fwrite(out.data(), 4, out.size(), stdout);
        return 0;
    }
    if (op == "matvec_qkv") return run_qkv(t);
    if (op == "matvec_glu") return run_glu(t);
    if (op != "matvec" && op != "matvec_norm") { std::fprintf(stderr, "packed_harness: unknown op '%s'\n", op.c_str()); return 2; }
    int K = read1<int>(), rows = read1<int>(), nTokens = read1<int>(), nt = read1<int>(), wpr = read1<int>();
    i64 packedRow = read1<i64>();
    std::vector<uint4> packed = read_rows(rows, packedRow);
    i64 rawRow = read1<i64>();
    std::vector<uint4> raw = read_rows(rows, rawRow);
    std::vector<float> x((size_t)nTokens * K);
    read_exact(x.data(), x.size() * 4);

    // quantize_q8's arithmetic for each 32-block, serially (as ../Cuda/HostEmulation/harness.cpp does: the
    // quantize kernel's own emulation is tested there; here it would cost an OS thread per value).
    i64 blocks = (i64)nTokens * K / 32;
    std::vector<uint4> qxStore((size_t)nTokens * K / 16);
    i8* qx = (i8*)qxStore.data();
    std::vector<float> dx((size_t)blocks), sx((size_t)blocks);
    for (i64 b = 0; b < blocks; b++)
    {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = std::fmax(amax, std::fabs(x[(size_t)(b * 32 + i)]));
        float d = amax / 127.0f;
        int sum = 0;
        for (int i = 0; i < 32; i++)
        {
            int q = amax == 0.0f ? 0 : __float2int_rn(x[(size_t)(b * 32 + i)] / d);
            qx[b * 32 + i] = (i8)q;
            sum += q;
        }
        dx[(size_t)b] = d;
        sx[(size_t)b] = d * (float)sum;
        std::fwrite(&d, 4, 1, stdout);
        std::fwrite(qx + b * 32, 1, 32, stdout);
    }

    if (op == "matvec_norm")
    {
        std::vector<float> w((size_t)rows), residual((size_t)rows);
        for (int i = 0; i < rows; i++)
        {
            w[(size_t)i] = 1.0f + 0.01f * (float)(i % 13);
            residual[(size_t)i] = (float)((i * 37 % 101) - 50) * 0.0625f;
        }
        for (int i = 0; i < 32; i++) residual[(size_t)i] = 0.0f; // with the product, a block of small values
        int rowsPerBlock = MVP_WARPS / wpr, nb = rows / 32;
        for (int fused = 1; fused >= 0; fused--)
        {
            std::vector<float> x = residual, norm((size_t)rows, NAN), ndx((size_t)nb), nsx((size_t)nb);
            std::vector<uint4> nqStore((size_t)rows / 16);
            i8* nq = (i8*)nqStore.data();
            int counter = 0;
            if (fused)
                simt_launch((unsigned)((rows + rowsPerBlock - 1) / rowsPerBlock), 1, MVP_WARPS * 32, [&] {
                    t->p1((const u8*)packed.data(), packedRow, K, rows, qx, dx.data(), sx.data(), x.data(), 1, wpr, 2, &counter, w.data(),
                          norm.data(), nq, ndx.data(), nsx.data(), 1e-5f);
                });
            else
            {
                simt_launch((unsigned)((rows + rowsPerBlock - 1) / rowsPerBlock), 1, MVP_WARPS * 32, [&] {
                    t->p1((const u8*)packed.data(), packedRow, K, rows, qx, dx.data(), sx.data(), x.data(), 1, wpr, 1, nullptr, nullptr,
                          nullptr, nullptr, nullptr, nullptr, 0.0f);
                });
                simt_launch(1, 1, 256, [&] {
                    add_rmsnorm_q8_f32(x.data(), nullptr, w.data(), norm.data(), nq, ndx.data(), nsx.data(), rows, 1e-5f, 0, 1);
                });
            }
            std::fwrite(x.data(), 4, x.size(), stdout);
            std::fwrite(norm.data(), 4, norm.size(), stdout);
            std::fwrite(nq, 1, (size_t)rows, stdout);
            std::fwrite(ndx.data(), 4, ndx.size(), stdout);
            std::fwrite(nsx.data(), 4, nsx.size(), stdout);
            std::fwrite(&counter, 4, 1, stdout);
        }
        return 0;
    }

    std::vector<float> outPacked((size_t)nTokens * rows, NAN), outRaw((size_t)nTokens * rows, NAN);
    PackedFn pf = nt == 1 ? t->p1 : t->p8;
    int rowsPerBlock = MVP_WARPS / wpr;
    simt_launch((unsigned)((rows + rowsPerBlock - 1) / rowsPerBlock), 1, MVP_WARPS * 32, [&] {
        pf((const u8*)packed.data(), packedRow, K, rows, qx, dx.data(), sx.data(), outPacked.data(), nTokens, wpr, 0, nullptr, nullptr, nullptr,
           nullptr, nullptr, nullptr, 0.0f);
    });
    std::vector<float> residual((size_t)nTokens * rows);
    for (size_t i = 0; i < residual.size(); i++) residual[i] = (float)((int)(i * 37 % 101) - 50) * 0.0625f + 1e-3f * (float)i;
    std::vector<float> outResidual = residual;
    simt_launch((unsigned)((rows + rowsPerBlock - 1) / rowsPerBlock), 1, MVP_WARPS * 32, [&] {
        pf((const u8*)packed.data(), packedRow, K, rows, qx, dx.data(), sx.data(), outResidual.data(), nTokens, wpr, 1, nullptr, nullptr,
           nullptr, nullptr, nullptr, nullptr, 0.0f);
    });
    MatVecFn mf = nt == 1 ? t->m1 : t->m8;
    simt_launch((unsigned)((rows + 3) / 4), 1, 128, [&] {
        mf((const u8*)raw.data(), rawRow, K, rows, qx, dx.data(), sx.data(), outRaw.data(), nTokens);
    });
    std::fwrite(outPacked.data(), 4, outPacked.size(), stdout);
    std::fwrite(outRaw.data(), 4, outRaw.size(), stdout);
    std::fwrite(residual.data(), 4, residual.size(), stdout);
    std::fwrite(outResidual.data(), 4, outResidual.size(), stdout);
    return 0;
}
