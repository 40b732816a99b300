/* op_dropout.c: inverted dropout.
 *
 * In training, each element is kept with probability 1-p and scaled so that
 * the expected output equals the input; in evaluation the op is the identity:
 *
 *   forward   y[i] = x[i] * m[i] / (1-p),   m[i] = [u_i >= p], u_i uniform in [0,1)
 *   backward  dx[i] += dy[i] * m[i] / (1-p)
 *
 * The random numbers come from the context's counter-based stream:
 * u_i = ag_rng_uniform(ctx->seed, ctx->rng_counter + i), and each call then
 * advances the counter by numel, so two calls draw different masks and a run
 * re-seeded with the same seed draws the same ones (tests/fixtures reproduce
 * the mask bit for bit in Python).
 *
 * The mask is kept for backward as one byte per element (numel bytes, a
 * quarter of the activation); re-drawing it from (seed, counter) would save
 * that memory at the cost of hashing every element again.
 */
#include "internal.h"

/* y [N] = x * m * scale with m[i] = [uniform(seed, counter + i) >= p];
 * mask [N] receives m when non-NULL (only when backward will need it). */
static void dropout_forward(float *y, uint8_t *mask, const float *x, int64_t numel, float p, float scale,
                            uint64_t seed, uint64_t counter) {
#pragma omp parallel for if (numel > AG_PAR_MIN)
    for (int64_t i = 0; i < numel; ++i) {
        const bool keep = ag_rng_uniform(seed, counter + (uint64_t)i) >= p;
        y[i] = keep ? x[i] * scale : 0.0f;
        if (mask) mask[i] = keep;
    }
}

/* dx [N] += dy * m * scale. */
static void dropout_backward(float *dx, const float *dy, const uint8_t *mask, int64_t numel, float scale) {
#pragma omp parallel for simd if (numel > AG_PAR_MIN)
    for (int64_t i = 0; i < numel; ++i) dx[i] += mask[i] ? dy[i] * scale : 0.0f;
}

ag_tensor *ag_dropout(ag_ctx *ctx, ag_tensor *x, float p) {
    AG_NEED(x);
    char sx[64];
    if (!(p >= 0.0f && p < 1.0f)) /* also refuses NaN */
        AG_FAIL_NULL("dropout: p = %g for x %s; p must be in [0, 1)", p, ag_shape_str(sx, x->ndim, x->shape));
    if (!ctx->training || p == 0.0f) return x; /* the identity: nothing drawn, nothing recorded */

    ag_tensor *y = ag__empty_like(ctx, x);
    if (!y) return NULL;
    uint8_t *mask = NULL; /* [N], only when backward will run */
    if (ag__wants_grad(ctx, 1, &x)) {
        mask = ag_arena_alloc(ctx, (size_t)x->numel);
        if (!mask) return NULL;
    }
    const float scale = 1.0f / (1.0f - p);
    dropout_forward(y->data, mask, x->data, x->numel, p, scale, ctx->seed, ctx->rng_counter);
    ag_node *n = ag__record(ctx, AG_OP_DROPOUT, y, 1, &x);
    if (!n) return NULL;
    n->seed = ctx->seed;
    n->i[0] = (int64_t)ctx->rng_counter; /* where this call's stream starts, for the record */
    n->f[0] = p;
    n->f[1] = scale;
    n->saved = mask;
    ctx->rng_counter += (uint64_t)x->numel;
    return y;
}

ag_status ag_dropout_backward(ag_ctx *ctx, const ag_node *n) {
    if (n->in[0]->grad) dropout_backward(n->in[0]->grad, n->out->grad, n->saved, n->out->numel, n->f[1]);
    return AG_OK;
}
