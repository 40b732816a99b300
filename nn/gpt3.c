/* gpt3.c: the GPT-3-style model (see gpt3.h): GPT-2 with banded layers.
 *
 *   h = wte[ids] + wpe[pos]                                  [B,T,C]
 *   for each layer l:
 *     a = causal attention over ln_1(h), and in a sparse layer only over the
 *         band j in (i - W, i]                                [B,T,C]
 *     h = h + c_proj(a)
 *     h = h + mlp(ln_2(h))
 *   h = ln_f(h); logits = h wte^T
 *
 * Everything but the band is GPT-2's: the parameters are declared, initialised
 * and tied by gpt2.c, and this file only walks the blocks with the right mask.
 */
#include "gpt3.h"

#include "causal_lm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

/* sparse_attention_layers into sparse[0..L-1]. */
static ag_status read_layer_types(const nn_config *c, int L, bool *sparse) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(c->json, "sparse_attention_layers");
    if (!f || cJSON_IsNull(f) || cJSON_IsString(f)) {
        const char *s = f && cJSON_IsString(f) ? f->valuestring : "alternate";
        bool alt = strcmp(s, "alternate") == 0, all = strcmp(s, "all") == 0, none = strcmp(s, "none") == 0;
        if (!alt && !all && !none)
            return ag_fail(AG_ERR_ARG, "config %s: field \"sparse_attention_layers\" is '%s'; it must be "
                           "\"alternate\", \"all\", \"none\" or a list of \"dense\"/\"sparse\" per layer", c->path, s);
        for (int l = 0; l < L; ++l) sparse[l] = all || (alt && l % 2 == 1);
        return AG_OK;
    }
    if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) != L)
        return ag_fail(AG_ERR_ARG, "config %s: field \"sparse_attention_layers\" must be a string or a list of "
                       "n_layer = %d strings, got %s of %d", c->path, L, cJSON_IsArray(f) ? "a list" : "another type",
                       cJSON_IsArray(f) ? cJSON_GetArraySize(f) : 0);
    for (int l = 0; l < L; ++l) {
        const cJSON *e = cJSON_GetArrayItem(f, l);
        const char *s = cJSON_IsString(e) ? e->valuestring : "";
        if (strcmp(s, "dense") && strcmp(s, "sparse"))
            return ag_fail(AG_ERR_ARG, "config %s: field \"sparse_attention_layers\"[%d] must be \"dense\" or "
                           "\"sparse\"", c->path, l);
        sparse[l] = strcmp(s, "sparse") == 0;
    }
    return AG_OK;
}

ag_status nn_gpt3_config_read(const nn_config *c, nn_gpt3_config *g) {
    memset(g, 0, sizeof *g);
    ag_status st;
    if ((st = nn_gpt2_config_read(c, &g->gpt2))) return st;
    /* read as a wide range, so that 0 or -1 is refused below with the reason */
    if ((st = nn_config_int(c, "local_window", 256, -(1 << 30), 1 << 30, &g->local_window))) return st;
    if (g->local_window < 1)
        return ag_fail(AG_ERR_ARG, "config %s: field \"local_window\" is %d; the band must be at least 1 wide",
                       c->path, g->local_window);
    if (!(g->sparse = calloc((size_t)g->gpt2.n_layer, sizeof *g->sparse)))
        return ag_fail(AG_ERR_MEMORY, "gpt3: out of memory");
    if ((st = read_layer_types(c, g->gpt2.n_layer, g->sparse))) {
        nn_gpt3_config_free(g);
        return st;
    }
    return AG_OK;
}

void nn_gpt3_config_free(nn_gpt3_config *g) {
    free(g->sparse);
    g->sparse = NULL;
}

/* ---------------------------------------------------------------- parameters */

ag_status nn_gpt3_declare(ag_params *ps, nn_gpt3 *m, nn_gpt3_config *cfg, bool lm_head) {
    memset(m, 0, sizeof *m);
    m->local_window = cfg->local_window;
    m->sparse = cfg->sparse; /* owned from here on, also if declaring fails */
    cfg->sparse = NULL;
    return nn_gpt2_declare(ps, &m->gpt2, &cfg->gpt2, lm_head);
}

void nn_gpt3_free(nn_gpt3 *m) {
    nn_gpt2_free(&m->gpt2);
    free(m->sparse);
    m->sparse = NULL;
}

void nn_gpt3_init_weights(nn_gpt3 *m, uint64_t seed) { nn_gpt2_init_weights(&m->gpt2, seed); }

int nn_gpt3_aliases(const nn_gpt3 *m, const char *alias[][2], int cap) { return nn_gpt2_aliases(&m->gpt2, alias, cap); }

/* ---------------------------------------------------------------- forward */

ag_tensor *nn_gpt3_forward(ag_ctx *ctx, const nn_gpt3 *m, const ag_ints *ids, const ag_ints *attention_mask) {
    const nn_gpt2 *g = &m->gpt2;
    const nn_gpt2_config *c = &g->cfg;
    if (nn_causal_lm_check("gpt3", ids, attention_mask, 0, c->n_positions)) return NULL;
    const int64_t T = ids->shape[1];
    ag_tensor *h = ag_add(ctx, nn_embedding_forward(ctx, &g->wte, ids),                              /* [B,T,C] */
                          nn_embedding_forward(ctx, &g->wpe, nn_causal_lm_positions(ctx, T, 0))); /* [T,C] */
    h = ag_dropout(ctx, h, c->embd_pdrop);
    const float base_scale = 1.0f / sqrtf((float)(c->n_embd / c->n_head));
    for (int l = 0; l < c->n_layer; ++l) {
        const nn_gpt2_block *b = &g->h[l];
        /* the one difference from GPT-2: a sparse layer's query i sees only
         * keys i-W+1 .. i (ag_attention's causal + window) */
        ag_attn_opts opts = {.causal = true, .key_mask = attention_mask, .window = m->sparse[l] ? m->local_window : 0};
        if (c->scale_attn_by_inverse_layer_idx)
            opts.scale = (c->scale_attn_weights ? base_scale : 1.0f) / (float)(l + 1);
        ag_tensor *a = nn_mha_forward(ctx, &b->attn, nn_norm_forward(ctx, &b->ln_1, h), NULL, &opts);
        h = ag_add(ctx, h, ag_dropout(ctx, a, c->resid_pdrop));
        ag_tensor *f = nn_linear_forward(ctx, &b->c_fc, nn_norm_forward(ctx, &b->ln_2, h));
        f = nn_linear_forward(ctx, &b->c_proj, nn_act_forward(ctx, c->act, f));
        h = ag_add(ctx, h, ag_dropout(ctx, f, c->resid_pdrop));
    }
    return nn_norm_forward(ctx, &g->ln_f, h);
}

ag_tensor *nn_gpt3_lm_loss(ag_ctx *ctx, const nn_gpt3 *m, const ag_ints *ids, const ag_ints *attention_mask,
                           const ag_ints *labels, ag_reduction reduction, int64_t *n_tokens) {
    if (!m->gpt2.lm_head_w) {
        ag_fail(AG_ERR_STATE, "gpt3: GPT3Model has no LM head (use GPT3LMHeadModel)");
        return NULL;
    }
    ag_tensor *h = nn_gpt3_forward(ctx, m, ids, attention_mask);
    return nn_causal_lm_loss(ctx, "gpt3", h, m->gpt2.lm_head_w, NULL, labels, reduction, n_tokens);
}
