/* kv_cache.c: the key/value cache of a decoder (see kv_cache.h).
 *
 * Layout: layer l's keys are one block [B,NH,cap,D]; position s of row b and
 * head h starts at ((b*NH + h)*cap + s)*D. Appending T positions copies T*D
 * floats per (b,h); attending copies the first len+T positions of every
 * (b,h) into a contiguous [B,NH,len+T,D] tensor in the step arena, which is
 * what ag_attention reads. The copy is O(S*D) per layer and step, small
 * beside the O(C^2) projections of the one new token.
 */
#include "kv_cache.h"

#include <stdlib.h>
#include <string.h>

ag_status nn_kv_cache_init(nn_kv_cache *c, int n_layer, int B, int NH, int D, int64_t cap) {
    memset(c, 0, sizeof *c);
    if (n_layer < 1 || B < 1 || NH < 1 || D < 1 || cap < 1)
        return ag_fail(AG_ERR_ARG, "kv cache: n_layer %d, B %d, NH %d, D %d and cap %lld must be positive", n_layer, B,
                       NH, D, (long long)cap);
    const size_t n = (size_t)n_layer * (size_t)B * (size_t)NH * (size_t)cap * (size_t)D;
    c->k = malloc(n * sizeof(float));
    c->v = malloc(n * sizeof(float));
    if (!c->k || !c->v) {
        nn_kv_cache_free(c);
        return ag_fail(AG_ERR_MEMORY, "kv cache: out of memory for 2 x %zu floats", n);
    }
    c->n_layer = n_layer, c->B = B, c->NH = NH, c->D = D, c->cap = cap;
    return AG_OK;
}

void nn_kv_cache_free(nn_kv_cache *c) {
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

void nn_kv_cache_clear(nn_kv_cache *c) { c->len = 0; }

void nn_kv_cache_advance(nn_kv_cache *c, int64_t T) { c->len += T; }

ag_status nn_kv_cache_check(const nn_kv_cache *c, const char *family, const ag_ints *ids, int n_layer, int NH, int D) {
    char s[64];
    if (!c || !c->k) return ag_fail(AG_ERR_ARG, "%s: no kv cache (nn_kv_cache_init it first)", family);
    if (c->n_layer != n_layer || c->NH != NH || c->D != D)
        return ag_fail(AG_ERR_ARG, "%s: the kv cache has %d layers of %d heads x %d, the model %d layers of %d x %d",
                       family, c->n_layer, c->NH, c->D, n_layer, NH, D);
    if (!ids) return ag_error_status() ? ag_error_status() : ag_fail(AG_ERR_ARG, "%s: no input_ids", family);
    if (ids->ndim != 2 || ids->shape[0] != c->B || ids->shape[1] < 1)
        return ag_fail(AG_ERR_ARG, "%s: input_ids %s do not fit the kv cache's batch of %d", family,
                       ag_shape_str(s, ids->ndim, ids->shape), c->B);
    if (c->len + ids->shape[1] > c->cap)
        return ag_fail(AG_ERR_ARG, "%s: the kv cache holds %lld of %lld positions; %lld more do not fit", family,
                       (long long)c->len, (long long)c->cap, (long long)ids->shape[1]);
    return AG_OK;
}

ag_tensor *nn_kv_cache_attend(ag_ctx *ctx, nn_kv_cache *c, int layer, ag_tensor *q, ag_tensor *k, ag_tensor *v,
                              const ag_attn_opts *opts) {
    if (!q || !k || !v) return NULL;
    const int64_t B = c->B, NH = c->NH, D = c->D, T = k->shape[2], S = c->len + T;
    char s[64];
    if (k->ndim != 4 || k->shape[0] != B || k->shape[1] != NH || k->shape[3] != D || v->numel != k->numel ||
        layer < 0 || layer >= c->n_layer || S > c->cap) {
        ag_fail(AG_ERR_ARG, "kv cache: layer %d gets keys %s, wants [%lld,%lld,T,%lld] with %lld + T <= %lld", layer,
                ag_shape_str(s, k->ndim, k->shape), (long long)B, (long long)NH, (long long)D, (long long)c->len,
                (long long)c->cap);
        return NULL;
    }
    const size_t layer_size = (size_t)(B * NH * c->cap * D);
    float *kc = c->k + (size_t)layer * layer_size, *vc = c->v + (size_t)layer * layer_size;
    ag_tensor *K = ag_new(ctx, 4, AG_SHAPE(B, NH, S, D), false); /* [B,NH,S,D] every key so far */
    ag_tensor *V = ag_new(ctx, 4, AG_SHAPE(B, NH, S, D), false);
    if (!K || !V) return NULL;
    for (int64_t bh = 0; bh < B * NH; ++bh) {
        /* append the T new rows at len, then read back all S rows */
        float *krow = kc + (size_t)(bh * c->cap * D), *vrow = vc + (size_t)(bh * c->cap * D);
        memcpy(krow + c->len * D, k->data + bh * T * D, (size_t)(T * D) * sizeof(float));
        memcpy(vrow + c->len * D, v->data + bh * T * D, (size_t)(T * D) * sizeof(float));
        memcpy(K->data + bh * S * D, krow, (size_t)(S * D) * sizeof(float));
        memcpy(V->data + bh * S * D, vrow, (size_t)(S * D) * sizeof(float));
    }
    ag_attn_opts o = opts ? *opts : (ag_attn_opts){0};
    o.key_mask = NULL;
    return ag_attention(ctx, q, K, V, &o); /* query i sees keys j <= i + (S - T) */
}

ag_status nn_kv_cache_reorder(nn_kv_cache *c, const int *src) {
    for (int b = 0; b < c->B; ++b)
        if (src[b] < 0 || src[b] >= c->B)
            return ag_fail(AG_ERR_ARG, "kv cache: reorder index %d of row %d is outside [0,%d)", src[b], b, c->B);
    const size_t row = (size_t)c->NH * (size_t)c->cap * (size_t)c->D; /* one batch row of one layer */
    const size_t used = (size_t)c->len * (size_t)c->D;              /* floats in use per (b,h) */
    float *tmp = malloc((size_t)c->B * row * sizeof(float));
    if (!tmp) return ag_fail(AG_ERR_MEMORY, "kv cache: out of memory reordering %d rows", c->B);
    for (int l = 0; l < c->n_layer; ++l)
        for (int which = 0; which < 2; ++which) {
            float *blk = (which ? c->v : c->k) + (size_t)l * c->B * row;
            memcpy(tmp, blk, (size_t)c->B * row * sizeof(float));
            for (int b = 0; b < c->B; ++b)
                for (int h = 0; h < c->NH; ++h)
                    memcpy(blk + b * row + (size_t)h * c->cap * c->D, tmp + src[b] * row + (size_t)h * c->cap * c->D,
                           used * sizeof(float));
        }
    free(tmp);
    return AG_OK;
}

ag_tensor *nn_mha_forward_cached(ag_ctx *ctx, const nn_mha *m, ag_tensor *x, nn_kv_cache *c, int layer,
                                 const ag_attn_opts *opts) {
    ag_tensor *q, *k, *v;
    const int inner = m->n_head * m->d_head;
    if (m->fused) {
        ag_tensor *qkv = nn_linear_forward(ctx, &m->qkv, x); /* [B,T,3*inner] */
        q = ag_slice(ctx, qkv, 2, 0, inner);
        k = ag_slice(ctx, qkv, 2, inner, inner);
        v = ag_slice(ctx, qkv, 2, 2 * inner, inner);
    } else {
        q = nn_linear_forward(ctx, &m->q, x);
        k = nn_linear_forward(ctx, &m->k, x);
        v = nn_linear_forward(ctx, &m->v, x);
    }
    ag_attn_opts o = opts ? *opts : (ag_attn_opts){0};
    o.dropout = m->attn_dropout;
    o.no_scale = o.no_scale || m->no_scale;
    ag_tensor *a = nn_kv_cache_attend(ctx, c, layer, nn_split_heads(ctx, q, m->n_head),
                                      nn_split_heads(ctx, k, m->n_head), nn_split_heads(ctx, v, m->n_head),
                                      &o); /* [B,NH,T,D] */
    return nn_linear_forward(ctx, &m->o, nn_merge_heads(ctx, a));
}
