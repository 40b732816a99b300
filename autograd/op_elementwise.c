/* op_elementwise.c: add, sub, mul, div with broadcasting; scale and add_scalar.
 *
 * out = a (op) b, elementwise. a has the output's shape; b broadcasts against it
 * by numpy's rules, dims aligned from the right: each of b's dims equals a's or
 * is 1, and missing leading dims count as 1. So b may be a bias [C], a row
 * [1,C], a column [N,1], a per-head [NH,1,1], or a's own shape.
 *
 *   add  out = a + b   da += dout            db += reduce(dout)
 *   sub  out = a - b   da += dout            db += reduce(-dout)
 *   mul  out = a * b   da += dout * b        db += reduce(dout * a)
 *   div  out = a / b   da += dout / b        db += reduce(-dout * a / b^2) = reduce(-dout * out / b)
 *   scale       out = s x   dx += s dout
 *   add_scalar  out = x + s dx += dout
 *
 * reduce() sums over the dims where b was broadcast: each element of b was used
 * once for every output element it was paired with, and the contributions add
 * (the chain rule for a variable used many times). b's offset for output
 * element i comes from ag__bcast_offset with stride 0 in broadcast dims.
 *
 * Three cases for the loops: the same shape (one flat loop), b a trailing block
 * repeated (a bias: b[i % nb]), and the general case through the strides.
 */
#include "internal.h"

typedef enum { EW_ADD, EW_SUB, EW_MUL, EW_DIV } ew_kind;

static inline float ew_apply(ew_kind k, float a, float b) {
    switch (k) {
    case EW_ADD: return a + b;
    case EW_SUB: return a - b;
    case EW_MUL: return a * b;
    default: return a / b;
    }
}

/* How b lines up with a: the same shape, a trailing block, or general. */
typedef enum { BC_SAME, BC_TRAILING, BC_GENERAL } bc_kind;

static bc_kind bc_classify(const ag_tensor *a, const ag_tensor *b, const int64_t *bstride) {
    if (a->numel == b->numel) return BC_SAME;
    /* trailing: b's strides are those of a contiguous block of a's last dims and
     * 0 in front of it, i.e. b[i % nb]. */
    int64_t s = 1;
    int d = a->ndim - 1;
    for (; d >= 0 && bstride[d] == s && s < b->numel; --d) s *= a->shape[d];
    if (s != b->numel) return BC_GENERAL;
    for (; d >= 0; --d)
        if (bstride[d] != 0) return BC_GENERAL;
    return BC_TRAILING;
}

/* ---------------------------------------------------------------- kernels */

/* out [n] = a [n] (op) b at its broadcast offsets. */
static void ew_forward(ew_kind k, float *out, const ag_tensor *a, const ag_tensor *b, const int64_t *bstride,
                       bc_kind bc) {
    const int64_t n = a->numel, nb = b->numel;
    const float *x = a->data, *y = b->data;
    if (bc == BC_SAME) {
#pragma omp parallel for simd if (n > AG_PAR_MIN)
        for (int64_t i = 0; i < n; ++i) out[i] = ew_apply(k, x[i], y[i]);
    } else if (bc == BC_TRAILING) {
#pragma omp parallel for if (n > AG_PAR_MIN)
        for (int64_t r = 0; r < n / nb; ++r)
            for (int64_t j = 0; j < nb; ++j) out[r * nb + j] = ew_apply(k, x[r * nb + j], y[j]);
    } else {
#pragma omp parallel for if (n > AG_PAR_MIN)
        for (int64_t i = 0; i < n; ++i) out[i] = ew_apply(k, x[i], y[ag__bcast_offset(a, bstride, i)]);
    }
}

/* The local derivatives for output element i: d out/d a and d out/d b. */
static inline void ew_local(ew_kind k, float a, float b, float out, float *da, float *db) {
    switch (k) {
    case EW_ADD: *da = 1; *db = 1; break;
    case EW_SUB: *da = 1; *db = -1; break;
    case EW_MUL: *da = b; *db = a; break;
    default: *da = 1 / b; *db = -out / b; break;
    }
}

/* da [n] += dout * dout/da; db [nb] += sum over broadcast of dout * dout/db.
 * Either gradient may be NULL. The da loop is parallel; the db reduction is
 * parallel only when b has a's shape (no two outputs share an element of b). */
static void ew_backward(ew_kind k, float *da, float *db, const float *dout, const ag_tensor *a, const ag_tensor *b,
                        const float *out, const int64_t *bstride, bc_kind bc) {
    const int64_t n = a->numel, nb = b->numel;
    const float *x = a->data, *y = b->data;
    if (bc == BC_SAME) {
#pragma omp parallel for if (n > AG_PAR_MIN)
        for (int64_t i = 0; i < n; ++i) {
            float la, lb;
            ew_local(k, x[i], y[i], out[i], &la, &lb);
            if (da) da[i] += dout[i] * la;
            if (db) db[i] += dout[i] * lb;
        }
        return;
    }
    if (da) {
#pragma omp parallel for if (n > AG_PAR_MIN)
        for (int64_t i = 0; i < n; ++i) {
            int64_t j = bc == BC_TRAILING ? i % nb : ag__bcast_offset(a, bstride, i);
            float la, lb;
            ew_local(k, x[i], y[j], out[i], &la, &lb);
            da[i] += dout[i] * la;
        }
    }
    if (db) {
        for (int64_t i = 0; i < n; ++i) {
            int64_t j = bc == BC_TRAILING ? i % nb : ag__bcast_offset(a, bstride, i);
            float la, lb;
            ew_local(k, x[i], y[j], out[i], &la, &lb);
            db[j] += dout[i] * lb;
        }
    }
}

/* ---------------------------------------------------------------- tape functions */

static ag_tensor *ew_op(ag_ctx *ctx, ag_op op, ew_kind k, const char *name, ag_tensor *a, ag_tensor *b) {
    AG_NEED(a, b);
    int64_t bstride[AG_MAX_DIMS];
    if (!ag__broadcast_strides(a, b->ndim, b->shape, bstride)) {
        char sa[64], sb[64];
        AG_FAIL_NULL("%s: b %s does not broadcast to a %s (b's dims must equal a's or be 1, aligned from the "
                     "right; put the larger tensor first)",
                     name, ag_shape_str(sb, b->ndim, b->shape), ag_shape_str(sa, a->ndim, a->shape));
    }
    ag_tensor *out = ag__empty_like(ctx, a);
    if (!out) return NULL;
    bc_kind bc = bc_classify(a, b, bstride);
    ew_forward(k, out->data, a, b, bstride, bc);
    ag_node *n = ag__record(ctx, op, out, 2, (ag_tensor *[]){a, b});
    if (!n) return NULL;
    n->i[0] = k;
    n->i[1] = bc;
    return out;
}

ag_tensor *ag_add(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) { return ew_op(ctx, AG_OP_ADD, EW_ADD, "add", a, b); }
ag_tensor *ag_sub(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) { return ew_op(ctx, AG_OP_SUB, EW_SUB, "sub", a, b); }
ag_tensor *ag_mul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) { return ew_op(ctx, AG_OP_MUL, EW_MUL, "mul", a, b); }
ag_tensor *ag_div(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) { return ew_op(ctx, AG_OP_DIV, EW_DIV, "div", a, b); }

static ag_status ew_op_backward(ag_ctx *ctx, const ag_node *n) {
    ag_tensor *a = n->in[0], *b = n->in[1];
    int64_t bstride[AG_MAX_DIMS];
    ag__broadcast_strides(a, b->ndim, b->shape, bstride);
    ew_backward((ew_kind)n->i[0], a->grad, b->grad, n->out->grad, a, b, n->out->data, bstride, (bc_kind)n->i[1]);
    return AG_OK;
}

ag_status ag_add_backward(ag_ctx *ctx, const ag_node *n) { return ew_op_backward(ctx, n); }
ag_status ag_sub_backward(ag_ctx *ctx, const ag_node *n) { return ew_op_backward(ctx, n); }
ag_status ag_mul_backward(ag_ctx *ctx, const ag_node *n) { return ew_op_backward(ctx, n); }
ag_status ag_div_backward(ag_ctx *ctx, const ag_node *n) { return ew_op_backward(ctx, n); }

/* ---------------------------------------------------------------- scalar ops */

/* out = s*x + c: scale is (s, 0), add_scalar is (1, c). */
static ag_tensor *affine(ag_ctx *ctx, ag_op op, ag_tensor *x, float s, float c) {
    AG_NEED(x);
    ag_tensor *out = ag__empty_like(ctx, x);
    if (!out) return NULL;
    const int64_t n = x->numel;
    float *y = out->data;
    const float *xs = x->data;
#pragma omp parallel for simd if (n > AG_PAR_MIN)
    for (int64_t i = 0; i < n; ++i) y[i] = s * xs[i] + c;
    ag_node *node = ag__record(ctx, op, out, 1, &x);
    if (!node) return NULL;
    node->f[0] = s;
    return out;
}

ag_tensor *ag_scale(ag_ctx *ctx, ag_tensor *x, float s) { return affine(ctx, AG_OP_SCALE, x, s, 0.0f); }
ag_tensor *ag_add_scalar(ag_ctx *ctx, ag_tensor *x, float s) { return affine(ctx, AG_OP_ADD_SCALAR, x, 1.0f, s); }

/* dx += s * dout */
static ag_status affine_backward(ag_ctx *ctx, const ag_node *n) {
    float *dx = n->in[0]->grad;
    const float *dy = n->out->grad;
    const float s = n->f[0];
    const int64_t m = n->out->numel;
    if (!dx) return AG_OK;
#pragma omp parallel for simd if (m > AG_PAR_MIN)
    for (int64_t i = 0; i < m; ++i) dx[i] += s * dy[i];
    return AG_OK;
}

ag_status ag_scale_backward(ag_ctx *ctx, const ag_node *n) { return affine_backward(ctx, n); }
ag_status ag_add_scalar_backward(ag_ctx *ctx, const ag_node *n) { return affine_backward(ctx, n); }
