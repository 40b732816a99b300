/* openai.c: OpenAI GPT, step for step as Hugging Face's modeling_openai.py (4.31).
 *
 *   h = tokens_embed[ids] + positions_embed[pos]                  [B,T,C]
 *   for each block:
 *     a = c_proj(causal attention of c_attn(h) -> q,k,v)          (1/sqrt(D))
 *     n = ln_1(h + a)                                              post-LN
 *     h = ln_2(n + c_proj(act(c_fc(n))))
 *   logits = h tokens_embed^T        (no final norm, tied head, no bias)
 *
 * Hugging Face masks a future score by replacing it with -1e4
 * (w * b + -1e4 * (1 - b)); exp(-1e4 - max) is 0 in float32 as in float64,
 * so ag_attention's causal -inf gives the same probabilities whenever the
 * visible scores are far above -1e4, as they are for any trained model.
 */
#include "openai.h"

#include "causal_lm.h"

#include <stdlib.h>
#include <string.h>

ag_status nn_openai_config_read(const nn_config *c, nn_openai_config *g) {
    memset(g, 0, sizeof *g);
    const char *afn;
    ag_status st;
    if ((st = nn_config_int(c, "vocab_size", 40478, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "n_positions", 512, 1, 1 << 20, &g->n_positions)) ||
        (st = nn_config_int(c, "n_embd", 768, 1, 1 << 16, &g->n_embd)) ||
        (st = nn_config_int(c, "n_layer", 12, 1, 4096, &g->n_layer)) ||
        (st = nn_config_int(c, "n_head", 12, 1, 4096, &g->n_head)) ||
        (st = nn_causal_lm_config_common(c, 1e-5, 0.1, &g->layer_norm_epsilon, &g->initializer_range, &g->embd_pdrop,
                                         &g->attn_pdrop, &g->resid_pdrop)) ||
        (st = nn_config_str(c, "afn", "gelu", &afn)))
        return st;
    bool tied;
    if ((st = nn_config_bool(c, "tie_word_embeddings", true, &tied))) return st;
    if (!tied)
        return ag_fail(AG_ERR_ARG, "config %s: field \"tie_word_embeddings\": tapegrad builds OpenAI GPT with its LM "
                       "head tied to tokens_embed only", c->path);
    if (g->n_embd % g->n_head)
        return ag_fail(AG_ERR_ARG, "config %s: n_embd %d is not divisible by n_head %d", c->path, g->n_embd, g->n_head);
    /* modeling_openai.py's own table, ACT_FNS: its "gelu" is gelu_new */
    if (strcmp(afn, "gelu") == 0) g->act = NN_ACT_GELU_TANH;
    else if (strcmp(afn, "relu") == 0) g->act = NN_ACT_RELU;
    else if (strcmp(afn, "silu") == 0 || strcmp(afn, "swish") == 0) g->act = NN_ACT_SILU;
    else return ag_fail(AG_ERR_ARG, "config %s: field \"afn\": '%s' is not one of gelu, relu, silu, swish", c->path, afn);
    return AG_OK;
}

ag_status nn_openai_declare(ag_params *ps, nn_openai *m, const nn_openai_config *cfg, bool lm_head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->lm_head = lm_head;
    snprintf(m->prefix, sizeof m->prefix, "%s", lm_head ? "transformer." : "");
    const char *p = m->prefix;
    const int C = cfg->n_embd;
    char name[NN_NAME_MAX], qkv[NN_NAME_MAX], proj[NN_NAME_MAX];
    ag_status st;
    if ((st = nn_embedding_init(ps, &m->tokens_embed, nn_name(name, "%stokens_embed", p), cfg->vocab_size, C, -1)) ||
        (st = nn_embedding_init(ps, &m->positions_embed, nn_name(name, "%spositions_embed", p), cfg->n_positions, C,
                                -1)))
        return st;
    m->h = calloc((size_t)cfg->n_layer, sizeof *m->h);
    if (!m->h) return ag_fail(AG_ERR_MEMORY, "openai-gpt: out of memory");
    for (int l = 0; l < cfg->n_layer; ++l) {
        nn_openai_block *b = &m->h[l];
        const char *names[2] = {nn_name(qkv, "%sh.%d.attn.c_attn", p, l), nn_name(proj, "%sh.%d.attn.c_proj", p, l)};
        if ((st = nn_mha_init(ps, &b->attn, names, C, cfg->n_head, C / cfg->n_head, true, true, AG_LINEAR_IN_OUT)) ||
            (st = nn_layernorm_init(ps, &b->ln_1, nn_name(name, "%sh.%d.ln_1", p, l), C, cfg->layer_norm_epsilon)) ||
            (st = nn_linear_init(ps, &b->c_fc, nn_name(name, "%sh.%d.mlp.c_fc", p, l), C, 4 * C, true,
                                 AG_LINEAR_IN_OUT)) ||
            (st = nn_linear_init(ps, &b->c_proj, nn_name(name, "%sh.%d.mlp.c_proj", p, l), 4 * C, C, true,
                                 AG_LINEAR_IN_OUT)) ||
            (st = nn_layernorm_init(ps, &b->ln_2, nn_name(name, "%sh.%d.ln_2", p, l), C, cfg->layer_norm_epsilon)))
            return st;
        b->attn.attn_dropout = cfg->attn_pdrop;
    }
    return AG_OK;
}

void nn_openai_free(nn_openai *m) {
    free(m->h);
    m->h = NULL;
}

int nn_openai_aliases(const nn_openai *m, const char *alias[][2], int cap) {
    return nn_causal_lm_tied_head_alias(alias, cap, m->lm_head, m->tokens_embed.w);
}

void nn_openai_init_weights(nn_openai *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const float std = m->cfg.initializer_range;
    nn_init_normal(m->tokens_embed.w, std, &r);
    nn_init_normal(m->positions_embed.w, std, &r);
    for (int l = 0; l < m->cfg.n_layer; ++l) {
        nn_openai_block *b = &m->h[l];
        nn_init_linear(&b->attn.qkv, std, &r);
        nn_init_linear(&b->attn.o, std, &r);
        nn_init_norm(&b->ln_1);
        nn_init_linear(&b->c_fc, std, &r);
        nn_init_linear(&b->c_proj, std, &r);
        nn_init_norm(&b->ln_2);
    }
}

ag_tensor *nn_openai_forward(ag_ctx *ctx, const nn_openai *m, const ag_ints *ids, const ag_ints *attention_mask) {
    if (nn_causal_lm_check("openai-gpt", ids, attention_mask, 0, m->cfg.n_positions)) return NULL;
    const int64_t T = ids->shape[1];
    ag_tensor *h = ag_add(ctx, nn_embedding_forward(ctx, &m->tokens_embed, ids),                        /* [B,T,C] */
                          nn_embedding_forward(ctx, &m->positions_embed, nn_causal_lm_positions(ctx, T, 0)));
    h = ag_dropout(ctx, h, m->cfg.embd_pdrop);
    const ag_attn_opts opts = {.causal = true, .key_mask = attention_mask};
    for (int l = 0; l < m->cfg.n_layer; ++l) {
        const nn_openai_block *b = &m->h[l];
        ag_tensor *a = ag_dropout(ctx, nn_mha_forward(ctx, &b->attn, h, NULL, &opts), m->cfg.resid_pdrop);
        ag_tensor *n = nn_norm_forward(ctx, &b->ln_1, ag_add(ctx, h, a));
        ag_tensor *f = nn_linear_forward(ctx, &b->c_proj,
                                         nn_act_forward(ctx, m->cfg.act, nn_linear_forward(ctx, &b->c_fc, n)));
        h = nn_norm_forward(ctx, &b->ln_2, ag_add(ctx, n, ag_dropout(ctx, f, m->cfg.resid_pdrop)));
    }
    return h;
}

ag_tensor *nn_openai_lm_loss(ag_ctx *ctx, const nn_openai *m, const ag_ints *ids, const ag_ints *attention_mask,
                             const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens) {
    if (!m->lm_head) {
        ag_fail(AG_ERR_STATE, "openai-gpt: OpenAIGPTModel has no LM head (use OpenAIGPTLMHeadModel)");
        return NULL;
    }
    ag_tensor *h = nn_openai_forward(ctx, m, ids, attention_mask);
    return nn_causal_lm_loss(ctx, "openai-gpt", h, m->tokens_embed.w, NULL, labels, reduction, n_tokens);
}

/* nn_openai_forward over the T new positions, keys and values from the cache. */
ag_tensor *nn_openai_forward_cached(ag_ctx *ctx, const nn_openai *m, const ag_ints *ids, nn_kv_cache *cache) {
    const int NH = m->cfg.n_head, D = m->cfg.n_embd / NH;
    if (nn_kv_cache_check(cache, "openai-gpt", ids, m->cfg.n_layer, NH, D) ||
        nn_causal_lm_check("openai-gpt", ids, NULL, cache->len, m->cfg.n_positions))
        return NULL;
    const int64_t T = ids->shape[1];
    ag_tensor *h = ag_add(ctx, nn_embedding_forward(ctx, &m->tokens_embed, ids), /* [B,T,C] */
                          nn_embedding_forward(ctx, &m->positions_embed, nn_causal_lm_positions(ctx, T, cache->len)));
    h = ag_dropout(ctx, h, m->cfg.embd_pdrop);
    const ag_attn_opts opts = {.causal = true};
    for (int l = 0; l < m->cfg.n_layer; ++l) {
        const nn_openai_block *b = &m->h[l];
        ag_tensor *a = ag_dropout(ctx, nn_mha_forward_cached(ctx, &b->attn, h, cache, l, &opts), m->cfg.resid_pdrop);
        ag_tensor *n = nn_norm_forward(ctx, &b->ln_1, ag_add(ctx, h, a));
        ag_tensor *f = nn_linear_forward(ctx, &b->c_proj,
                                         nn_act_forward(ctx, m->cfg.act, nn_linear_forward(ctx, &b->c_fc, n)));
        h = nn_norm_forward(ctx, &b->ln_2, ag_add(ctx, n, ag_dropout(ctx, f, m->cfg.resid_pdrop)));
    }
    if (h) nn_kv_cache_advance(cache, T);
    return h;
}
