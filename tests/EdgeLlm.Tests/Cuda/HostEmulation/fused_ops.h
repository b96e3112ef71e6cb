// kernels/fused.cu in the host emulation: each fused kernel and the unfused kernels it replaces, on the same input;
// the harness writes both results, the fused one first, so the test can require them to be equal bit for bit.
// Included by harness.cpp after the kernel files. Inputs per op (after the NUL-terminated op name):
//   add_rmsnorm_q8: i32 nTokens, dim, residual, quantize, alias (y is dst, as the forward passes them); f32 eps;
//        dim floats w, nTokens * dim floats x, as many y
//        -> per run: nTokens * dim floats x, as many dst; if quantize: nTokens * dim int8 qx, nTokens * dim / 32 floats dx, as many sx
//   rope_store_qkv: i32 nTokens, qHeads, kvHeads, headDim, half, startPos, neox, biased; f32 scale, attnFactor; half
//        doubles invFreq; if biased: qDim floats bq, kvDim bk, kvDim bv; nTokens * (qDim + 2 kvDim) floats of stacked q|k|v
//        -> per run (the unfused one: split, add_bias_f32 of each part when biased, rope_f32 of q and k, store_kv_f16):
//           q, k, v floats, then (startPos + nTokens) * kvDim u16 keys, as many values
//   glu_split: i32 nTokens, ffn, geglu, quantize; nTokens * 2 ffn floats of stacked gate|up
//        -> per run: gate, up floats; if quantize: qx, dx, sx as above
//   attention_flash: i32 nHeads, headDim, kvDim, startPos, window; f32 scale, softcap; i32 context, chunkSize, quantize;
//        (startPos + 1) * kvDim fp16 keys, as many values, nHeads * headDim floats q (one token)
//        -> per run: nHeads * headDim floats; if quantize: as many int8 qx, then dx and sx per 32-block; then the
//           kvHeads counters (the fused run: attention_flash_f16 launched twice on the same counters, as two layers
//           or two graph replays do, its second results written; the unfused run: split + combine [+ quantize], zeros)
//   split_rows: i32 nTokens, w0, w1, w2; nTokens * (w0 + w1 + w2) floats -> d0, d1, d2 floats (fused run only)
#pragma once

static void put(const void* p, size_t bytes) { std::fwrite(p, 1, bytes, stdout); }
template <typename T> static void put_vec(const std::vector<T>& v) { put(v.data(), v.size() * sizeof(T)); }

static void elementwise_launch(i64 total, const std::function<void()>& kernel)
{
    // One emulated block of 256 threads per 256 elements: the fused kernels quantize per warp.
    simt_launch((unsigned)((total + 255) / 256), 1, 256, kernel);
}

static void split_serial(const std::vector<float>& src, std::vector<float>& d0, std::vector<float>& d1, std::vector<float>& d2,
                         int w0, int w1, int w2, int n)
{
    float* p2 = w2 ? d2.data() : nullptr;
    launch((i64)n * (w0 + w1 + w2), [&] { split_rows_f32(src.data(), d0.data(), d1.data(), p2, w0, w1, w2, n); });
}

static bool run_fused_op(const std::string& op)
{
    if (op == "add_rmsnorm_q8")
    {
        int n = read1<int>(), dim = read1<int>(), residual = read1<int>(), quantize = read1<int>(), alias = read1<int>();
        float eps = read1<float>();
        std::vector<float> w = read_floats(dim), x0 = read_floats((i64)n * dim), y0 = read_floats((i64)n * dim);
        i64 count = (i64)n * dim, blocks = count / 32;
        for (int fused = 1; fused >= 0; fused--)
        {
            std::vector<float> x = x0, y = y0, dst(alias ? 0 : (size_t)count, 0.0f);
            float* d = alias ? y.data() : dst.data();
            std::vector<u32> qxStore((size_t)(count + 3) / 4);
            std::vector<float> dx((size_t)blocks), sx((size_t)blocks);
            i8* qx = (i8*)qxStore.data();
            if (fused)
                simt_launch((unsigned)n, 1, 256, [&] {
                    add_rmsnorm_q8_f32(x.data(), y.data(), w.data(), d, qx, dx.data(), sx.data(), dim, eps, residual, quantize);
                });
            else
            {
                if (residual) launch(count, [&] { add_f32(x.data(), y.data(), count); });
                simt_launch((unsigned)n, 1, 256, [&] { rmsnorm_f32(x.data(), w.data(), d, dim, eps); });
                if (quantize) simt_launch((unsigned)((blocks + 7) / 8), 1, 256, [&] { quantize_q8(d, qx, dx.data(), sx.data(), blocks); });
            }
            put_vec(x);
            put(d, (size_t)count * 4);
            if (quantize) { put(qx, (size_t)count); put_vec(dx); put_vec(sx); }
        }
        return true;
    }
    if (op == "rope_store_qkv")
    {
        int n = read1<int>(), qHeads = read1<int>(), kvHeads = read1<int>(), headDim = read1<int>(), half = read1<int>(),
            start = read1<int>(), neox = read1<int>(), biased = read1<int>();
        float scale = read1<float>(), attnFactor = read1<float>();
        std::vector<double> inv((size_t)half);
        read_exact(inv.data(), (size_t)half * 8);
        int qDim = qHeads * headDim, kvDim = kvHeads * headDim, width = qDim + 2 * kvDim;
        std::vector<float> bq, bk, bv;
        if (biased) { bq = read_floats(qDim); bk = read_floats(kvDim); bv = read_floats(kvDim); }
        const float* pq = biased ? bq.data() : nullptr;
        const float* pk = biased ? bk.data() : nullptr;
        const float* pv = biased ? bv.data() : nullptr;
        std::vector<float> qkv = read_floats((i64)n * width);
        int step[1] = {start};
        size_t cache = (size_t)(start + n) * kvDim;
        for (int fused = 1; fused >= 0; fused--)
        {
            std::vector<float> q((size_t)n * qDim), k((size_t)n * kvDim), v((size_t)n * kvDim);
            std::vector<u16> kc(cache, 0xFFFF), vc(cache, 0xFFFF); // rows before startPos must stay untouched
            if (fused)
                elementwise_launch((i64)n * width, [&] {
                    rope_store_qkv_f32(qkv.data(), q.data(), k.data(), v.data(), kc.data(), vc.data(), step, 0, n, qDim, kvDim, headDim,
                                       half, inv.data(), scale, neox, attnFactor, pq, pk, pv);
                });
            else
            {
                split_serial(qkv, q, k, v, qDim, kvDim, kvDim, n);
                if (biased)
                {
                    launch((i64)n * qDim, [&] { add_bias_f32(q.data(), pq, qDim, (i64)n * qDim); });
                    launch((i64)n * kvDim, [&] { add_bias_f32(k.data(), pk, kvDim, (i64)n * kvDim); });
                    launch((i64)n * kvDim, [&] { add_bias_f32(v.data(), pv, kvDim, (i64)n * kvDim); });
                }
                launch((i64)n * qHeads * half, [&] { rope_f32(q.data(), step, 0, n, qHeads, headDim, half, inv.data(), scale, neox, attnFactor); });
                launch((i64)n * kvHeads * half, [&] { rope_f32(k.data(), step, 0, n, kvHeads, headDim, half, inv.data(), scale, neox, attnFactor); });
                launch((i64)n * kvDim, [&] { store_kv_f16(k.data(), v.data(), kc.data(), vc.data(), step, 0, n, kvDim); });
            }
            put_vec(q); put_vec(k); put_vec(v); put_vec(kc); put_vec(vc);
        }
        return true;
    }
    if (op == "glu_split")
    {
        int n = read1<int>(), ffn = read1<int>(), geglu = read1<int>(), quantize = read1<int>();
        std::vector<float> gu = read_floats((i64)n * 2 * ffn);
        i64 count = (i64)n * ffn, blocks = count / 32;
        for (int fused = 1; fused >= 0; fused--)
        {
            std::vector<float> gate((size_t)count), up((size_t)count), none;
            std::vector<u32> qxStore((size_t)(count + 3) / 4);
            std::vector<float> dx((size_t)blocks), sx((size_t)blocks);
            i8* qx = (i8*)qxStore.data();
            if (fused)
                elementwise_launch(count, [&] { glu_split_q8_f32(gu.data(), gate.data(), up.data(), qx, dx.data(), sx.data(), ffn, n, geglu, quantize); });
            else
            {
                split_serial(gu, gate, up, none, ffn, ffn, 0, n);
                launch(count, [&] { (geglu ? geglu_f32 : swiglu_f32)(gate.data(), up.data(), count); });
                if (quantize) simt_launch((unsigned)((blocks + 7) / 8), 1, 256, [&] { quantize_q8(gate.data(), qx, dx.data(), sx.data(), blocks); });
            }
            put_vec(gate); put_vec(up);
            if (quantize) { put(qx, (size_t)count); put_vec(dx); put_vec(sx); }
        }
        return true;
    }
    if (op == "attention_flash")
    {
        int nHeads = read1<int>(), headDim = read1<int>(), kvDim = read1<int>(), start = read1<int>(), window = read1<int>();
        float scale = read1<float>(), softcap = read1<float>();
        int context = read1<int>(), chunkSize = read1<int>(), quantize = read1<int>();
        size_t cache = (size_t)context * kvDim;
        std::vector<u16> kc(cache, 0x7E00), vc(cache, 0x7E00); // NaN past the position: a chunk read too far shows
        read_exact(kc.data(), (size_t)(start + 1) * kvDim * 2);
        read_exact(vc.data(), (size_t)(start + 1) * kvDim * 2);
        std::vector<float> q = read_floats((i64)nHeads * headDim);
        int chunks = (context + chunkSize - 1) / chunkSize;
        int step[1] = {start};
        int kvHeads = kvDim / headDim, group = nHeads / kvHeads;
        i64 count = (i64)nHeads * headDim, blocks = count / 32;
        for (int fused = 1; fused >= 0; fused--)
        {
            std::vector<float> part((size_t)nHeads * chunks * (headDim + 2), NAN);
            std::vector<float> out((size_t)count, 0.0f), dx((size_t)blocks), sx((size_t)blocks);
            std::vector<u32> qxStore((size_t)(count + 3) / 4);
            std::vector<int> counters((size_t)kvHeads, 0);
            i8* qx = (i8*)qxStore.data();
            if (fused)
                for (int run = 0; run < 2; run++)
                {
                    std::fill(out.begin(), out.end(), 0.0f);
                    simt_launch((unsigned)kvHeads, (unsigned)chunks, 128, [&] {
                        attention_flash_f16(q.data(), kc.data(), vc.data(), part.data(), out.data(), qx, dx.data(), sx.data(), counters.data(),
                                            step, 0, nHeads, headDim, kvDim, group, scale, softcap, window, chunkSize, chunks, quantize);
                    });
                }
            else
            {
                simt_launch((unsigned)kvHeads, (unsigned)chunks, 128, [&] {
                    attention_split_f16(q.data(), kc.data(), vc.data(), part.data(), step, 0, nHeads, headDim, kvDim, group, scale, softcap,
                                        window, chunkSize, chunks);
                });
                simt_launch((unsigned)nHeads, 1, 128, [&] { attention_combine_f32(part.data(), out.data(), step, 0, nHeads, headDim, window, chunkSize, chunks); });
                if (quantize) simt_launch((unsigned)((blocks + 7) / 8), 1, 256, [&] { quantize_q8(out.data(), qx, dx.data(), sx.data(), blocks); });
            }
            put_vec(out);
            if (quantize) { put(qx, (size_t)count); put_vec(dx); put_vec(sx); }
            put_vec(counters);
        }
        return true;
    }
    if (op == "split_rows")
    {
        int n = read1<int>(), w0 = read1<int>(), w1 = read1<int>(), w2 = read1<int>();
        std::vector<float> src = read_floats((i64)n * (w0 + w1 + w2));
        std::vector<float> d0((size_t)n * w0), d1((size_t)n * w1), d2((size_t)n * w2);
        split_serial(src, d0, d1, d2, w0, w1, w2, n);
        put_vec(d0); put_vec(d1); put_vec(d2);
        return true;
    }
    return false;
}
