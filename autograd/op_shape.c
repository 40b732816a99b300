/* op_shape.c: moving data around without arithmetic.
 *
 * Every op here only copies values (or, for reshape, none at all), so every
 * gradient is the same copy run backwards: the value that went from x[a] to
 * out[b] sends dout[b] back into dx[a].
 *
 *   reshape      out = x viewed in a new shape (same data, same order)
 *                dx += dout viewed in x's shape
 *   permute      out[i0,i1,..] = x[j] with j[perm[d]] = i[d]
 *                dx[j] += dout[i]  (the inverse permutation)
 *   concat       out = [x_0 | x_1 | ... ] along dim
 *                dx_k += the slice of dout that x_k filled
 *   slice        out = x[..., start:start+len, ...] along dim
 *                dx[..., start:start+len, ...] += dout
 *   masked_fill  out = mask != 0 ? value : x       (mask broadcast against x)
 *                dx += dout * [mask == 0]; the mask gets no gradient
 *
 * What it is not: a strided-view library. Only reshape shares memory (a
 * contiguous row-major tensor read in the same order is the same bytes); the
 * others write a new contiguous tensor, which keeps every kernel downstream a
 * plain loop over a plain array.
 *
 * Several kernels view a tensor around one dimension `dim` as three:
 *   [outer, n, inner], outer = product of the dims before dim,
 *                      inner = product of the dims after it,
 * so that "along dim" becomes "the middle index", and a run of n*inner floats
 * for one outer index is contiguous.
 */
#include "internal.h"

/* The [outer, n, inner] view of `shape` around `dim` (see the top comment). */
static void split_at(int ndim, const int64_t *shape, int dim, int64_t *outer, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < dim; ++d) *outer *= shape[d];
    for (int d = dim + 1; d < ndim; ++d) *inner *= shape[d];
}

/* ================================================================ reshape */

/* No kernel: the output is a new header over x's data. Backward is elementwise,
 * because both tensors list their values in the same row-major order.
 * dx, dout [numel]. */
static void reshape_backward(float *dx, const float *dout, int64_t numel) {
#pragma omp parallel for simd if (numel > AG_PAR_MIN)
    for (int64_t i = 0; i < numel; ++i) dx[i] += dout[i];
}

ag_tensor *ag_reshape(ag_ctx *ctx, ag_tensor *x, int ndim, const int64_t *shape) {
    AG_NEED(x, shape);
    char sx[64], sn[64];
    if (ndim < 1 || ndim > AG_MAX_DIMS)
        AG_FAIL_NULL("reshape: %d dims asked for %s (1 to %d)", ndim, ag_shape_str(sx, x->ndim, x->shape),
                     AG_MAX_DIMS);
    ag_shape_str(sn, ndim, shape);
    ag_shape_str(sx, x->ndim, x->shape);

    /* Resolve the one -1: it takes whatever numel the other dims leave. */
    int64_t new_shape[AG_MAX_DIMS], known = 1;
    int infer = -1;
    for (int d = 0; d < ndim; ++d) {
        new_shape[d] = shape[d];
        if (shape[d] == -1) {
            if (infer >= 0) AG_FAIL_NULL("reshape: %s -> %s: more than one dim is -1", sx, sn);
            infer = d;
        } else if (shape[d] < 0) {
            AG_FAIL_NULL("reshape: %s -> %s: dim %d is negative", sx, sn, d);
        } else {
            known *= shape[d];
        }
    }
    if (infer >= 0) {
        if (known == 0 || x->numel % known != 0)
            AG_FAIL_NULL("reshape: %s (%lld values) cannot be viewed as %s", sx, (long long)x->numel, sn);
        new_shape[infer] = x->numel / known;
        known *= new_shape[infer];
    }
    if (known != x->numel)
        AG_FAIL_NULL("reshape: %s has %lld values, %s has %lld", sx, (long long)x->numel, sn, (long long)known);

    /* Only the header is new; data is x's. The gradient buffer is its own (the
     * tape gives it one in backward), so dout and dx never alias. */
    ag_tensor *out = ag_arena_alloc(ctx, sizeof *out);
    if (!out) return NULL;
    memset(out, 0, sizeof *out);
    out->ndim = ndim;
    memcpy(out->shape, new_shape, (size_t)ndim * sizeof *new_shape);
    out->numel = x->numel;
    out->data = x->data;
    return ag__record(ctx, AG_OP_RESHAPE, out, 1, &x) ? out : NULL;
}

ag_status ag_reshape_backward(ag_ctx *ctx, const ag_node *n) {
    if (n->in[0]->grad) reshape_backward(n->in[0]->grad, n->out->grad, n->out->numel);
    return AG_OK;
}

/* ================================================================ permute */

/* Out's dims are x's dims in the order perm: out.shape[d] = x.shape[perm[d]],
 * so stepping out's index d by one steps x by xstride[perm[d]].
 *
 * The last `keep` dims of out that perm leaves in place (perm[d] == d) form a
 * contiguous block of `inner` floats in both tensors; the kernels move whole
 * blocks. Transformers' head split [B,T,NH,D] -> [B,NH,T,D] (perm 0,2,1,3)
 * keeps D in place, so it copies B*NH*T rows of D floats with memcpy. A plain
 * 2-D transpose keeps nothing and moves single floats.
 *
 * For out's row r (its index over the first ndim-keep dims), the block starts
 * in x at permute_src(r); rows are independent, so they run in parallel. */
typedef struct {
    int n_outer;              /* ndim - keep: the dims that move */
    int64_t oshape[AG_MAX_DIMS]; /* out's shape */
    int64_t src_stride[AG_MAX_DIMS]; /* x's stride for out's dim d: xstride[perm[d]] */
    int64_t rows, inner;      /* rows * inner = numel */
} permute_plan;

static permute_plan permute_plan_make(int ndim, const int64_t *xshape, const int *perm) {
    permute_plan p;
    int64_t xstride[AG_MAX_DIMS];
    ag__strides(ndim, xshape, xstride);
    int keep = 0;
    while (keep < ndim && perm[ndim - 1 - keep] == ndim - 1 - keep) keep++;
    p.n_outer = ndim - keep;
    p.rows = 1;
    p.inner = 1;
    for (int d = 0; d < ndim; ++d) {
        p.oshape[d] = xshape[perm[d]];
        p.src_stride[d] = xstride[perm[d]];
        if (d < p.n_outer) p.rows *= p.oshape[d];
        else p.inner *= p.oshape[d];
    }
    return p;
}

/* Where out's row r starts in x. */
static inline int64_t permute_src(const permute_plan *p, int64_t r) {
    int64_t off = 0;
    for (int d = p->n_outer - 1; d >= 0; --d) {
        off += (r % p->oshape[d]) * p->src_stride[d];
        r /= p->oshape[d];
    }
    return off;
}

/* out [oshape] <- x [xshape]. */
static void permute_forward(float *out, const float *x, const permute_plan *p) {
    const int64_t rows = p->rows, inner = p->inner;
    if (inner == 1) {
#pragma omp parallel for if (rows > AG_PAR_MIN)
        for (int64_t r = 0; r < rows; ++r) out[r] = x[permute_src(p, r)];
        return;
    }
#pragma omp parallel for if (rows * inner > AG_PAR_MIN)
    for (int64_t r = 0; r < rows; ++r)
        memcpy(out + r * inner, x + permute_src(p, r), (size_t)inner * sizeof(float));
}

/* dx [xshape] += dout [oshape] sent back through the same map. A permutation is
 * one-to-one, so parallel rows never write the same dx. */
static void permute_backward(float *dx, const float *dout, const permute_plan *p) {
    const int64_t rows = p->rows, inner = p->inner;
#pragma omp parallel for if (rows * inner > AG_PAR_MIN)
    for (int64_t r = 0; r < rows; ++r) {
        float *d = dx + permute_src(p, r);
        const float *g = dout + r * inner;
        for (int64_t j = 0; j < inner; ++j) d[j] += g[j];
    }
}

ag_tensor *ag_permute(ag_ctx *ctx, ag_tensor *x, const int *perm) {
    AG_NEED(x, perm);
    char sx[64];
    int p[AG_MAX_DIMS];
    bool seen[AG_MAX_DIMS] = {false};
    for (int d = 0; d < x->ndim; ++d) {
        p[d] = ag__dim(perm[d], x->ndim); /* torch allows negative dims here too */
        if (p[d] < 0 || seen[p[d]])
            AG_FAIL_NULL("permute: perm[%d] = %d is %s for x %s (perm must order 0..%d)", d, perm[d],
                         p[d] < 0 ? "out of range" : "repeated", ag_shape_str(sx, x->ndim, x->shape), x->ndim - 1);
        seen[p[d]] = true;
    }
    permute_plan plan = permute_plan_make(x->ndim, x->shape, p);
    ag_tensor *out = ag__empty(ctx, x->ndim, plan.oshape);
    if (!out) return NULL;
    permute_forward(out->data, x->data, &plan);
    ag_node *n = ag__record(ctx, AG_OP_PERMUTE, out, 1, &x);
    if (!n) return NULL;
    for (int d = 0; d < x->ndim; ++d) n->i[d] = p[d];
    return out;
}

ag_tensor *ag_transpose(ag_ctx *ctx, ag_tensor *x, int d0, int d1) {
    AG_NEED(x);
    char sx[64];
    int a = ag__dim(d0, x->ndim), b = ag__dim(d1, x->ndim);
    if (a < 0 || b < 0)
        AG_FAIL_NULL("transpose: dims (%d, %d) out of range for x %s", d0, d1, ag_shape_str(sx, x->ndim, x->shape));
    int perm[AG_MAX_DIMS];
    for (int d = 0; d < x->ndim; ++d) perm[d] = d;
    perm[a] = b;
    perm[b] = a;
    return ag_permute(ctx, x, perm);
}

ag_status ag_permute_backward(ag_ctx *ctx, const ag_node *n) {
    if (!n->in[0]->grad) return AG_OK;
    int perm[AG_MAX_DIMS];
    for (int d = 0; d < n->in[0]->ndim; ++d) perm[d] = (int)n->i[d];
    permute_plan plan = permute_plan_make(n->in[0]->ndim, n->in[0]->shape, perm);
    permute_backward(n->in[0]->grad, n->out->grad, &plan);
    return AG_OK;
}

/* ================================================================ concat */

/* In the [outer, n, inner] view, out's row o is x_0's row o, then x_1's row o,
 * and so on: input k contributes len[k] = n_k * inner contiguous floats at
 * offset off[k] of each of out's rows of width = sum_k len[k] floats.
 * out [outer, width]; x_k [outer, len[k]]. */
static void concat_forward(float *out, const float *const *xs, const int64_t *len, const int64_t *off, int n,
                           int64_t outer, int64_t width) {
#pragma omp parallel for if (outer * width > AG_PAR_MIN)
    for (int64_t o = 0; o < outer; ++o)
        for (int k = 0; k < n; ++k)
            memcpy(out + o * width + off[k], xs[k] + o * len[k], (size_t)len[k] * sizeof(float));
}

/* dx_k [outer, len[k]] += its columns of dout [outer, width]; dx[k] may be NULL. */
static void concat_backward(float *const *dx, const float *dout, const int64_t *len, const int64_t *off, int n,
                            int64_t outer, int64_t width) {
#pragma omp parallel for if (outer * width > AG_PAR_MIN)
    for (int64_t o = 0; o < outer; ++o)
        for (int k = 0; k < n; ++k) {
            if (!dx[k]) continue;
            float *d = dx[k] + o * len[k];
            const float *g = dout + o * width + off[k];
            for (int64_t j = 0; j < len[k]; ++j) d[j] += g[j];
        }
}

/* The widths and offsets of the inputs' runs in each of out's rows. */
static int64_t concat_layout(ag_tensor *const *xs, int n, int dim, int64_t *len, int64_t *off) {
    int64_t outer, inner, width = 0;
    split_at(xs[0]->ndim, xs[0]->shape, dim, &outer, &inner);
    for (int k = 0; k < n; ++k) {
        len[k] = xs[k]->shape[dim] * inner;
        off[k] = width;
        width += len[k];
    }
    return width;
}

ag_tensor *ag_concat(ag_ctx *ctx, ag_tensor *const *xs, int n, int dim) {
    AG_NEED(xs);
    if (n < 1 || n > AG_MAX_INPUTS) AG_FAIL_NULL("concat: %d inputs (1 to %d)", n, AG_MAX_INPUTS);
    for (int k = 0; k < n; ++k) AG_NEED(xs[k]);
    char s0[64], sk[64];
    const ag_tensor *x0 = xs[0];
    int d = ag__dim(dim, x0->ndim);
    if (d < 0) AG_FAIL_NULL("concat: dim %d out of range for input 0 %s", dim, ag_shape_str(s0, x0->ndim, x0->shape));
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[d] = 0;
    for (int k = 0; k < n; ++k) {
        const ag_tensor *x = xs[k];
        bool ok = x->ndim == x0->ndim;
        for (int e = 0; ok && e < x0->ndim; ++e) ok = e == d || x->shape[e] == x0->shape[e];
        if (!ok)
            AG_FAIL_NULL("concat: input %d has shape %s, input 0 %s; along dim %d all other dims must agree", k,
                         ag_shape_str(sk, x->ndim, x->shape), ag_shape_str(s0, x0->ndim, x0->shape), dim);
        shape[d] += x->shape[d];
    }
    ag_tensor *out = ag__empty(ctx, x0->ndim, shape);
    if (!out) return NULL;

    int64_t len[AG_MAX_INPUTS], off[AG_MAX_INPUTS], outer, inner;
    const float *src[AG_MAX_INPUTS];
    split_at(x0->ndim, x0->shape, d, &outer, &inner);
    int64_t width = concat_layout(xs, n, d, len, off);
    for (int k = 0; k < n; ++k) src[k] = xs[k]->data;
    concat_forward(out->data, src, len, off, n, outer, width);

    ag_node *node = ag__record(ctx, AG_OP_CONCAT, out, n, xs);
    if (!node) return NULL;
    node->i[0] = d;
    return out;
}

ag_status ag_concat_backward(ag_ctx *ctx, const ag_node *n) {
    int d = (int)n->i[0];
    int64_t len[AG_MAX_INPUTS], off[AG_MAX_INPUTS], outer, inner;
    float *dx[AG_MAX_INPUTS];
    split_at(n->in[0]->ndim, n->in[0]->shape, d, &outer, &inner);
    int64_t width = concat_layout(n->in, n->n_in, d, len, off);
    for (int k = 0; k < n->n_in; ++k) dx[k] = n->in[k]->grad; /* NULL: that input needs none */
    concat_backward(dx, n->out->grad, len, off, n->n_in, outer, width);
    return AG_OK;
}

/* ================================================================ slice */

/* In the [outer, n, inner] view of x, out's row o is the contiguous run
 * x[o, start:start+len, :] of len*inner floats.
 * x [outer, n*inner]; out [outer, len*inner]. */
static void slice_forward(float *out, const float *x, int64_t outer, int64_t n, int64_t inner, int64_t start,
                          int64_t len) {
    const int64_t run = len * inner;
#pragma omp parallel for if (outer * run > AG_PAR_MIN)
    for (int64_t o = 0; o < outer; ++o)
        memcpy(out + o * run, x + (o * n + start) * inner, (size_t)run * sizeof(float));
}

/* dx [outer, n*inner]: only the sliced run of each row receives dout. */
static void slice_backward(float *dx, const float *dout, int64_t outer, int64_t n, int64_t inner, int64_t start,
                           int64_t len) {
    const int64_t run = len * inner;
#pragma omp parallel for if (outer * run > AG_PAR_MIN)
    for (int64_t o = 0; o < outer; ++o) {
        float *d = dx + (o * n + start) * inner;
        const float *g = dout + o * run;
        for (int64_t j = 0; j < run; ++j) d[j] += g[j];
    }
}

ag_tensor *ag_slice(ag_ctx *ctx, ag_tensor *x, int dim, int64_t start, int64_t len) {
    AG_NEED(x);
    char sx[64];
    int d = ag__dim(dim, x->ndim);
    if (d < 0) AG_FAIL_NULL("slice: dim %d out of range for x %s", dim, ag_shape_str(sx, x->ndim, x->shape));
    int64_t n = x->shape[d];
    int64_t s = start < 0 ? start + n : start; /* as torch.narrow: a negative start counts from the end */
    if (s < 0 || len < 0 || s > n || len > n - s)
        AG_FAIL_NULL("slice: [%lld, %lld + %lld) is outside dim %d of x %s (size %lld)", (long long)start,
                     (long long)start, (long long)len, dim, ag_shape_str(sx, x->ndim, x->shape), (long long)n);
    int64_t shape[AG_MAX_DIMS], outer, inner;
    memcpy(shape, x->shape, sizeof shape);
    shape[d] = len;
    ag_tensor *out = ag__empty(ctx, x->ndim, shape);
    if (!out) return NULL;
    split_at(x->ndim, x->shape, d, &outer, &inner);
    slice_forward(out->data, x->data, outer, n, inner, s, len);
    ag_node *node = ag__record(ctx, AG_OP_SLICE, out, 1, &x);
    if (!node) return NULL;
    node->i[0] = d;
    node->i[1] = s;
    node->i[2] = len;
    return out;
}

ag_status ag_slice_backward(ag_ctx *ctx, const ag_node *n) {
    const ag_tensor *x = n->in[0];
    if (!x->grad) return AG_OK;
    int d = (int)n->i[0];
    int64_t outer, inner;
    split_at(x->ndim, x->shape, d, &outer, &inner);
    slice_backward(x->grad, n->out->grad, outer, x->shape[d], inner, n->i[1], n->i[2]);
    return AG_OK;
}

/* torch.chunk(x, n, dim) when n divides the dim: n slices of equal size. */
ag_status ag_split(ag_ctx *ctx, ag_tensor *x, int dim, int n, ag_tensor **outs) {
    char sx[64];
    if (!outs) return ag_fail(AG_ERR_ARG, "split: outs is NULL");
    for (int k = 0; k < n; ++k) outs[k] = NULL;
    if (!x) return ag_error_status() != AG_OK ? ag_error_status() : ag_fail(AG_ERR_ARG, "split: x is NULL");
    int d = ag__dim(dim, x->ndim);
    if (d < 0)
        return ag_fail(AG_ERR_ARG, "split: dim %d out of range for x %s", dim, ag_shape_str(sx, x->ndim, x->shape));
    if (n < 1 || x->shape[d] % n != 0)
        return ag_fail(AG_ERR_ARG, "split: dim %d of x %s (size %lld) does not split into %d equal parts", dim,
                       ag_shape_str(sx, x->ndim, x->shape), (long long)x->shape[d], n);
    int64_t part = x->shape[d] / n;
    for (int k = 0; k < n; ++k) {
        outs[k] = ag_slice(ctx, x, d, k * part, part);
        if (!outs[k]) return ag_error_status();
    }
    return AG_OK;
}

/* ================================================================ masked_fill */

/* out [N] = mask != 0 ? value : x, with mask's element for out's i at
 * ag__bcast_offset(x, mstride, i) (mstride: mask's strides aligned to x's
 * dims, 0 where the mask broadcasts). value may be -inf: an attention mask. */
static void masked_fill_forward(float *out, const ag_tensor *x, const float *mask, const int64_t *mstride,
                                float value) {
    const int64_t numel = x->numel;
#pragma omp parallel for if (numel > AG_PAR_MIN)
    for (int64_t i = 0; i < numel; ++i)
        out[i] = mask[ag__bcast_offset(x, mstride, i)] != 0.0f ? value : x->data[i];
}

/* dx [N] += dout where the mask let x through; the filled entries are
 * constants, so their dout goes nowhere (and the mask gets no gradient). */
static void masked_fill_backward(float *dx, const float *dout, const ag_tensor *x, const float *mask,
                                 const int64_t *mstride) {
    const int64_t numel = x->numel;
#pragma omp parallel for if (numel > AG_PAR_MIN)
    for (int64_t i = 0; i < numel; ++i)
        if (mask[ag__bcast_offset(x, mstride, i)] == 0.0f) dx[i] += dout[i];
}

ag_tensor *ag_masked_fill(ag_ctx *ctx, ag_tensor *x, ag_tensor *mask, float value) {
    AG_NEED(x, mask);
    char sx[64], sm[64];
    int64_t mstride[AG_MAX_DIMS];
    if (!ag__broadcast_strides(x, mask->ndim, mask->shape, mstride))
        AG_FAIL_NULL("masked_fill: mask %s does not broadcast to x %s", ag_shape_str(sm, mask->ndim, mask->shape),
                     ag_shape_str(sx, x->ndim, x->shape));
    ag_tensor *out = ag__empty_like(ctx, x);
    if (!out) return NULL;
    masked_fill_forward(out->data, x, mask->data, mstride, value);
    ag_tensor *in[2] = {x, mask};
    ag_node *n = ag__record(ctx, AG_OP_MASKED_FILL, out, 2, in);
    if (!n) return NULL;
    n->f[0] = value;
    return out;
}

ag_status ag_masked_fill_backward(ag_ctx *ctx, const ag_node *n) {
    const ag_tensor *x = n->in[0], *mask = n->in[1];
    if (!x->grad) return AG_OK;
    int64_t mstride[AG_MAX_DIMS];
    ag__broadcast_strides(x, mask->ndim, mask->shape, mstride); /* checked in the forward */
    masked_fill_backward(x->grad, n->out->grad, x, mask->data, mstride);
    return AG_OK;
}
