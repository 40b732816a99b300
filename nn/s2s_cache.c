/* s2s_cache.c: cross-attention keys and values computed once, and a decoder
 * block that reads both caches (see s2s_cache.h).
 *
 * The block is nn_block_forward (blocks.c) with its two attentions swapped
 * for cached ones; the norms, residuals, dropout and feed-forward are the
 * same calls in the same order, so a cached step computes the same floats as
 * the full forward's rows (up to the summation order of the attention over
 * keys, which is the same too: keys 0..len+T-1 in order).
 */
#include "s2s_cache.h"

#include <stdlib.h>
#include <string.h>

ag_status nn_cross_cache_init(nn_cross_cache *c, int n_layer, int NH, int D, int64_t S) {
    memset(c, 0, sizeof *c);
    if (n_layer < 1 || NH < 1 || D < 1 || S < 1)
        return ag_fail(AG_ERR_ARG, "cross cache: n_layer %d, NH %d, D %d and S %lld must be positive", n_layer, NH, D,
                       (long long)S);
    const size_t n = (size_t)n_layer * (size_t)NH * (size_t)S * (size_t)D;
    c->k = malloc(n * sizeof(float));
    c->v = malloc(n * sizeof(float));
    if (!c->k || !c->v) {
        nn_cross_cache_free(c);
        return ag_fail(AG_ERR_MEMORY, "cross cache: out of memory for 2 x %zu floats", n);
    }
    c->n_layer = n_layer, c->NH = NH, c->D = D, c->S = S;
    return AG_OK;
}

void nn_cross_cache_free(nn_cross_cache *c) {
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

ag_status nn_cross_cache_fill(ag_ctx *ctx, nn_cross_cache *c, int layer, const nn_block *b, ag_tensor *enc) {
    if (!enc) return ag_error_status() ? ag_error_status() : ag_fail(AG_ERR_ARG, "cross cache: no encoder states");
    char s[64];
    if (!b->cfg.cross_attention)
        return ag_fail(AG_ERR_ARG, "cross cache: block %s has no cross-attention", b->name);
    if (layer < 0 || layer >= c->n_layer || enc->ndim != 3 || enc->shape[0] != 1 || enc->shape[1] != c->S ||
        enc->shape[2] != b->cfg.d_model || b->cross.n_head != c->NH || b->cross.d_head != c->D)
        return ag_fail(AG_ERR_ARG, "cross cache: layer %d of %d (block %s) gets encoder states %s, wants [1,%lld,%d] "
                       "and %d heads of %d", layer, c->n_layer, b->name, ag_shape_str(s, enc->ndim, enc->shape),
                       (long long)c->S, b->cfg.d_model, c->NH, c->D);
    /* the projections nn_mha_forward applies to kv: [1,S,C] -> [1,NH,S,D] */
    ag_tensor *k = nn_split_heads(ctx, nn_linear_forward(ctx, &b->cross.k, enc), c->NH);
    ag_tensor *v = nn_split_heads(ctx, nn_linear_forward(ctx, &b->cross.v, enc), c->NH);
    if (!k || !v) return ag_error_status();
    const size_t n = (size_t)c->NH * (size_t)c->S * (size_t)c->D;
    memcpy(c->k + (size_t)layer * n, k->data, n * sizeof(float));
    memcpy(c->v + (size_t)layer * n, v->data, n * sizeof(float));
    if (layer + 1 > c->filled) c->filled = layer + 1;
    return AG_OK;
}

/* Layer `layer`'s cross keys or values repeated over B rows: [B,NH,S,D] in
 * the step arena. */
static ag_tensor *cross_rows(ag_ctx *ctx, const nn_cross_cache *c, const float *all, int layer, int64_t B) {
    const size_t n = (size_t)c->NH * (size_t)c->S * (size_t)c->D;
    ag_tensor *t = ag_new(ctx, 4, AG_SHAPE(B, c->NH, c->S, c->D), false);
    if (!t) return NULL;
    for (int64_t b = 0; b < B; ++b) memcpy(t->data + (size_t)b * n, all + (size_t)layer * n, n * sizeof(float));
    return t;
}

/* Cross-attention with the cached keys and values: q from x [B,T,C]. */
static ag_tensor *cross_attend(ag_ctx *ctx, const nn_mha *m, ag_tensor *x, const nn_cross_cache *c, int layer,
                               const ag_attn_opts *opts) {
    if (!x) return NULL;
    const int64_t B = x->shape[0];
    ag_tensor *q = nn_split_heads(ctx, nn_linear_forward(ctx, &m->q, x), m->n_head); /* [B,NH,T,D] */
    ag_attn_opts o = opts ? *opts : (ag_attn_opts){0};
    o.dropout = m->attn_dropout;
    o.no_scale = o.no_scale || m->no_scale;
    ag_tensor *a = ag_attention(ctx, q, cross_rows(ctx, c, c->k, layer, B), cross_rows(ctx, c, c->v, layer, B),
                                &o); /* [B,NH,T,D] */
    return nn_linear_forward(ctx, &m->o, nn_merge_heads(ctx, a));
}

/* As blocks.c's residual: pre-LN adds, post-LN adds and normalises. */
static ag_tensor *residual(ag_ctx *ctx, const nn_block *b, const nn_norm *norm, ag_tensor *x, ag_tensor *fx) {
    ag_tensor *h = ag_add(ctx, x, ag_dropout(ctx, fx, b->cfg.resid_dropout));
    return b->cfg.pre_ln ? h : nn_norm_forward(ctx, norm, h);
}

ag_tensor *nn_block_forward_cached(ag_ctx *ctx, const nn_block *b, ag_tensor *x, nn_kv_cache *self,
                                   const nn_cross_cache *cross, int layer, const ag_attn_opts *self_opts,
                                   const ag_attn_opts *cross_opts) {
    if (!x) return NULL;
    if (!b->cfg.cross_attention || !cross || layer < 0 || layer >= cross->filled) {
        ag_fail(AG_ERR_ARG, "block %s: a cached decoder step needs cross-attention and the cross cache of layer %d "
                "(%d filled)", b->name, layer, cross ? cross->filled : 0);
        return NULL;
    }
    const bool pre = b->cfg.pre_ln;
    /* self-attention over the cache plus the new positions: [B,T,C] -> [B,T,C] */
    ag_tensor *in = pre ? nn_norm_forward(ctx, &b->ln1, x) : x;
    ag_tensor *h = residual(ctx, b, &b->ln1, x, nn_mha_forward_cached(ctx, &b->attn, in, self, layer, self_opts));
    /* cross-attention over the source's cached keys and values */
    in = pre ? nn_norm_forward(ctx, &b->ln_cross, h) : h;
    h = residual(ctx, b, &b->ln_cross, h, cross_attend(ctx, &b->cross, in, cross, layer, cross_opts));
    /* feed-forward */
    in = pre ? nn_norm_forward(ctx, &b->ln2, h) : h;
    return residual(ctx, b, &b->ln2, h, nn_ffn_forward(ctx, &b->ffn, in));
}
