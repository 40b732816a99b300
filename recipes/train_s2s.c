/* train_s2s.c: sequence-to-sequence training on a TSV of text pairs, and
 * translation with the result (see train_s2s.h).
 *
 * The run, step by step:
 *   1. read the pairs (source \t target), one a line;
 *   2. train a byte-level BPE tokenizer on the whole file (both languages
 *      share one vocabulary, as T5's and M2M-100's do); <|endoftext|> is the
 *      end of a sequence, <pad> the padding and T5's decoder start;
 *   3. encode every pair, truncate each side to max_src / max_tgt - 1 tokens
 *      and end it with eos; hold out the pairs whose hash falls under
 *      val_fraction;
 *   4. write the model's config with the tokenizer's vocabulary and ids, and
 *      build the model with Hugging Face's initialisation;
 *   5. for each step: draw `batch` pairs, pad the sources (attention_mask 0)
 *      and the labels (-100), loss = the family's ForConditionalGeneration
 *      loss (decoder inputs = labels shifted right), backward, clip, AdamW
 *      at the schedule's lr;
 *   6. every eval_every steps the held-out loss (mean over every held-out
 *      target token) goes to stdout and metrics.jsonl; checkpoints every
 *      save_every and at the end; translations of a few held-out sources.
 *
 * One batch (B pairs, S and T the longest source and target in it):
 *   input_ids       [B,S]  source ids, pad after the end
 *   attention_mask  [B,S]  1 for tokens, 0 for padding
 *   labels          [B,T]  target ids, -100 after the end (not counted)
 */
#include "train_s2s.h"

#include "ckpt.h"
#include "generate.h"
#include "models.h"
#include "optim.h"
#include "tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

recipe_s2s_opts recipe_s2s_defaults(void) {
    return (recipe_s2s_opts){.vocab_size = 4000, .max_src = 48, .max_tgt = 48, .val_fraction = 0.02,
                             .max_val = 500, .steps = 2000, .batch = 32, .lr = 1e-3, .min_lr = 0,
                             .weight_decay = 0.01, .clip = 1.0, .warmup = 100, .schedule = "linear", .log_every = 20,
                             .eval_every = 100, .save_every = 0, .show = 5, .num_beams = 4, .seed = 1234};
}

/* ---------------------------------------------------------------- the corpus */

/* One pair: the texts (pointers into the file's buffer) and their ids. */
typedef struct s2s_pair {
    const char *src, *tgt;
    int32_t *src_ids, *tgt_ids; /* each ends with eos */
    int n_src, n_tgt;
} s2s_pair;

typedef struct s2s_corpus {
    char *text;       /* the file, tabs and newlines replaced by NULs */
    s2s_pair *pairs;  /* [n] */
    int n;
} s2s_corpus;

static void corpus_free(s2s_corpus *c) {
    for (int i = 0; i < c->n; ++i) free(c->pairs[i].src_ids), free(c->pairs[i].tgt_ids);
    free(c->pairs);
    free(c->text);
    memset(c, 0, sizeof *c);
}

/* Reads path's lines "source\ttarget" (empty lines skipped, "\r\n" allowed).
 * Errors: an unreadable file, a line without exactly one tab (file:line), no
 * pairs at all. */
static ag_status corpus_read(s2s_corpus *c, const char *path) {
    memset(c, 0, sizeof *c);
    size_t len;
    if (!(c->text = ag_read_file("corpus", path, (size_t)1 << 31, &len))) return ag_error_status();
    int cap = 0, line = 0;
    for (char *p = c->text; p < c->text + len;) {
        char *end = memchr(p, '\n', (size_t)(c->text + len - p));
        if (!end) end = c->text + len;
        *end = '\0';
        line++;
        if (end > p && end[-1] == '\r') end[-1] = '\0';
        if (*p) {
            char *tab = strchr(p, '\t');
            if (!tab || strchr(tab + 1, '\t'))
                return ag_fail(AG_ERR_ARG, "corpus %s:%d: want \"source<TAB>target\", found %s tab", path, line,
                               tab ? "more than one" : "no");
            *tab = '\0';
            if (c->n == cap) {
                cap = cap ? 2 * cap : 1024;
                s2s_pair *np = realloc(c->pairs, (size_t)cap * sizeof *np);
                if (!np) return ag_fail(AG_ERR_MEMORY, "corpus %s: out of memory at line %d", path, line);
                c->pairs = np;
            }
            c->pairs[c->n++] = (s2s_pair){.src = p, .tgt = tab + 1};
        }
        p = end + 1;
    }
    if (c->n < 2) return ag_fail(AG_ERR_ARG, "corpus %s: %d pairs; want at least 2 (one to hold out)", path, c->n);
    return AG_OK;
}

/* text -> ids[<= max], the last one eos. *out is malloc'd. */
static ag_status encode_side(data_tokenizer *tok, const char *text, int max, int eos, int32_t **out, int *n) {
    data_encoding e = {0};
    ag_status st = data_tokenizer_encode(tok, text, strlen(text), 0, &e);
    if (st) { data_encoding_free(&e); return st; }
    const int k = e.n < max - 1 ? (int)e.n : max - 1;
    *out = malloc((size_t)(k + 1) * sizeof(int32_t));
    if (!*out) { data_encoding_free(&e); return ag_fail(AG_ERR_MEMORY, "train-s2s: out of memory encoding"); }
    memcpy(*out, e.ids, (size_t)k * sizeof(int32_t));
    (*out)[k] = eos;
    *n = k + 1;
    data_encoding_free(&e);
    return AG_OK;
}

/* ---------------------------------------------------------------- the model */

/* The config file with the tokenizer's vocabulary and special ids written in:
 * T5 starts its decoder from pad (as Hugging Face's T5 does), BART and
 * M2M-100 from eos. Returns a malloc'd JSON text, or NULL with an error. */
static char *model_config(const char *path, int V, int pad, int eos) {
    nn_config c;
    if (nn_config_load(&c, path)) return NULL;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(c.json, "model_type");
    const bool t5 = cJSON_IsString(mt) && strcmp(mt->valuestring, "t5") == 0;
    const struct { const char *field; int value; } set[] = {
        {"vocab_size", V}, {"pad_token_id", pad}, {"eos_token_id", eos}, {"bos_token_id", eos},
        {"decoder_start_token_id", t5 ? pad : eos},
    };
    for (size_t i = 0; i < sizeof set / sizeof *set; ++i) {
        cJSON_DeleteItemFromObjectCaseSensitive(c.json, set[i].field);
        cJSON_AddNumberToObject(c.json, set[i].field, set[i].value);
    }
    char *text = cJSON_Print(c.json);
    nn_config_free(&c);
    if (!text) ag_fail(AG_ERR_MEMORY, "train-s2s: out of memory writing the config");
    return text;
}

/* The family's ForConditionalGeneration loss, mean over counted labels. */
static ag_tensor *s2s_loss(ag_ctx *ctx, const recipe_model *m, const ag_ints *src, const ag_ints *mask,
                           const ag_ints *labels, int64_t *n_tokens) {
    if (m->family == RECIPE_FAMILY_T5)
        return nn_t5_loss(ctx, &m->t5, src, mask, labels, NULL, NULL, AG_REDUCE_MEAN, n_tokens);
    return nn_bart_loss(ctx, &m->bart, src, mask, NULL, NULL, labels, n_tokens);
}

/* Pads pairs idx[B] into src [B,S], mask [B,S], labels [B,T] (buffers of
 * B*max_src and B*max_tgt); returns S and T through *S, *T. */
static void make_batch(const s2s_corpus *c, const int *idx, int B, int pad, int32_t *src, int32_t *mask,
                       int32_t *labels, int *S, int *T) {
    *S = *T = 1;
    for (int b = 0; b < B; ++b) {
        const s2s_pair *p = &c->pairs[idx[b]];
        if (p->n_src > *S) *S = p->n_src;
        if (p->n_tgt > *T) *T = p->n_tgt;
    }
    for (int b = 0; b < B; ++b) {
        const s2s_pair *p = &c->pairs[idx[b]];
        for (int s = 0; s < *S; ++s) {
            src[b * *S + s] = s < p->n_src ? p->src_ids[s] : pad;
            mask[b * *S + s] = s < p->n_src;
        }
        for (int t = 0; t < *T; ++t) labels[b * *T + t] = t < p->n_tgt ? p->tgt_ids[t] : AG_IGNORE_INDEX;
    }
}

/* The mean loss over every target token of the held-out pairs val[n_val], in
 * batches of B, eval mode, no-grad. */
static ag_status evaluate(ag_ctx *ctx, const recipe_model *m, const s2s_corpus *c, const int *val, int n_val, int B,
                          int pad, int32_t *src, int32_t *mask, int32_t *labels, double *mean) {
    const bool was_training = ctx->training;
    ag_ctx_train(ctx, false);
    double sum = 0;
    int64_t count = 0;
    ag_status st = AG_OK;
    for (int i = 0; i < n_val && st == AG_OK; i += B) {
        const int nb = n_val - i < B ? n_val - i : B;
        int S, T;
        make_batch(c, val + i, nb, pad, src, mask, labels, &S, &T);
        ag_ctx_reset(ctx);
        ag_no_grad_begin(ctx);
        ag_ints s = ag_ints_wrap(src, 2, AG_SHAPE(nb, S)), ms = ag_ints_wrap(mask, 2, AG_SHAPE(nb, S));
        ag_ints l = ag_ints_wrap(labels, 2, AG_SHAPE(nb, T));
        int64_t n = 0;
        ag_tensor *loss = s2s_loss(ctx, m, &s, &ms, &l, &n);
        ag_no_grad_end(ctx);
        if (!loss) st = ag_error_status();
        else sum += (double)loss->data[0] * (double)n, count += n;
    }
    ag_ctx_reset(ctx);
    ag_ctx_train(ctx, was_training);
    *mean = count ? sum / (double)count : 0;
    return st;
}

static ag_status save(const char *path, const recipe_model *m, optim *opt, const char *config, int64_t step,
                      int64_t tokens, const recipe_s2s_opts *o) {
    char sched[256];
    snprintf(sched, sizeof sched, "{\"kind\": \"%s\", \"lr\": %.9g, \"min_lr\": %.9g, \"warmup\": %d, \"total\": %d}",
             o->schedule, o->lr, o->min_lr, o->warmup, o->steps);
    ckpt_state st = {
        .config = config, .optim_kind = "adamw", .optim_step = optim_step_count(opt), .n_hparams = 4,
        .hparam = {{"lr", o->lr}, {"weight_decay", o->weight_decay}, {"beta1", 0.9}, {"beta2", 0.999}},
        .schedule = sched, .global_step = step, .tokens_seen = tokens, .rng_seed = o->seed, .recipe = "s2s",
    };
    st.n_moments = optim_state_count(opt);
    for (int k = 0; k < st.n_moments && k < CKPT_MAX_MOMENTS; ++k) {
        st.moment_name[k] = optim_state_name(opt, k);
        st.moment[k] = optim_state_block(opt, k);
    }
    return ckpt_save(path, &m->ps, &st);
}

/* Translates ids src[n] and decodes the target (specials skipped) into a
 * malloc'd *text. */
static ag_status translate_ids(ag_ctx *ctx, const recipe_model *m, const data_tokenizer *tok,
                               const recipe_gen_config *g, const int32_t *src, int n, char **text) {
    int32_t *out = malloc((size_t)(g->max_new_tokens + 2) * sizeof(int32_t));
    if (!out) return ag_fail(AG_ERR_MEMORY, "translate: out of memory");
    int n_out = 0;
    ag_status st = recipe_generate_s2s(ctx, m, g, src, n, out, &n_out, NULL, NULL, NULL);
    if (!st) st = data_tokenizer_decode(tok, out + 1, n_out - 1, true, text); /* out[0] is the decoder start */
    free(out);
    return st;
}

/* ---------------------------------------------------------------- the run */

ag_status recipe_train_s2s(const recipe_s2s_opts *o) {
    ag_status st;
    s2s_corpus c = {0};
    data_tokenizer tok;
    memset(&tok, 0, sizeof tok);
    recipe_model rm = {0};
    ag_params_init(&rm.ps);
    optim *opt = NULL;
    ag_ctx *ctx = NULL;
    FILE *metrics = NULL;
    char *config = NULL, path[1024], ckpt_path[1024];
    int *train = NULL, *val = NULL, n_train = 0, n_val = 0;
    int32_t *src = NULL, *mask = NULL, *labels = NULL;

    if (o->steps < 1 || o->batch < 1 || o->max_src < 2 || o->max_tgt < 2 || o->vocab_size < 300 || o->num_beams < 1)
        return ag_fail(AG_ERR_ARG, "train-s2s: --steps, --batch and --beams must be >= 1, --max-src and --max-tgt "
                       ">= 2, --vocab >= 300 (256 bytes and merges)");
    if (!(o->val_fraction > 0 && o->val_fraction < 1))
        return ag_fail(AG_ERR_ARG, "train-s2s: --val-fraction %g must be in (0, 1)", o->val_fraction);
    if ((st = ag_make_dirs(o->out_dir))) return st;

    /* ---- 1, 2: the pairs and the tokenizer */
    if ((st = corpus_read(&c, o->data_path))) goto done;
    data_train_opts to = {.kind = DATA_TOK_BPE, .vocab_size = o->vocab_size - 1, .quiet = true};
    if ((st = data_tokenizer_train(&tok, &o->data_path, 1, to))) goto done;
    const int eos = data_tokenizer_id(&tok, "<|endoftext|>");
    const int pad = data_tokenizer_add_token(&tok, "<pad>", 5);
    if (eos < 0 || pad < 0 || (st = data_tokenizer_add_special(&tok, pad))) {
        st = st ? st : ag_fail(AG_ERR_STATE, "train-s2s: the tokenizer has no <|endoftext|> or <pad>");
        goto done;
    }
    const int V = tok.n_tokens;
    snprintf(path, sizeof path, "%s/tokenizer.json", o->out_dir);
    if ((st = data_tokenizer_save(&tok, path))) goto done;

    /* ---- 3: ids, and the held-out split */
    train = malloc((size_t)c.n * sizeof(int));
    val = malloc((size_t)c.n * sizeof(int));
    if (!train || !val) { st = ag_fail(AG_ERR_MEMORY, "train-s2s: out of memory"); goto done; }
    int64_t n_src_tok = 0, n_tgt_tok = 0;
    for (int i = 0; i < c.n; ++i) {
        s2s_pair *p = &c.pairs[i];
        if ((st = encode_side(&tok, p->src, o->max_src, eos, &p->src_ids, &p->n_src)) ||
            (st = encode_side(&tok, p->tgt, o->max_tgt, eos, &p->tgt_ids, &p->n_tgt)))
            goto done;
        n_src_tok += p->n_src, n_tgt_tok += p->n_tgt;
        const bool held = ag_rng_uniform(o->seed ^ 0x5e1ec7ull, (uint64_t)i) < o->val_fraction &&
                          (o->max_val <= 0 || n_val < o->max_val);
        if (held) val[n_val++] = i;
        else train[n_train++] = i;
    }
    if (n_val == 0 || n_train == 0) {
        st = ag_fail(AG_ERR_ARG, "train-s2s: %d training and %d held-out pairs; change --val-fraction", n_train, n_val);
        goto done;
    }

    /* ---- 4: the model */
    if (!(config = model_config(o->config_path, V, pad, eos))) { st = ag_error_status(); goto done; }
    snprintf(path, sizeof path, "%s/config.json", o->out_dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(config, f) < 0 || fclose(f) != 0) {
        st = ag_fail(AG_ERR_IO, "train-s2s: cannot write %s: %s", path, strerror(errno));
        goto done;
    }
    recipe_s2s_info info;
    if ((st = recipe_model_declare_text(&rm, config, o->config_path, NULL)) || (st = recipe_s2s_info_get(&rm, &info)) ||
        (st = recipe_model_alloc(&rm, o->seed)))
        goto done;
    optim_config oc = optim_adamw_defaults();
    oc.weight_decay = o->weight_decay;
    if ((st = optim_create(&opt, &rm.ps, &oc))) goto done;
    optim_schedule sched = {.lr = o->lr, .min_lr = o->min_lr, .warmup_steps = o->warmup, .total_steps = o->steps};
    if ((st = optim_schedule_kind_from_name(o->schedule, &sched.kind)) || (st = optim_schedule_check(&sched))) goto done;

    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out_dir);
    snprintf(ckpt_path, sizeof ckpt_path, "%s/ckpt.h5", o->out_dir);
    metrics = fopen(path, "w");
    ctx = ag_ctx_create(0);
    const int max_b = o->batch;
    src = malloc((size_t)max_b * o->max_src * sizeof(int32_t));
    mask = malloc((size_t)max_b * o->max_src * sizeof(int32_t));
    labels = malloc((size_t)max_b * o->max_tgt * sizeof(int32_t));
    if (!metrics) { st = ag_fail(AG_ERR_IO, "train-s2s: cannot write %s: %s", path, strerror(errno)); goto done; }
    if (!ctx || !src || !mask || !labels) { st = ag_fail(AG_ERR_MEMORY, "train-s2s: out of memory"); goto done; }

    printf("train-s2s: %s, %d+%d layers, d_model %d, vocab %d (BPE trained on %s): %lld parameters\n", rm.arch,
           rm.family == RECIPE_FAMILY_T5 ? rm.t5.cfg.num_layers : rm.bart.cfg.encoder_layers, info.n_layer,
           info.d_model, V, o->data_path, (long long)rm.ps.total);
    printf("data: %d pairs (%.1f source, %.1f target tokens a pair), %d training, %d held out; %d steps of %d pairs\n",
           c.n, (double)n_src_tok / c.n, (double)n_tgt_tok / c.n, n_train, n_val, o->steps, o->batch);
    double vl;
    if ((st = evaluate(ctx, &rm, &c, val, n_val, max_b, pad, src, mask, labels, &vl))) goto done;
    printf("step %5d  held-out loss %.4f  (ln vocab = %.4f)\n", 0, vl, log((double)V));
    fprintf(metrics, "{\"step\": 0, \"val_loss\": %.6f, \"val_ppl\": %.4f}\n", vl, exp(vl));
    fflush(stdout);

    /* ---- 5, 6: the steps */
    ag_ctx_train(ctx, true);
    const double t0 = now_s();
    double t_last = t0;
    int64_t tokens = 0, tokens_last = 0, step = 0;
    int *idx = malloc((size_t)max_b * sizeof(int));
    if (!idx) { st = ag_fail(AG_ERR_MEMORY, "train-s2s: out of memory"); goto done; }
    for (; step < o->steps; ++step) {
        /* pairs drawn from (seed, step, b): a run is a function of its options */
        for (int b = 0; b < max_b; ++b)
            idx[b] = train[ag_rng_u64(o->seed, (uint64_t)step * (uint64_t)max_b + (uint64_t)b) % (uint64_t)n_train];
        int S, T;
        make_batch(&c, idx, max_b, pad, src, mask, labels, &S, &T);
        ag_ctx_reset(ctx);
        ag_ctx_seed(ctx, o->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(step + 1))); /* dropout */
        ag_ints s = ag_ints_wrap(src, 2, AG_SHAPE(max_b, S)), ms = ag_ints_wrap(mask, 2, AG_SHAPE(max_b, S));
        ag_ints l = ag_ints_wrap(labels, 2, AG_SHAPE(max_b, T));
        int64_t n_tok = 0;
        ag_tensor *loss = s2s_loss(ctx, &rm, &s, &ms, &l, &n_tok);
        if (!loss || ag_backward(ctx, loss, NULL)) { st = ag_error_status(); break; }
        const double lv = loss->data[0];
        ag_ctx_reset(ctx);
        if (!isfinite(lv)) {
            st = ag_fail(AG_ERR_NUMERIC, "train-s2s: the loss is %g at step %lld (hint: lower --lr)", lv,
                         (long long)step);
            break;
        }
        double gnorm = 0, lr = optim_schedule_lr(&sched, step);
        if ((o->clip > 0 && (st = optim_clip_grad_norm(&rm.ps, o->clip, &gnorm))) || (st = optim_step(opt, lr))) break;
        ag_params_zero_grad(&rm.ps);
        tokens += n_tok;
        const bool out_of_time = o->max_seconds > 0 && now_s() - t0 > o->max_seconds;
        const bool last = step + 1 == o->steps || out_of_time;
        if ((step + 1) % o->log_every == 0 || last) {
            const double t = now_s(), tps = (double)(tokens - tokens_last) / (t - t_last);
            printf("step %5lld  loss %.4f  lr %.2e  |g| %.3f  %6.0f tok/s  %5.0fs\n", (long long)(step + 1), lv, lr,
                   gnorm, tps, t - t0);
            fprintf(metrics, "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6f, \"tokens\": %lld, "
                             "\"tokens_per_s\": %.1f}\n", (long long)(step + 1), lv, lr, gnorm, (long long)tokens, tps);
            t_last = t, tokens_last = tokens;
        }
        if ((o->eval_every > 0 && (step + 1) % o->eval_every == 0) || last) {
            if ((st = evaluate(ctx, &rm, &c, val, n_val, max_b, pad, src, mask, labels, &vl))) break;
            printf("step %5lld  held-out loss %.4f  perplexity %.3f\n", (long long)(step + 1), vl, exp(vl));
            fprintf(metrics, "{\"step\": %lld, \"val_loss\": %.6f, \"val_ppl\": %.4f}\n", (long long)(step + 1), vl,
                    exp(vl));
        }
        fflush(stdout);
        fflush(metrics);
        if (o->save_every > 0 && (step + 1) % o->save_every == 0 && !last &&
            (st = save(ckpt_path, &rm, opt, config, step + 1, tokens, o)))
            break;
        if (out_of_time && step + 1 < o->steps) {
            printf("time budget of %.0f s reached at step %lld\n", o->max_seconds, (long long)(step + 1));
            step++;
            break;
        }
    }
    free(idx);
    if (st) goto done;
    if ((st = save(ckpt_path, &rm, opt, config, step, tokens, o))) goto done;
    printf("saved %s (step %lld)\n", ckpt_path, (long long)step);

    /* ---- held-out translations */
    for (int i = 0; i < o->show && i < n_val; ++i) {
        const s2s_pair *p = &c.pairs[val[i]];
        recipe_gen_config g = recipe_gen_defaults();
        g.max_new_tokens = o->max_tgt, g.eos_token_id = eos;
        char *greedy = NULL, *beam = NULL;
        if ((st = translate_ids(ctx, &rm, &tok, &g, p->src_ids, p->n_src, &greedy))) goto done;
        g.num_beams = o->num_beams;
        if ((st = translate_ids(ctx, &rm, &tok, &g, p->src_ids, p->n_src, &beam))) { free(greedy); goto done; }
        printf("\nsource     %s\nreference  %s\ngreedy     %s\nbeams (%d)  %s\n", p->src, p->tgt, greedy, o->num_beams,
               beam);
        free(greedy);
        free(beam);
    }
done:
    if (metrics) fclose(metrics);
    free(src), free(mask), free(labels), free(train), free(val);
    cJSON_free(config);
    ag_ctx_free(ctx);
    optim_free(opt);
    recipe_model_free(&rm);
    data_tokenizer_free(&tok);
    corpus_free(&c);
    return st;
}

/* ---------------------------------------------------------------- translate */

ag_status recipe_translate(const char *run_dir, const char *text, const recipe_gen_config *gc, bool bench,
                           FILE *out) {
    ag_status st;
    data_tokenizer tok;
    memset(&tok, 0, sizeof tok);
    recipe_model rm = {0};
    ag_params_init(&rm.ps);
    ckpt_state cs = {0};
    ag_ctx *ctx = NULL;
    int32_t *ids = NULL;
    char path[1024], *result = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", run_dir);
    if ((st = data_tokenizer_load(&tok, path))) return st;
    snprintf(path, sizeof path, "%s/ckpt.h5", run_dir);
    if ((st = ckpt_read_state(path, &cs))) goto done;
    if (!cs.config) { st = ag_fail(AG_ERR_IO, "checkpoint %s: no /config attribute", path); goto done; }
    recipe_s2s_info info;
    if ((st = recipe_model_declare_text(&rm, cs.config, path, NULL)) || (st = ag_params_finalize(&rm.ps)) ||
        (st = ckpt_load_params(path, &rm.ps)) || (st = recipe_s2s_info_get(&rm, &info)))
        goto done;
    if (!(ctx = ag_ctx_create(0))) { st = ag_fail(AG_ERR_MEMORY, "translate: out of memory"); goto done; }
    recipe_gen_config g = *gc;
    if (g.eos_token_id < -1) g.eos_token_id = info.eos_token_id;
    /* as Hugging Face's generation config, taken from the model's config */
    if (g.forced_bos_token_id < 0) g.forced_bos_token_id = info.forced_bos_token_id;
    if (g.forced_eos_token_id < 0) g.forced_eos_token_id = info.forced_eos_token_id;
    int n;
    if ((st = encode_side(&tok, text, 1 << 20, info.eos_token_id, &ids, &n))) goto done;
    if (bench) {
        /* the same target with and without the cache; no eos, so both run the full length */
        g.eos_token_id = -1, g.forced_eos_token_id = -1;
        const size_t cap = (size_t)g.max_new_tokens + 2;
        int32_t *a = malloc(cap * sizeof(int32_t)), *b = malloc(cap * sizeof(int32_t));
        int na = 0, nb = 0;
        double t[2];
        for (int k = 0; k < 2 && a && b && st == AG_OK; ++k) {
            g.use_cache = k == 0;
            const double t0 = now_s();
            st = recipe_generate_s2s(ctx, &rm, &g, ids, n, k ? b : a, k ? &nb : &na, NULL, NULL, NULL);
            t[k] = now_s() - t0;
        }
        if (!a || !b) st = ag_fail(AG_ERR_MEMORY, "translate --bench: out of memory");
        if (st == AG_OK) {
            const bool same = na == nb && memcmp(a, b, (size_t)na * sizeof(int32_t)) == 0;
            fprintf(out, "{\"model\": \"%s\", \"source_tokens\": %d, \"new_tokens\": %d, \"beams\": %d, "
                         "\"cached_tokens_per_s\": %.1f, \"uncached_tokens_per_s\": %.1f, \"speedup\": %.2f, "
                         "\"same_tokens\": %s}\n", rm.arch, n, na - 1, g.num_beams, (na - 1) / t[0], (na - 1) / t[1],
                    t[1] / t[0], same ? "true" : "false");
            if (!same) st = ag_fail(AG_ERR_NUMERIC, "translate --bench: the cached and uncached runs differ");
        }
        free(a);
        free(b);
        goto done;
    }
    if ((st = translate_ids(ctx, &rm, &tok, &g, ids, n, &result))) goto done;
    fprintf(out, "%s\n", result);
done:
    free(result);
    free(ids);
    ag_ctx_free(ctx);
    ckpt_state_free(&cs);
    recipe_model_free(&rm);
    data_tokenizer_free(&tok);
    return st;
}
