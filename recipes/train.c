/* train.c: the trainer loop and the causal-LM recipe (`tapegrad pretrain --recipe clm`).
 *
 * One optimizer step:
 *   for each of grad_accum micro-batches:
 *     reset the step arena; take batch number (step*grad_accum + micro) from
 *     the loader; forward; loss = SUM of token losses; backward (adds into the
 *     flat gradient block)
 *   scale the gradients by 1/(tokens in all micro-batches): the mean over every
 *     counted token, however the tokens fell into micro-batches
 *   clip to the global norm; lr from the schedule; AdamW; zero the gradients
 *
 * Everything random is a pure function of the step: the loader's windows come
 * from (seed, batch index) and dropout's masks from (seed ^ step, counter), so
 * a run resumed from a checkpoint at step N takes exactly the steps an
 * unbroken run takes, bit for bit.
 */
#include "recipes.h"

#include "ckpt.h"
#include "data.h"
#include "generate.h"
#include "models.h"
#include "optim.h"
#include "pretrain.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static volatile sig_atomic_t stop_requested;
static void on_sigint(int sig) { (void)sig; stop_requested = 1; }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---------------------------------------------------------------- the model behind a recipe */

/* The loss of a causal LM on inputs [B,T] against targets [B,T] (already
 * shifted by the loader): sum or mean over the tokens. */
static ag_tensor *clm_loss(ag_ctx *ctx, const recipe_model *m, const ag_ints *in, const ag_ints *tgt,
                           ag_reduction red) {
    /* any registered decoder family: its forward from position 0, then its LM head */
    return ag_cross_entropy(ctx, recipe_decoder_logits(ctx, m, in, NULL, false), tgt, 0.0f, red);
}

/* Mean loss over n_batches fixed held-out batches, in eval mode and no-grad. */
static ag_status evaluate(ag_ctx *ctx, const recipe_model *m, const data_shard *val, int B, int T, int n_batches,
                          uint64_t seed, double *mean_loss) {
    data_loader l;
    ag_status st = data_loader_init(&l, val, B, T, seed ^ 0xe7a1ull);
    if (st != AG_OK) return st;
    int32_t *in = malloc((size_t)B * T * sizeof(int32_t)), *tgt = malloc((size_t)B * T * sizeof(int32_t));
    if (!in || !tgt) { free(in); free(tgt); return ag_fail(AG_ERR_MEMORY, "eval: out of memory"); }
    bool was_training = ctx->training;
    ag_ctx_train(ctx, false);
    double sum = 0;
    for (int b = 0; b < n_batches && st == AG_OK; ++b) {
        data_loader_next(&l, in, tgt);
        ag_ctx_reset(ctx);
        ag_no_grad_begin(ctx);
        ag_ints ii = ag_ints_wrap(in, 2, AG_SHAPE(B, T)), tt = ag_ints_wrap(tgt, 2, AG_SHAPE(B, T));
        ag_tensor *loss = clm_loss(ctx, m, &ii, &tt, AG_REDUCE_MEAN);
        ag_no_grad_end(ctx);
        if (!loss) st = ag_error_status();
        else sum += loss->data[0];
    }
    ag_ctx_reset(ctx);
    ag_ctx_train(ctx, was_training);
    free(in);
    free(tgt);
    *mean_loss = sum / n_batches;
    return st;
}

/* ---------------------------------------------------------------- checkpoints */

static ag_status save(const char *path, const ag_params *ps, optim *opt, const nn_config *cfg, int64_t step,
                      int64_t tokens, uint64_t seed, const recipe_train_opts *o) {
    char loader_pos[128], sched[256];
    snprintf(loader_pos, sizeof loader_pos, "{\"batch\": %lld}", (long long)(step * o->grad_accum));
    snprintf(sched, sizeof sched, "{\"kind\": \"%s\", \"lr\": %.9g, \"min_lr\": %.9g, \"warmup\": %d, \"total\": %d}",
             o->schedule, o->lr, o->min_lr, o->warmup, o->steps);
    ckpt_state st = {
        .config = cfg->text,
        .optim_kind = "adamw",
        .optim_step = optim_step_count(opt),
        .n_hparams = 4,
        .hparam = {{"lr", o->lr}, {"weight_decay", o->weight_decay}, {"beta1", 0.9}, {"beta2", 0.999}},
        .schedule = sched,
        .global_step = step,
        .tokens_seen = tokens,
        .rng_seed = seed,
        .rng_counter = 0,
        .loader_position = loader_pos,
        .loader_position_len = strlen(loader_pos),
        .recipe = "clm",
    };
    st.n_moments = optim_state_count(opt);
    for (int k = 0; k < st.n_moments && k < CKPT_MAX_MOMENTS; ++k) {
        st.moment_name[k] = optim_state_name(opt, k);
        st.moment[k] = optim_state_block(opt, k);
    }
    return ckpt_save(path, ps, &st);
}

/* ---------------------------------------------------------------- the trainer */

ag_status recipe_train_clm(const recipe_train_opts *o) {
    ag_status st;
    recipe_model rm = {0}; /* any decoder family with an LM head */
    ag_params_init(&rm.ps);
    recipe_decoder_info d;
    data_shard train = {0}, val = {0};
    optim *opt = NULL;
    ag_ctx *ctx = NULL;
    FILE *metrics = NULL;
    int32_t *in = NULL, *tgt = NULL;
    char path[1024], ckpt_path[1024];
    int64_t start_step = 0, tokens = 0;

    if (o->steps < 1 || o->batch < 1 || o->seq < 2 || o->grad_accum < 1)
        return ag_fail(AG_ERR_ARG, "pretrain: --steps, --batch and --grad-accum must be >= 1 and --seq >= 2");
    if ((st = recipe_model_declare(&rm, o->config_path, NULL)) || (st = recipe_decoder_info_get(&rm, &d))) goto done;
    if (o->seq > d.n_positions) {
        st = ag_fail(AG_ERR_ARG, "pretrain: --seq %d exceeds n_positions %d of %s", o->seq, d.n_positions, o->config_path);
        goto done;
    }
    snprintf(path, sizeof path, "%s/train.bin", o->data_dir);
    if ((st = data_shard_read(&train, path))) goto done;
    snprintf(path, sizeof path, "%s/val.bin", o->data_dir);
    if ((st = data_shard_read(&val, path))) goto done;
    if (train.vocab_size > d.vocab_size) {
        st = ag_fail(AG_ERR_ARG, "pretrain: the data's vocabulary (%d) is larger than vocab_size %d in %s",
                     train.vocab_size, d.vocab_size, o->config_path);
        goto done;
    }
    if ((st = recipe_model_alloc(&rm, o->seed))) goto done; /* Hugging Face's init for the family */

    optim_config oc = optim_adamw_defaults();
    oc.weight_decay = o->weight_decay;
    if ((st = optim_create(&opt, &rm.ps, &oc))) goto done;
    optim_schedule sched = {.lr = o->lr, .min_lr = o->min_lr, .warmup_steps = o->warmup, .total_steps = o->steps};
    if ((st = optim_schedule_kind_from_name(o->schedule, &sched.kind)) || (st = optim_schedule_check(&sched))) goto done;

    if ((st = ag_make_dirs(o->out_dir)) || (st = recipe_run_tokenizer(o->data_dir, o->out_dir))) goto done;
    snprintf(ckpt_path, sizeof ckpt_path, "%s/ckpt.h5", o->out_dir);
    if (o->resume) {
        ckpt_state cs = {0};
        if ((st = ckpt_load_params(ckpt_path, &rm.ps)) || (st = ckpt_read_state(ckpt_path, &cs))) goto done;
        start_step = cs.global_step;
        tokens = cs.tokens_seen;
        for (int k = 0; k < optim_state_count(opt) && st == AG_OK; ++k)
            st = ckpt_load_moment(ckpt_path, &rm.ps, optim_state_name(opt, k), optim_state_block(opt, k));
        if (st == AG_OK) st = optim_set_step_count(opt, cs.optim_step);
        ckpt_state_free(&cs);
        if (st) goto done;
        printf("resumed from %s at step %lld\n", ckpt_path, (long long)start_step);
    }

    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out_dir);
    metrics = fopen(path, o->resume ? "a" : "w");
    ctx = ag_ctx_create(0);
    in = malloc((size_t)o->batch * o->seq * sizeof(int32_t));
    tgt = malloc((size_t)o->batch * o->seq * sizeof(int32_t));
    if (!metrics) { st = ag_fail(AG_ERR_IO, "pretrain: cannot write %s: %s", path, strerror(errno)); goto done; }
    if (!ctx || !in || !tgt) { st = ag_fail(AG_ERR_MEMORY, "pretrain: out of memory"); goto done; }
    data_loader loader;
    if ((st = data_loader_init(&loader, &train, o->batch, o->seq, o->seed))) goto done;
    ag_ctx_train(ctx, true);

    printf("pretrain clm: %s %d layers, %d wide, %d heads, vocab %d: %lld parameters\n", rm.arch, d.n_layer,
           d.n_head * d.d_head, d.n_head, d.vocab_size, (long long)rm.ps.total);
    printf("data: %lld training tokens, %lld held out; batch %d x %d x %d accumulated; %d steps\n",
           (long long)train.n, (long long)val.n, o->batch, o->seq, o->grad_accum, o->steps);
    if (!o->resume) {
        double l0;
        if ((st = evaluate(ctx, &rm, &val, o->batch, o->seq, o->eval_batches, o->seed, &l0))) goto done;
        printf("step %5d  held-out loss %.4f  (ln vocab = %.4f)\n", 0, l0, log((double)d.vocab_size));
        fprintf(metrics, "{\"step\": 0, \"val_loss\": %.6f, \"val_ppl\": %.4f}\n", l0, exp(l0));
    }

    stop_requested = 0;
    void (*old_handler)(int) = signal(SIGINT, on_sigint);
    const double t_start = now_s();
    double t_last = t_start;
    int64_t tokens_last = tokens;
    int64_t step = start_step;
    for (; step < o->steps; ++step) {
        /* ---- one optimizer step over grad_accum micro-batches */
        double loss_sum = 0;
        int64_t n_tok = 0;
        for (int micro = 0; micro < o->grad_accum; ++micro) {
            loader.batch = (uint64_t)(step * o->grad_accum + micro);
            data_loader_next(&loader, in, tgt);
            ag_ctx_reset(ctx);
            ag_ctx_seed(ctx, o->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(loader.batch + 1)));
            ag_ints ii = ag_ints_wrap(in, 2, AG_SHAPE(o->batch, o->seq));
            ag_ints tt = ag_ints_wrap(tgt, 2, AG_SHAPE(o->batch, o->seq));
            ag_tensor *loss = clm_loss(ctx, &rm, &ii, &tt, AG_REDUCE_SUM);
            if (!loss || (st = ag_backward(ctx, loss, NULL))) { st = ag_error_status(); goto stop; }
            loss_sum += loss->data[0];
            n_tok += (int64_t)o->batch * o->seq;
        }
        ag_ctx_reset(ctx);
        double loss_mean = loss_sum / (double)n_tok, gnorm = 0;
        if (!isfinite(loss_mean)) {
            st = ag_fail(AG_ERR_NUMERIC, "pretrain: the loss is %g at step %lld (hint: lower --lr)", loss_mean,
                         (long long)step);
            goto stop;
        }
        optim_scale_grads(&rm.ps, 1.0f / (float)n_tok);
        if (o->clip > 0 && (st = optim_clip_grad_norm(&rm.ps, o->clip, &gnorm))) goto stop;
        double lr = optim_schedule_lr(&sched, step);
        if ((st = optim_step(opt, lr))) goto stop;
        ag_params_zero_grad(&rm.ps);
        tokens += n_tok;

        /* ---- logging, evaluation, checkpoints */
        bool out_of_time = o->max_seconds > 0 && now_s() - t_start > o->max_seconds;
        bool stop_here = o->stop_at > 0 && step + 1 == o->stop_at;
        bool last = step + 1 == o->steps || stop_requested || out_of_time || stop_here; /* log, evaluate, save */
        if ((step + 1) % o->log_every == 0 || last) {
            double t = now_s();
            double tps = (double)(tokens - tokens_last) / (t - t_last);
            double eta = (double)(o->steps - step - 1) * (double)n_tok / tps;
            printf("step %5lld  loss %.4f  lr %.2e  |g| %.3f  %7.0f tok/s  %5.0fs left\n", (long long)(step + 1),
                   loss_mean, lr, gnorm, tps, eta);
            fprintf(metrics, "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6f, \"tokens\": %lld, "
                             "\"tokens_per_s\": %.1f}\n",
                    (long long)(step + 1), loss_mean, lr, gnorm, (long long)tokens, tps);
            fflush(stdout);
            t_last = t;
            tokens_last = tokens;
        }
        if (o->eval_every > 0 && ((step + 1) % o->eval_every == 0 || last)) {
            double vl;
            if ((st = evaluate(ctx, &rm, &val, o->batch, o->seq, o->eval_batches, o->seed, &vl))) goto stop;
            printf("step %5lld  held-out loss %.4f  perplexity %.3f\n", (long long)(step + 1), vl, exp(vl));
            fprintf(metrics, "{\"step\": %lld, \"val_loss\": %.6f, \"val_ppl\": %.4f}\n", (long long)(step + 1), vl,
                    exp(vl));
        }
        fflush(metrics);
        if (o->save_every > 0 && (step + 1) % o->save_every == 0 && !last &&
            (st = save(ckpt_path, &rm.ps, opt, &rm.cfg, step + 1, tokens, o->seed, o))) goto stop;
        if (last && step + 1 < o->steps) {
            if (stop_requested || stop_here) printf("stopping: saving step %lld\n", (long long)(step + 1));
            else printf("time budget of %.0f s reached: saving step %lld\n", o->max_seconds, (long long)(step + 1));
            step++;
            break;
        }
    }
    st = save(ckpt_path, &rm.ps, opt, &rm.cfg, step, tokens, o->seed, o);
    if (st == AG_OK) printf("saved %s (step %lld)\n", ckpt_path, (long long)step);
stop:
    signal(SIGINT, old_handler);
done:
    if (metrics) fclose(metrics);
    free(in);
    free(tgt);
    ag_ctx_free(ctx);
    optim_free(opt);
    data_shard_free(&train);
    data_shard_free(&val);
    recipe_model_free(&rm);
    return st;
}
