/* op_loss.c: losses. Each returns a [1] tensor and fails with AG_ERR_NUMERIC
 * when the loss is not finite (a NaN loss would otherwise spread silently
 * into every gradient of the step).
 *
 * What this file is not: per-example losses (reduction "none"), class weights,
 * or losses over probabilities (every loss here takes logits and does its
 * softmax/sigmoid inside, where the stable form is known).
 *
 * In each gradient below dl is the gradient arriving at the loss (1 for a
 * plain backward) and n the count the loss is averaged over.
 *
 * cross_entropy (F.cross_entropy, ignore_index -100, label_smoothing eps):
 *   logits [R,V] (rows = leading dims), targets y [R]; for a counted row,
 *   lse = log sum_j exp(l_j),  log p_j = l_j - lse,
 *   loss_r = (1-eps)(-log p_y) + eps/V sum_j (-log p_j) = lse - (1-eps) l_y - eps/V sum_j l_j
 *   loss = sum_r loss_r / n   (mean: n = counted rows; sum: n = 1)
 *   dl_j += dl/n (p_j - q_j),  q = (1-eps) onehot(y) + eps/V;  ignored rows get nothing
 *
 * bce_logits (F.binary_cross_entropy_with_logits, mean over all n elements):
 *   loss = mean(max(x,0) - x y + log(1 + exp(-|x|)))  (= softplus(x) - x y, never overflowing)
 *   dx += dl/n (sigmoid(x) - y)
 *   dy += dl/n (-x)
 *
 * kl_div (DistilBERT's distillation loss, temperature T, n = rows):
 *   ps = softmax(s/T), pt = softmax(t/T),  KL_r = sum_j pt_j (log pt_j - log ps_j)
 *   loss = T^2/n sum_r KL_r
 *   ds += dl T/n (ps - pt)
 *   dt += dl T/n pt_j ((log pt_j - log ps_j) - KL_r)
 *   (the T^2 cancels the 1/T^2 that softening puts on the gradients, so their
 *   scale does not depend on T: Hinton et al., "Distilling the knowledge...")
 *
 * cosine_embedding (F.cosine_embedding_loss, mean over n = N rows):
 *   cos = x1.x2 / sqrt((|x1|^2 + e)(|x2|^2 + e)),  e = 1e-12 as PyTorch
 *   loss_r = 1 - cos (y = 1),  max(0, cos - margin) (y = -1)
 *   dcos/dx1 = x2/sqrt(m1 m2) - cos x1/m1,  m1 = |x1|^2 + e  (x2 alike)
 *   dx1 += dl/n dloss_r/dcos dcos/dx1,  dloss_r/dcos = -1 (y = 1), [cos > margin] (y = -1)
 *
 * mse (F.mse_loss, mean over n elements):
 *   loss = mean((a - b)^2);  da += dl/n 2(a - b);  db -= dl/n 2(a - b)
 *
 * Sums over rows or elements are accumulated in double: a loss is one number
 * made of many, and a float sum of a million terms is off in its fourth digit.
 */
#include "internal.h"

/* ---------------------------------------------------------------- shared */

/* log sum_j exp(a x_j) over one row of n values, stable: the max is taken out
 * first. -inf when every a x_j is -inf. */
static double row_logsumexp(const float *x, int64_t n, float a) {
    float M = -INFINITY;
    for (int64_t j = 0; j < n; ++j) M = fmaxf(M, a * x[j]);
    if (M == -INFINITY) return -INFINITY;
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += exp((double)(a * x[j]) - M);
    return M + log(s);
}

/* The [1] output of a loss, or NULL with AG_ERR_NUMERIC when the value is not
 * finite. */
static ag_tensor *loss_output(ag_ctx *ctx, const char *op, double loss) {
    if (!isfinite(loss)) {
        ag_fail(AG_ERR_NUMERIC, "%s: the loss is %g (is there a NaN or an infinity in the inputs?)", op, loss);
        return NULL;
    }
    ag_tensor *out = ag__empty(ctx, 1, AG_SHAPE(1));
    if (out) out->data[0] = (float)loss;
    return out;
}

/* ---------------------------------------------------------------- cross_entropy */

/* Sum over counted rows of loss_r (see the top of the file). logits [R,V],
 * targets [R]. lse [R] (or NULL) gets each row's logsumexp; *counted gets the
 * number of rows whose target is not AG_IGNORE_INDEX. */
static double cross_entropy_forward(float *lse, int64_t *counted, const float *logits, const int32_t *targets,
                                    int64_t R, int64_t V, float eps) {
    double total = 0;
    int64_t cnt = 0;
#pragma omp parallel for reduction(+ : total, cnt) if (R * V > AG_PAR_MIN)
    for (int64_t r = 0; r < R; ++r) {
        if (targets[r] == AG_IGNORE_INDEX) continue;
        const float *l = logits + r * V;
        double lr = row_logsumexp(l, V, 1.0f);
        double loss = lr - (1.0 - eps) * l[targets[r]]; /* (1-eps)(-log p_y) + eps lse */
        if (eps > 0) {
            double sl = 0;
            for (int64_t j = 0; j < V; ++j) sl += l[j];
            loss -= eps / (double)V * sl;                  /* eps/V sum_j (-log p_j) = eps lse - eps/V sum_j l_j */
        }
        if (lse) lse[r] = (float)lr;
        total += loss;
        cnt++;
    }
    *counted = cnt;
    return total;
}

/* dlogits [R,V] += g (p - q) for every counted row, p_j = exp(l_j - lse_r),
 * q = (1-eps) onehot(y) + eps/V; g = dl/n. */
static void cross_entropy_backward(float *dlogits, const float *logits, const int32_t *targets, const float *lse,
                                   int64_t R, int64_t V, float eps, float g) {
#pragma omp parallel for if (R * V > AG_PAR_MIN)
    for (int64_t r = 0; r < R; ++r) {
        if (targets[r] == AG_IGNORE_INDEX) continue;
        const float *l = logits + r * V;
        float *d = dlogits + r * V;
        float q_off = eps / (float)V; /* q_j away from the target */
        for (int64_t j = 0; j < V; ++j) d[j] += g * (expf(l[j] - lse[r]) - q_off);
        d[targets[r]] -= g * (1.0f - eps);
    }
}

ag_tensor *ag_cross_entropy(ag_ctx *ctx, ag_tensor *logits, const ag_ints *targets, float label_smoothing,
                            ag_reduction reduction) {
    AG_NEED(logits, targets);
    char s0[64], s1[64], s2[64];
    if (logits->ndim < 2)
        AG_FAIL_NULL("cross_entropy: logits %s need 2 to 4 dims [...,V]", ag_shape_str(s0, logits->ndim, logits->shape));
    bool same = targets->ndim == logits->ndim - 1;
    for (int d = 0; same && d < targets->ndim; ++d) same = targets->shape[d] == logits->shape[d];
    if (!same)
        AG_FAIL_NULL("cross_entropy: logits %s need targets of shape %s (their leading dims), got %s",
                     ag_shape_str(s0, logits->ndim, logits->shape), ag_shape_str(s1, logits->ndim - 1, logits->shape),
                     ag_shape_str(s2, targets->ndim, targets->shape));
    int64_t V = logits->shape[logits->ndim - 1];
    int64_t R = targets->numel;
    if (V < 1) AG_FAIL_NULL("cross_entropy: logits %s have no classes", ag_shape_str(s0, logits->ndim, logits->shape));
    if (!(label_smoothing >= 0.0f && label_smoothing < 1.0f))
        AG_FAIL_NULL("cross_entropy: label_smoothing must be in [0, 1), got %g", (double)label_smoothing);
    if (reduction != AG_REDUCE_MEAN && reduction != AG_REDUCE_SUM)
        AG_FAIL_NULL("cross_entropy: reduction must be AG_REDUCE_MEAN or AG_REDUCE_SUM, got %d", (int)reduction);
    for (int64_t r = 0; r < R; ++r) {
        int32_t t = targets->data[r];
        if (t != AG_IGNORE_INDEX && (t < 0 || t >= V))
            AG_FAIL_NULL("cross_entropy: target %d at row %lld is outside [0, %lld) and is not the ignore index %d",
                         (int)t, (long long)r, (long long)V, AG_IGNORE_INDEX);
    }
    ag_tensor *in[1] = {logits};
    float *lse = NULL;
    if (ag__wants_grad(ctx, 1, in)) { /* backward recomputes p from lse: [R], not [R,V] */
        lse = ag_arena_alloc(ctx, (size_t)(R ? R : 1) * sizeof(float));
        if (!lse) return NULL;
    }
    int64_t counted;
    double total = cross_entropy_forward(lse, &counted, logits->data, targets->data, R, V, label_smoothing);
    /* Mean over counted rows. When every row is ignored the loss is 0 with zero
     * gradients (PyTorch gives 0/0 = NaN): a batch of padding teaches nothing. */
    double scale = reduction == AG_REDUCE_SUM ? 1.0 : counted ? 1.0 / (double)counted : 0.0;
    ag_tensor *out = loss_output(ctx, "cross_entropy", total * scale);
    if (!out) return NULL;
    ag_node *n = ag__record(ctx, AG_OP_CROSS_ENTROPY, out, 1, in);
    if (!n) return NULL;
    n->i[0] = R;
    n->i[1] = V;
    n->f[0] = label_smoothing;
    n->f[1] = (float)scale;
    n->saved = lse;
    if (out->requires_grad && !(n->idx = ag__ints_copy(ctx, targets))) return NULL;
    return out;
}

ag_status ag_cross_entropy_backward(ag_ctx *ctx, const ag_node *n) {
    ag_tensor *logits = n->in[0];
    if (logits->grad)
        cross_entropy_backward(logits->grad, logits->data, n->idx->data, n->saved, n->i[0], n->i[1], n->f[0],
                               n->out->grad[0] * n->f[1]);
    return AG_OK;
}

/* ---------------------------------------------------------------- bce_logits */

static inline float sigmoidf_stable(float x) {
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x); /* never overflows for x < 0 */
    return e / (1.0f + e);
}

/* sum_i max(x_i,0) - x_i y_i + log1p(exp(-|x_i|)) over x, y [n]. */
static double bce_logits_forward(const float *x, const float *y, int64_t n) {
    double total = 0;
#pragma omp parallel for reduction(+ : total) if (n > AG_PAR_MIN)
    for (int64_t i = 0; i < n; ++i)
        total += fmaxf(x[i], 0.0f) - (double)x[i] * y[i] + log1pf(expf(-fabsf(x[i])));
    return total;
}

/* dx [n] += g (sigmoid(x) - y), dy [n] += g (-x); either may be NULL; g = dl/n. */
static void bce_logits_backward(float *dx, float *dy, const float *x, const float *y, int64_t n, float g) {
#pragma omp parallel for if (n > AG_PAR_MIN)
    for (int64_t i = 0; i < n; ++i) {
        if (dx) dx[i] += g * (sigmoidf_stable(x[i]) - y[i]);
        if (dy) dy[i] -= g * x[i];
    }
}

ag_tensor *ag_bce_logits(ag_ctx *ctx, ag_tensor *x, ag_tensor *y) {
    AG_NEED(x, y);
    char s0[64], s1[64];
    if (!ag__same_shape(x, y))
        AG_FAIL_NULL("bce_logits: x %s and targets y %s must have the same shape", ag_shape_str(s0, x->ndim, x->shape),
                     ag_shape_str(s1, y->ndim, y->shape));
    double loss = bce_logits_forward(x->data, y->data, x->numel) / (double)x->numel;
    ag_tensor *out = loss_output(ctx, "bce_logits", loss);
    if (!out) return NULL;
    ag_tensor *in[2] = {x, y};
    return ag__record(ctx, AG_OP_BCE_LOGITS, out, 2, in) ? out : NULL;
}

ag_status ag_bce_logits_backward(ag_ctx *ctx, const ag_node *n) {
    ag_tensor *x = n->in[0], *y = n->in[1];
    bce_logits_backward(x->grad, y->grad, x->data, y->data, x->numel, n->out->grad[0] / (float)x->numel);
    return AG_OK;
}

/* ---------------------------------------------------------------- kl_div */

/* sum over rows of KL_r (see the top of the file). s, t [R,V]; lse_s, lse_t
 * [R] (or NULL) get logsumexp(s/T) and logsumexp(t/T) of each row. */
static double kl_div_forward(float *lse_s, float *lse_t, const float *s, const float *t, int64_t R, int64_t V,
                             float T) {
    double total = 0;
    float a = 1.0f / T;
#pragma omp parallel for reduction(+ : total) if (R * V > AG_PAR_MIN)
    for (int64_t r = 0; r < R; ++r) {
        const float *sr = s + r * V, *tr = t + r * V;
        double ls = row_logsumexp(sr, V, a), lt = row_logsumexp(tr, V, a);
        double kl = 0;
        for (int64_t j = 0; j < V; ++j) {
            double log_pt = (double)(a * tr[j]) - lt, log_ps = (double)(a * sr[j]) - ls;
            double pt = exp(log_pt);
            if (pt > 0) kl += pt * (log_pt - log_ps); /* 0 log 0 = 0, as PyTorch's xlogy */
        }
        if (lse_s) lse_s[r] = (float)ls;
        if (lse_t) lse_t[r] = (float)lt;
        total += kl;
    }
    return total;
}

/* ds [R,V] += g (ps - pt), dt [R,V] += g pt ((log pt - log ps) - KL_r); either
 * may be NULL; g = dl T/n. KL_r is recomputed from the saved lse_s, lse_t. */
static void kl_div_backward(float *ds, float *dt, const float *s, const float *t, const float *lse_s,
                            const float *lse_t, int64_t R, int64_t V, float T, float g) {
    float a = 1.0f / T;
#pragma omp parallel for if (R * V > AG_PAR_MIN)
    for (int64_t r = 0; r < R; ++r) {
        const float *sr = s + r * V, *tr = t + r * V;
        double kl = 0;
        if (dt)
            for (int64_t j = 0; j < V; ++j) {
                float log_pt = a * tr[j] - lse_t[r], log_ps = a * sr[j] - lse_s[r];
                float pt = expf(log_pt);
                if (pt > 0) kl += (double)pt * (log_pt - log_ps);
            }
        for (int64_t j = 0; j < V; ++j) {
            float log_pt = a * tr[j] - lse_t[r], log_ps = a * sr[j] - lse_s[r];
            float pt = expf(log_pt);
            if (ds) ds[r * V + j] += g * (expf(log_ps) - pt);
            if (dt && pt > 0) dt[r * V + j] += g * pt * ((log_pt - log_ps) - (float)kl);
        }
    }
}

ag_tensor *ag_kl_div(ag_ctx *ctx, ag_tensor *student, ag_tensor *teacher, float temperature) {
    AG_NEED(student, teacher);
    char s0[64], s1[64];
    if (!ag__same_shape(student, teacher))
        AG_FAIL_NULL("kl_div: student %s and teacher %s must have the same shape",
                     ag_shape_str(s0, student->ndim, student->shape), ag_shape_str(s1, teacher->ndim, teacher->shape));
    if (!(temperature > 0.0f) || isinf(temperature))
        AG_FAIL_NULL("kl_div: temperature must be finite and > 0, got %g", (double)temperature);
    int64_t V = student->shape[student->ndim - 1];
    if (V < 1) AG_FAIL_NULL("kl_div: student %s has no classes", ag_shape_str(s0, student->ndim, student->shape));
    int64_t R = student->numel / V;
    ag_tensor *in[2] = {student, teacher};
    float *lse_s = NULL, *lse_t = NULL;
    if (ag__wants_grad(ctx, 2, in)) {
        lse_s = ag_arena_alloc(ctx, (size_t)(R ? R : 1) * sizeof(float));
        lse_t = ag_arena_alloc(ctx, (size_t)(R ? R : 1) * sizeof(float));
        if (!lse_s || !lse_t) return NULL;
    }
    double total = kl_div_forward(lse_s, lse_t, student->data, teacher->data, R, V, temperature);
    double T = temperature;
    ag_tensor *out = loss_output(ctx, "kl_div", total * T * T / (double)R);
    if (!out) return NULL;
    ag_node *n = ag__record(ctx, AG_OP_KL_DIV, out, 2, in);
    if (!n) return NULL;
    n->i[0] = R;
    n->i[1] = V;
    n->f[0] = temperature;
    n->saved = lse_s;
    n->saved2 = lse_t;
    return out;
}

ag_status ag_kl_div_backward(ag_ctx *ctx, const ag_node *n) {
    ag_tensor *s = n->in[0], *t = n->in[1];
    float T = n->f[0];
    kl_div_backward(s->grad, t->grad, s->data, t->data, n->saved, n->saved2, n->i[0], n->i[1], T,
                    n->out->grad[0] * T / (float)n->i[0]);
    return AG_OK;
}

/* ---------------------------------------------------------------- cosine_embedding */

#define COSINE_EPS 1e-12 /* PyTorch's EPSILON, added to each squared magnitude */

/* cos of one row pair x1, x2 [D]; *m1, *m2 get the squared magnitudes + eps. */
static double row_cosine(const float *x1, const float *x2, int64_t D, double *m1, double *m2) {
    double dot = 0, a = 0, b = 0;
    for (int64_t d = 0; d < D; ++d) {
        dot += (double)x1[d] * x2[d];
        a += (double)x1[d] * x1[d];
        b += (double)x2[d] * x2[d];
    }
    *m1 = a + COSINE_EPS;
    *m2 = b + COSINE_EPS;
    return dot / sqrt(*m1 * *m2);
}

/* max(0, v), except that a NaN stays NaN (fmax would drop it and hide it). */
static inline double hinge(double v) { return v > 0 || isnan(v) ? v : 0.0; }

/* sum_r loss_r over x1, x2 [N,D], y [N] of +1/-1. */
static double cosine_embedding_forward(const float *x1, const float *x2, const int32_t *y, int64_t N, int64_t D,
                                       float margin) {
    double total = 0;
#pragma omp parallel for reduction(+ : total) if (N * D > AG_PAR_MIN)
    for (int64_t r = 0; r < N; ++r) {
        double m1, m2, c = row_cosine(x1 + r * D, x2 + r * D, D, &m1, &m2);
        total += y[r] == 1 ? 1.0 - c : hinge(c - margin);
    }
    return total;
}

/* dx1, dx2 [N,D] += g dloss_r/dcos dcos/dx; either may be NULL; g = dl/N. */
static void cosine_embedding_backward(float *dx1, float *dx2, const float *x1, const float *x2, const int32_t *y,
                                      int64_t N, int64_t D, float margin, float g) {
#pragma omp parallel for if (N * D > AG_PAR_MIN)
    for (int64_t r = 0; r < N; ++r) {
        const float *a = x1 + r * D, *b = x2 + r * D;
        double m1, m2, c = row_cosine(a, b, D, &m1, &m2);
        double dc = y[r] == 1 ? -1.0 : c > margin ? 1.0 : 0.0; /* dloss_r/dcos */
        if (dc == 0) continue;
        double k = g * dc, inv = 1.0 / sqrt(m1 * m2);
        for (int64_t d = 0; d < D; ++d) {
            if (dx1) dx1[r * D + d] += (float)(k * (b[d] * inv - c * a[d] / m1));
            if (dx2) dx2[r * D + d] += (float)(k * (a[d] * inv - c * b[d] / m2));
        }
    }
}

ag_tensor *ag_cosine_embedding(ag_ctx *ctx, ag_tensor *x1, ag_tensor *x2, const ag_ints *y, float margin) {
    AG_NEED(x1, x2, y);
    char s0[64], s1[64], s2[64];
    if (x1->ndim != 2 || !ag__same_shape(x1, x2) || y->ndim != 1 || y->shape[0] != x1->shape[0])
        AG_FAIL_NULL("cosine_embedding: needs x1 and x2 [N,D] and y [N], got x1 %s, x2 %s, y %s",
                     ag_shape_str(s0, x1->ndim, x1->shape), ag_shape_str(s1, x2->ndim, x2->shape),
                     ag_shape_str(s2, y->ndim, y->shape));
    if (!isfinite(margin)) AG_FAIL_NULL("cosine_embedding: margin must be finite, got %g", (double)margin);
    int64_t N = x1->shape[0], D = x1->shape[1];
    for (int64_t r = 0; r < N; ++r)
        if (y->data[r] != 1 && y->data[r] != -1)
            AG_FAIL_NULL("cosine_embedding: label %d at row %lld; labels must be +1 or -1", (int)y->data[r],
                         (long long)r);
    double loss = cosine_embedding_forward(x1->data, x2->data, y->data, N, D, margin) / (double)N;
    ag_tensor *out = loss_output(ctx, "cosine_embedding", loss);
    if (!out) return NULL;
    ag_tensor *in[2] = {x1, x2};
    ag_node *n = ag__record(ctx, AG_OP_COSINE_EMBEDDING, out, 2, in);
    if (!n) return NULL;
    n->i[0] = N;
    n->i[1] = D;
    n->f[0] = margin;
    if (out->requires_grad && !(n->idx = ag__ints_copy(ctx, y))) return NULL;
    return out;
}

ag_status ag_cosine_embedding_backward(ag_ctx *ctx, const ag_node *n) {
    ag_tensor *x1 = n->in[0], *x2 = n->in[1];
    cosine_embedding_backward(x1->grad, x2->grad, x1->data, x2->data, n->idx->data, n->i[0], n->i[1], n->f[0],
                              n->out->grad[0] / (float)n->i[0]);
    return AG_OK;
}

/* ---------------------------------------------------------------- mse */

/* sum_i (a_i - b_i)^2 over a, b [n]. */
static double mse_forward(const float *a, const float *b, int64_t n) {
    double total = 0;
#pragma omp parallel for reduction(+ : total) if (n > AG_PAR_MIN)
    for (int64_t i = 0; i < n; ++i) {
        double d = (double)a[i] - b[i];
        total += d * d;
    }
    return total;
}

/* da [n] += g 2(a - b), db [n] -= g 2(a - b); either may be NULL; g = dl/n. */
static void mse_backward(float *da, float *db, const float *a, const float *b, int64_t n, float g) {
#pragma omp parallel for if (n > AG_PAR_MIN)
    for (int64_t i = 0; i < n; ++i) {
        float d = 2.0f * g * (a[i] - b[i]);
        if (da) da[i] += d;
        if (db) db[i] -= d;
    }
}

ag_tensor *ag_mse(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    AG_NEED(a, b);
    char s0[64], s1[64];
    if (!ag__same_shape(a, b))
        AG_FAIL_NULL("mse: a %s and b %s must have the same shape", ag_shape_str(s0, a->ndim, a->shape),
                     ag_shape_str(s1, b->ndim, b->shape));
    ag_tensor *out = loss_output(ctx, "mse", mse_forward(a->data, b->data, a->numel) / (double)a->numel);
    if (!out) return NULL;
    ag_tensor *in[2] = {a, b};
    return ag__record(ctx, AG_OP_MSE, out, 2, in) ? out : NULL;
}

ag_status ag_mse_backward(ag_ctx *ctx, const ag_node *n) {
    ag_tensor *a = n->in[0], *b = n->in[1];
    mse_backward(a->grad, b->grad, a->data, b->data, a->numel, n->out->grad[0] / (float)a->numel);
    return AG_OK;
}
