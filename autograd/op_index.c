/* op_index.c: lookups by integer index: embedding, index_select and gather.
 *
 * What it is: the three ways a model reads floats by position (token and
 * position embeddings, picking rows or columns, picking one logit per row).
 * What it is not: a general fancy-indexing library; each op takes exactly the
 * index layout PyTorch's function of the same name takes, with indices as
 * int32 ag_ints. Nothing flows back into the indices.
 *
 * Each forward is a copy, out[i] = x[idx[i]], so each backward is the matching
 * scatter-add, dx[idx[i]] += dout[i]. The "+=" matters: an index that appears
 * twice (a token used twice in a batch) reads the same row twice, and so
 * receives both gradients.
 *
 *   embedding     out[i,:] = W[ids_i,:]                 W [V,C], ids [...] -> [...,C]
 *                 dW[ids_i,:] += dout[i,:]             skipped when ids_i == padding_idx
 *   index_select  out[o,j,r] = x[o,idx_j,r]            x viewed as [outer, D, inner] around dim
 *                 dx[o,idx_j,r] += dout[o,j,r]
 *   gather        out[r,j] = x[r,idx[r,j]]             x [R,D], idx [R,J]: the leading dims as rows
 *                 dx[r,idx[r,j]] += dout[r,j]
 *
 * Threads, and why the scatter-adds have no races: two repeated indices write
 * the same row of dx, so the backward loops never split the list of indices
 * between threads. Embedding splits the columns C instead (each thread owns a
 * block of columns of every row of dW); index_select splits the outer dim and
 * blocks of the inner one, and gather the rows: each owns a disjoint part of dx.
 *
 * Indices are checked against their range in the tape function; an index
 * outside it is an error naming the op, the index, its position and the range.
 */
#include "internal.h"

/* The first index outside [0, n) among idx[0..count), or -1 when all are in range. */
static int64_t first_out_of_range(const int32_t *idx, int64_t count, int64_t n) {
    for (int64_t i = 0; i < count; ++i)
        if (idx[i] < 0 || idx[i] >= n) return i;
    return -1;
}

/* ---------------------------------------------------------------- embedding */

/* out[i,:] = W[ids[i],:]. out [n,C], W [V,C], ids [n]. */
static void embedding_forward(float *out, const float *W, const int32_t *ids, int64_t n, int64_t C) {
#pragma omp parallel for if (n * C > AG_PAR_MIN)
    for (int64_t i = 0; i < n; ++i) memcpy(out + i * C, W + (int64_t)ids[i] * C, (size_t)C * sizeof(float));
}

/* dW[ids[i],:] += dout[i,:] unless ids[i] == padding_idx. dW [V,C], dout [n,C].
 * Threads own blocks of columns and walk every id, so a repeated id is added
 * by one thread per block, one after another: no two threads write one entry. */
#define COL_BLOCK 64
static void embedding_backward(float *dW, const float *dout, const int32_t *ids, int64_t n, int64_t C,
                               int64_t padding_idx) {
#pragma omp parallel for if (n * C > AG_PAR_MIN)
    for (int64_t c0 = 0; c0 < C; c0 += COL_BLOCK) {
        int64_t c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int64_t i = 0; i < n; ++i) {
            if (ids[i] == padding_idx) continue; /* the padding row learns nothing */
            float *dw = dW + (int64_t)ids[i] * C;
            const float *g = dout + i * C;
            for (int64_t c = c0; c < c1; ++c) dw[c] += g[c];
        }
    }
}

ag_tensor *ag_embedding(ag_ctx *ctx, ag_tensor *w, const ag_ints *ids, int padding_idx) {
    AG_NEED(ctx, w, ids);
    char sw[64], si[64];
    ag_shape_str(sw, w->ndim, w->shape);
    ag_shape_str(si, ids->ndim, ids->shape);
    if (w->ndim != 2) AG_FAIL_NULL("embedding: W %s must be 2-D [V,C]", sw);
    if (ids->ndim < 1 || ids->ndim > 3) AG_FAIL_NULL("embedding: ids %s must have 1 to 3 dims", si);
    int64_t V = w->shape[0], C = w->shape[1];
    if (padding_idx >= V)
        AG_FAIL_NULL("embedding: padding_idx %d is outside [0, %lld) (W %s; use -1 for none)", padding_idx,
                     (long long)V, sw);
    int64_t bad = first_out_of_range(ids->data, ids->numel, V);
    if (bad >= 0)
        AG_FAIL_NULL("embedding: id %d at position %lld is outside [0, %lld) (W %s, ids %s)", ids->data[bad],
                     (long long)bad, (long long)V, sw, si);

    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, ids->shape, (size_t)ids->ndim * sizeof *shape);
    shape[ids->ndim] = C;
    ag_tensor *out = ag__empty(ctx, ids->ndim + 1, shape);
    if (!out) return NULL;
    embedding_forward(out->data, w->data, ids->data, ids->numel, C);

    ag_node *n = ag__record(ctx, AG_OP_EMBEDDING, out, 1, &w);
    if (!n) return NULL;
    if (out->requires_grad) {
        /* the caller may reuse its ids buffer before backward runs */
        if (!(n->idx = ag__ints_copy(ctx, ids))) return NULL;
        n->i[0] = padding_idx < 0 ? -1 : padding_idx;
    }
    return out;
}

ag_status ag_embedding_backward(ag_ctx *ctx, const ag_node *n) {
    const ag_tensor *w = n->in[0];
    if (w->grad)
        embedding_backward(w->grad, n->out->grad, n->idx->data, n->idx->numel, w->shape[1], n->i[0]);
    return AG_OK;
}

/* ---------------------------------------------------------------- index_select */

/* x viewed as [outer, D, inner] around the selected dim; out as [outer, n, inner].
 * out[o,j,:] = x[o,idx[j],:]. */
static void index_select_forward(float *out, const float *x, const int32_t *idx, int64_t outer, int64_t D,
                                 int64_t n, int64_t inner) {
#pragma omp parallel for collapse(2) if (outer * n * inner > AG_PAR_MIN)
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < n; ++j)
            memcpy(out + (o * n + j) * inner, x + (o * D + idx[j]) * inner, (size_t)inner * sizeof(float));
}

/* dx[o,idx[j],:] += dout[o,j,:]. The work is split into tasks (o, block of
 * inner columns): each task owns dx[o,:,block] and walks every j, so repeated
 * indices are added by one thread. (Splitting only o would leave one task when
 * dim is 0, the embedding-like case.) */
static void index_select_backward(float *dx, const float *dout, const int32_t *idx, int64_t outer, int64_t D,
                                  int64_t n, int64_t inner) {
    int64_t nblk = (inner + COL_BLOCK - 1) / COL_BLOCK; /* column blocks per o */
#pragma omp parallel for if (outer * n * inner > AG_PAR_MIN)
    for (int64_t task = 0; task < outer * nblk; ++task) {
        int64_t o = task / nblk, r0 = (task % nblk) * COL_BLOCK;
        int64_t r1 = r0 + COL_BLOCK < inner ? r0 + COL_BLOCK : inner;
        for (int64_t j = 0; j < n; ++j) {
            float *d = dx + (o * D + idx[j]) * inner;
            const float *g = dout + (o * n + j) * inner;
            for (int64_t r = r0; r < r1; ++r) d[r] += g[r];
        }
    }
}

ag_tensor *ag_index_select(ag_ctx *ctx, ag_tensor *x, int dim, const ag_ints *idx) {
    AG_NEED(ctx, x, idx);
    char sx[64], si[64];
    ag_shape_str(sx, x->ndim, x->shape);
    ag_shape_str(si, idx->ndim, idx->shape);
    int d = ag__dim(dim, x->ndim);
    if (d < 0) AG_FAIL_NULL("index_select: dim %d is out of range for x %s", dim, sx);
    if (idx->ndim != 1) AG_FAIL_NULL("index_select: idx %s must be 1-D", si);
    int64_t D = x->shape[d], n = idx->numel;
    int64_t bad = first_out_of_range(idx->data, n, D);
    if (bad >= 0)
        AG_FAIL_NULL("index_select: index %d at position %lld is outside [0, %lld) (x %s, dim %d)",
                     idx->data[bad], (long long)bad, (long long)D, sx, dim);
    int64_t outer = 1, inner = 1;
    for (int k = 0; k < d; ++k) outer *= x->shape[k];
    for (int k = d + 1; k < x->ndim; ++k) inner *= x->shape[k];

    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[d] = n;
    ag_tensor *out = ag__empty(ctx, x->ndim, shape);
    if (!out) return NULL;
    index_select_forward(out->data, x->data, idx->data, outer, D, n, inner);

    ag_node *nd = ag__record(ctx, AG_OP_INDEX_SELECT, out, 1, &x);
    if (!nd) return NULL;
    if (out->requires_grad) {
        if (!(nd->idx = ag__ints_copy(ctx, idx))) return NULL;
        nd->i[0] = outer;
        nd->i[1] = D;
        nd->i[2] = inner;
    }
    return out;
}

ag_status ag_index_select_backward(ag_ctx *ctx, const ag_node *n) {
    if (n->in[0]->grad)
        index_select_backward(n->in[0]->grad, n->out->grad, n->idx->data, n->i[0], n->i[1], n->idx->numel,
                              n->i[2]);
    return AG_OK;
}

/* ---------------------------------------------------------------- gather */

/* out[r,j] = x[r,idx[r,j]]. x [R,D], idx and out [R,J]. */
static void gather_forward(float *out, const float *x, const int32_t *idx, int64_t R, int64_t D, int64_t J) {
#pragma omp parallel for if (R * J > AG_PAR_MIN)
    for (int64_t r = 0; r < R; ++r)
        for (int64_t j = 0; j < J; ++j) out[r * J + j] = x[r * D + idx[r * J + j]];
}

/* dx[r,idx[r,j]] += dout[r,j]. Threads split the rows: row r of dx is written
 * only by the thread that owns row r of idx. */
static void gather_backward(float *dx, const float *dout, const int32_t *idx, int64_t R, int64_t D, int64_t J) {
#pragma omp parallel for if (R * J > AG_PAR_MIN)
    for (int64_t r = 0; r < R; ++r)
        for (int64_t j = 0; j < J; ++j) dx[r * D + idx[r * J + j]] += dout[r * J + j];
}

ag_tensor *ag_gather(ag_ctx *ctx, ag_tensor *x, const ag_ints *idx) {
    AG_NEED(ctx, x, idx);
    char sx[64], si[64];
    ag_shape_str(sx, x->ndim, x->shape);
    ag_shape_str(si, idx->ndim, idx->shape);
    if (idx->ndim != x->ndim)
        AG_FAIL_NULL("gather: idx %s must have x's %d dims (x %s)", si, x->ndim, sx);
    int64_t R = 1; /* rows: every leading dim, which idx must share with x */
    for (int k = 0; k < x->ndim - 1; ++k) {
        if (idx->shape[k] != x->shape[k])
            AG_FAIL_NULL("gather: idx %s and x %s differ at dim %d (only the last dim may differ)", si, sx, k);
        R *= x->shape[k];
    }
    int64_t D = x->shape[x->ndim - 1], J = idx->shape[idx->ndim - 1];
    int64_t bad = first_out_of_range(idx->data, idx->numel, D);
    if (bad >= 0)
        AG_FAIL_NULL("gather: index %d at position %lld is outside [0, %lld) (x %s, idx %s)", idx->data[bad],
                     (long long)bad, (long long)D, sx, si);

    ag_tensor *out = ag__empty(ctx, idx->ndim, idx->shape);
    if (!out) return NULL;
    gather_forward(out->data, x->data, idx->data, R, D, J);

    ag_node *n = ag__record(ctx, AG_OP_GATHER, out, 1, &x);
    if (!n) return NULL;
    if (out->requires_grad) {
        if (!(n->idx = ag__ints_copy(ctx, idx))) return NULL;
        n->i[0] = R;
        n->i[1] = D;
        n->i[2] = J;
    }
    return out;
}

ag_status ag_gather_backward(ag_ctx *ctx, const ag_node *n) {
    if (n->in[0]->grad) gather_backward(n->in[0]->grad, n->out->grad, n->idx->data, n->i[0], n->i[1], n->i[2]);
    return AG_OK;
}
