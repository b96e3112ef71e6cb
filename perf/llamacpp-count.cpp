// The llama.cpp side of perf/arm64-vs-llamacpp.sh: the same work as `edgellm logits -m MODEL --tokens 1,10,11,...
// -t 1 -c 64 [-b 1]`, through llama.h, so that both engines are counted on the same steps under qemu.
//   llamacpp-count MODEL N BATCH
// Loads MODEL (mmap, CPU), makes a context of 64 positions on one thread, then feeds the tokens 1, 10, 11, ..., 8 + N
// from position 0, BATCH tokens per llama_decode call (BATCH = N: one prefill batch; 1: decode token by token), with
// logits requested for every token (as `edgellm logits` computes them all). Prints the argmax of the last token.
// Written for this comparison against the public llama.h API of llama.cpp c392e50; build it with that tree's include
// dirs and link the static libllama.a/libggml*.a of an aarch64 build (perf/arm64-vs-llamacpp.sh does).
#include "llama.h"

#include <cstdio>
#include <cstdlib>

int main(int argc, char ** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s MODEL N BATCH\n", argv[0]);
        return 2;
    }
    const int n = std::atoi(argv[2]);
    const int batch = std::atoi(argv[3]);
    if (n < 1 || n > 64 || batch < 1 || batch > n) {
        std::fprintf(stderr, "N must be 1..64 and BATCH 1..N\n");
        return 2;
    }
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        std::fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 64;
    cp.n_ubatch = 64;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        std::fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    llama_batch b = llama_batch_init(batch, 0, 1);
    for (int done = 0; done < n; done += batch) {
        const int nb = n - done < batch ? n - done : batch;
        b.n_tokens = nb;
        for (int i = 0; i < nb; i++) {
            const int pos = done + i;
            b.token[i] = pos == 0 ? 1 : 9 + pos;
            b.pos[i] = pos;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = 1;
        }
        if (llama_decode(ctx, b) != 0) {
            std::fprintf(stderr, "llama_decode failed at position %d\n", done);
            return 1;
        }
    }
    const float * last = llama_get_logits_ith(ctx, -1);
    int best = 0;
    for (int i = 1; i < n_vocab; i++) {
        if (last[i] > last[best]) best = i;
    }
    std::printf("%d\n", best);
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
