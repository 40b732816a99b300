/* bench.c: `tapegrad bench`, tapegrad's side of bench/run.sh.
 *
 * Times the GPT-2 training step that bench/torch_gpt2.py times in PyTorch:
 * forward, cross-entropy, backward, AdamW, zero grad; dropout off on both
 * sides; the same config, batch, sequence length and threads. Prints one JSON
 * line with the median ms/step, tokens/s and the process's peak resident
 * memory. */
#include "recipes.h"

#include "gpt2.h"
#include "optim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

ag_status recipe_bench_gpt2(const recipe_bench_opts *o, recipe_bench_result *res) {
    nn_gpt2_config cfg = {
        .vocab_size = o->vocab, .n_positions = o->positions, .n_embd = o->embd, .n_layer = o->layers,
        .n_head = o->heads, .n_inner = 4 * o->embd, .layer_norm_epsilon = 1e-5f, .initializer_range = 0.02f,
        .act = NN_ACT_GELU_TANH, .tie_word_embeddings = true, .scale_attn_weights = true,
    };
    if (o->seq > o->positions || o->embd % o->heads)
        return ag_fail(AG_ERR_ARG, "bench: --seq must be <= --positions and --embd divisible by --heads");
    ag_params ps;
    ag_params_init(&ps);
    nn_gpt2 m;
    ag_status st = nn_gpt2_declare(&ps, &m, &cfg, true);
    if (st == AG_OK) st = ag_params_finalize(&ps);
    if (st != AG_OK) { ag_params_free(&ps); nn_gpt2_free(&m); return st; }
    nn_gpt2_init_weights(&m, 0);

    optim_config oc = optim_adamw_defaults();
    oc.weight_decay = 0.01;
    optim *opt = NULL;
    st = optim_create(&opt, &ps, &oc);
    ag_ctx *ctx = ag_ctx_create(0);
    int32_t *ids = malloc((size_t)o->batch * o->seq * sizeof(int32_t));
    double *times = malloc((size_t)(o->steps + o->warmup) * sizeof(double));
    if (st == AG_OK && (!ctx || !ids || !times)) st = ag_fail(AG_ERR_MEMORY, "bench: out of memory");
    for (int64_t i = 0; st == AG_OK && i < (int64_t)o->batch * o->seq; ++i)
        ids[i] = (int32_t)(ag_rng_u64(1, (uint64_t)i) % (uint64_t)o->vocab);
    ag_ints in = ag_ints_wrap(ids, 2, AG_SHAPE(o->batch, o->seq));
    float loss_v = 0;
    for (int s = 0; st == AG_OK && s < o->warmup + o->steps; ++s) {
        double t0 = now_s();
        ag_tensor *loss = nn_gpt2_lm_loss(ctx, &m, &in, NULL, &in, AG_REDUCE_MEAN, NULL);
        if (!loss || ag_backward(ctx, loss, NULL) != AG_OK) { st = ag_error_status(); break; }
        if ((st = optim_step(opt, 1e-4)) != AG_OK) break;
        ag_params_zero_grad(&ps);
        loss_v = loss->data[0];
        ag_ctx_reset(ctx);
        times[s] = now_s() - t0;
    }
    if (st == AG_OK) {
        qsort(times + o->warmup, (size_t)o->steps, sizeof(double), cmp_double);
        double ms = 1000 * times[o->warmup + o->steps / 2];
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        res->ms_per_step = ms;
        res->tokens_per_s = (double)o->batch * o->seq / (ms / 1000);
        res->peak_rss_mb = (double)ru.ru_maxrss / 1024.0;
        res->loss = loss_v;
        res->arena_mb = (double)ag_ctx_arena_peak(ctx) / (1 << 20);
    }
    free(ids);
    free(times);
    ag_ctx_free(ctx);
    optim_free(opt);
    nn_gpt2_free(&m);
    ag_params_free(&ps);
    return st;
}
