/* kv_cache.h: the key/value cache of a decoder, so that generating one more
 * token costs one step instead of a re-run of the whole prefix.
 *
 * In causal self-attention the keys and values of position j depend only on
 * tokens 0..j. Once computed they never change, so a decoder that has seen S
 * tokens keeps, per layer, K and V [B,NH,S,D]; the next T tokens compute their
 * own q, k, v [B,NH,T,D], append k and v, and attend over all S+T keys with
 * ag_attention's causal offset (query i sees keys j <= i + S). Positions
 * continue from the cache's length (learned positions, CTRL's sinusoids,
 * GPT-J's rotary angles).
 *
 * What it is: model-lifetime buffers (malloc'd once for a batch and a maximum
 * length), written by each family's *_forward_cached under a no-grad scope.
 * What it is not: differentiable (nothing is recorded through the cache), or
 * aware of padding (every row of the batch has the same length, as in
 * generation from one prompt or the beams of beam search).
 */
#ifndef TAPEGRAD_NN_KV_CACHE_H
#define TAPEGRAD_NN_KV_CACHE_H

#include "nn.h"

typedef struct nn_kv_cache {
    int n_layer, B, NH, D;
    int64_t cap; /* the most positions it holds */
    int64_t len; /* positions held now: the next token's position */
    float *k, *v; /* [n_layer][B,NH,cap,D] each */
} nn_kv_cache;

/* Allocates an empty cache for n_layer layers, batch B, NH heads of width D,
 * up to cap positions. Returns AG_OK, AG_ERR_ARG for a size that is not
 * positive, or AG_ERR_MEMORY. */
ag_status nn_kv_cache_init(nn_kv_cache *c, int n_layer, int B, int NH, int D, int64_t cap);
void nn_kv_cache_free(nn_kv_cache *c);
/* Forgets every position (len = 0); the buffers stay. */
void nn_kv_cache_clear(nn_kv_cache *c);

/* Checks, before a family's cached forward, that the cache was made for this
 * model (n_layer, NH, D) and that ids [B,T] fits: the cache's B, and
 * len + T <= cap. Returns AG_OK, or AG_ERR_ARG naming `family` and the sizes. */
ag_status nn_kv_cache_check(const nn_kv_cache *c, const char *family, const ag_ints *ids, int n_layer, int NH, int D);

/* One layer's attention over the cache: k and v [B,NH,T,D] (the new positions)
 * are written at len .. len+T-1 of `layer`, then q [B,NH,T,D] attends over the
 * layer's len+T keys with `opts` (causal, window, scale; no key_mask).
 * Returns [B,NH,T,D], or NULL: a NULL input (keeping the first message), a
 * shape that does not match the cache (AG_ERR_ARG), or the op's error. The
 * cache's len is not moved: the family calls nn_kv_cache_advance once every
 * layer has written. */
ag_tensor *nn_kv_cache_attend(ag_ctx *ctx, nn_kv_cache *c, int layer, ag_tensor *q, ag_tensor *k, ag_tensor *v,
                              const ag_attn_opts *opts);
/* len += T, after a forward over T new positions. */
void nn_kv_cache_advance(nn_kv_cache *c, int64_t T);

/* Beam search: row b of every layer becomes the old row src[b] (src [B],
 * values in [0,B); rows may repeat). Returns AG_OK, AG_ERR_ARG for an index
 * outside [0,B), or AG_ERR_MEMORY. */
ag_status nn_kv_cache_reorder(nn_kv_cache *c, const int *src);

/* nn_mha_forward for self-attention with a cache: x [B,T,C] -> [B,T,C], the
 * same projections and output as nn_mha_forward(ctx, m, x, NULL, opts) on the
 * whole sequence, for the last T positions. */
ag_tensor *nn_mha_forward_cached(ag_ctx *ctx, const nn_mha *m, ag_tensor *x, nn_kv_cache *c, int layer,
                                 const ag_attn_opts *opts);

#endif
