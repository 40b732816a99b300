/* distill_train.c: the trainer behind `tapegrad distill` (see distill.h).
 *
 * One step: a batch (MLM: recipe_collate_mlm over the training corpus, batch
 * number = step, masked as distiller.py does: token_probs = max(count, 1)^-0.7
 * from the training split's counts, ceil(0.15 * tokens) positions per batch;
 * decoders: B random windows of T+0 tokens), the distillation
 * loss (teacher in no-grad, eval mode), backward into the student only, clip,
 * AdamW at distiller.py's schedule (linear warmup, then linear decay to 0).
 * Held-out loss: the same loss on eval_batches fixed batches of the val split
 * (batch numbers 0.., a fixed seed), in eval mode, so every evaluation sees
 * exactly the same masked positions and the curve is comparable step to step.
 */
#include "distill.h"

#include "ckpt.h"
#include "collate.h"
#include "data.h"
#include "optim.h"
#include "tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A split's shards concatenated into one corpus the collators read. */
typedef struct split_corpus {
    recipe_corpus c;
    int32_t *tokens;
    int64_t *doc, *sent;
    int vocab;
} split_corpus;

static void split_free(split_corpus *s) {
    free(s->tokens), free(s->doc), free(s->sent);
    memset(s, 0, sizeof *s);
}

/* Reads every shard of `split`; sentence starts are the shards' sentence
 * starts merged with the document starts, so that no sentence crosses a
 * document boundary (recipe_corpus_check's rule). */
static ag_status split_read(split_corpus *out, const char *dir, const char *split) {
    memset(out, 0, sizeof *out);
    char **files = NULL;
    int n_files = 0;
    int32_t vocab = 0;
    ag_status st = data_manifest_split(dir, split, &files, &n_files, &vocab, NULL, NULL);
    if (st) return st;
    int64_t n_tok = 0, n_doc = 0, n_sent = 0;
    for (int f = 0; f < n_files && st == AG_OK; ++f) {
        data_doc_shard s;
        if ((st = data_doc_shard_read(&s, files[f]))) break;
        int32_t *t = realloc(out->tokens, sizeof(int32_t) * (size_t)(n_tok + s.n));
        int64_t *d = realloc(out->doc, sizeof(int64_t) * (size_t)(n_doc + s.n_docs + 1));
        int64_t *se = realloc(out->sent, sizeof(int64_t) * (size_t)(n_sent + s.n_sents + s.n_docs + 1));
        if (t) out->tokens = t;
        if (d) out->doc = d;
        if (se) out->sent = se;
        if (!t || !d || !se) { data_doc_shard_free(&s); st = ag_fail(AG_ERR_MEMORY, "distill: %s does not fit", dir); break; }
        memcpy(out->tokens + n_tok, s.tokens, sizeof(int32_t) * (size_t)s.n);
        int64_t i = 0, j = 0; /* merge the two increasing lists of starts */
        while (i < s.n_docs || j < s.n_sents) {
            int64_t a = i < s.n_docs ? s.doc_start[i] : INT64_MAX, b = j < s.n_sents ? s.sent_start[j] : INT64_MAX;
            int64_t v = a < b ? a : b;
            if (a == v) out->doc[n_doc++] = n_tok + v, ++i;
            if (b == v) ++j;
            if (n_sent == 0 || out->sent[n_sent - 1] != n_tok + v) out->sent[n_sent++] = n_tok + v;
        }
        n_tok += s.n;
        data_doc_shard_free(&s);
    }
    for (int f = 0; f < n_files; ++f) free(files[f]);
    free(files);
    if (st == AG_OK && (n_tok == 0 || n_doc == 0 || out->doc[0] != 0))
        st = ag_fail(AG_ERR_ARG, "distill: the %s split of %s has no documents", split, dir);
    if (st) { split_free(out); return st; }
    out->doc[n_doc] = n_tok;
    out->sent[n_sent] = n_tok;
    out->vocab = vocab;
    out->c = (recipe_corpus){.tokens = out->tokens, .n_tokens = n_tok, .doc_start = out->doc, .n_docs = n_doc,
                             .sent_start = out->sent, .n_sents = n_sent};
    return AG_OK;
}

/* A decoder's batch: B windows of T tokens at random offsets drawn from
 * (seed, index), attention all 1. */
static ag_status windows(recipe_batch *b, const recipe_corpus *c, int B, int T, uint64_t seed, uint64_t index) {
    memset(b, 0, sizeof *b);
    if (c->n_tokens < T) return ag_fail(AG_ERR_ARG, "distill: the corpus has %lld tokens, fewer than --seq %d",
                                        (long long)c->n_tokens, T);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)B * T), *mask = malloc(sizeof(int32_t) * (size_t)B * T);
    if (!ids || !mask) { free(ids), free(mask); return ag_fail(AG_ERR_MEMORY, "distill: out of memory"); }
    for (int i = 0; i < B; ++i) {
        recipe_rng r = recipe_rng_example(seed, index, i);
        int64_t o = recipe_rng_int(&r, 0, c->n_tokens - T);
        memcpy(ids + (size_t)i * T, c->tokens + o, sizeof(int32_t) * (size_t)T);
        for (int t = 0; t < T; ++t) mask[(size_t)i * T + t] = 1;
    }
    b->n = 2;
    snprintf(b->name[0], sizeof b->name[0], "input_ids");
    snprintf(b->name[1], sizeof b->name[1], "attention_mask");
    b->field[0] = ag_ints_wrap(ids, 2, AG_SHAPE(B, T));
    b->field[1] = ag_ints_wrap(mask, 2, AG_SHAPE(B, T));
    return AG_OK;
}

typedef struct batcher {
    bool decoder;
    recipe_collate_config cfg;
    int B, T;
} batcher;

static ag_status next_batch(const batcher *bt, recipe_batch *b, const recipe_corpus *c, uint64_t seed, uint64_t index) {
    return bt->decoder ? windows(b, c, bt->B, bt->T, seed, index)
                       : recipe_collate_mlm(b, c, &bt->cfg, bt->B, bt->T, seed, index);
}

/* Mean loss and mean parts over n fixed held-out batches, eval mode, no grad. */
static ag_status evaluate(ag_ctx *ctx, const recipe_model *s, const recipe_model *t, const batcher *bt,
                          const recipe_corpus *val, const recipe_distill_weights *w, int n, recipe_distill_parts *mean) {
    memset(mean, 0, sizeof *mean);
    const bool was = ctx->training;
    ag_ctx_train(ctx, false);
    ag_status st = AG_OK;
    for (int i = 0; i < n && st == AG_OK; ++i) {
        recipe_batch b;
        if ((st = next_batch(bt, &b, val, 0xe7a1ull, (uint64_t)i))) break;
        ag_ctx_reset(ctx);
        ag_no_grad_begin(ctx);
        recipe_distill_parts p;
        if (!recipe_distill_loss(ctx, s, t, &b, w, &p)) st = ag_error_status();
        ag_no_grad_end(ctx);
        recipe_batch_free(&b);
        mean->total += p.total / n, mean->ce += p.ce / n, mean->mlm += p.mlm / n, mean->clm += p.clm / n,
            mean->cos += p.cos / n;
    }
    ag_ctx_reset(ctx);
    ag_ctx_train(ctx, was);
    return st;
}

static ag_status load_teacher(recipe_model *t, const char *path) {
    ckpt_state cs = {0};
    ag_status st = ckpt_read_state(path, &cs);
    if (st) return st;
    if (!cs.config || !cs.config[0]) st = ag_fail(AG_ERR_ARG, "distill: teacher %s holds no config", path);
    if (!st) st = recipe_model_declare_text(t, cs.config, path, NULL);
    ckpt_state_free(&cs);
    if (!st) st = recipe_model_alloc(t, 0);
    if (!st) st = ckpt_load_params(path, &t->ps);
    return st;
}

ag_status recipe_distill_train(const recipe_distill_opts *o) {
    ag_status st;
    recipe_model s = {0}, t = {0};
    ag_params_init(&s.ps);
    ag_params_init(&t.ps);
    split_corpus train = {0}, val = {0};
    data_tokenizer tok = {0};
    bool have_tok = false;
    optim *opt = NULL;
    ag_ctx *ctx = NULL;
    FILE *metrics = NULL;
    char path[1024];
    batcher bt = {.B = o->batch, .T = o->seq};
    int64_t *counts = NULL; /* [train.vocab] token counts of the training split (smoothed masking) */

    if (o->steps < 1 || o->batch < 1 || o->seq < 3 || o->log_every < 1 || o->eval_batches < 1)
        return ag_fail(AG_ERR_ARG, "distill: --steps, --batch, --log-every, --eval-batches must be >= 1, --seq >= 3");
    if ((st = recipe_model_declare(&s, o->student_config, NULL)) || (st = recipe_model_alloc(&s, o->seed))) goto done;
    bt.decoder = s.family == RECIPE_FAMILY_GPT2;
    if (o->teacher) {
        if ((st = load_teacher(&t, o->teacher))) goto done;
        if (o->init_from_teacher) {
            int n = 0;
            if ((st = recipe_distill_init_student(&s, &t, NULL, &n))) goto done;
            printf("student initialised from the teacher: %d tensors copied\n", n);
        }
    }
    if ((st = split_read(&train, o->data_dir, "train")) || (st = split_read(&val, o->data_dir, "val"))) goto done;
    recipe_collate_defaults(&bt.cfg, train.vocab);
    if (!bt.decoder) { /* BERT's special tokens, from the corpus's tokenizer */
        if (!o->tokenizer) { st = ag_fail(AG_ERR_ARG, "distill: an encoder needs --tokenizer (for [CLS], [SEP], [MASK], [PAD])"); goto done; }
        if ((st = data_tokenizer_load(&tok, o->tokenizer))) goto done;
        have_tok = true;
        bt.cfg.pad_id = data_tokenizer_id(&tok, "[PAD]");
        bt.cfg.cls_id = data_tokenizer_id(&tok, "[CLS]");
        bt.cfg.sep_id = data_tokenizer_id(&tok, "[SEP]");
        bt.cfg.mask_id = data_tokenizer_id(&tok, "[MASK]");
        static int32_t unk;
        unk = data_tokenizer_id(&tok, "[UNK]");
        if (unk >= 0) bt.cfg.special_ids = &unk, bt.cfg.n_special = 1;
        if (bt.cfg.pad_id < 0 || bt.cfg.cls_id < 0 || bt.cfg.sep_id < 0 || bt.cfg.mask_id < 0) {
            st = ag_fail(AG_ERR_ARG, "distill: tokenizer %s lacks one of [PAD], [CLS], [SEP], [MASK]", o->tokenizer);
            goto done;
        }
        if ((st = recipe_corpus_check(&train.c, &bt.cfg)) || (st = recipe_corpus_check(&val.c, &bt.cfg))) goto done;
        if (!o->uniform_masking) { /* train.py: token_probs from the counts over the training data */
            if (!(counts = malloc(sizeof *counts * (size_t)train.vocab))) {
                st = ag_fail(AG_ERR_MEMORY, "distill: out of memory for %d token counts", train.vocab);
                goto done;
            }
            if ((st = recipe_token_counts(counts, &train.c, train.vocab))) goto done;
            bt.cfg.masking = RECIPE_MASK_SMOOTHED;
            bt.cfg.token_counts = counts;
            bt.cfg.mlm_smoothing = o->mlm_smoothing;
        }
    }

    optim_config oc = optim_adamw_defaults();
    oc.weight_decay = o->weight_decay;
    oc.eps = 1e-6; /* distiller.py's adam_epsilon */
    if ((st = optim_create(&opt, &s.ps, &oc))) goto done;
    optim_schedule sched = {.kind = OPTIM_SCHED_LINEAR, .lr = o->lr, .min_lr = 0, .warmup_steps = o->warmup,
                            .total_steps = o->steps};
    if ((st = optim_schedule_check(&sched))) goto done;
    if ((st = ag_make_dirs(o->out_dir))) goto done;
    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out_dir);
    if (!(metrics = fopen(path, "w"))) { st = ag_fail(AG_ERR_IO, "distill: cannot write %s: %s", path, strerror(errno)); goto done; }
    if (!(ctx = ag_ctx_create(0))) { st = ag_fail(AG_ERR_MEMORY, "distill: out of memory"); goto done; }
    const recipe_model *teacher = o->teacher ? &t : NULL;

    printf("distill: student %s, %lld parameters; teacher %s%s%lld parameters\n", s.arch, (long long)s.ps.total,
           teacher ? t.arch : "none", teacher ? ", " : " (the student's own LM loss alone), ",
           (long long)(teacher ? t.ps.total : 0));
    const double a_lm = bt.decoder ? o->w.alpha_clm : o->w.alpha_mlm;
    if (teacher)
        printf("loss = %g*KL(T=%g) + %g*%s + %g*cos", (double)o->w.alpha_ce, (double)o->w.temperature, a_lm,
               bt.decoder ? "CLM" : "MLM", (double)o->w.alpha_cos);
    else
        printf("loss = %g*%s (no teacher)", a_lm, bt.decoder ? "CLM" : "MLM");
    printf("; data: %lld training tokens, %lld held out", (long long)train.c.n_tokens, (long long)val.c.n_tokens);
    if (!bt.decoder)
        printf("; masking: %s", counts ? "smoothed (ceil(0.15 n) per batch, weights count^-smoothing)" : "uniform 15%");
    printf("\n");
    recipe_distill_parts ev;
    if ((st = evaluate(ctx, &s, teacher, &bt, &val.c, &o->w, o->eval_batches, &ev))) goto done;
    printf("step %5d  held-out loss %.4f  (ce %.4f %s %.4f cos %.4f)\n", 0, ev.total, ev.ce, bt.decoder ? "clm" : "mlm",
           bt.decoder ? ev.clm : ev.mlm, ev.cos);
    fprintf(metrics, "{\"step\": 0, \"val_loss\": %.6f, \"val_ce\": %.6f, \"val_lm\": %.6f, \"val_cos\": %.6f}\n", ev.total,
            ev.ce, bt.decoder ? ev.clm : ev.mlm, ev.cos);

    ag_ctx_train(ctx, true);
    const double t0 = now_s();
    int step = 0;
    for (; step < o->steps; ++step) {
        recipe_batch b;
        if ((st = next_batch(&bt, &b, &train.c, o->seed, (uint64_t)step))) goto done;
        ag_ctx_reset(ctx);
        ag_ctx_seed(ctx, o->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(step + 1)));
        recipe_distill_parts p;
        ag_tensor *loss = recipe_distill_loss(ctx, &s, teacher, &b, &o->w, &p);
        recipe_batch_free(&b);
        if (!loss || (st = ag_backward(ctx, loss, NULL))) { st = ag_error_status(); goto done; }
        if (!isfinite(p.total)) {
            st = ag_fail(AG_ERR_NUMERIC, "distill: the loss is %g at step %d (hint: lower --lr)", p.total, step);
            goto done;
        }
        double gnorm = 0, lr = optim_schedule_lr(&sched, step);
        if (o->clip > 0 && (st = optim_clip_grad_norm(&s.ps, o->clip, &gnorm))) goto done;
        if ((st = optim_step(opt, lr))) goto done;
        ag_params_zero_grad(&s.ps);
        const bool out_of_time = o->max_seconds > 0 && now_s() - t0 > o->max_seconds;
        const bool last = step + 1 == o->steps || out_of_time;
        if ((step + 1) % o->log_every == 0 || last) {
            printf("step %5d  loss %.4f  (ce %.4f %s %.4f cos %.4f)  lr %.2e  |g| %.3f  %.0fs\n", step + 1, p.total, p.ce,
                   bt.decoder ? "clm" : "mlm", bt.decoder ? p.clm : p.mlm, p.cos, lr, gnorm, now_s() - t0);
            fprintf(metrics, "{\"step\": %d, \"loss\": %.6f, \"ce\": %.6f, \"lm\": %.6f, \"cos\": %.6f, \"lr\": %.6g, "
                             "\"grad_norm\": %.6f}\n", step + 1, p.total, p.ce, bt.decoder ? p.clm : p.mlm, p.cos, lr, gnorm);
            fflush(stdout);
        }
        if ((o->eval_every > 0 && (step + 1) % o->eval_every == 0) || last) {
            if ((st = evaluate(ctx, &s, teacher, &bt, &val.c, &o->w, o->eval_batches, &ev))) goto done;
            printf("step %5d  held-out loss %.4f  (ce %.4f %s %.4f cos %.4f)\n", step + 1, ev.total, ev.ce,
                   bt.decoder ? "clm" : "mlm", bt.decoder ? ev.clm : ev.mlm, ev.cos);
            fprintf(metrics, "{\"step\": %d, \"val_loss\": %.6f, \"val_ce\": %.6f, \"val_lm\": %.6f, \"val_cos\": %.6f}\n",
                    step + 1, ev.total, ev.ce, bt.decoder ? ev.clm : ev.mlm, ev.cos);
        }
        fflush(metrics);
        if (last && out_of_time) {
            printf("time budget of %.0f s reached at step %d\n", o->max_seconds, step + 1);
            ++step;
            break;
        }
    }
    snprintf(path, sizeof path, "%s/ckpt.h5", o->out_dir);
    ckpt_state cs = {.config = s.cfg.text, .global_step = step, .recipe = "distill"};
    if ((st = ckpt_save(path, &s.ps, &cs)) == AG_OK) printf("saved %s (step %d)\n", path, step);
done:
    free(counts);
    if (metrics) fclose(metrics);
    ag_ctx_free(ctx);
    optim_free(opt);
    if (have_tok) data_tokenizer_free(&tok);
    split_free(&train);
    split_free(&val);
    recipe_model_free(&s);
    recipe_model_free(&t);
    return st;
}
