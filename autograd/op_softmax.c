/* op_softmax.c: softmax and log_softmax over the last dimension, with an
 * optional additive mask.
 *
 * x [...,S] is read as rows [R,S]. The mask m is added before the softmax and
 * broadcasts against x like ag_add's b (numpy rules, dims aligned from the
 * right, any dim of size 1 or absent): a key-padding mask [B,1,1,S], a causal
 * mask [T,S], a T5 position bias [1,NH,T,S], ... It may hold -inf (never
 * attend) and may need a gradient (a learned bias). What this file is not: a
 * softmax over any other dim (permute first), nor attention (op_attention.c).
 *
 *   z = x + m
 *   softmax:      p_j = exp(z_j - M) / sum_k exp(z_k - M),     M = max_k z_k
 *   log_softmax:  y_j = z_j - M - log sum_k exp(z_k - M)        (= z_j - logsumexp z)
 *
 *   softmax:      dz_j = p_j (dp_j - sum_k dp_k p_k)
 *   log_softmax:  dz_j = dy_j - p_j sum_k dy_k,                 p_j = exp(y_j)
 *   dx += dz;  dm += dz summed over m's broadcast dims
 *
 * Subtracting the row max M changes nothing mathematically (it cancels between
 * numerator and denominator) but keeps exp() from overflowing.
 *
 * A row whose every entry of z is -inf (a query that may see no key) has no
 * softmax: 0/0. We give zeros for both ops and no gradient. PyTorch gives NaN
 * for both; our log_softmax zeros are a documented deviation, chosen so that a
 * fully padded row cannot poison a whole batch.
 *
 * Backward reads the output (p or y), which the arena keeps; it saves nothing
 * else except, for log_softmax, one byte per row marking the all -inf rows
 * (their y = 0 would otherwise look like p = exp(0) = 1).
 */
#include "internal.h"

/* Where the mask entries of row r start, given the mask's broadcast strides
 * against x. Along the row they are mstride[last] apart: 1, or 0 when the mask
 * has size 1 in the last dim and one value serves the whole row. */
static inline int64_t mask_row_offset(const ag_tensor *x, const int64_t *mstride, int64_t r, int64_t S) {
    return ag__bcast_offset(x, mstride, r * S);
}

/* ---------------------------------------------------------------- forward */

/* out [R,S] = softmax or log_softmax of z = x [R,S] + mask, over each row.
 * mask is NULL or broadcast with strides mstride against x (the tensor, for
 * its shape). dead [R] (or NULL) gets 1 for a row whose z is all -inf. */
static void softmax_forward(float *out, unsigned char *dead, const ag_tensor *x, const float *mask,
                            const int64_t *mstride, int64_t R, int64_t S, bool log_out) {
    const float *xd = x->data;
    int64_t ms = mask ? mstride[x->ndim - 1] : 0;
#pragma omp parallel for if (R * S > AG_PAR_MIN)
    for (int64_t r = 0; r < R; ++r) {
        const float *xr = xd + r * S;
        const float *mr = mask ? mask + mask_row_offset(x, mstride, r, S) : NULL;
        float *o = out + r * S;
#define Z(j) (xr[j] + (mr ? mr[(j) * ms] : 0.0f)) /* z_j = x_j + m_j, recomputed rather than stored */
        float M = -INFINITY;
        for (int64_t j = 0; j < S; ++j) M = fmaxf(M, Z(j));
        if (dead) dead[r] = M == -INFINITY;
        if (M == -INFINITY) { /* every entry masked: zeros, see the top of the file */
            for (int64_t j = 0; j < S; ++j) o[j] = 0.0f;
            continue;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < S; ++j) {
            float e = expf(Z(j) - M);
            if (!log_out) o[j] = e;
            sum += e;
        }
        if (log_out) {
            float lse = M + logf(sum);
            for (int64_t j = 0; j < S; ++j) o[j] = Z(j) - lse;
        } else {
            float inv = 1.0f / sum;
            for (int64_t j = 0; j < S; ++j) o[j] *= inv;
        }
#undef Z
    }
}

/* ---------------------------------------------------------------- backward */

/* One row's dz, added into dz with stride `st` (1 for dx; for dm the mask's
 * stride along the last dim, 0 when one mask value serves the whole row).
 * softmax: y = p, dy = dp, dz_j = p_j (dp_j - sum_k dp_k p_k).
 * log_softmax: y = log p, dz_j = dy_j - exp(y_j) sum_k dy_k. */
static void softmax_row_backward(float *dz, int64_t st, const float *y, const float *dy, int64_t S,
                                 bool log_out) {
    double s = 0;
    if (log_out) {
        for (int64_t j = 0; j < S; ++j) s += dy[j];
        for (int64_t j = 0; j < S; ++j) dz[j * st] += dy[j] - expf(y[j]) * (float)s;
    } else {
        for (int64_t j = 0; j < S; ++j) s += (double)dy[j] * y[j];
        for (int64_t j = 0; j < S; ++j) dz[j * st] += y[j] * (dy[j] - (float)s);
    }
}

/* Adds the gradients into dx [R,S] and dmask (mask's shape, broadcast with
 * strides mstride against x), either of which may be NULL. y, dy [R,S]: the
 * output and its gradient; dead [R] or NULL marks rows that get nothing. */
static void softmax_backward(float *dx, float *dmask, const ag_tensor *x, const int64_t *mstride,
                             const float *y, const float *dy, const unsigned char *dead, int64_t R,
                             int64_t S, bool log_out) {
    if (dx) { /* every row on its own: rows in parallel */
#pragma omp parallel for if (R * S > AG_PAR_MIN)
        for (int64_t r = 0; r < R; ++r)
            if (!(dead && dead[r])) softmax_row_backward(dx + r * S, 1, y + r * S, dy + r * S, S, log_out);
    }
    /* dm: rows that share mask entries (the mask broadcasts over them) add into
     * the same place, so this pass runs serially and recomputes dz instead of
     * keeping an [R,S] buffer of it. */
    if (dmask) {
        int64_t ms = mstride[x->ndim - 1];
        for (int64_t r = 0; r < R; ++r)
            if (!(dead && dead[r]))
                softmax_row_backward(dmask + mask_row_offset(x, mstride, r, S), ms, y + r * S, dy + r * S, S,
                                     log_out);
    }
}

/* ---------------------------------------------------------------- tape functions */

static ag_tensor *softmax_op(ag_ctx *ctx, ag_tensor *x, ag_tensor *mask, bool log_out) {
    const char *op = log_out ? "log_softmax" : "softmax";
    char s0[64], s1[64];
    int64_t mstride[AG_MAX_DIMS] = {0};
    if (mask && !ag__broadcast_strides(x, mask->ndim, mask->shape, mstride))
        AG_FAIL_NULL("%s: mask %s does not broadcast to x %s (dims align from the right; each must "
                     "match or be 1)", op, ag_shape_str(s1, mask->ndim, mask->shape),
                     ag_shape_str(s0, x->ndim, x->shape));
    int64_t S = x->shape[x->ndim - 1];
    int64_t R = S ? x->numel / S : 0;
    ag_tensor *y = ag__empty_like(ctx, x);
    if (!y) return NULL;
    ag_tensor *in[2] = {x, mask};
    unsigned char *dead = NULL;
    if (log_out && ag__wants_grad(ctx, 2, in)) {
        dead = ag_arena_alloc(ctx, (size_t)(R ? R : 1));
        if (!dead) return NULL;
    }
    softmax_forward(y->data, dead, x, mask ? mask->data : NULL, mstride, R, S, log_out);
    ag_node *n = ag__record(ctx, log_out ? AG_OP_LOG_SOFTMAX : AG_OP_SOFTMAX, y, 2, in);
    if (!n) return NULL;
    n->i[0] = R;
    n->i[1] = S;
    n->saved = dead;
    if (mask && y->requires_grad) { /* the strides travel to backward in the arena */
        int64_t *st = ag_arena_alloc(ctx, sizeof mstride);
        if (!st) return NULL;
        memcpy(st, mstride, sizeof mstride);
        n->saved2 = st;
    }
    return y;
}

ag_tensor *ag_softmax(ag_ctx *ctx, ag_tensor *x, ag_tensor *mask) {
    AG_NEED(x);
    return softmax_op(ctx, x, mask, false);
}

ag_tensor *ag_log_softmax(ag_ctx *ctx, ag_tensor *x, ag_tensor *mask) {
    AG_NEED(x);
    return softmax_op(ctx, x, mask, true);
}

static ag_status softmax_op_backward(const ag_node *n, bool log_out) {
    ag_tensor *x = n->in[0], *mask = n->in[1];
    softmax_backward(x->grad, mask ? mask->grad : NULL, x, n->saved2, n->out->data, n->out->grad, n->saved,
                     n->i[0], n->i[1], log_out);
    return AG_OK;
}

ag_status ag_softmax_backward(ag_ctx *ctx, const ag_node *n) { return softmax_op_backward(n, false); }
ag_status ag_log_softmax_backward(ag_ctx *ctx, const ag_node *n) { return softmax_op_backward(n, true); }
