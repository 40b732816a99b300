/* gpt2.c: GPT-2, step for step as Hugging Face's modeling_gpt2.py (4.31).
 *
 *   h = wte[ids] + wpe[pos]                                 [B,T,C]
 *   h = dropout(h, embd_pdrop)
 *   for each block:
 *     a = c_attn(ln_1(h)) -> q,k,v -> causal attention -> c_proj -> dropout
 *     h = h + a
 *     m = c_proj(act(c_fc(ln_2(h)))) -> dropout
 *     h = h + m
 *   h = ln_f(h)
 *   logits = h wte^T  (the LM head is tied to the token embedding)
 *
 * Conv1D stores weights [in,out] (y = x W + b): AG_LINEAR_IN_OUT.
 */
#include "gpt2.h"

#include "causal_lm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

ag_status nn_gpt2_config_read(const nn_config *c, nn_gpt2_config *g) {
    memset(g, 0, sizeof *g);
    ag_status st;
    if ((st = nn_config_int(c, "vocab_size", 50257, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "n_positions", 1024, 1, 1 << 20, &g->n_positions)) ||
        (st = nn_config_int(c, "n_embd", 768, 1, 1 << 16, &g->n_embd)) ||
        (st = nn_config_int(c, "n_layer", 12, 1, 4096, &g->n_layer)) ||
        (st = nn_config_int(c, "n_head", 12, 1, 4096, &g->n_head)) ||
        (st = nn_config_int(c, "n_inner", 4 * g->n_embd, 1, 1 << 20, &g->n_inner)) ||
        (st = nn_causal_lm_config_common(c, 1e-5, 0.1, &g->layer_norm_epsilon, &g->initializer_range, &g->embd_pdrop,
                                         &g->attn_pdrop, &g->resid_pdrop)) ||
        (st = nn_config_act(c, "activation_function", "gelu_new", &g->act)) ||
        (st = nn_config_bool(c, "tie_word_embeddings", true, &g->tie_word_embeddings)) ||
        (st = nn_config_bool(c, "scale_attn_weights", true, &g->scale_attn_weights)) ||
        (st = nn_config_bool(c, "scale_attn_by_inverse_layer_idx", false, &g->scale_attn_by_inverse_layer_idx)) ||
        (st = nn_config_int(c, "bos_token_id", 50256, -1, 1 << 24, &g->bos_token_id)) ||
        (st = nn_config_int(c, "eos_token_id", 50256, -1, 1 << 24, &g->eos_token_id)))
        return st;
    if (g->n_embd % g->n_head)
        return ag_fail(AG_ERR_ARG, "config %s: n_embd %d is not divisible by n_head %d", c->path, g->n_embd, g->n_head);
    return AG_OK;
}

/* ---------------------------------------------------------------- parameters */

ag_status nn_gpt2_declare(ag_params *ps, nn_gpt2 *m, const nn_gpt2_config *cfg, bool lm_head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->lm_head = lm_head;
    snprintf(m->prefix, sizeof m->prefix, "%s", lm_head ? "transformer." : "");
    const char *p = m->prefix;
    const int C = cfg->n_embd;
    char name[NN_NAME_MAX], qkv[NN_NAME_MAX], proj[NN_NAME_MAX];
    ag_status st;
    if ((st = nn_embedding_init(ps, &m->wte, nn_name(name, "%swte", p), cfg->vocab_size, C, -1)) ||
        (st = nn_embedding_init(ps, &m->wpe, nn_name(name, "%swpe", p), cfg->n_positions, C, -1)))
        return st;
    m->h = calloc((size_t)cfg->n_layer, sizeof *m->h);
    if (!m->h) return ag_fail(AG_ERR_MEMORY, "gpt2: out of memory");
    for (int l = 0; l < cfg->n_layer; ++l) {
        nn_gpt2_block *b = &m->h[l];
        const char *names[2] = {nn_name(qkv, "%sh.%d.attn.c_attn", p, l), nn_name(proj, "%sh.%d.attn.c_proj", p, l)};
        if ((st = nn_layernorm_init(ps, &b->ln_1, nn_name(name, "%sh.%d.ln_1", p, l), C, cfg->layer_norm_epsilon)) ||
            (st = nn_mha_init(ps, &b->attn, names, C, cfg->n_head, C / cfg->n_head, true, true, AG_LINEAR_IN_OUT)) ||
            (st = nn_layernorm_init(ps, &b->ln_2, nn_name(name, "%sh.%d.ln_2", p, l), C, cfg->layer_norm_epsilon)) ||
            (st = nn_linear_init(ps, &b->c_fc, nn_name(name, "%sh.%d.mlp.c_fc", p, l), C, cfg->n_inner, true,
                                 AG_LINEAR_IN_OUT)) ||
            (st = nn_linear_init(ps, &b->c_proj, nn_name(name, "%sh.%d.mlp.c_proj", p, l), cfg->n_inner, C, true,
                                 AG_LINEAR_IN_OUT)))
            return st;
        b->attn.attn_dropout = cfg->attn_pdrop;
        b->attn.no_scale = !cfg->scale_attn_weights;
    }
    if ((st = nn_layernorm_init(ps, &m->ln_f, nn_name(name, "%sln_f", p), C, cfg->layer_norm_epsilon))) return st;
    if (lm_head) {
        if (cfg->tie_word_embeddings) {
            m->lm_head_w = m->wte.w;
        } else if (!(m->lm_head_w = ag_params_add(ps, "lm_head.weight", 2, AG_SHAPE(cfg->vocab_size, C)))) {
            return ag_error_status();
        }
    }
    return AG_OK;
}

void nn_gpt2_free(nn_gpt2 *m) {
    free(m->h);
    m->h = NULL;
}

int nn_gpt2_aliases(const nn_gpt2 *m, const char *alias[][2], int cap) {
    return nn_causal_lm_tied_head_alias(alias, cap, m->lm_head && m->cfg.tie_word_embeddings, m->wte.w);
}

void nn_gpt2_init_weights(nn_gpt2 *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const float std = m->cfg.initializer_range;
    const float proj_std = std / sqrtf(2.0f * (float)m->cfg.n_layer);
    nn_init_normal(m->wte.w, std, &r);
    nn_init_normal(m->wpe.w, std, &r);
    for (int l = 0; l < m->cfg.n_layer; ++l) {
        nn_gpt2_block *b = &m->h[l];
        nn_init_norm(&b->ln_1);
        nn_init_norm(&b->ln_2);
        nn_init_linear(&b->attn.qkv, std, &r);
        nn_init_linear(&b->attn.o, proj_std, &r);
        nn_init_linear(&b->c_fc, std, &r);
        nn_init_linear(&b->c_proj, proj_std, &r);
    }
    nn_init_norm(&m->ln_f);
    if (m->lm_head_w && m->lm_head_w != m->wte.w) nn_init_normal(m->lm_head_w, std, &r);
}

/* ---------------------------------------------------------------- forward */

ag_tensor *nn_gpt2_forward(ag_ctx *ctx, const nn_gpt2 *m, const ag_ints *ids, const ag_ints *attention_mask,
                           int pos_offset) {
    if (!ids) return NULL;
    char s[64];
    if (ids->ndim != 2) {
        ag_fail(AG_ERR_ARG, "gpt2: input_ids must be [B,T], got %s", ag_shape_str(s, ids->ndim, ids->shape));
        return NULL;
    }
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (pos_offset < 0 || pos_offset + T > m->cfg.n_positions) {
        ag_fail(AG_ERR_ARG, "gpt2: positions %d..%lld exceed n_positions %d", pos_offset, (long long)(pos_offset + T - 1),
                m->cfg.n_positions);
        return NULL;
    }
    if (attention_mask && (attention_mask->ndim != 2 || attention_mask->shape[0] != B || attention_mask->shape[1] != T)) {
        ag_fail(AG_ERR_ARG, "gpt2: attention_mask %s does not match input_ids [%lld,%lld]",
                ag_shape_str(s, attention_mask->ndim, attention_mask->shape), (long long)B, (long long)T);
        return NULL;
    }
    /* positions pos_offset .. pos_offset+T-1, the same for every row */
    ag_ints *pos = ag_ints_from(ctx, NULL, 1, AG_SHAPE(T));
    if (!pos) return NULL;
    for (int64_t t = 0; t < T; ++t) pos->data[t] = (int32_t)(pos_offset + t);

    ag_tensor *h = ag_add(ctx, nn_embedding_forward(ctx, &m->wte, ids),  /* [B,T,C] */
                          nn_embedding_forward(ctx, &m->wpe, pos));      /* [T,C], broadcast over B */
    h = ag_dropout(ctx, h, m->cfg.embd_pdrop);
    ag_attn_opts opts = {.causal = true, .key_mask = attention_mask};
    const float base_scale = 1.0f / sqrtf((float)(m->cfg.n_embd / m->cfg.n_head));
    for (int l = 0; l < m->cfg.n_layer; ++l) {
        const nn_gpt2_block *b = &m->h[l];
        if (m->cfg.scale_attn_by_inverse_layer_idx)
            opts.scale = (m->cfg.scale_attn_weights ? base_scale : 1.0f) / (float)(l + 1);
        ag_tensor *a = nn_mha_forward(ctx, &b->attn, nn_norm_forward(ctx, &b->ln_1, h), NULL, &opts);
        h = ag_add(ctx, h, ag_dropout(ctx, a, m->cfg.resid_pdrop));
        ag_tensor *f = nn_linear_forward(ctx, &b->c_fc, nn_norm_forward(ctx, &b->ln_2, h));
        f = nn_linear_forward(ctx, &b->c_proj, nn_act_forward(ctx, m->cfg.act, f));
        h = ag_add(ctx, h, ag_dropout(ctx, f, m->cfg.resid_pdrop));
    }
    return nn_norm_forward(ctx, &m->ln_f, h);
}

ag_tensor *nn_gpt2_logits(ag_ctx *ctx, const nn_gpt2 *m, ag_tensor *hidden) {
    if (!m->lm_head_w) {
        ag_fail(AG_ERR_STATE, "gpt2: GPT2Model has no LM head (use GPT2LMHeadModel)");
        return NULL;
    }
    return ag_linear(ctx, hidden, m->lm_head_w, NULL, AG_LINEAR_OUT_IN); /* h wte^T */
}

ag_tensor *nn_gpt2_lm_loss(ag_ctx *ctx, const nn_gpt2 *m, const ag_ints *ids, const ag_ints *attention_mask,
                           const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens) {
    ag_tensor *h = nn_gpt2_forward(ctx, m, ids, attention_mask, 0);
    if (!h || !labels) return NULL;
    if (!m->lm_head_w) return nn_gpt2_logits(ctx, m, h); /* GPT2Model: fails, naming the missing head */
    /* position t predicts label t+1, the head tied to wte (causal_lm.h) */
    return nn_causal_lm_loss(ctx, "gpt2", h, m->lm_head_w, NULL, labels, reduction, n_tokens);
}

/* The same blocks as nn_gpt2_forward, over the T new positions only: each
 * layer's attention appends its keys and values to the cache and attends over
 * every position so far. */
ag_tensor *nn_gpt2_forward_cached(ag_ctx *ctx, const nn_gpt2 *m, const ag_ints *ids, nn_kv_cache *cache) {
    const int NH = m->cfg.n_head, D = m->cfg.n_embd / NH;
    if (nn_kv_cache_check(cache, "gpt2", ids, m->cfg.n_layer, NH, D) ||
        nn_causal_lm_check("gpt2", ids, NULL, cache->len, m->cfg.n_positions))
        return NULL;
    const int64_t T = ids->shape[1];
    ag_tensor *h = ag_add(ctx, nn_embedding_forward(ctx, &m->wte, ids),                                     /* [B,T,C] */
                          nn_embedding_forward(ctx, &m->wpe, nn_causal_lm_positions(ctx, T, cache->len))); /* [T,C] */
    h = ag_dropout(ctx, h, m->cfg.embd_pdrop);
    ag_attn_opts opts = {.causal = true};
    const float base_scale = 1.0f / sqrtf((float)D);
    for (int l = 0; l < m->cfg.n_layer; ++l) {
        const nn_gpt2_block *b = &m->h[l];
        if (m->cfg.scale_attn_by_inverse_layer_idx)
            opts.scale = (m->cfg.scale_attn_weights ? base_scale : 1.0f) / (float)(l + 1);
        ag_tensor *a = nn_mha_forward_cached(ctx, &b->attn, nn_norm_forward(ctx, &b->ln_1, h), cache, l, &opts);
        h = ag_add(ctx, h, ag_dropout(ctx, a, m->cfg.resid_pdrop));
        ag_tensor *f = nn_linear_forward(ctx, &b->c_fc, nn_norm_forward(ctx, &b->ln_2, h));
        f = nn_linear_forward(ctx, &b->c_proj, nn_act_forward(ctx, m->cfg.act, f));
        h = ag_add(ctx, h, ag_dropout(ctx, f, m->cfg.resid_pdrop));
    }
    h = nn_norm_forward(ctx, &m->ln_f, h);
    if (h) nn_kv_cache_advance(cache, T);
    return h;
}

/* ---------------------------------------------------------------- GPT2ForSequenceClassification */

ag_status nn_gpt2_cls_declare(ag_params *ps, nn_linear *score, const nn_gpt2_config *cfg, int num_labels) {
    if (num_labels < 1) return ag_fail(AG_ERR_ARG, "gpt2: num_labels must be >= 1, got %d", num_labels);
    return nn_linear_init(ps, score, "score", cfg->n_embd, num_labels, false, AG_LINEAR_OUT_IN);
}

void nn_gpt2_cls_init(nn_linear *score, const nn_gpt2_config *cfg, uint64_t seed) {
    nn_init_rng r = {seed ^ 0x5c04e11ull, 0};
    nn_init_normal(score->w, cfg->initializer_range, &r);
}

ag_tensor *nn_gpt2_cls_logits(ag_ctx *ctx, const nn_gpt2 *m, const nn_linear *score, const ag_ints *ids,
                              const ag_ints *attention_mask, int pad_token_id) {
    ag_tensor *h = nn_gpt2_forward(ctx, m, ids, attention_mask, 0); /* [B,T,C] */
    if (!h) return NULL;
    const int64_t B = ids->shape[0], T = ids->shape[1], C = m->cfg.n_embd;
    /* row b*T + last_b of h viewed as [B*T,C]; HF's "argmax of ids == pad,
     * minus 1" is the first pad's index minus one, and -1 wraps to T-1 */
    ag_ints *rows = ag_ints_from(ctx, NULL, 1, AG_SHAPE(B));
    if (!rows) return NULL;
    for (int64_t b = 0; b < B; ++b) {
        int64_t first_pad = 0; /* argmax of an all-zero row is 0 */
        if (pad_token_id >= 0)
            for (int64_t t = 0; t < T; ++t)
                if (ids->data[b * T + t] == pad_token_id) { first_pad = t; break; }
        int64_t last = first_pad - 1;
        if (last < 0) last += T;
        rows->data[b] = (int32_t)(b * T + last);
    }
    ag_tensor *pooled = ag_index_select(ctx, ag_reshape(ctx, h, 2, AG_SHAPE(B * T, C)), 0, rows); /* [B,C] */
    return nn_linear_forward(ctx, score, pooled);                                                /* [B,L] */
}
