/* op_matmul.c: matrix products on OpenBLAS's cblas_sgemm: matmul and linear.
 *
 * What it is: every product in a transformer (projections, attention scores,
 * attention times values, the LM head) as one or many sgemm calls, with the
 * plain triple loop beside the BLAS call as the reference the BLAS path is
 * tested against (tests/test_matmul_reference.c). What it is not: a general
 * broadcasting matmul; B either has A's leading dims or is one 2-D matrix
 * shared by every batch.
 *
 * matmul, C = op(A) op(B) over the last two dims, op(X) = X or X^T:
 *
 *   forward   C[M,N] = op(A)[M,K] op(B)[K,N]
 *   dA        d op(A) = dC op(B)^T, so dA += dC op(B)^T        (A stored [M,K])
 *                                      dA += op(B) dC^T        (trans_a: A stored [K,M])
 *   dB        d op(B) = op(A)^T dC, so dB += op(A)^T dC        (B stored [K,N])
 *                                      dB += dC^T op(A)        (trans_b: B stored [N,K])
 *
 * Each gradient line is one sgemm with beta = 1, which adds into the gradient
 * as the tape requires. When B is 2-D and shared by every batch, its gradient
 * is the sum of every batch's op(A)^T dC. Without trans_a the batches of A
 * [batch,M,K] lie one after another, so A is one [batch*M, K] matrix and the
 * forward, dA and the summed dB are each a single sgemm over batch*M rows.
 *
 * linear, y = x W^T + b (W [out,in], torch.nn.Linear) or y = x W + b
 * (W [in,out], GPT-2's Conv1D), with x [...,in] read as X [N,in]:
 *
 *   forward   Y[N,out] = X op(W) + b          op(W) = W^T or W, [in,out]
 *   dX        dX += dY op(W)^T                (a matmul's dA)
 *   dW        dW += (X^T dY) stored as W      (a matmul's dB with A = X)
 *   db        db[o] += sum_n dY[n,o]          (b was added to every row)
 *
 * Threads. Many small products (attention: B*NH products of T x T x D) are
 * split over the batch with OpenMP: each thread runs whole products, and
 * OpenBLAS's OpenMP build runs single-threaded inside our parallel region.
 * One big product (a projection, the LM head) runs alone and sgemm uses every
 * thread.
 */
#include "internal.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>

/* ---------------------------------------------------------------- one product: C = op(A) op(B) + beta C */

/* Every product here is between contiguous row-major matrices, so the leading
 * dimensions follow from the shapes:
 *   A stored [M,K] (or [K,M] with ta), B stored [K,N] (or [N,K] with tb), C [M,N].
 * beta is 0 (C is overwritten and may hold garbage) or 1 (C accumulates). */

/* The plain triple loop: the definition of the product, kept as the reference.
 * It accumulates in double, so it is the more accurate of the two. */
static void gemm_reference(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                           const float *B, float beta, float *C) {
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            double acc = 0;
            for (int64_t p = 0; p < K; ++p) {
                float a = ta ? A[p * M + i] : A[i * K + p]; /* op(A)[i,p] */
                float b = tb ? B[j * K + p] : B[p * N + j]; /* op(B)[p,j] */
                acc += (double)a * b;
            }
            /* beta = 0 must not read C: it may be uninitialised (0 * NaN = NaN) */
            C[i * N + j] = (float)(beta == 0.0f ? acc : beta * C[i * N + j] + acc);
        }
}

/* When set, every product in this file runs on the triple loop instead of
 * sgemm: tests/test_matmul_reference.c runs the same ops both ways and checks
 * that they agree. Not for use while ops run on other threads. */
static bool use_reference = false;
void ag__matmul_use_reference(bool on) { use_reference = on; }

static void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, const float *B,
                 float beta, float *C) {
    if (M == 0 || N == 0) return;
    if (K == 0) { /* an empty sum: C = beta C (BLAS's leading dims would be 0) */
        if (beta == 0.0f) memset(C, 0, (size_t)(M * N) * sizeof(float));
        return;
    }
    if (use_reference) {
        gemm_reference(ta, tb, M, N, K, A, B, beta, C);
        return;
    }
    /* The tape function checked that M, N and K fit BLAS's int. */
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M,
                (int)N, (int)K, 1.0f, A, (int)(ta ? M : K), B, (int)(tb ? K : N), beta, C, (int)N);
}

/* dA += dC op(B)^T, written in A's storage (transposed back when ta).
 * dA [M,K] or [K,M], dC [M,N], B [K,N] or [N,K]. */
static void gemm_grad_a(float *dA, const float *dC, const float *B, int64_t M, int64_t N, int64_t K,
                        bool ta, bool tb) {
    if (!ta)
        gemm(false, !tb, M, K, N, dC, B, 1.0f, dA); /* [M,K] += dC[M,N] op(B)^T[N,K] */
    else
        gemm(tb, true, K, M, N, B, dC, 1.0f, dA); /* [K,M] += op(B)[K,N] dC^T[N,M] */
}

/* dB += op(A)^T dC, written in B's storage (transposed back when tb).
 * dB [K,N] or [N,K], dC [M,N], A [M,K] or [K,M]. */
static void gemm_grad_b(float *dB, const float *dC, const float *A, int64_t M, int64_t N, int64_t K,
                        bool ta, bool tb) {
    if (!tb)
        gemm(!ta, false, K, N, M, A, dC, 1.0f, dB); /* [K,N] += op(A)^T[K,M] dC[M,N] */
    else
        gemm(true, ta, N, K, M, dC, A, 1.0f, dB); /* [N,K] += dC^T[N,M] op(A)[M,K] */
}

/* ---------------------------------------------------------------- batched products */

/* A product of at most this many multiply-adds (128 x 128 x 128) gains little
 * from sgemm's own threads: the threads would mostly wait for each other. */
#define MATMUL_SMALL ((int64_t)1 << 21)

/* Whether to split `batch` products of M x N x K over threads (each thread runs
 * whole products) instead of running them one after another, each sgemm on
 * every thread. Worth it when there are enough products to keep every thread
 * busy and each product is small, or so many products that the load balances
 * anyway. */
static bool batch_parallel(int64_t batch, int64_t M, int64_t N, int64_t K) {
    int64_t nt = omp_get_max_threads();
    int64_t work = M * N * K;
    if (nt < 2 || batch < nt || batch * work < AG_PAR_MIN) return false;
    return work <= MATMUL_SMALL || batch >= 4 * nt;
}

/* C[p] = op(A[p]) op(B[p]) for p < batch; B[p] is B itself when shared.
 * A [batch,M,K] (or [batch,K,M] with ta), B [batch,K,N] or [K,N] (or the
 * transposes with tb), C [batch,M,N]. */
static void matmul_forward(float *C, const float *A, const float *B, int64_t batch, int64_t M, int64_t N,
                           int64_t K, bool ta, bool tb, bool shared) {
    if (shared && !ta) { /* A is one [batch*M, K] matrix: one big product */
        gemm(false, tb, batch * M, N, K, A, B, 0.0f, C);
        return;
    }
    int64_t sa = M * K, sb = shared ? 0 : K * N, sc = M * N; /* each batch's offset */
#pragma omp parallel for if (batch_parallel(batch, M, N, K))
    for (int64_t p = 0; p < batch; ++p) gemm(ta, tb, M, N, K, A + p * sa, B + p * sb, 0.0f, C + p * sc);
}

/* dA[p] += dC[p] op(B[p])^T and dB[p] += op(A[p])^T dC[p] (summed over p when B
 * is shared); dA or dB is NULL when nobody needs it. Shapes as in the forward;
 * dA has A's, dB has B's. */
static void matmul_backward(float *dA, float *dB, const float *dC, const float *A, const float *B,
                            int64_t batch, int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool shared) {
    int64_t sa = M * K, sb = shared ? 0 : K * N, sc = M * N;
    bool par = batch_parallel(batch, M, N, K);
    if (dA) {
        if (shared && !ta) {
            gemm_grad_a(dA, dC, B, batch * M, N, K, false, tb);
        } else {
            /* each batch writes its own slice of dA: no two threads share one */
#pragma omp parallel for if (par)
            for (int64_t p = 0; p < batch; ++p)
                gemm_grad_a(dA + p * sa, dC + p * sc, B + p * sb, M, N, K, ta, tb);
        }
    }
    if (dB) {
        if (!shared) {
#pragma omp parallel for if (par)
            for (int64_t p = 0; p < batch; ++p)
                gemm_grad_b(dB + p * sb, dC + p * sc, A + p * sa, M, N, K, ta, tb);
        } else if (!ta) {
            /* sum_p A[p]^T dC[p] = A^T dC with A, dC as [batch*M, .] matrices */
            gemm_grad_b(dB, dC, A, batch * M, N, K, false, tb);
        } else {
            /* every batch adds into the one dB: one after another, so no two
             * threads ever write it at once; each sgemm uses every thread */
            for (int64_t p = 0; p < batch; ++p) gemm_grad_b(dB, dC + p * sc, A + p * sa, M, N, K, ta, tb);
        }
    }
}

/* ---------------------------------------------------------------- matmul: the tape function */

/* Whether every size handed to sgemm fits its int. */
static bool blas_fits(int64_t a, int64_t b, int64_t c) { return a <= INT_MAX && b <= INT_MAX && c <= INT_MAX; }

ag_tensor *ag_matmul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b, bool trans_a, bool trans_b) {
    AG_NEED(ctx, a, b);
    char sa[64], sb[64];
    ag_shape_str(sa, a->ndim, a->shape);
    ag_shape_str(sb, b->ndim, b->shape);
    if (a->ndim < 2 || a->ndim > 4)
        AG_FAIL_NULL("matmul: A %s must have 2 to 4 dims", sa);
    /* B shares A's leading dims, or is one 2-D matrix used by every batch */
    bool shared = b->ndim == 2;
    if (!shared && b->ndim != a->ndim)
        AG_FAIL_NULL("matmul: B %s must be 2-D or have A's %d dims (A %s)", sb, a->ndim, sa);
    int64_t batch = 1;
    for (int d = 0; d < a->ndim - 2; ++d) {
        if (!shared && a->shape[d] != b->shape[d])
            AG_FAIL_NULL("matmul: leading dims of A %s and B %s differ at dim %d", sa, sb, d);
        batch *= a->shape[d];
    }
    shared = shared && batch > 1; /* 2-D times 2-D: one product, nothing shared */
    const int64_t *as = a->shape + a->ndim - 2, *bs = b->shape + b->ndim - 2;
    int64_t M = trans_a ? as[1] : as[0], K = trans_a ? as[0] : as[1];
    int64_t Kb = trans_b ? bs[1] : bs[0], N = trans_b ? bs[0] : bs[1];
    if (K != Kb)
        AG_FAIL_NULL("matmul: op(A) is %lldx%lld and op(B) is %lldx%lld: inner dims %lld and %lld differ "
                     "(A %s trans_a=%d, B %s trans_b=%d)",
                     (long long)M, (long long)K, (long long)Kb, (long long)N, (long long)K, (long long)Kb, sa,
                     trans_a, sb, trans_b);
    if (!blas_fits(batch * M, N, K))
        AG_FAIL_NULL("matmul: A %s and B %s are too large for BLAS's 32-bit sizes", sa, sb);

    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[a->ndim - 2] = M;
    shape[a->ndim - 1] = N;
    ag_tensor *c = ag__empty(ctx, a->ndim, shape);
    if (!c) return NULL;
    matmul_forward(c->data, a->data, b->data, batch, M, N, K, trans_a, trans_b, shared);

    ag_tensor *in[2] = {a, b};
    ag_node *n = ag__record(ctx, AG_OP_MATMUL, c, 2, in);
    if (!n) return NULL;
    n->i[0] = batch;
    n->i[1] = M;
    n->i[2] = N;
    n->i[3] = K;
    n->i[4] = trans_a;
    n->i[5] = trans_b;
    n->i[6] = shared;
    return c;
}

ag_status ag_matmul_backward(ag_ctx *ctx, const ag_node *n) {
    const ag_tensor *a = n->in[0], *b = n->in[1];
    matmul_backward(a->grad, b->grad, n->out->grad, a->data, b->data, n->i[0], n->i[1], n->i[2], n->i[3],
                    n->i[4], n->i[5], n->i[6]);
    return AG_OK;
}

/* ---------------------------------------------------------------- linear */

/* Y[n,:] += b for every row n. Y [N,out], b [out]. */
static void add_bias_forward(float *Y, const float *b, int64_t N, int64_t out) {
#pragma omp parallel for if (N * out > AG_PAR_MIN)
    for (int64_t r = 0; r < N; ++r)
        for (int64_t o = 0; o < out; ++o) Y[r * out + o] += b[o];
}

/* db[o] += sum_n dY[n,o]. dY [N,out], db [out]. Threads take blocks of columns
 * and walk every row, so no two threads write the same db[o]. */
#define COL_BLOCK 64
static void add_bias_backward(float *db, const float *dY, int64_t N, int64_t out) {
#pragma omp parallel for if (N * out > AG_PAR_MIN)
    for (int64_t o0 = 0; o0 < out; o0 += COL_BLOCK) {
        int64_t o1 = o0 + COL_BLOCK < out ? o0 + COL_BLOCK : out;
        for (int64_t r = 0; r < N; ++r)
            for (int64_t o = o0; o < o1; ++o) db[o] += dY[r * out + o];
    }
}

ag_tensor *ag_linear(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *b, ag_linear_layout layout) {
    AG_NEED(ctx, x, w);
    char sx[64], sw[64], sbias[64];
    ag_shape_str(sx, x->ndim, x->shape);
    ag_shape_str(sw, w->ndim, w->shape);
    if (layout != AG_LINEAR_OUT_IN && layout != AG_LINEAR_IN_OUT)
        AG_FAIL_NULL("linear: unknown layout %d (AG_LINEAR_OUT_IN or AG_LINEAR_IN_OUT)", (int)layout);
    if (w->ndim != 2)
        AG_FAIL_NULL("linear: W %s must be 2-D (%s)", sw, layout == AG_LINEAR_OUT_IN ? "[out,in]" : "[in,out]");
    /* tw: W is stored [out,in], so op(W) = W^T */
    bool tw = layout == AG_LINEAR_OUT_IN;
    int64_t in = tw ? w->shape[1] : w->shape[0];
    int64_t out = tw ? w->shape[0] : w->shape[1];
    if (x->shape[x->ndim - 1] != in)
        AG_FAIL_NULL("linear: x %s has %lld features, W %s (%s) takes %lld", sx,
                     (long long)x->shape[x->ndim - 1], sw, tw ? "[out,in]" : "[in,out]", (long long)in);
    if (b && (b->ndim != 1 || b->shape[0] != out))
        AG_FAIL_NULL("linear: bias %s must be [%lld] (W %s)", ag_shape_str(sbias, b->ndim, b->shape),
                     (long long)out, sw);
    int64_t N = 1; /* rows: every leading dim of x */
    for (int d = 0; d < x->ndim - 1; ++d) N *= x->shape[d];
    if (!blas_fits(N, out, in))
        AG_FAIL_NULL("linear: x %s and W %s are too large for BLAS's 32-bit sizes", sx, sw);

    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = out;
    ag_tensor *y = ag__empty(ctx, x->ndim, shape);
    if (!y) return NULL;
    /* Y[N,out] = X[N,in] op(W)[in,out], then + b on every row */
    matmul_forward(y->data, x->data, w->data, 1, N, out, in, false, tw, false);
    if (b) add_bias_forward(y->data, b->data, N, out);

    ag_tensor *ins[3] = {x, w, b};
    ag_node *n = ag__record(ctx, AG_OP_LINEAR, y, 3, ins);
    if (!n) return NULL;
    n->i[0] = N;
    n->i[1] = in;
    n->i[2] = out;
    n->i[3] = tw;
    return y;
}

ag_status ag_linear_backward(ag_ctx *ctx, const ag_node *n) {
    const ag_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    int64_t N = n->i[0], in = n->i[1], out = n->i[2];
    bool tw = n->i[3];
    const float *dY = n->out->grad; /* [N,out] */
    /* X plays A (not transposed), W plays B (transposed when stored [out,in]) */
    if (x->grad) gemm_grad_a(x->grad, dY, w->data, N, out, in, false, tw); /* dX [N,in] */
    if (w->grad) gemm_grad_b(w->grad, dY, x->data, N, out, in, false, tw); /* dW as W */
    if (b && b->grad) add_bias_backward(b->grad, dY, N, out);             /* db [out] */
    return AG_OK;
}
