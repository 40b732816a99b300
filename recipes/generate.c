/* generate.c: greedy search, sampling and beam search over any decoder
 * family, with or without the key/value cache (see generate.h).
 *
 * One step of every strategy:
 *   logits  [B,1,V]  the decoder's last position, B = 1 (greedy, sampling) or
 *                    num_beams; with the cache the first step runs the prompt
 *                    and every later one only the newest token of each row
 *   process          repetition penalty, forced start token (HF's logits_processor)
 *   choose           greedy: argmax; sampling: temperature, top-k, top-p and a
 *                    seeded draw; beam search: BeamSearchScorer.process
 * until max_length, eos, or (beam search) the scorer says it is done.
 * An encoder-decoder's step is its decoder's, over the encoder's states
 * computed once before the first step (recipe_generate_s2s, at the end).
 */
#include "generate.h"

#include "data.h"
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- the decoder interface */

ag_status recipe_decoder_info_get(const recipe_model *m, recipe_decoder_info *d) {
    memset(d, 0, sizeof *d);
    bool head = false;
    switch (m->family) {
    case RECIPE_FAMILY_GPT2: {
        const nn_gpt2_config *c = &m->gpt2.cfg;
        *d = (recipe_decoder_info){c->n_layer, c->n_head, c->n_embd / c->n_head, c->n_positions, c->vocab_size,
                                   c->eos_token_id};
        head = m->gpt2.lm_head;
        break;
    }
    case RECIPE_FAMILY_GPT_NEO: {
        const nn_gpt_neo_config *c = &m->gpt_neo.cfg;
        *d = (recipe_decoder_info){c->num_layers, c->num_heads, c->hidden_size / c->num_heads,
                                   c->max_position_embeddings, c->vocab_size, -1};
        head = m->gpt_neo.lm_head;
        break;
    }
    case RECIPE_FAMILY_GPTJ: {
        const nn_gptj_config *c = &m->gptj.cfg;
        *d = (recipe_decoder_info){c->n_layer, c->n_head, c->n_embd / c->n_head, c->n_positions, c->vocab_size, -1};
        head = m->gptj.lm_head;
        break;
    }
    case RECIPE_FAMILY_OPENAI: {
        const nn_openai_config *c = &m->openai.cfg;
        *d = (recipe_decoder_info){c->n_layer, c->n_head, c->n_embd / c->n_head, c->n_positions, c->vocab_size, -1};
        head = m->openai.lm_head;
        break;
    }
    case RECIPE_FAMILY_CTRL: {
        const nn_ctrl_config *c = &m->ctrl.cfg;
        *d = (recipe_decoder_info){c->n_layer, c->n_head, c->n_embd / c->n_head, c->n_positions, c->vocab_size, -1};
        head = m->ctrl.lm_head;
        break;
    }
    default:
        return ag_fail(AG_ERR_ARG, "generate: %s is not a decoder (gpt2, gpt_neo, gptj, openai-gpt and ctrl are; "
                       "for t5, bart and m2m_100 use `tapegrad translate`)", m->arch);
    }
    if (!head) return ag_fail(AG_ERR_ARG, "generate: %s has no LM head to generate with (use its LM-head class)", m->arch);
    /* every family but GPT-2 keeps eos_token_id only in the config file */
    if (m->family != RECIPE_FAMILY_GPT2 && m->cfg.json &&
        nn_config_int(&m->cfg, "eos_token_id", -1, -1, 1 << 30, &d->eos_token_id))
        return ag_error_status();
    return AG_OK;
}

ag_tensor *recipe_decoder_logits(ag_ctx *ctx, const recipe_model *m, const ag_ints *ids, nn_kv_cache *cache,
                                 bool last_only) {
    ag_tensor *h = NULL, *w = NULL, *b = NULL; /* hidden [B,T,C], head W [V,C] and bias [V] */
    switch (m->family) {
    case RECIPE_FAMILY_GPT2:
        h = cache ? nn_gpt2_forward_cached(ctx, &m->gpt2, ids, cache) : nn_gpt2_forward(ctx, &m->gpt2, ids, NULL, 0);
        w = m->gpt2.lm_head_w;
        break;
    case RECIPE_FAMILY_GPT_NEO:
        h = cache ? nn_gpt_neo_forward_cached(ctx, &m->gpt_neo, ids, cache)
                  : nn_gpt_neo_forward(ctx, &m->gpt_neo, ids, NULL);
        w = m->gpt_neo.lm_head_w;
        break;
    case RECIPE_FAMILY_GPTJ:
        h = cache ? nn_gptj_forward_cached(ctx, &m->gptj, ids, cache) : nn_gptj_forward(ctx, &m->gptj, ids, NULL, 0);
        w = m->gptj.lm_head_w, b = m->gptj.lm_head_b;
        break;
    case RECIPE_FAMILY_OPENAI:
        h = cache ? nn_openai_forward_cached(ctx, &m->openai, ids, cache)
                  : nn_openai_forward(ctx, &m->openai, ids, NULL);
        w = m->openai.lm_head ? m->openai.tokens_embed.w : NULL; /* tied */
        break;
    case RECIPE_FAMILY_CTRL:
        h = cache ? nn_ctrl_forward_cached(ctx, &m->ctrl, ids, cache) : nn_ctrl_forward(ctx, &m->ctrl, ids, NULL, 0);
        w = m->ctrl.lm_head ? m->ctrl.w.w : NULL, b = m->ctrl.lm_head_b; /* tied weight, own bias */
        break;
    default:
        ag_fail(AG_ERR_ARG, "generate: %s is not a decoder", m->arch);
        return NULL;
    }
    if (!h) return NULL;
    if (!w) {
        ag_fail(AG_ERR_ARG, "generate: %s has no LM head", m->arch);
        return NULL;
    }
    if (last_only) h = ag_slice(ctx, h, 1, h->shape[1] - 1, 1); /* [B,1,C]: the head never sees the rest */
    return ag_linear(ctx, h, w, b, AG_LINEAR_OUT_IN);          /* [B,T,V] or [B,1,V] */
}

/* ---------------------------------------------------------------- options */

recipe_gen_config recipe_gen_defaults(void) {
    return (recipe_gen_config){.max_new_tokens = 20, .temperature = 1.0f, .top_p = 1.0f,
                               .repetition_penalty = 1.0f, .eos_token_id = -1, .forced_bos_token_id = -1,
                               .num_beams = 1, .length_penalty = 1.0f, .early_stopping = RECIPE_EARLY_STOP_FALSE,
                               .use_cache = true, .forced_eos_token_id = -1};
}

static ag_status check_config(const recipe_gen_config *g, int V) {
    if (g->max_new_tokens < 0) return ag_fail(AG_ERR_ARG, "generate: max_new_tokens %d is negative", g->max_new_tokens);
    if (!(g->temperature > 0)) return ag_fail(AG_ERR_ARG, "generate: temperature %g must be > 0", g->temperature);
    if (g->top_k < 0) return ag_fail(AG_ERR_ARG, "generate: top_k %d is negative", g->top_k);
    if (!(g->top_p > 0 && g->top_p <= 1)) return ag_fail(AG_ERR_ARG, "generate: top_p %g is outside (0, 1]", g->top_p);
    if (!(g->repetition_penalty > 0))
        return ag_fail(AG_ERR_ARG, "generate: repetition_penalty %g must be > 0", g->repetition_penalty);
    if (g->num_beams < 1 || g->num_beams > 4096)
        return ag_fail(AG_ERR_ARG, "generate: num_beams %d is outside [1, 4096]", g->num_beams);
    if (g->num_beams > 1 && g->do_sample)
        return ag_fail(AG_ERR_ARG, "generate: beam search with sampling (beam-sample) is not built; use do_sample "
                       "or num_beams > 1");
    if (g->forced_eos_token_id >= V)
        return ag_fail(AG_ERR_ARG, "generate: forced_eos_token_id %d is outside the vocabulary (%d)",
                       g->forced_eos_token_id, V);
    if (g->eos_token_id >= V || g->forced_bos_token_id >= V)
        return ag_fail(AG_ERR_ARG, "generate: eos_token_id %d or forced_bos_token_id %d is outside the vocabulary "
                       "(%d)", g->eos_token_id, g->forced_bos_token_id, V);
    return AG_OK;
}

/* log_softmax of logits [V] into lp [V], in double. */
static void log_softmax(double *lp, const float *logits, int V) {
    double max = logits[recipe_argmax(logits, V)], z = 0;
    for (int i = 0; i < V; ++i) z += exp((double)logits[i] - max);
    const double lz = max + log(z);
    for (int i = 0; i < V; ++i) lp[i] = (double)logits[i] - lz;
}

/* What a step of generation runs: a decoder-only LM, or the decoder of an
 * encoder-decoder reading the states of the source, which the encoder
 * produced once before the first step (recipe_generate_s2s). */
typedef struct gen_model {
    const recipe_model *m;
    nn_kv_cache *cache;          /* NULL: every step re-runs the whole sequence */
    const float *enc;            /* encoder-decoders: the source's states [1,S,C]; NULL for a decoder */
    int64_t S, C;
    const nn_cross_cache *cross; /* encoder-decoders with the cache: the cross keys and values */
} gen_model;

/* An encoder-decoder's logits at the last position [B,1,V] for decoder ids
 * [B,T]: the cached step over the T new positions, or the full decoder over
 * the whole target with the source's states repeated over the B rows. */
static ag_tensor *s2s_logits(ag_ctx *ctx, const gen_model *gm, const ag_ints *ids) {
    const recipe_model *m = gm->m;
    const bool t5 = m->family == RECIPE_FAMILY_T5;
    const int64_t B = ids->shape[0];
    ag_tensor *h; /* [B,T,C] */
    if (gm->cache) {
        h = t5 ? nn_t5_decode_cached(ctx, &m->t5, ids, gm->cache, gm->cross)
               : nn_bart_decode_cached(ctx, &m->bart, ids, gm->cache, gm->cross);
    } else {
        ag_tensor *enc = ag_new(ctx, 3, AG_SHAPE(B, gm->S, gm->C), false); /* [B,S,C] */
        if (!enc) return NULL;
        const size_t n = (size_t)(gm->S * gm->C);
        for (int64_t b = 0; b < B; ++b) memcpy(enc->data + (size_t)b * n, gm->enc, n * sizeof(float));
        h = t5 ? nn_t5_decode(ctx, &m->t5, ids, NULL, enc, NULL) : nn_bart_decode(ctx, &m->bart, ids, NULL, enc, NULL);
    }
    if (!h) return NULL;
    h = ag_slice(ctx, h, 1, h->shape[1] - 1, 1); /* [B,1,C] */
    return t5 ? nn_t5_logits(ctx, &m->t5, h) : nn_bart_logits(ctx, &m->bart, h);
}

/* One step of the decoder for rows of ids: copies the last position's logits
 * [B,V] into `logits`. ids [B,T] are the whole sequences (no cache) or the
 * positions the cache has not seen. */
static ag_status step_logits(ag_ctx *ctx, const gen_model *gm, int32_t *ids, int B, int T, float *logits, int V) {
    ag_ctx_reset(ctx);
    ag_no_grad_begin(ctx);
    ag_ints ii = ag_ints_wrap(ids, 2, AG_SHAPE(B, T));
    ag_tensor *lg = gm->enc ? s2s_logits(ctx, gm, &ii)
                            : recipe_decoder_logits(ctx, gm->m, &ii, gm->cache, true); /* [B,1,V] */
    ag_no_grad_end(ctx);
    if (!lg) return ag_error_status();
    memcpy(logits, lg->data, (size_t)B * (size_t)V * sizeof(float));
    return AG_OK;
}

/* ---------------------------------------------------------------- greedy search and sampling */

static ag_status greedy_or_sample(ag_ctx *ctx, const gen_model *gm, const recipe_gen_config *g, int V,
                                  int max_length, int32_t *out, int *n_out, double *score,
                                  void (*on_token)(int32_t, void *), void *arg) {
    nn_kv_cache *cache = gm->cache;
    float *logits = malloc((size_t)V * sizeof(float));
    double *lp = malloc((size_t)V * sizeof(double));
    int *scratch = malloc((size_t)V * sizeof(int));
    ag_status st = AG_OK;
    if (!logits || !lp || !scratch) { st = ag_fail(AG_ERR_MEMORY, "generate: out of memory"); goto done; }
    recipe_sampling s = {.greedy = !g->do_sample, .temperature = g->temperature, .top_k = g->top_k,
                         .top_p = g->top_p, .seed = g->seed};
    int n = *n_out, fed = 0; /* fed: positions the cache has seen */
    double sum = 0;
    while (n < max_length) {
        /* with the cache only the unseen positions run: the prompt, then one token */
        if (cache) st = step_logits(ctx, gm, out + fed, 1, n - fed, logits, V), fed = n;
        else st = step_logits(ctx, gm, out, 1, n, logits, V);
        if (st) break;
        recipe_repetition_penalty(logits, V, out, n, g->repetition_penalty);
        if (g->forced_bos_token_id >= 0 && n == 1) recipe_force_token(logits, V, g->forced_bos_token_id);
        if (g->forced_eos_token_id >= 0 && n == max_length - 1) recipe_force_token(logits, V, g->forced_eos_token_id);
        log_softmax(lp, logits, V);
        int next = recipe_sample(&s, logits, V, scratch);
        sum += lp[next];
        out[n++] = next;
        if (on_token) on_token(next, arg);
        if (next == g->eos_token_id) break;
    }
    *n_out = n;
    if (score) *score = sum;
done:
    free(logits);
    free(lp);
    free(scratch);
    return st;
}

/* ---------------------------------------------------------------- beam search */

/* BeamHypotheses: the num_beams best finished sequences and the worst score
 * among them. A sequence of length L (eos not counted) and summed log-prob s
 * scores s / L^length_penalty. */
typedef struct beam_hyp {
    double score;
    int len;
    int32_t *tok; /* [cap] */
} beam_hyp;

typedef struct beam_hyps {
    int n, num_beams;
    double worst, length_penalty;
    beam_hyp *h; /* [num_beams + 1] */
} beam_hyps;

static void hyps_add(beam_hyps *H, const int32_t *tok, int len, double sum_logprobs) {
    const double score = sum_logprobs / pow((double)len, H->length_penalty);
    if (H->n < H->num_beams || score > H->worst) {
        beam_hyp *e = &H->h[H->n++];
        e->score = score, e->len = len;
        memcpy(e->tok, tok, (size_t)len * sizeof(int32_t));
        if (H->n > H->num_beams) {
            /* drop the worst (the first of equal worsts, as Python's sorted()
             * on (score, index) does); the new worst is the second lowest */
            int w = 0;
            for (int i = 1; i < H->n; ++i)
                if (H->h[i].score < H->h[w].score) w = i;
            beam_hyp gone = H->h[w];
            for (int i = w; i + 1 < H->n; ++i) H->h[i] = H->h[i + 1];
            H->h[--H->n] = gone; /* keep its buffer for reuse */
            H->worst = H->h[0].score;
            for (int i = 1; i < H->n; ++i)
                if (H->h[i].score < H->worst) H->worst = H->h[i].score;
        } else if (score < H->worst) {
            H->worst = score;
        }
    }
}

static bool hyps_done(const beam_hyps *H, double best_sum_logprobs, int cur_len, int max_length,
                      recipe_early_stop early) {
    if (H->n < H->num_beams) return false;
    if (early == RECIPE_EARLY_STOP_TRUE) return true;
    double len = early == RECIPE_EARLY_STOP_NEVER && H->length_penalty > 0 ? max_length : cur_len;
    return H->worst >= best_sum_logprobs / pow(len, H->length_penalty);
}

static const double *cmp_scores;
static int by_score_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    double x = cmp_scores[i], y = cmp_scores[j];
    if (x != y) return (x < y) - (x > y);
    return (i > j) - (i < j);
}

static ag_status beam_search(ag_ctx *ctx, const gen_model *gm, const recipe_gen_config *g, int V, int max_length,
                             int32_t *out, int *n_out, double *score) {
    nn_kv_cache *cache = gm->cache;
    const int nb = g->num_beams, cap = max_length + 1, n_prompt = *n_out;
    ag_status st = AG_OK;
    int32_t *seq = malloc((size_t)nb * cap * sizeof(int32_t));     /* [nb,cap] live beams */
    int32_t *next_seq = malloc((size_t)nb * cap * sizeof(int32_t)); /* [nb,cap] */
    int32_t *feed = malloc((size_t)nb * cap * sizeof(int32_t));     /* [nb,T] the step's input */
    float *logits = malloc((size_t)nb * V * sizeof(float));          /* [nb,V] */
    double *scores = malloc((size_t)nb * V * sizeof(double));        /* [nb*V] beam score + log-prob */
    int *order = malloc((size_t)nb * V * sizeof(int));
    double *beam_scores = malloc((size_t)nb * sizeof(double)), *next_scores = malloc((size_t)nb * sizeof(double));
    int *next_tok = malloc((size_t)nb * sizeof(int)), *next_src = malloc((size_t)nb * sizeof(int));
    beam_hyps H = {.num_beams = nb, .worst = 1e9, .length_penalty = g->length_penalty};
    H.h = calloc((size_t)nb + 1, sizeof *H.h);
    int32_t *hyp_tok = malloc((size_t)(nb + 1) * cap * sizeof(int32_t));
    if (!seq || !next_seq || !feed || !logits || !scores || !order || !beam_scores || !next_scores || !next_tok ||
        !next_src || !H.h || !hyp_tok) {
        st = ag_fail(AG_ERR_MEMORY, "generate: out of memory for %d beams", nb);
        goto done;
    }
    for (int i = 0; i <= nb; ++i) H.h[i].tok = hyp_tok + (size_t)i * cap;
    /* every beam starts as the prompt; only the first counts at first, so the
     * first step does not pick the same token num_beams times (HF: -1e9) */
    for (int b = 0; b < nb; ++b) {
        memcpy(seq + (size_t)b * cap, out, (size_t)n_prompt * sizeof(int32_t));
        beam_scores[b] = b == 0 ? 0.0 : -1e9;
    }
    int cur_len = n_prompt;
    bool done = false;
    while (cur_len < max_length) {
        /* ---- the decoder: whole sequences, or the positions the cache has not seen */
        const int from = cache ? (int)cache->len : 0, T = cur_len - from;
        for (int b = 0; b < nb; ++b)
            memcpy(feed + (size_t)b * T, seq + (size_t)b * cap + from, (size_t)T * sizeof(int32_t));
        if ((st = step_logits(ctx, gm, feed, nb, T, logits, V))) goto done;
        /* ---- log-probs, processors, + beam score: scores [nb*V] */
        for (int b = 0; b < nb; ++b) {
            float *lg = logits + (size_t)b * V;
            double *sc = scores + (size_t)b * V;
            log_softmax(sc, lg, V);
            /* HF processes the log-probs: the penalty divides or multiplies them */
            for (int v = 0; v < V; ++v) lg[v] = (float)sc[v];
            recipe_repetition_penalty(lg, V, seq + (size_t)b * cap, cur_len, g->repetition_penalty);
            if (g->forced_bos_token_id >= 0 && cur_len == 1) recipe_force_token(lg, V, g->forced_bos_token_id);
            if (g->forced_eos_token_id >= 0 && cur_len == max_length - 1)
                recipe_force_token(lg, V, g->forced_eos_token_id);
            for (int v = 0; v < V; ++v) sc[v] = (double)lg[v] + beam_scores[b];
        }
        /* ---- the 2*num_beams best (beam, token) pairs, best first */
        for (int i = 0; i < nb * V; ++i) order[i] = i;
        cmp_scores = scores;
        qsort(order, (size_t)nb * V, sizeof *order, by_score_desc);
        const int n_cand = 2 * nb < nb * V ? 2 * nb : nb * V;
        /* ---- BeamSearchScorer.process */
        int kept = 0;
        for (int rank = 0; rank < n_cand && kept < nb; ++rank) {
            const int flat = order[rank], b = flat / V, tok = flat % V;
            if (tok == g->eos_token_id) {
                /* a finished hypothesis, unless it ranked outside the first num_beams */
                if (rank < nb) hyps_add(&H, seq + (size_t)b * cap, cur_len, scores[flat]);
                continue;
            }
            next_scores[kept] = scores[flat], next_tok[kept] = tok, next_src[kept] = b;
            kept++;
        }
        if (kept < nb) {
            st = ag_fail(AG_ERR_STATE, "generate: beam search found %d continuations for %d beams (vocabulary %d)",
                         kept, nb, V);
            goto done;
        }
        done = hyps_done(&H, scores[order[0]], cur_len, max_length, g->early_stopping);
        /* ---- the beams move: row i becomes beam next_src[i] plus next_tok[i] */
        for (int i = 0; i < nb; ++i) {
            memcpy(next_seq + (size_t)i * cap, seq + (size_t)next_src[i] * cap, (size_t)cur_len * sizeof(int32_t));
            next_seq[(size_t)i * cap + cur_len] = next_tok[i];
            beam_scores[i] = next_scores[i];
        }
        int32_t *t = seq;
        seq = next_seq, next_seq = t;
        if (cache && (st = nn_kv_cache_reorder(cache, next_src))) goto done;
        cur_len++;
        if (done) break;
    }
    /* ---- finalize: the live beams join the hypotheses unless the scorer was done */
    if (!done)
        for (int b = 0; b < nb; ++b) hyps_add(&H, seq + (size_t)b * cap, cur_len, beam_scores[b]);
    /* the best: the last of the highest scores, as Python's sorted(...)[-1] */
    int best = 0;
    for (int i = 1; i < H.n; ++i)
        if (H.h[i].score >= H.h[best].score) best = i;
    int n = H.h[best].len;
    memcpy(out, H.h[best].tok, (size_t)n * sizeof(int32_t));
    if (n < max_length && g->eos_token_id >= 0) out[n++] = g->eos_token_id; /* HF pads the best with eos */
    *n_out = n;
    if (score) *score = H.h[best].score;
done:
    free(seq), free(next_seq), free(feed), free(logits), free(scores), free(order);
    free(beam_scores), free(next_scores), free(next_tok), free(next_src), free(H.h), free(hyp_tok);
    return st;
}

/* ---------------------------------------------------------------- the entry point */

ag_status recipe_generate_ids(ag_ctx *ctx, const recipe_model *m, const recipe_gen_config *g, const int32_t *prompt,
                              int n_prompt, int32_t *out, int *n_out, double *score,
                              void (*on_token)(int32_t token, void *arg), void *arg) {
    recipe_decoder_info d;
    ag_status st;
    if ((st = recipe_decoder_info_get(m, &d)) || (st = check_config(g, d.vocab_size))) return st;
    if (n_prompt < 1 || n_prompt > d.n_positions)
        return ag_fail(AG_ERR_ARG, "generate: the prompt has %d tokens; %s takes 1 to %d", n_prompt, m->arch,
                       d.n_positions);
    for (int i = 0; i < n_prompt; ++i)
        if (prompt[i] < 0 || prompt[i] >= d.vocab_size)
            return ag_fail(AG_ERR_ARG, "generate: prompt token %d is %d, outside the vocabulary of %d", i, prompt[i],
                           d.vocab_size);
    /* HF's max_length, and no position past the model's last */
    int max_length = n_prompt + g->max_new_tokens;
    if (max_length > d.n_positions) max_length = d.n_positions;
    memcpy(out, prompt, (size_t)n_prompt * sizeof(int32_t));
    *n_out = n_prompt;
    if (score) *score = 0;
    nn_kv_cache cache = {0};
    if (g->use_cache && (st = nn_kv_cache_init(&cache, d.n_layer, g->num_beams, d.n_head, d.d_head, max_length)))
        return st;
    const gen_model gm = {.m = m, .cache = g->use_cache ? &cache : NULL};
    const bool was_training = ctx->training;
    ag_ctx_train(ctx, false);
    if (g->num_beams > 1 || (g->force_beam_search && !g->do_sample)) {
        st = beam_search(ctx, &gm, g, d.vocab_size, max_length, out, n_out, score);
        for (int i = n_prompt; on_token && st == AG_OK && i < *n_out; ++i) on_token(out[i], arg);
    } else {
        st = greedy_or_sample(ctx, &gm, g, d.vocab_size, max_length, out, n_out, score, on_token, arg);
    }
    ag_ctx_reset(ctx);
    ag_ctx_train(ctx, was_training);
    nn_kv_cache_free(&cache);
    return st;
}

/* ---------------------------------------------------------------- encoder-decoders */

ag_status recipe_s2s_info_get(const recipe_model *m, recipe_s2s_info *d) {
    memset(d, 0, sizeof *d);
    if (m->family == RECIPE_FAMILY_T5) {
        const nn_t5_config *c = &m->t5.cfg;
        if (m->t5.head != NN_T5_CONDITIONAL_GENERATION)
            return ag_fail(AG_ERR_ARG, "generate: %s has no LM head (use T5ForConditionalGeneration)", m->arch);
        *d = (recipe_s2s_info){c->num_decoder_layers, c->num_heads, c->d_kv, c->d_model, 1 << 20, c->vocab_size,
                               c->eos_token_id, c->decoder_start_token_id, c->pad_token_id, -1, -1};
    } else if (m->family == RECIPE_FAMILY_BART) {
        const nn_bart_config *c = &m->bart.cfg;
        if (m->bart.head != NN_BART_COND_GEN)
            return ag_fail(AG_ERR_ARG, "generate: %s has no LM head (use ...ForConditionalGeneration)", m->arch);
        /* M2M-100's sinusoids have no last row; BART's learned table has */
        *d = (recipe_s2s_info){c->decoder_layers, c->decoder_attention_heads, c->d_model / c->decoder_attention_heads,
                               c->d_model, c->m2m100 ? 1 << 20 : c->max_position_embeddings, c->vocab_size,
                               c->eos_token_id, c->decoder_start_token_id, c->pad_token_id, -1, -1};
    } else {
        return ag_fail(AG_ERR_ARG, "generate: %s is not an encoder-decoder (t5, bart and m2m_100 are)", m->arch);
    }
    if (d->decoder_start_token_id < 0 || d->decoder_start_token_id >= d->vocab_size)
        return ag_fail(AG_ERR_ARG, "generate: config %s: \"decoder_start_token_id\" %d is not a token of the "
                       "vocabulary (%d)", m->cfg.path, d->decoder_start_token_id, d->vocab_size);
    /* PretrainedConfig keeps the forced tokens; the family readers do not */
    if (m->cfg.json && (nn_config_int(&m->cfg, "forced_bos_token_id", -1, -1, d->vocab_size - 1,
                                      &d->forced_bos_token_id) ||
                        nn_config_int(&m->cfg, "forced_eos_token_id", -1, -1, d->vocab_size - 1,
                                      &d->forced_eos_token_id)))
        return ag_error_status();
    return AG_OK;
}

/* The encoder over src [1,S] once: its states [1,S,C] copied out of the step
 * arena into enc, and (cross not NULL) every decoder layer's cross keys and
 * values. */
static ag_status s2s_encode(ag_ctx *ctx, const recipe_model *m, const int32_t *src, int n_src, float *enc,
                            nn_cross_cache *cross) {
    ag_ctx_reset(ctx);
    ag_no_grad_begin(ctx);
    ag_ints ids = ag_ints_wrap((int32_t *)src, 2, AG_SHAPE(1, n_src));
    const bool t5 = m->family == RECIPE_FAMILY_T5;
    ag_tensor *h = t5 ? nn_t5_encode(ctx, &m->t5, &ids, NULL) : nn_bart_encode(ctx, &m->bart, &ids, NULL);
    ag_status st = h ? AG_OK : ag_error_status();
    if (!st) memcpy(enc, h->data, (size_t)h->numel * sizeof(float));
    if (!st && cross)
        st = t5 ? nn_t5_cross_cache_fill(ctx, &m->t5, h, cross) : nn_bart_cross_cache_fill(ctx, &m->bart, h, cross);
    ag_no_grad_end(ctx);
    return st;
}

ag_status recipe_generate_s2s(ag_ctx *ctx, const recipe_model *m, const recipe_gen_config *g, const int32_t *src,
                              int n_src, int32_t *out, int *n_out, double *score,
                              void (*on_token)(int32_t token, void *arg), void *arg) {
    recipe_s2s_info d;
    ag_status st;
    if ((st = recipe_s2s_info_get(m, &d)) || (st = check_config(g, d.vocab_size))) return st;
    if (n_src < 1) return ag_fail(AG_ERR_ARG, "generate: the source is empty");
    for (int i = 0; i < n_src; ++i)
        if (src[i] < 0 || src[i] >= d.vocab_size)
            return ag_fail(AG_ERR_ARG, "generate: source token %d is %d, outside the vocabulary of %d", i, src[i],
                           d.vocab_size);
    /* the target: decoder_start_token_id, then at most max_new_tokens more */
    int max_length = 1 + g->max_new_tokens;
    if (max_length > d.max_target) max_length = d.max_target;
    out[0] = d.decoder_start_token_id;
    *n_out = 1;
    if (score) *score = 0;
    float *enc = malloc((size_t)n_src * (size_t)d.d_model * sizeof(float)); /* [1,S,C] */
    nn_kv_cache cache = {0};
    nn_cross_cache cross = {0};
    if (!enc) return ag_fail(AG_ERR_MEMORY, "generate: out of memory for the encoder's states");
    if (g->use_cache &&
        ((st = nn_kv_cache_init(&cache, d.n_layer, g->num_beams, d.n_head, d.d_head, max_length)) ||
         (st = nn_cross_cache_init(&cross, d.n_layer, d.n_head, d.d_head, n_src)))) {
        free(enc);
        nn_kv_cache_free(&cache);
        return st;
    }
    const bool was_training = ctx->training;
    ag_ctx_train(ctx, false);
    const gen_model gm = {.m = m, .cache = g->use_cache ? &cache : NULL, .enc = enc, .S = n_src, .C = d.d_model,
                          .cross = &cross};
    if ((st = s2s_encode(ctx, m, src, n_src, enc, g->use_cache ? &cross : NULL))) goto done;
    if (g->num_beams > 1 || (g->force_beam_search && !g->do_sample)) {
        st = beam_search(ctx, &gm, g, d.vocab_size, max_length, out, n_out, score);
        for (int i = 1; on_token && st == AG_OK && i < *n_out; ++i) on_token(out[i], arg);
    } else {
        st = greedy_or_sample(ctx, &gm, g, d.vocab_size, max_length, out, n_out, score, on_token, arg);
    }
done:
    ag_ctx_reset(ctx);
    ag_ctx_train(ctx, was_training);
    nn_kv_cache_free(&cache);
    nn_cross_cache_free(&cross);
    free(enc);
    return st;
}

/* ---------------------------------------------------------------- the command */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Byte-level output: ids 0..255 are bytes, anything else is shown as <id>. */
static void put_token(int32_t tok, void *arg) {
    FILE *f = arg;
    if (tok >= 0 && tok < 256) fputc(tok, f);
    else fprintf(f, "<%d>", tok);
    fflush(f);
}

ag_status recipe_generate(const recipe_generate_opts *o, FILE *out) {
    ag_status st;
    recipe_model rm = {0};
    ag_params_init(&rm.ps);
    ckpt_state cs = {0};
    ag_ctx *ctx = NULL;
    int32_t *prompt = NULL, *ids = NULL, *ids2 = NULL;
    char ckpt_path[1024];
    if (o->checkpoint) {
        snprintf(ckpt_path, sizeof ckpt_path, "%s/ckpt.h5", o->checkpoint);
        if ((st = ckpt_read_state(ckpt_path, &cs))) goto done;
        if (!cs.config) { st = ag_fail(AG_ERR_IO, "checkpoint %s: no /config attribute", ckpt_path); goto done; }
        if ((st = recipe_model_declare_text(&rm, cs.config, ckpt_path, NULL)) || (st = ag_params_finalize(&rm.ps)) ||
            (st = ckpt_load_params(ckpt_path, &rm.ps)))
            goto done;
    } else if (o->config_path) {
        /* random weights, as Hugging Face initialises them: for timing */
        if ((st = recipe_model_declare(&rm, o->config_path, NULL)) || (st = recipe_model_alloc(&rm, o->gen.seed)))
            goto done;
    } else {
        st = ag_fail(AG_ERR_ARG, "generate: give a checkpoint (a run folder) or a config.json");
        goto done;
    }
    recipe_decoder_info d;
    if ((st = recipe_decoder_info_get(&rm, &d))) goto done;
    recipe_gen_config g = o->gen;
    if (g.eos_token_id < -1) g.eos_token_id = d.eos_token_id;
    /* byte-level tokens: the prompt's bytes, or end-of-text to start from nothing */
    const char *text = o->prompt ? o->prompt : "";
    const size_t plen = strlen(text);
    const int cap = (int)plen + 1 + g.max_new_tokens + 1;
    prompt = malloc((size_t)cap * sizeof(int32_t));
    ids = malloc((size_t)cap * sizeof(int32_t));
    ids2 = malloc((size_t)cap * sizeof(int32_t));
    ctx = ag_ctx_create(0);
    if (!prompt || !ids || !ids2 || !ctx) { st = ag_fail(AG_ERR_MEMORY, "generate: out of memory"); goto done; }
    int n_prompt = 0;
    if (plen == 0) prompt[n_prompt++] = d.eos_token_id >= 0 ? d.eos_token_id : DATA_BYTE_EOT;
    for (size_t i = 0; i < plen; ++i) prompt[n_prompt++] = (unsigned char)text[i];
    int n = 0;
    if (!o->bench) {
        fputs(text, out);
        st = recipe_generate_ids(ctx, &rm, &g, prompt, n_prompt, ids, &n, NULL, put_token, out);
        fputc('\n', out);
        goto done;
    }
    /* --bench: the same generation with and without the cache; eos is ignored
     * so that both run the full length */
    g.eos_token_id = -1;
    double t[2];
    int n2 = 0;
    for (int k = 0; k < 2; ++k) {
        g.use_cache = k == 0;
        double t0 = now_s();
        if ((st = recipe_generate_ids(ctx, &rm, &g, prompt, n_prompt, k == 0 ? ids : ids2, k == 0 ? &n : &n2, NULL,
                                      NULL, NULL)))
            goto done;
        t[k] = now_s() - t0;
    }
    const bool same = n == n2 && memcmp(ids, ids2, (size_t)n * sizeof(int32_t)) == 0;
    const int new_tokens = n - n_prompt;
    fprintf(out, "{\"model\": \"%s\", \"layers\": %d, \"heads\": %d, \"prompt\": %d, \"new_tokens\": %d, "
                 "\"beams\": %d, \"threads\": %d, \"cached_tokens_per_s\": %.1f, \"uncached_tokens_per_s\": %.1f, "
                 "\"speedup\": %.2f, \"same_tokens\": %s}\n",
            rm.arch, d.n_layer, d.n_head, n_prompt, new_tokens, g.num_beams, ag_get_threads(), new_tokens / t[0],
            new_tokens / t[1], t[1] / t[0], same ? "true" : "false");
    if (!same) st = ag_fail(AG_ERR_NUMERIC, "generate --bench: the cached and uncached runs chose different tokens");
done:
    free(prompt);
    free(ids);
    free(ids2);
    ag_ctx_free(ctx);
    ckpt_state_free(&cs);
    recipe_model_free(&rm);
    return st;
}
