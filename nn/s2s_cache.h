/* s2s_cache.h: what an encoder-decoder keeps while it generates, so that each
 * new target token costs one decoder step.
 *
 * A decoder block of T5, BART or M2M-100 attends twice:
 *
 *   self-attention   over the target so far: keys and values of position j
 *                    depend only on target tokens 0..j, so they go into an
 *                    nn_kv_cache (kv_cache.h) and are never recomputed;
 *   cross-attention  over the encoder's states enc [B,S,C]: its keys and
 *                    values k = enc Wk, v = enc Wv [B,NH,S,D] do not depend
 *                    on the target at all, so they are computed once, right
 *                    after the encoder runs, and read at every step.
 *
 * The cross keys and values are kept for ONE source row (generation
 * translates one sentence; beam search's beams share its source) and
 * repeated over the B rows of the step's batch when the attention reads them,
 * so beam reordering never has to touch them.
 *
 * What it is not: differentiable (generation runs under no-grad), or batched
 * over several different sources.
 */
#ifndef TAPEGRAD_NN_S2S_CACHE_H
#define TAPEGRAD_NN_S2S_CACHE_H

#include "kv_cache.h"
#include "nn.h"

typedef struct nn_cross_cache {
    int n_layer, NH, D;
    int64_t S;    /* source positions */
    float *k, *v; /* [n_layer][NH,S,D] each: one source row */
    int filled;   /* layers written so far */
} nn_cross_cache;

/* Allocates the cache for n_layer decoder layers of NH heads of width D over
 * S source positions. Returns AG_OK, AG_ERR_ARG for a size that is not
 * positive, or AG_ERR_MEMORY. */
ag_status nn_cross_cache_init(nn_cross_cache *c, int n_layer, int NH, int D, int64_t S);
void nn_cross_cache_free(nn_cross_cache *c);

/* Computes layer `layer`'s cross keys and values from the encoder states
 * enc [1,S,C] with the block's cross-attention projections (k and v of
 * b->cross) and stores them. Returns AG_OK, or AG_ERR_ARG when enc is not
 * [1,S,d_model] or the block has no cross-attention, or the op's error. */
ag_status nn_cross_cache_fill(ag_ctx *ctx, nn_cross_cache *c, int layer, const nn_block *b, ag_tensor *enc);

/* nn_block_forward for a decoder block, for the T newest target positions
 * x [B,T,C], with the self-attention keys and values of the earlier positions
 * in `self` (layer `layer`; this call appends the new ones, the caller
 * advances self->len once every layer ran) and the cross-attention's in
 * `cross`. self_opts: causal, bias [NH,T,len+T] (T5's position bias);
 * cross_opts may be NULL (the source has no padding). Returns y [B,T,C]
 * equal to the matching rows of nn_block_forward over the whole target, or
 * NULL: a NULL x (keeping the first message), AG_ERR_ARG naming the block
 * when it has no cross-attention or the caches do not fit, or an op's error. */
ag_tensor *nn_block_forward_cached(ag_ctx *ctx, const nn_block *b, ag_tensor *x, nn_kv_cache *self,
                                   const nn_cross_cache *cross, int layer, const ag_attn_opts *self_opts,
                                   const ag_attn_opts *cross_opts);

#endif
