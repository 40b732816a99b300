/* ctrl.c: CTRL, step for step as Hugging Face's modeling_ctrl.py (4.31).
 *
 *   h = w[ids] * sqrt(C) + pos_encoding[pos]                      [B,T,C]
 *   for each EncoderLayer:
 *     x = layernorm1(h)                            (eps 1e-6, fixed in HF)
 *     h = h + dense(causal softmax(Wq(x) Wk(x)^T / sqrt(D) + padding mask) Wv(x))
 *     x = layernorm2(h)
 *     h = h + ffn.2(relu(ffn.0(x)))
 *   h = layernorm(h)                               (eps layer_norm_epsilon)
 *   logits = h w^T + lm_head.bias
 *
 * Hugging Face masks a future score by adding -1e4 to it; its probability,
 * exp(s - 1e4 - max), is 0 in float32 whenever the scores are far below 1e4,
 * which ag_attention's causal -inf gives exactly.
 */
#include "ctrl.h"

#include "causal_lm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CTRL_BLOCK_EPS 1e-6f /* EncoderLayer's LayerNorms ignore layer_norm_epsilon */

ag_status nn_ctrl_config_read(const nn_config *c, nn_ctrl_config *g) {
    memset(g, 0, sizeof *g);
    bool tied;
    ag_status st;
    if ((st = nn_config_int(c, "vocab_size", 246534, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "n_positions", 256, 1, 1 << 20, &g->n_positions)) ||
        (st = nn_config_int(c, "n_embd", 1280, 1, 1 << 16, &g->n_embd)) ||
        (st = nn_config_int(c, "dff", 8192, 1, 1 << 20, &g->dff)) ||
        (st = nn_config_int(c, "n_layer", 48, 1, 4096, &g->n_layer)) ||
        (st = nn_config_int(c, "n_head", 16, 1, 4096, &g->n_head)) ||
        (st = nn_causal_lm_config_common(c, 1e-6, 0.1, &g->layer_norm_epsilon, &g->initializer_range, &g->embd_pdrop,
                                         NULL, &g->resid_pdrop)) ||
        (st = nn_config_bool(c, "tie_word_embeddings", true, &tied)))
        return st;
    if (!tied)
        return ag_fail(AG_ERR_ARG, "config %s: field \"tie_word_embeddings\": tapegrad builds CTRL with its LM head "
                       "tied to transformer.w only", c->path);
    if (g->n_embd % g->n_head)
        return ag_fail(AG_ERR_ARG, "config %s: n_embd %d is not divisible by n_head %d", c->path, g->n_embd, g->n_head);
    if (g->n_embd % 2)
        return ag_fail(AG_ERR_ARG, "config %s: field \"n_embd\" (%d) must be even for the sine/cosine positions",
                       c->path, g->n_embd);
    return AG_OK;
}

ag_status nn_ctrl_declare(ag_params *ps, nn_ctrl *m, const nn_ctrl_config *cfg, bool lm_head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->lm_head = lm_head;
    snprintf(m->prefix, sizeof m->prefix, "%s", lm_head ? "transformer." : "");
    const char *p = m->prefix;
    const int C = cfg->n_embd;
    char name[NN_NAME_MAX], q[NN_NAME_MAX], k[NN_NAME_MAX], v[NN_NAME_MAX], o[NN_NAME_MAX];
    ag_status st;
    if ((st = nn_embedding_init(ps, &m->w, nn_name(name, "%sw", p), cfg->vocab_size, C, -1))) return st;
    m->h = calloc((size_t)cfg->n_layer, sizeof *m->h);
    if (!m->h) return ag_fail(AG_ERR_MEMORY, "ctrl: out of memory");
    for (int l = 0; l < cfg->n_layer; ++l) {
        nn_ctrl_block *b = &m->h[l];
        const char *names[4] = {nn_name(q, "%sh.%d.multi_head_attention.Wq", p, l),
                                nn_name(k, "%sh.%d.multi_head_attention.Wk", p, l),
                                nn_name(v, "%sh.%d.multi_head_attention.Wv", p, l),
                                nn_name(o, "%sh.%d.multi_head_attention.dense", p, l)};
        if ((st = nn_mha_init(ps, &b->mha, names, C, cfg->n_head, C / cfg->n_head, false, true, AG_LINEAR_OUT_IN)) ||
            (st = nn_linear_init(ps, &b->ffn0, nn_name(name, "%sh.%d.ffn.0", p, l), C, cfg->dff, true,
                                 AG_LINEAR_OUT_IN)) ||
            (st = nn_linear_init(ps, &b->ffn2, nn_name(name, "%sh.%d.ffn.2", p, l), cfg->dff, C, true,
                                 AG_LINEAR_OUT_IN)) ||
            (st = nn_layernorm_init(ps, &b->layernorm1, nn_name(name, "%sh.%d.layernorm1", p, l), C, CTRL_BLOCK_EPS)) ||
            (st = nn_layernorm_init(ps, &b->layernorm2, nn_name(name, "%sh.%d.layernorm2", p, l), C, CTRL_BLOCK_EPS)))
            return st;
    }
    if ((st = nn_layernorm_init(ps, &m->layernorm, nn_name(name, "%slayernorm", p), C, cfg->layer_norm_epsilon)))
        return st;
    if (lm_head && !(m->lm_head_b = ag_params_add(ps, "lm_head.bias", 1, AG_SHAPE(cfg->vocab_size))))
        return ag_error_status();
    return AG_OK;
}

void nn_ctrl_free(nn_ctrl *m) {
    free(m->h);
    m->h = NULL;
}

int nn_ctrl_aliases(const nn_ctrl *m, const char *alias[][2], int cap) {
    return nn_causal_lm_tied_head_alias(alias, cap, m->lm_head, m->w.w);
}

void nn_ctrl_init_weights(nn_ctrl *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const float std = m->cfg.initializer_range;
    nn_init_normal(m->w.w, std, &r);
    for (int l = 0; l < m->cfg.n_layer; ++l) {
        nn_ctrl_block *b = &m->h[l];
        const nn_linear *lin[6] = {&b->mha.q, &b->mha.k, &b->mha.v, &b->mha.o, &b->ffn0, &b->ffn2};
        for (int i = 0; i < 6; ++i) nn_init_linear(lin[i], std, &r);
        nn_init_norm(&b->layernorm1);
        nn_init_norm(&b->layernorm2);
    }
    nn_init_norm(&m->layernorm);
    if (m->lm_head_b) nn_init_const(m->lm_head_b, 0);
}

void nn_ctrl_position_row(float *out, int64_t pos, int d) {
    const int half = d / 2;
    for (int j = 0; j < half; ++j) {
        /* columns 2j (a sine) and 2j+1 (a cosine) share the rate 10000^(-2j/d) */
        double angle = (double)pos / pow(10000.0, (2.0 * j) / d);
        out[j] = (float)sin(angle);
        out[half + j] = (float)cos(angle);
    }
}

ag_tensor *nn_ctrl_forward(ag_ctx *ctx, const nn_ctrl *m, const ag_ints *ids, const ag_ints *attention_mask,
                           int pos_offset) {
    if (nn_causal_lm_check("ctrl", ids, attention_mask, pos_offset, m->cfg.n_positions)) return NULL;
    const int64_t T = ids->shape[1];
    const int C = m->cfg.n_embd;
    ag_tensor *pos = ag_new(ctx, 2, AG_SHAPE(T, C), false); /* [T,C], a constant */
    if (!pos) return NULL;
    for (int64_t t = 0; t < T; ++t) nn_ctrl_position_row(pos->data + t * C, pos_offset + t, C);
    ag_tensor *h = ag_scale(ctx, nn_embedding_forward(ctx, &m->w, ids), sqrtf((float)C)); /* [B,T,C] */
    h = ag_dropout(ctx, ag_add(ctx, h, pos), m->cfg.embd_pdrop);
    const ag_attn_opts opts = {.causal = true, .key_mask = attention_mask};
    for (int l = 0; l < m->cfg.n_layer; ++l) {
        const nn_ctrl_block *b = &m->h[l];
        ag_tensor *a = nn_mha_forward(ctx, &b->mha, nn_norm_forward(ctx, &b->layernorm1, h), NULL, &opts);
        h = ag_add(ctx, h, ag_dropout(ctx, a, m->cfg.resid_pdrop));
        ag_tensor *f = nn_linear_forward(ctx, &b->ffn0, nn_norm_forward(ctx, &b->layernorm2, h));
        f = nn_linear_forward(ctx, &b->ffn2, ag_relu(ctx, f));
        h = ag_add(ctx, h, ag_dropout(ctx, f, m->cfg.resid_pdrop));
    }
    return nn_norm_forward(ctx, &m->layernorm, h);
}

ag_tensor *nn_ctrl_lm_loss(ag_ctx *ctx, const nn_ctrl *m, const ag_ints *ids, const ag_ints *attention_mask,
                           const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens) {
    if (!m->lm_head) {
        ag_fail(AG_ERR_STATE, "ctrl: CTRLModel has no LM head (use CTRLLMHeadModel)");
        return NULL;
    }
    ag_tensor *h = nn_ctrl_forward(ctx, m, ids, attention_mask, 0);
    return nn_causal_lm_loss(ctx, "ctrl", h, m->w.w, m->lm_head_b, labels, reduction, n_tokens);
}

/* nn_ctrl_forward over the T new positions, keys and values from the cache. */
ag_tensor *nn_ctrl_forward_cached(ag_ctx *ctx, const nn_ctrl *m, const ag_ints *ids, nn_kv_cache *cache) {
    const int C = m->cfg.n_embd, NH = m->cfg.n_head;
    if (nn_kv_cache_check(cache, "ctrl", ids, m->cfg.n_layer, NH, C / NH) ||
        nn_causal_lm_check("ctrl", ids, NULL, cache->len, m->cfg.n_positions))
        return NULL;
    const int64_t T = ids->shape[1];
    ag_tensor *pos = ag_new(ctx, 2, AG_SHAPE(T, C), false); /* [T,C] positions len .. len+T-1 */
    if (!pos) return NULL;
    for (int64_t t = 0; t < T; ++t) nn_ctrl_position_row(pos->data + t * C, cache->len + t, C);
    ag_tensor *h = ag_scale(ctx, nn_embedding_forward(ctx, &m->w, ids), sqrtf((float)C)); /* [B,T,C] */
    h = ag_dropout(ctx, ag_add(ctx, h, pos), m->cfg.embd_pdrop);
    const ag_attn_opts opts = {.causal = true};
    for (int l = 0; l < m->cfg.n_layer; ++l) {
        const nn_ctrl_block *b = &m->h[l];
        ag_tensor *a = nn_mha_forward_cached(ctx, &b->mha, nn_norm_forward(ctx, &b->layernorm1, h), cache, l, &opts);
        h = ag_add(ctx, h, ag_dropout(ctx, a, m->cfg.resid_pdrop));
        ag_tensor *f = nn_linear_forward(ctx, &b->ffn0, nn_norm_forward(ctx, &b->layernorm2, h));
        f = nn_linear_forward(ctx, &b->ffn2, ag_relu(ctx, f));
        h = ag_add(ctx, h, ag_dropout(ctx, f, m->cfg.resid_pdrop));
    }
    h = nn_norm_forward(ctx, &m->layernorm, h);
    if (h) nn_kv_cache_advance(cache, T);
    return h;
}
