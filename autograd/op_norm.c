/* op_norm.c: normalisation over the last dimension (layernorm, T5's rmsnorm).
 *
 * x [...,C] is read as rows [R,C], R = the product of the leading dims; each
 * row is normalised on its own. What this file is not: batch norm or group
 * norm (statistics over other dims), nor a fused residual add.
 *
 * layernorm (torch.nn.functional.layer_norm over the last dim):
 *   mu = mean_c x_c,  rstd = 1/sqrt(mean_c (x_c - mu)^2 + eps),  xhat = (x - mu)*rstd
 *   y = xhat*w + b                       (w = 1 and b = 0 when absent)
 *   dw += sum over rows of dy*xhat
 *   db += sum over rows of dy
 *   dx += rstd*(g - mean_c(g) - xhat*mean_c(g*xhat)),   g = dy*w
 *
 * rmsnorm (T5LayerNorm; also LLaMA's RMSNorm):
 *   rstd = 1/sqrt(mean_c x_c^2 + eps),  xhat = x*rstd,  y = xhat*w
 *   dw += sum over rows of dy*xhat
 *   dx += rstd*(g - xhat*mean_c(g*xhat)),   g = dy*w
 *
 * Where dx comes from (layernorm; rmsnorm is the same without the mean): y
 * depends on x_c directly and through mu and rstd, which every x_c of the row
 * moves. With dxhat = g = dy*w,
 *   d xhat_k / d x_c = rstd*(delta_kc - 1/C - xhat_k*xhat_c/C),
 * so dx_c = sum_k g_k d xhat_k/d x_c = rstd*(g_c - mean(g) - xhat_c*mean(g*xhat)):
 * the first term is the direct path, the second the path through mu, the third
 * the path through rstd. This is llm.c's layernorm_backward.
 *
 * Backward needs mu and rstd of each row, saved in forward as two [R] float
 * buffers (`saved` = mean, `saved2` = rstd; rmsnorm keeps only rstd in
 * `saved2`); xhat is recomputed from x, which the arena keeps alive all step.
 * The row statistics are accumulated in double: rows with a large mean and a
 * small spread (x = 100 + noise) lose their variance to rounding in a float sum.
 */
#include "internal.h"

/* ---------------------------------------------------------------- layernorm */

/* y [R,C] = layernorm(x [R,C]) * w [C] + b [C]; w, b may be NULL.
 * mean, rstd [R] are written when non-NULL (backward needs them). */
static void layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w,
                              const float *b, int64_t R, int64_t C, float eps) {
#pragma omp parallel for if (R * C > AG_PAR_MIN)
    for (int64_t r = 0; r < R; ++r) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        double s = 0;
        for (int64_t c = 0; c < C; ++c) s += xr[c];
        float m = (float)(s / (double)C);
        /* two passes: the variance of (x - m), never E[x^2] - m^2, which cancels */
        double v = 0;
        for (int64_t c = 0; c < C; ++c) {
            double d = (double)xr[c] - m;
            v += d * d;
        }
        float rs = (float)(1.0 / sqrt(v / (double)C + (double)eps));
        for (int64_t c = 0; c < C; ++c) {
            float xhat = (xr[c] - m) * rs;
            yr[c] = xhat * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
        }
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = rs;
    }
}

/* Adds the gradients of layernorm into dx [R,C], dw [C], db [C], each of which
 * may be NULL. dy [R,C]; x [R,C]; w [C] or NULL; mean, rstd [R] from forward. */
static void layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, const float *mean, const float *rstd, int64_t R,
                               int64_t C) {
    /* dx: every row on its own, so rows run in parallel. */
    if (dx) {
#pragma omp parallel for if (R * C > AG_PAR_MIN)
        for (int64_t r = 0; r < R; ++r) {
            const float *xr = x + r * C, *dyr = dy + r * C;
            float *dxr = dx + r * C;
            float m = mean[r], rs = rstd[r];
            /* the two row means the formula needs: mean(g) and mean(g*xhat), g = dy*w */
            double g_mean = 0, gx_mean = 0;
            for (int64_t c = 0; c < C; ++c) {
                float xhat = (xr[c] - m) * rs;
                float g = dyr[c] * (w ? w[c] : 1.0f);
                g_mean += g;
                gx_mean += (double)g * xhat;
            }
            g_mean /= (double)C;
            gx_mean /= (double)C;
            for (int64_t c = 0; c < C; ++c) {
                float xhat = (xr[c] - m) * rs;
                float g = dyr[c] * (w ? w[c] : 1.0f);
                dxr[c] += rs * (g - (float)g_mean - xhat * (float)gx_mean); /* direct, via mu, via rstd */
            }
        }
    }
    /* dw, db: sums over rows. Every row adds into the same [C] vectors, so the
     * parallel loop runs over columns instead (no two threads share a column). */
    if (dw || db) {
#pragma omp parallel for if (R * C > AG_PAR_MIN)
        for (int64_t c = 0; c < C; ++c) {
            double sw = 0, sb = 0;
            for (int64_t r = 0; r < R; ++r) {
                float dyv = dy[r * C + c];
                sw += (double)dyv * ((x[r * C + c] - mean[r]) * rstd[r]); /* y = xhat*w + b */
                sb += dyv;
            }
            if (dw) dw[c] += (float)sw;
            if (db) db[c] += (float)sb;
        }
    }
}

/* Checks that an optional per-channel vector p (w or b) is [C]. */
static bool is_channel_vector(const ag_tensor *p, int64_t C) {
    return !p || (p->ndim == 1 && p->shape[0] == C);
}

ag_tensor *ag_layernorm(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *b, float eps) {
    AG_NEED(x);
    char s0[64], s1[64], s2[64];
    int64_t C = x->shape[x->ndim - 1];
    int64_t R = C ? x->numel / C : 0;
    if (!is_channel_vector(w, C) || !is_channel_vector(b, C))
        AG_FAIL_NULL("layernorm: x %s needs w and b of shape [%lld] (or NULL), got w %s, b %s",
                     ag_shape_str(s0, x->ndim, x->shape), (long long)C,
                     w ? ag_shape_str(s1, w->ndim, w->shape) : "NULL",
                     b ? ag_shape_str(s2, b->ndim, b->shape) : "NULL");
    if (!(eps >= 0.0f) || isinf(eps))
        AG_FAIL_NULL("layernorm: eps must be finite and >= 0, got %g", (double)eps);
    ag_tensor *y = ag__empty_like(ctx, x);
    if (!y) return NULL;
    ag_tensor *in[3] = {x, w, b};
    float *mean = NULL, *rstd = NULL;
    if (ag__wants_grad(ctx, 3, in)) { /* backward will need the row statistics */
        mean = ag_arena_alloc(ctx, (size_t)(R ? R : 1) * sizeof(float));
        rstd = ag_arena_alloc(ctx, (size_t)(R ? R : 1) * sizeof(float));
        if (!mean || !rstd) return NULL;
    }
    layernorm_forward(y->data, mean, rstd, x->data, w ? w->data : NULL, b ? b->data : NULL, R, C, eps);
    ag_node *n = ag__record(ctx, AG_OP_LAYERNORM, y, 3, in);
    if (!n) return NULL;
    n->i[0] = R;
    n->i[1] = C;
    n->f[0] = eps;
    n->saved = mean;
    n->saved2 = rstd;
    return y;
}

ag_status ag_layernorm_backward(ag_ctx *ctx, const ag_node *n) {
    ag_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    layernorm_backward(x->grad, w ? w->grad : NULL, b ? b->grad : NULL, n->out->grad, x->data,
                       w ? w->data : NULL, n->saved, n->saved2, n->i[0], n->i[1]);
    return AG_OK;
}

/* ---------------------------------------------------------------- rmsnorm */

/* y [R,C] = x * rstd * w [C] (w may be NULL); rstd [R] written when non-NULL. */
static void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int64_t R, int64_t C,
                            float eps) {
#pragma omp parallel for if (R * C > AG_PAR_MIN)
    for (int64_t r = 0; r < R; ++r) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        double ss = 0;
        for (int64_t c = 0; c < C; ++c) ss += (double)xr[c] * xr[c];
        float rs = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * rs * (w ? w[c] : 1.0f);
        if (rstd) rstd[r] = rs;
    }
}

/* Adds the gradients of rmsnorm into dx [R,C] and dw [C] (either may be NULL).
 * dy, x [R,C]; w [C] or NULL; rstd [R] from forward. */
static void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                             const float *rstd, int64_t R, int64_t C) {
    if (dx) {
#pragma omp parallel for if (R * C > AG_PAR_MIN)
        for (int64_t r = 0; r < R; ++r) {
            const float *xr = x + r * C, *dyr = dy + r * C;
            float *dxr = dx + r * C;
            float rs = rstd[r];
            double gx_mean = 0; /* mean(g*xhat), g = dy*w */
            for (int64_t c = 0; c < C; ++c) gx_mean += (double)dyr[c] * (w ? w[c] : 1.0f) * (xr[c] * rs);
            gx_mean /= (double)C;
            for (int64_t c = 0; c < C; ++c) {
                float g = dyr[c] * (w ? w[c] : 1.0f);
                dxr[c] += rs * (g - xr[c] * rs * (float)gx_mean); /* direct, via rstd */
            }
        }
    }
    if (dw) { /* a sum over rows: parallel over columns, as in layernorm */
#pragma omp parallel for if (R * C > AG_PAR_MIN)
        for (int64_t c = 0; c < C; ++c) {
            double sw = 0;
            for (int64_t r = 0; r < R; ++r) sw += (double)dy[r * C + c] * (x[r * C + c] * rstd[r]);
            dw[c] += (float)sw;
        }
    }
}

ag_tensor *ag_rmsnorm(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, float eps) {
    AG_NEED(x);
    char s0[64], s1[64];
    int64_t C = x->shape[x->ndim - 1];
    int64_t R = C ? x->numel / C : 0;
    if (!is_channel_vector(w, C))
        AG_FAIL_NULL("rmsnorm: x %s needs w of shape [%lld] (or NULL), got %s",
                     ag_shape_str(s0, x->ndim, x->shape), (long long)C, ag_shape_str(s1, w->ndim, w->shape));
    if (!(eps >= 0.0f) || isinf(eps))
        AG_FAIL_NULL("rmsnorm: eps must be finite and >= 0, got %g", (double)eps);
    ag_tensor *y = ag__empty_like(ctx, x);
    if (!y) return NULL;
    ag_tensor *in[2] = {x, w};
    float *rstd = NULL;
    if (ag__wants_grad(ctx, 2, in)) {
        rstd = ag_arena_alloc(ctx, (size_t)(R ? R : 1) * sizeof(float));
        if (!rstd) return NULL;
    }
    rmsnorm_forward(y->data, rstd, x->data, w ? w->data : NULL, R, C, eps);
    ag_node *n = ag__record(ctx, AG_OP_RMSNORM, y, 2, in);
    if (!n) return NULL;
    n->i[0] = R;
    n->i[1] = C;
    n->f[0] = eps;
    n->saved2 = rstd;
    return y;
}

ag_status ag_rmsnorm_backward(ag_ctx *ctx, const ag_node *n) {
    ag_tensor *x = n->in[0], *w = n->in[1];
    rmsnorm_backward(x->grad, w ? w->grad : NULL, n->out->grad, x->data, w ? w->data : NULL, n->saved2,
                     n->i[0], n->i[1]);
    return AG_OK;
}
