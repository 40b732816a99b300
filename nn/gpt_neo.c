/* gpt_neo.c: GPT-Neo, step for step as Hugging Face's modeling_gpt_neo.py (4.31).
 *
 *   h = wte[ids] + wpe[pos]                                       [B,T,C]
 *   for each block l:
 *     x = ln_1(h)
 *     q, k, v = x Wq^T, x Wk^T, x Wv^T        (no bias)           [B,NH,T,D] each
 *     s = q k^T                                (no 1/sqrt(D)!)     [B,NH,T,T]
 *     s[i,j] = -inf unless j <= i                 (global layers)
 *                     unless j <= i < j + window  (local layers)
 *     h = h + out_proj(softmax(s + padding mask) v)
 *     h = h + c_proj(act(c_fc(ln_2(h))))
 *   h = ln_f(h);  logits = h wte^T  (tied head)
 *
 * The local mask is Hugging Face's `bias ^ tril(bias, -window_size)`: the
 * lower triangle minus everything window_size or more below the diagonal,
 * which is ag_attention's causal + window. The MLP's c_fc/c_proj are
 * torch.nn.Linear ([out,in]), not GPT-2's Conv1D.
 */
#include "gpt_neo.h"

#include "causal_lm.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

/* attention_types is a list of [pattern, repeat] pairs, e.g.
 * [[["global","local"], 6]] -> global, local, global, local, ... (12 layers).
 * Writes the expansion into local[0..n) and returns the number of layers it
 * describes, or -1 with an error naming the field. */
static int expand_attention_types(const nn_config *c, const cJSON *types, bool *local, int n) {
    int count = 0;
    const cJSON *pair;
    if (!cJSON_IsArray(types)) goto bad;
    cJSON_ArrayForEach(pair, types) {
        const cJSON *pattern = cJSON_GetArrayItem(pair, 0), *repeat = cJSON_GetArrayItem(pair, 1);
        if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2 || !cJSON_IsArray(pattern) ||
            !cJSON_IsNumber(repeat) || repeat->valuedouble < 0 || repeat->valuedouble > 1 << 16)
            goto bad;
        for (int r = 0; r < (int)repeat->valuedouble; ++r) {
            const cJSON *t;
            cJSON_ArrayForEach(t, pattern) {
                bool is_local;
                if (cJSON_IsString(t) && strcmp(t->valuestring, "local") == 0) is_local = true;
                else if (cJSON_IsString(t) && strcmp(t->valuestring, "global") == 0) is_local = false;
                else {
                    ag_fail(AG_ERR_ARG, "config %s: field \"attention_types\": attention type %s is not "
                            "\"global\" or \"local\"", c->path, cJSON_IsString(t) ? t->valuestring : "(not a string)");
                    return -1;
                }
                if (count < n) local[count] = is_local;
                count++;
            }
        }
    }
    return count;
bad:
    ag_fail(AG_ERR_ARG, "config %s: field \"attention_types\" must be a list of [[types...], repeat] pairs", c->path);
    return -1;
}

ag_status nn_gpt_neo_config_read(const nn_config *c, nn_gpt_neo_config *g) {
    memset(g, 0, sizeof *g);
    double range, pe, pa, pr;
    ag_status st;
    if ((st = nn_config_int(c, "vocab_size", 50257, 1, 1 << 24, &g->vocab_size)) ||
        (st = nn_config_int(c, "max_position_embeddings", 2048, 1, 1 << 20, &g->max_position_embeddings)) ||
        (st = nn_config_int(c, "hidden_size", 2048, 1, 1 << 16, &g->hidden_size)) ||
        (st = nn_config_int(c, "num_layers", 24, 1, 4096, &g->num_layers)) ||
        (st = nn_config_int(c, "num_heads", 16, 1, 4096, &g->num_heads)) ||
        (st = nn_config_int(c, "intermediate_size", 4 * g->hidden_size, 1, 1 << 20, &g->intermediate_size)) ||
        (st = nn_config_int(c, "window_size", 256, 1, 1 << 20, &g->window_size)) ||
        (st = nn_config_positive(c, "layer_norm_epsilon", 1e-5, &g->layer_norm_epsilon)) ||
        (st = nn_config_num(c, "initializer_range", 0.02, &range)) ||
        (st = nn_config_num(c, "embed_dropout", 0.0, &pe)) ||
        (st = nn_config_num(c, "attention_dropout", 0.0, &pa)) ||
        (st = nn_config_num(c, "resid_dropout", 0.0, &pr)) ||
        (st = nn_config_act(c, "activation_function", "gelu_new", &g->act)) ||
        (st = nn_config_bool(c, "tie_word_embeddings", true, &g->tie_word_embeddings)))
        return st;
    if (g->hidden_size % g->num_heads)
        return ag_fail(AG_ERR_ARG, "config %s: hidden_size %d is not divisible by num_heads %d", c->path,
                       g->hidden_size, g->num_heads);
    if (pe < 0 || pe >= 1 || pa < 0 || pa >= 1 || pr < 0 || pr >= 1)
        return ag_fail(AG_ERR_ARG, "config %s: the dropout probabilities must be in [0, 1)", c->path);

    /* one attention type per layer, from attention_types (GPTNeoConfig's
     * default is [[["global","local"],12]]) */
    g->local = calloc((size_t)g->num_layers, sizeof *g->local);
    if (!g->local) return ag_fail(AG_ERR_MEMORY, "config %s: out of memory", c->path);
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(c->json, "attention_types");
    int n;
    if (types) {
        n = expand_attention_types(c, types, g->local, g->num_layers);
    } else {
        for (int l = 0; l < g->num_layers; ++l) g->local[l] = l % 2 == 1;
        n = 24;
    }
    if (n < 0) goto fail;
    if (n != g->num_layers) {
        ag_fail(AG_ERR_ARG, "config %s: field \"attention_types\" describes %d layers but num_layers is %d "
                "(Hugging Face refuses this too)", c->path, n, g->num_layers);
        goto fail;
    }
    /* attention_layers is what GPTNeoConfig saves next to attention_types: it must agree */
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(c->json, "attention_layers");
    if (layers) {
        int k = 0;
        const cJSON *t;
        bool ok = cJSON_IsArray(layers) && cJSON_GetArraySize(layers) == g->num_layers;
        cJSON_ArrayForEach(t, layers) {
            if (!ok) break;
            ok = cJSON_IsString(t) && strcmp(t->valuestring, g->local[k] ? "local" : "global") == 0;
            k++;
        }
        if (!ok) {
            ag_fail(AG_ERR_ARG, "config %s: field \"attention_layers\" does not agree with \"attention_types\"", c->path);
            goto fail;
        }
    }
    g->initializer_range = (float)range;
    g->embed_dropout = (float)pe;
    g->attention_dropout = (float)pa;
    g->resid_dropout = (float)pr;
    return AG_OK;
fail:
    nn_gpt_neo_config_free(g);
    return ag_error_status();
}

void nn_gpt_neo_config_free(nn_gpt_neo_config *g) {
    free(g->local);
    g->local = NULL;
}

/* ---------------------------------------------------------------- parameters */

ag_status nn_gpt_neo_declare(ag_params *ps, nn_gpt_neo *m, const nn_gpt_neo_config *cfg, bool lm_head) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->lm_head = lm_head;
    snprintf(m->prefix, sizeof m->prefix, "%s", lm_head ? "transformer." : "");
    const char *p = m->prefix;
    const int C = cfg->hidden_size;
    char name[NN_NAME_MAX], q[NN_NAME_MAX], k[NN_NAME_MAX], v[NN_NAME_MAX], o[NN_NAME_MAX];
    ag_status st;
    if ((st = nn_embedding_init(ps, &m->wte, nn_name(name, "%swte", p), cfg->vocab_size, C, -1)) ||
        (st = nn_embedding_init(ps, &m->wpe, nn_name(name, "%swpe", p), cfg->max_position_embeddings, C, -1)))
        return st;
    m->h = calloc((size_t)cfg->num_layers, sizeof *m->h);
    if (!m->h) return ag_fail(AG_ERR_MEMORY, "gpt_neo: out of memory");
    for (int l = 0; l < cfg->num_layers; ++l) {
        nn_gpt_neo_block *b = &m->h[l];
        const char *names[4] = {nn_name(q, "%sh.%d.attn.attention.q_proj", p, l),
                                nn_name(k, "%sh.%d.attn.attention.k_proj", p, l),
                                nn_name(v, "%sh.%d.attn.attention.v_proj", p, l),
                                nn_name(o, "%sh.%d.attn.attention.out_proj", p, l)};
        if ((st = nn_layernorm_init(ps, &b->ln_1, nn_name(name, "%sh.%d.ln_1", p, l), C, cfg->layer_norm_epsilon)) ||
            (st = nn_mha_init(ps, &b->attn, names, C, cfg->num_heads, C / cfg->num_heads, false, false,
                              AG_LINEAR_OUT_IN)))
            return st;
        /* q, k, v have no bias but out_proj does: declare it by hand */
        if (!(b->attn.o.b = ag_params_add(ps, nn_name(name, "%s.bias", o), 1, AG_SHAPE(C)))) return ag_error_status();
        if ((st = nn_layernorm_init(ps, &b->ln_2, nn_name(name, "%sh.%d.ln_2", p, l), C, cfg->layer_norm_epsilon)) ||
            (st = nn_linear_init(ps, &b->c_fc, nn_name(name, "%sh.%d.mlp.c_fc", p, l), C, cfg->intermediate_size,
                                 true, AG_LINEAR_OUT_IN)) ||
            (st = nn_linear_init(ps, &b->c_proj, nn_name(name, "%sh.%d.mlp.c_proj", p, l), cfg->intermediate_size, C,
                                 true, AG_LINEAR_OUT_IN)))
            return st;
        b->attn.attn_dropout = cfg->attention_dropout;
        b->attn.no_scale = true; /* GPT-Neo's scores are q.k, unscaled */
    }
    if ((st = nn_layernorm_init(ps, &m->ln_f, nn_name(name, "%sln_f", p), C, cfg->layer_norm_epsilon))) return st;
    if (lm_head) {
        if (cfg->tie_word_embeddings) m->lm_head_w = m->wte.w;
        else if (!(m->lm_head_w = ag_params_add(ps, "lm_head.weight", 2, AG_SHAPE(cfg->vocab_size, C))))
            return ag_error_status();
    }
    return AG_OK;
}

void nn_gpt_neo_free(nn_gpt_neo *m) {
    free(m->h);
    m->h = NULL;
    nn_gpt_neo_config_free(&m->cfg);
}

int nn_gpt_neo_aliases(const nn_gpt_neo *m, const char *alias[][2], int cap) {
    return nn_causal_lm_tied_head_alias(alias, cap, m->lm_head && m->cfg.tie_word_embeddings, m->wte.w);
}

void nn_gpt_neo_init_weights(nn_gpt_neo *m, uint64_t seed) {
    nn_init_rng r = {seed, 0};
    const float std = m->cfg.initializer_range;
    nn_init_normal(m->wte.w, std, &r);
    nn_init_normal(m->wpe.w, std, &r);
    for (int l = 0; l < m->cfg.num_layers; ++l) {
        nn_gpt_neo_block *b = &m->h[l];
        nn_init_norm(&b->ln_1);
        nn_init_norm(&b->ln_2);
        nn_init_normal(b->attn.q.w, std, &r), nn_init_normal(b->attn.k.w, std, &r);
        nn_init_normal(b->attn.v.w, std, &r);
        nn_init_linear(&b->attn.o, std, &r);
        nn_init_linear(&b->c_fc, std, &r);
        nn_init_linear(&b->c_proj, std, &r);
    }
    nn_init_norm(&m->ln_f);
    if (m->lm_head_w && m->lm_head_w != m->wte.w) nn_init_normal(m->lm_head_w, std, &r);
}

/* ---------------------------------------------------------------- forward */

ag_tensor *nn_gpt_neo_forward(ag_ctx *ctx, const nn_gpt_neo *m, const ag_ints *ids, const ag_ints *attention_mask) {
    if (nn_causal_lm_check("gpt_neo", ids, attention_mask, 0, m->cfg.max_position_embeddings)) return NULL;
    const int64_t T = ids->shape[1];
    ag_tensor *h = ag_add(ctx, nn_embedding_forward(ctx, &m->wte, ids),                              /* [B,T,C] */
                          nn_embedding_forward(ctx, &m->wpe, nn_causal_lm_positions(ctx, T, 0))); /* [T,C] */
    h = ag_dropout(ctx, h, m->cfg.embed_dropout);
    for (int l = 0; l < m->cfg.num_layers; ++l) {
        const nn_gpt_neo_block *b = &m->h[l];
        ag_attn_opts opts = {.causal = true, .key_mask = attention_mask,
                             .window = m->cfg.local[l] ? m->cfg.window_size : 0};
        ag_tensor *a = nn_mha_forward(ctx, &b->attn, nn_norm_forward(ctx, &b->ln_1, h), NULL, &opts);
        h = ag_add(ctx, h, ag_dropout(ctx, a, m->cfg.resid_dropout));
        ag_tensor *f = nn_linear_forward(ctx, &b->c_fc, nn_norm_forward(ctx, &b->ln_2, h));
        f = nn_linear_forward(ctx, &b->c_proj, nn_act_forward(ctx, m->cfg.act, f));
        h = ag_add(ctx, h, ag_dropout(ctx, f, m->cfg.resid_dropout));
    }
    return nn_norm_forward(ctx, &m->ln_f, h);
}

ag_tensor *nn_gpt_neo_lm_loss(ag_ctx *ctx, const nn_gpt_neo *m, const ag_ints *ids, const ag_ints *attention_mask,
                              const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens) {
    if (!m->lm_head_w) {
        ag_fail(AG_ERR_STATE, "gpt_neo: GPTNeoModel has no LM head (use GPTNeoForCausalLM)");
        return NULL;
    }
    ag_tensor *h = nn_gpt_neo_forward(ctx, m, ids, attention_mask);
    return nn_causal_lm_loss(ctx, "gpt_neo", h, m->lm_head_w, NULL, labels, reduction, n_tokens);
}

/* nn_gpt_neo_forward over the T new positions, keys and values from the cache. */
ag_tensor *nn_gpt_neo_forward_cached(ag_ctx *ctx, const nn_gpt_neo *m, const ag_ints *ids, nn_kv_cache *cache) {
    const int NH = m->cfg.num_heads, D = m->cfg.hidden_size / NH;
    if (nn_kv_cache_check(cache, "gpt_neo", ids, m->cfg.num_layers, NH, D) ||
        nn_causal_lm_check("gpt_neo", ids, NULL, cache->len, m->cfg.max_position_embeddings))
        return NULL;
    const int64_t T = ids->shape[1];
    ag_tensor *h = ag_add(ctx, nn_embedding_forward(ctx, &m->wte, ids),                                     /* [B,T,C] */
                          nn_embedding_forward(ctx, &m->wpe, nn_causal_lm_positions(ctx, T, cache->len))); /* [T,C] */
    h = ag_dropout(ctx, h, m->cfg.embed_dropout);
    for (int l = 0; l < m->cfg.num_layers; ++l) {
        const nn_gpt_neo_block *b = &m->h[l];
        ag_attn_opts opts = {.causal = true, .window = m->cfg.local[l] ? m->cfg.window_size : 0};
        ag_tensor *a = nn_mha_forward_cached(ctx, &b->attn, nn_norm_forward(ctx, &b->ln_1, h), cache, l, &opts);
        h = ag_add(ctx, h, ag_dropout(ctx, a, m->cfg.resid_dropout));
        ag_tensor *f = nn_linear_forward(ctx, &b->c_fc, nn_norm_forward(ctx, &b->ln_2, h));
        f = nn_linear_forward(ctx, &b->c_proj, nn_act_forward(ctx, m->cfg.act, f));
        h = ag_add(ctx, h, ag_dropout(ctx, f, m->cfg.resid_dropout));
    }
    h = nn_norm_forward(ctx, &m->ln_f, h);
    if (h) nn_kv_cache_advance(cache, T);
    return h;
}
