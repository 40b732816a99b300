/* gptj.c: GPT-J, step for step as Hugging Face's modeling_gptj.py (4.31).
 *
 *   h = wte[ids]                                                  [B,T,C]
 *   for each block:
 *     x = ln_1(h)
 *     q, k, v = x Wq^T, x Wk^T, x Wv^T                            [B,NH,T,D] each
 *     q, k = rope(q), rope(k) on dims [0, rotary_dim), pairs (0,1), (2,3), ...
 *     a = out_proj(causal_softmax(q k^T / sqrt(D) + padding mask) v)
 *     f = fc_out(act(fc_in(x)))
 *     h = h + a + f          (attention and MLP in parallel, one LayerNorm)
 *   h = ln_f(h);  logits = h W_head^T + b_head
 *
 * Hugging Face rotates q and k while they are still [B,T,NH,D] and permutes
 * afterwards; a rotation depends only on the position and the pair, so
 * rotating after the permute (ag_rope wants [B,NH,T,D]) is the same thing.
 * Its angles are pos * 10000^(-2i/rotary_dim) (create_sinusoidal_positions),
 * ag_rope's with base 10000.
 */
#include "gptj.h"

#include "causal_lm.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

ag_status nn_gptj_config_read(const nn_config *c, nn_gptj_config *g) {
    memset(g, 0, sizeof *g);
    ag_status st;
    if ((st = nn_config_int(c, "vocab_size", 50400, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "n_positions", 2048, 1, 1 << 20, &g->n_positions)) ||
        (st = nn_config_int(c, "n_embd", 4096, 1, 1 << 16, &g->n_embd)) ||
        (st = nn_config_int(c, "n_layer", 28, 1, 4096, &g->n_layer)) ||
        (st = nn_config_int(c, "n_head", 16, 1, 4096, &g->n_head)) ||
        (st = nn_config_int(c, "n_inner", 4 * g->n_embd, 1, 1 << 20, &g->n_inner)) ||
        (st = nn_causal_lm_config_common(c, 1e-5, 0.0, &g->layer_norm_epsilon, &g->initializer_range, &g->embd_pdrop,
                                         &g->attn_pdrop, &g->resid_pdrop)) ||
        (st = nn_config_act(c, "activation_function", "gelu_new", &g->act)) ||
        (st = nn_config_bool(c, "tie_word_embeddings", false, &g->tie_word_embeddings)))
        return st;
    if (g->n_embd % g->n_head)
        return ag_fail(AG_ERR_ARG, "config %s: n_embd %d is not divisible by n_head %d", c->path, g->n_embd, g->n_head);
    const int D = g->n_embd / g->n_head;
    /* rotary_dim: null (or absent after an explicit null) rotates the whole head */
    const cJSON *rd = cJSON_GetObjectItemCaseSensitive(c->json, "rotary_dim");
    if (cJSON_IsNull(rd)) g->rotary_dim = D;
    else if ((st = nn_config_int(c, "rotary_dim", 64, 0, 1 << 16, &g->rotary_dim))) return st;
    if (g->rotary_dim > D || g->rotary_dim % 2)
        return ag_fail(AG_ERR_ARG, "config %s: field \"rotary_dim\" (%d) must be even and at most the head size %d",
                       c->path, g->rotary_dim, D);
    return AG_OK;
}

/* ---------------------------------------------------------------- parameters */

ag_status nn_gptj_declare(ag_params *ps, nn_gptj *m, const nn_gptj_config *cfg, bool lm_head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->lm_head = lm_head;
    snprintf(m->prefix, sizeof m->prefix, "%s", lm_head ? "transformer." : "");
    const char *p = m->prefix;
    const int C = cfg->n_embd;
    char name[NN_NAME_MAX], q[NN_NAME_MAX], k[NN_NAME_MAX], v[NN_NAME_MAX], o[NN_NAME_MAX];
    ag_status st;
    if ((st = nn_embedding_init(ps, &m->wte, nn_name(name, "%swte", p), cfg->vocab_size, C, -1))) return st;
    m->h = calloc((size_t)cfg->n_layer, sizeof *m->h);
    if (!m->h) return ag_fail(AG_ERR_MEMORY, "gptj: out of memory");
    for (int l = 0; l < cfg->n_layer; ++l) {
        nn_gptj_block *b = &m->h[l];
        const char *names[4] = {nn_name(q, "%sh.%d.attn.q_proj", p, l), nn_name(k, "%sh.%d.attn.k_proj", p, l),
                                nn_name(v, "%sh.%d.attn.v_proj", p, l), nn_name(o, "%sh.%d.attn.out_proj", p, l)};
        if ((st = nn_layernorm_init(ps, &b->ln_1, nn_name(name, "%sh.%d.ln_1", p, l), C, cfg->layer_norm_epsilon)) ||
            (st = nn_mha_init(ps, &b->attn, names, C, cfg->n_head, C / cfg->n_head, false, false,
                              AG_LINEAR_OUT_IN)) ||
            (st = nn_linear_init(ps, &b->fc_in, nn_name(name, "%sh.%d.mlp.fc_in", p, l), C, cfg->n_inner, true,
                                 AG_LINEAR_OUT_IN)) ||
            (st = nn_linear_init(ps, &b->fc_out, nn_name(name, "%sh.%d.mlp.fc_out", p, l), cfg->n_inner, C, true,
                                 AG_LINEAR_OUT_IN)))
            return st;
        b->attn.attn_dropout = cfg->attn_pdrop;
    }
    if ((st = nn_layernorm_init(ps, &m->ln_f, nn_name(name, "%sln_f", p), C, cfg->layer_norm_epsilon))) return st;
    if (lm_head) {
        if (cfg->tie_word_embeddings) m->lm_head_w = m->wte.w;
        else if (!(m->lm_head_w = ag_params_add(ps, "lm_head.weight", 2, AG_SHAPE(cfg->vocab_size, C))))
            return ag_error_status();
        if (!(m->lm_head_b = ag_params_add(ps, "lm_head.bias", 1, AG_SHAPE(cfg->vocab_size)))) return ag_error_status();
    }
    return AG_OK;
}

void nn_gptj_free(nn_gptj *m) {
    free(m->h);
    m->h = NULL;
}

int nn_gptj_aliases(const nn_gptj *m, const char *alias[][2], int cap) {
    return nn_causal_lm_tied_head_alias(alias, cap, m->lm_head && m->cfg.tie_word_embeddings, m->wte.w);
}

void nn_gptj_init_weights(nn_gptj *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const float std = m->cfg.initializer_range;
    nn_init_normal(m->wte.w, std, &r);
    for (int l = 0; l < m->cfg.n_layer; ++l) {
        nn_gptj_block *b = &m->h[l];
        nn_init_norm(&b->ln_1);
        nn_init_normal(b->attn.q.w, std, &r), nn_init_normal(b->attn.k.w, std, &r);
        nn_init_normal(b->attn.v.w, std, &r), nn_init_normal(b->attn.o.w, std, &r);
        nn_init_linear(&b->fc_in, std, &r);
        nn_init_linear(&b->fc_out, std, &r);
    }
    nn_init_norm(&m->ln_f);
    if (m->lm_head_w && m->lm_head_w != m->wte.w) nn_init_normal(m->lm_head_w, std, &r);
    if (m->lm_head_b) nn_init_const(m->lm_head_b, 0);
}

/* ---------------------------------------------------------------- forward */

/* GPTJAttention.forward: x [B,T,C] -> [B,T,C]. */
static ag_tensor *gptj_attention(ag_ctx *ctx, const nn_gptj *m, const nn_mha *a, ag_tensor *x,
                                 const ag_ints *attention_mask, int pos_offset) {
    const int NH = a->n_head, R = m->cfg.rotary_dim;
    ag_tensor *q = nn_split_heads(ctx, nn_linear_forward(ctx, &a->q, x), NH); /* [B,NH,T,D] */
    ag_tensor *k = nn_split_heads(ctx, nn_linear_forward(ctx, &a->k, x), NH);
    ag_tensor *v = nn_split_heads(ctx, nn_linear_forward(ctx, &a->v, x), NH);
    if (R > 0) {
        q = ag_rope(ctx, q, R, pos_offset, 10000.0f, true); /* dims R.. pass through */
        k = ag_rope(ctx, k, R, pos_offset, 10000.0f, true);
    }
    ag_attn_opts opts = {.causal = true, .key_mask = attention_mask, .dropout = a->attn_dropout};
    ag_tensor *y = ag_attention(ctx, q, k, v, &opts);     /* [B,NH,T,D], scaled by 1/sqrt(D) */
    return nn_linear_forward(ctx, &a->o, nn_merge_heads(ctx, y));
}

ag_tensor *nn_gptj_forward(ag_ctx *ctx, const nn_gptj *m, const ag_ints *ids, const ag_ints *attention_mask,
                           int pos_offset) {
    if (nn_causal_lm_check("gptj", ids, attention_mask, pos_offset, m->cfg.n_positions)) return NULL;
    ag_tensor *h = ag_dropout(ctx, nn_embedding_forward(ctx, &m->wte, ids), m->cfg.embd_pdrop); /* [B,T,C] */
    for (int l = 0; l < m->cfg.n_layer; ++l) {
        const nn_gptj_block *b = &m->h[l];
        ag_tensor *x = nn_norm_forward(ctx, &b->ln_1, h);
        ag_tensor *a = gptj_attention(ctx, m, &b->attn, x, attention_mask, pos_offset);
        a = ag_dropout(ctx, a, m->cfg.resid_pdrop);
        ag_tensor *f = nn_linear_forward(ctx, &b->fc_out, nn_act_forward(ctx, m->cfg.act,
                                                                           nn_linear_forward(ctx, &b->fc_in, x)));
        f = ag_dropout(ctx, f, m->cfg.resid_pdrop);
        h = ag_add(ctx, ag_add(ctx, a, f), h); /* attn_output + feed_forward + residual, HF's order */
    }
    return nn_norm_forward(ctx, &m->ln_f, h);
}

ag_tensor *nn_gptj_lm_loss(ag_ctx *ctx, const nn_gptj *m, const ag_ints *ids, const ag_ints *attention_mask,
                           const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens) {
    if (!m->lm_head_w) {
        ag_fail(AG_ERR_STATE, "gptj: GPTJModel has no LM head (use GPTJForCausalLM)");
        return NULL;
    }
    ag_tensor *h = nn_gptj_forward(ctx, m, ids, attention_mask, 0);
    return nn_causal_lm_loss(ctx, "gptj", h, m->lm_head_w, m->lm_head_b, labels, reduction, n_tokens);
}

/* nn_gptj_forward over the T new positions: q and k are rotated at positions
 * len .. len+T-1 before k joins the cache, so the cache holds rotated keys. */
ag_tensor *nn_gptj_forward_cached(ag_ctx *ctx, const nn_gptj *m, const ag_ints *ids, nn_kv_cache *cache) {
    const int NH = m->cfg.n_head, D = m->cfg.n_embd / NH, R = m->cfg.rotary_dim;
    if (nn_kv_cache_check(cache, "gptj", ids, m->cfg.n_layer, NH, D) ||
        nn_causal_lm_check("gptj", ids, NULL, cache->len, m->cfg.n_positions))
        return NULL;
    const int64_t T = ids->shape[1], pos_offset = cache->len;
    ag_tensor *h = ag_dropout(ctx, nn_embedding_forward(ctx, &m->wte, ids), m->cfg.embd_pdrop); /* [B,T,C] */
    for (int l = 0; l < m->cfg.n_layer; ++l) {
        const nn_gptj_block *b = &m->h[l];
        const nn_mha *at = &b->attn;
        ag_tensor *x = nn_norm_forward(ctx, &b->ln_1, h);
        ag_tensor *q = nn_split_heads(ctx, nn_linear_forward(ctx, &at->q, x), NH); /* [B,NH,T,D] */
        ag_tensor *k = nn_split_heads(ctx, nn_linear_forward(ctx, &at->k, x), NH);
        ag_tensor *v = nn_split_heads(ctx, nn_linear_forward(ctx, &at->v, x), NH);
        if (R > 0) {
            q = ag_rope(ctx, q, R, pos_offset, 10000.0f, true);
            k = ag_rope(ctx, k, R, pos_offset, 10000.0f, true);
        }
        ag_attn_opts opts = {.causal = true, .dropout = at->attn_dropout};
        ag_tensor *a = nn_kv_cache_attend(ctx, cache, l, q, k, v, &opts); /* [B,NH,T,D] */
        a = ag_dropout(ctx, nn_linear_forward(ctx, &at->o, nn_merge_heads(ctx, a)), m->cfg.resid_pdrop);
        ag_tensor *f = nn_linear_forward(ctx, &b->fc_out, nn_act_forward(ctx, m->cfg.act,
                                                                           nn_linear_forward(ctx, &b->fc_in, x)));
        f = ag_dropout(ctx, f, m->cfg.resid_pdrop);
        h = ag_add(ctx, ag_add(ctx, a, f), h);
    }
    h = nn_norm_forward(ctx, &m->ln_f, h);
    if (h) nn_kv_cache_advance(cache, T);
    return h;
}
