/* op_reduce.c: sum and mean over one dimension, or over everything.
 *
 * View x around the reduced dim as [outer, n, inner] (outer = product of the
 * dims before it, inner = product of the dims after it). Then, with s = 1 for
 * sum and s = 1/n for mean:
 *
 *   forward   out[o, j]     = s * sum_k x[o, k, j]
 *   backward  dx[o, k, j]  += s * dout[o, j]        (for every k)
 *
 * Reducing everything (dim = AG_ALL) is the same with outer = inner = 1 and
 * n = numel, giving out [1].
 *
 * Output shape: x's shape without the reduced dim, or with it set to 1 when
 * keepdim. A tensor cannot have zero dims here, so reducing the only dim of a
 * 1-D tensor gives [1] either way (PyTorch would give a 0-dim tensor, which
 * holds the same one value).
 *
 * Sums accumulate in double: a float32 running sum of a million values loses
 * several digits, and the loss of a whole batch is such a sum.
 */
#include "internal.h"

/* out [outer*inner] = scale * sum over k of x [outer, n, inner]. One thread per
 * output element; the reduced index k strides by inner through x. */
static void reduce_forward(float *out, const float *x, int64_t outer, int64_t n, int64_t inner, double scale) {
    const int64_t n_out = outer * inner;
#pragma omp parallel for if (n_out * n > AG_PAR_MIN)
    for (int64_t r = 0; r < n_out; ++r) {
        const int64_t o = r / inner, j = r % inner;
        const float *xr = x + o * n * inner + j;
        double s = 0.0;
        for (int64_t k = 0; k < n; ++k) s += xr[k * inner];
        out[r] = (float)(s * scale);
    }
}

/* The whole tensor at once: one sum of N values into out [1], split over threads
 * by OpenMP's reduction (each thread's partial sum is a double too). */
static void reduce_all_forward(float *out, const float *x, int64_t numel, double scale) {
    double s = 0.0;
#pragma omp parallel for reduction(+ : s) if (numel > AG_PAR_MIN)
    for (int64_t i = 0; i < numel; ++i) s += x[i];
    out[0] = (float)(s * scale);
}

/* dx [outer, n, inner] += scale * dout [outer, inner] broadcast along k. */
static void reduce_backward(float *dx, const float *dout, int64_t outer, int64_t n, int64_t inner, float scale) {
    const int64_t numel = outer * n * inner;
#pragma omp parallel for if (numel > AG_PAR_MIN)
    for (int64_t i = 0; i < numel; ++i) {
        const int64_t o = i / (n * inner), j = i % inner;
        dx[i] += scale * dout[o * inner + j];
    }
}

/* sum and mean differ only in the scale, so one tape function serves both. */
static ag_tensor *reduce(ag_ctx *ctx, ag_tensor *x, int dim, bool keepdim, bool mean) {
    const char *op = mean ? "mean" : "sum";
    char sx[64];
    int64_t shape[AG_MAX_DIMS], outer = 1, n, inner = 1;
    int ndim;
    if (dim == AG_ALL) {
        n = x->numel;
        ndim = 1;
        shape[0] = 1;
    } else {
        int d = ag__dim(dim, x->ndim);
        if (d < 0)
            AG_FAIL_NULL("%s: dim %d out of range for x %s (or AG_ALL for everything)", op, dim,
                         ag_shape_str(sx, x->ndim, x->shape));
        for (int e = 0; e < d; ++e) outer *= x->shape[e];
        for (int e = d + 1; e < x->ndim; ++e) inner *= x->shape[e];
        n = x->shape[d];
        ndim = 0;
        for (int e = 0; e < x->ndim; ++e) {
            if (e != d) shape[ndim++] = x->shape[e];
            else if (keepdim) shape[ndim++] = 1;
        }
        if (ndim == 0) shape[ndim++] = 1; /* the only dim of a 1-D x: out [1] */
    }
    /* mean of no values is 0/0 = NaN, as in PyTorch */
    double scale = mean ? 1.0 / (double)n : 1.0;

    ag_tensor *out = ag__empty(ctx, ndim, shape);
    if (!out) return NULL;
    /* One output (everything, or the only dim of a 1-D x): split the one long
     * sum over threads instead of giving it to a single thread. */
    if (outer * inner == 1) reduce_all_forward(out->data, x->data, x->numel, scale);
    else reduce_forward(out->data, x->data, outer, n, inner, scale);

    ag_node *node = ag__record(ctx, mean ? AG_OP_MEAN : AG_OP_SUM, out, 1, &x);
    if (!node) return NULL;
    node->i[0] = outer;
    node->i[1] = n;
    node->i[2] = inner;
    node->f[0] = (float)scale;
    return out;
}

ag_tensor *ag_sum(ag_ctx *ctx, ag_tensor *x, int dim, bool keepdim) {
    AG_NEED(x);
    return reduce(ctx, x, dim, keepdim, false);
}

ag_tensor *ag_mean(ag_ctx *ctx, ag_tensor *x, int dim, bool keepdim) {
    AG_NEED(x);
    return reduce(ctx, x, dim, keepdim, true);
}

static ag_status reduce_backward_node(const ag_node *n) {
    if (n->in[0]->grad) reduce_backward(n->in[0]->grad, n->out->grad, n->i[0], n->i[1], n->i[2], n->f[0]);
    return AG_OK;
}

ag_status ag_sum_backward(ag_ctx *ctx, const ag_node *n) { return reduce_backward_node(n); }
ag_status ag_mean_backward(ag_ctx *ctx, const ag_node *n) { return reduce_backward_node(n); }
